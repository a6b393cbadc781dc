"""What each ``harness`` subcommand does, once :mod:`harness.cli` has parsed its options,
with the tables it prints: ``catalogue`` (list, check), ``run``, ``profile``, ``ab``,
``bisect``, ``compare`` (results, compare), ``history`` (history, report) and ``files``
(import-asv, export)."""

from __future__ import annotations

import argparse

from harness.models.registry import Registry, load_registry


def registry_of(args: argparse.Namespace) -> Registry:
    """The models and suites of the installed plugins plus ``--plugin``, less
    ``--disable-plugin``."""
    return load_registry(args.plugin, args.disable_plugin)
