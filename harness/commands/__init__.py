"""What each ``harness`` subcommand does, once :mod:`harness.cli` has parsed its options:
``catalogue`` (list, check), ``measure`` (run, profile, ab) and ``analyse`` (results,
compare, history, report, import-asv, export)."""

from __future__ import annotations

import argparse

from harness.registry import Registry, load_registry


def registry_of(args: argparse.Namespace) -> Registry:
    """The models and suites of the installed plugins plus ``--plugin``, less
    ``--disable-plugin``."""
    return load_registry(args.plugin, args.disable_plugin)
