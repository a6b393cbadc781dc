"""What each ``harness`` subcommand does, once :mod:`harness.cli` has parsed its options,
with the tables it prints: ``catalogue`` (list, check), ``run``, ``profile``, ``ab``,
``bisect``, ``compare`` (results, compare), ``history`` (history, report) and ``files``
(import-asv, export)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.models.registry import Registry


def registry_of(args: argparse.Namespace) -> Registry:
    """The models and suites of the installed plugins plus ``--plugin``, less
    ``--disable-plugin``. Imported here, not above: the commands that read results
    (history, report, compare) then start without torch."""
    from harness.models.registry import load_registry

    return load_registry(args.plugin, args.disable_plugin)
