"""`harness import-asv` and `harness export`: runs to and from other tools' files."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from harness import console
from harness.bridges.export import to_pytest_benchmark
from harness.commands import registry_of
from harness.errors import UsageError
from harness.store.results import ResultsWriter
from harness.store.sources import load_selection


def make_folder(out: Path) -> None:
    """The folder of ``--out``, where the parser allowed it to be missing (under the
    current folder)."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(
            f"cannot create the folder of {out}: {exc.strerror}; give --out a writable path"
        ) from None


def cmd_import_asv(args: argparse.Namespace) -> int:
    from harness.bridges.asv_import import load_asv_runs  # needs torch: not for history

    runs = load_asv_runs(args.directory, registry_of(args), args.commit, args.machine)
    for run in runs:
        header = dataclasses.replace(run.header, command=("harness", *sys.argv[1:]))
        with ResultsWriter(args.out, header) as out:
            for case in run.cases:
                out.write_case(case)
        env = run.header.environment
        console.stdout.print(
            f"{env['git']['commit'][:12]} on {env['hostname']} "
            f"({env['asv_env']}): {len(run.cases)} cases, run {out.run_id}",
            soft_wrap=True,
        )
    console.stdout.print(f"results: {args.out}", soft_wrap=True)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    document = to_pytest_benchmark(load_selection(args.run))
    make_folder(args.out)
    try:
        args.out.write_text(json.dumps(document, indent=2, default=str))
    except OSError as exc:
        raise UsageError(f"cannot write {args.out}: {exc.strerror}") from None
    console.stdout.print(f"{len(document['benchmarks'])} cases: {args.out}", soft_wrap=True)
    return 0
