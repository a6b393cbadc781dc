"""The ``harness`` command: list, check and run models from the plugin registry.

Errors are one line on stderr (``harness: error: ...``) with exit status 2 for bad
usage and 1 for failures; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import torch

import harness
from harness import console, environment
from harness.check import check_model
from harness.errors import HarnessError
from harness.plan import build_plan, select_models
from harness.registry import Registry, load_registry
from harness.results import ResultsWriter, default_path
from harness.runner import count_params, execute


class _Parser(argparse.ArgumentParser):
    """One-line usage errors, like every other error of the harness."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _positive_ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}")
    return values


def _dim(text: str) -> tuple[str, tuple[int, ...]]:
    name, sep, values = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE[,VALUE...] such as H=64,128, "
                                         f"got {text!r}")
    try:
        return name.strip(), _positive_ints(values)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"dimension {name.strip()}: expected positive integers "
                                         f"such as {name.strip()}=64,128, got {values!r}") from None


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _fraction(text: str) -> float:
    raw = text[:-1] if text.endswith("%") else text
    try:
        value = float(raw) / (100 if text.endswith("%") else 1)
    except ValueError:
        value = -1.0
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction like 0.02 or 2%, got {text!r}")
    return value


def _common(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("plugins and diagnostics")
    group.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                       help="also load this importable module as a plugin (repeatable; "
                            "or set HARNESS_PLUGINS=a.b,c.d)")
    group.add_argument("--disable-plugin", action="append", default=[], metavar="NAME",
                       help="do not load the entry-point plugin NAME (repeatable)")
    group.add_argument("--debug", action="store_true", help="show tracebacks on errors")


def _selection(parser: argparse.ArgumentParser, *, dims: bool) -> None:
    parser.add_argument("--suite", "-s", metavar="NAME", help="a suite (see 'harness list')")
    parser.add_argument("--model", "-m", action="extend", type=_names, default=[],
                        metavar="NAME[,NAME]", help="models to use (repeatable); with --suite, "
                                                    "a subset of the suite")
    if dims:
        parser.add_argument("--dim", "-d", action="append", type=_dim, default=[],
                            metavar="NAME=V[,V]", help="dimension values, e.g. H=64,128 "
                                                       "(repeatable; lists are swept)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="harness", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"harness {harness.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser("list", help="list registered models")
    _selection(p, dims=False)
    p.add_argument("--json", action="store_true", help="print a JSON array instead of a table")
    _common(p)
    p.set_defaults(func=cmd_list)

    p = commands.add_parser("check", help="check models' output shapes against their specs")
    _selection(p, dims=True)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _common(p)
    p.set_defaults(func=cmd_check)

    p = commands.add_parser("run", help="measure models (CPU, float32, inference)")
    _selection(p, dims=True)
    p.add_argument("--batch-sizes", "-b", type=_positive_ints, metavar="N[,N]",
                   help="batch sizes (default: the suite's, else each model's)")
    p.add_argument("--max-time", type=_positive_float, metavar="SECONDS",
                   help="time budget per case after warm-up (default 1)")
    p.add_argument("--warmup-time", type=_positive_float, metavar="SECONDS",
                   help="minimum warm-up per case (default 0.25)")
    p.add_argument("--target-precision", type=_fraction, metavar="FRACTION",
                   help="stop sampling once the median's 95%% CI half-width is within this "
                        "fraction (default 2%%)")
    p.add_argument("--out", "-o", type=Path, metavar="PATH",
                   help="results file (JSON Lines; appended to if it exists; "
                        "default: a new file under results/)")
    _common(p)
    p.set_defaults(func=cmd_run)
    return parser


def _registry(args: argparse.Namespace) -> Registry:
    return load_registry(args.plugin, args.disable_plugin)


def _count_params(registry: Registry, name: str) -> int | None:
    """Parameters at the default configuration, built on the meta device (no memory).

    None when the model cannot be built at all; ``harness check`` says why.
    """
    spec = registry.model(name).spec
    for device in ("meta", "cpu"):  # some constructors need real tensors
        try:
            with torch.device(device):
                return count_params(spec.build())
        except Exception:
            continue
    return None


def cmd_list(args: argparse.Namespace) -> int:
    registry = _registry(args)
    rows = []
    suite = registry.suite(args.suite) if args.suite else None
    names = select_models(registry, suite, args.model) if suite or args.model else registry.models
    for name in names:
        registered = registry.model(name)
        spec = registered.spec
        rows.append({
            "name": name, "plugin": registered.plugin, "family": spec.family,
            "tags": list(spec.tags), "description": spec.description, "source": spec.source,
            "params": _count_params(registry, name),
            "inputs": [{"name": i.name, "shape": str(i.shape), "dtype": i.dtype,
                        "high": None if i.high is None else str(i.high)} for i in spec.inputs],
            "outputs": [str(s) for s in spec.outputs],
            "dims": spec.default_dims, "constraints": [str(c) for c in spec.constraints],
            "kwargs": spec.default_kwargs, "batch_sizes": list(spec.batch_sizes),
            "trainable": spec.trainable, "suites": registry.suites_of(name),
        })
    if args.json:
        print(json.dumps(rows, indent=2, default=repr))
    else:
        everywhere = sorted(s.name for s in registry.suites.values() if s.includes_all)
        console.stdout.print(console.models_table(rows, everywhere))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    registry = _registry(args)
    if args.suite or args.model:
        plan = build_plan(registry, suite_name=args.suite, models=args.model, dims=dict(args.dim))
        targets = list({(c.model, tuple(c.dims.items())): c for c in plan.cases}.values())
        pairs = [(c.model, dict(c.dims)) for c in targets]
    else:
        pairs = [(name, None) for name in registry.models]
    results = []
    with console.Progress(len(pairs)) as progress:
        for index, (name, dims) in enumerate(pairs):
            progress.start(index, name)
            registered = registry.model(name)
            results.append(check_model(registered.spec, registered.plugin, dims))
            progress.finish("ok" if results[-1].ok else "FAIL")
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        console.stdout.print(console.check_table(results))
        console.print_lines(f"[red]{r.name}[/]: {problem}"
                            for r in results for problem in r.problems)
    return 1 if any(not r.ok for r in results) else 0


def cmd_run(args: argparse.Namespace) -> int:
    registry = _registry(args)
    plan = build_plan(registry, suite_name=args.suite, models=args.model,
                      batch_sizes=args.batch_sizes, dims=dict(args.dim),
                      measure={"max_time": args.max_time, "warmup_time": args.warmup_time,
                               "target_precision": args.target_precision})
    out = args.out or default_path(plan.label)
    header: dict[str, Any] = {"command": ["harness", *sys.argv[1:]],
                              "environment": environment.collect(),
                              "settings": dataclasses.asdict(plan.measure)}
    rows = []
    with ResultsWriter(out, header) as writer, console.Progress(len(plan.cases)) as progress:
        records = execute(plan, registry, writer,
                          on_case=lambda index, case: progress.start(index, case.label))
        for case, record in zip(plan.cases, records):
            progress.finish(console.outcome(record))
            rows.append((case, record))
    failed = [r for _, r in rows if r["status"] != "ok"]
    title = (f"{len(rows)} cases, {len(rows) - len(failed)} ok, {len(failed)} failed "
             f"(CPU, float32, inference, {torch.get_num_threads()} threads)")
    console.stdout.print(console.results_table(rows, title))
    console.stdout.print(f"results: {out}", soft_wrap=True)
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except HarnessError as exc:
        if args.debug:
            raise
        message = " ".join(str(exc).split())
        print(f"harness: error: {message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("harness: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
