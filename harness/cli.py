"""The ``harness`` command: list, check, run, compare, track, report on and profile models,
time two versions of a model turn about (ab), import asv's results as runs and export
runs as pytest-benchmark JSON.

Errors are one line on stderr (``harness: error: ...``) with exit status 2 for bad
usage and 1 for failures; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import shlex
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import pandas as pd
import torch

import harness
from harness import (axes, compare, console, environment, history, interleave, profile,
                     ray_executor, report)
from harness.asv_import import load_asv_runs
from harness.check import check_model
from harness.errors import HarnessError, UsageError
from harness.export import to_pytest_benchmark
from harness.isolation import ISOLATION_MODES, make_executor
from harness.plan import Case, Plan, Request, build_plan, case_key_of_record, select_models
from harness.ray_executor import NodeKind
from harness.registry import Registry, load_registry, plugin_selection
from harness.results import (SUFFIX, ResultsWriter, default_path, environment_of, last_run,
                             list_runs, load, load_runs, load_selection, merge_runs)
from harness.runner import DEFAULT_MAX_BATCH, Executor, Runner, calibrate_peaks
from harness.timing import MeasureConfig
from harness.worker import count_params

AB_TIME = 2.0  # seconds of samples per side: see the README's validation of harness ab
AB_TIMEOUT = 300.0


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


def _positive_int(text: str) -> int:
    values = _positive_ints(text)
    if len(values) != 1:
        raise argparse.ArgumentTypeError(f"expected one positive integer, got {text!r}")
    return values[0]


def _shard(text: str) -> tuple[int, int]:
    index, _, count = text.partition("/")
    try:
        shard = int(index), int(count)
    except ValueError:
        shard = (0, 0)
    if not 1 <= shard[0] <= shard[1]:
        raise argparse.ArgumentTypeError(f"expected I/N with 1 <= I <= N, got {text!r}")
    return shard


def _node_kinds(text: str) -> tuple[NodeKind, ...]:
    try:
        kinds = tuple(dict.fromkeys(NodeKind.parse(t.strip()) for t in text.split(",")))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return kinds


def _batch_sizes(text: str) -> tuple[int, ...] | str:
    return axes.AUTO if text == axes.AUTO else _positive_ints(text)


def _choices(allowed: Sequence[str]):
    def parse(text: str) -> tuple[str, ...]:
        values = tuple(v.strip() for v in text.split(",") if v.strip())
        bad = [v for v in values if v not in allowed]
        if not values or bad:
            raise argparse.ArgumentTypeError(f"{', '.join(bad) or repr(text)} not in "
                                             f"{', '.join(allowed)}")
        return values
    return parse


_UNITS = {"": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "kib": 2**10, "mib": 2**20, "gib": 2**30}


def _bytes(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    unit = match.group(2).lower() if match else None
    if not match or unit not in _UNITS or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"expected a size such as 2GiB or 500MB, got {text!r}")
    return int(float(match.group(1)) * _UNITS[unit])


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


def _seconds(allow_zero: bool = False) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not (value >= 0 if allow_zero else value > 0):
            kind = "non-negative" if allow_zero else "positive"
            raise argparse.ArgumentTypeError(f"expected a {kind} number of seconds, got {text!r}")
        return value
    return parse


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


def _one_case_options(p: argparse.ArgumentParser) -> None:
    """The options naming one case (profile, ab): one value per axis."""
    p.add_argument("--model", "-m", required=True, metavar="NAME", help="the model")
    p.add_argument("--batch-size", "-b", type=_positive_int, metavar="N",
                   help="batch size (default: the largest of the model's defaults)")
    p.add_argument("--dim", "-d", action="append", type=_dim, default=[], metavar="NAME=V",
                   help="a dimension's value, e.g. H=128 (repeatable)")
    p.add_argument("--device", choices=axes.DEVICES, default="cpu", help="default cpu")
    p.add_argument("--dtype", choices=axes.DTYPES, default="float32", help="default float32")
    p.add_argument("--precision", choices=axes.PRECISIONS, help="cast (default) or amp")
    p.add_argument("--compile", choices=axes.COMPILE_MODES, default="none",
                   help="torch.compile mode (default none)")
    p.add_argument("--backend", metavar="NAME", help="torch.compile backend (default inductor)")
    p.add_argument("--mode", choices=axes.MODES, default="infer",
                   help="inference or a training step (default infer)")
    p.add_argument("--threads", type=_positive_int, metavar="N", help="torch intra-op threads")


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

    p = commands.add_parser("run", help="measure models over a sweep of batch sizes, "
                                         "devices, dtypes, compile modes and modes")
    _selection(p, dims=True)
    p.add_argument("--batch-sizes", "-b", type=_batch_sizes, metavar="N[,N]|auto",
                   help="batch sizes, or 'auto' for the largest that fits "
                        "(default: the suite's, else each model's)")
    p.add_argument("--max-batch-size", type=int, default=DEFAULT_MAX_BATCH, metavar="N",
                   help=f"upper bound of the 'auto' search (default {DEFAULT_MAX_BATCH})")
    p.add_argument("--devices", type=_choices(axes.DEVICES), metavar="cpu,cuda,mps",
                   help="devices (default: cpu plus any accelerator present)")
    p.add_argument("--dtypes", type=_choices(axes.DTYPES), metavar="float32,float16,bfloat16",
                   help="dtypes (default float32)")
    p.add_argument("--precision", choices=axes.PRECISIONS,
                   help="'cast' runs model and inputs in the dtype (default); 'amp' keeps "
                        "float32 weights under torch.autocast")
    p.add_argument("--compile", type=_choices(axes.COMPILE_MODES), metavar="none,default,...",
                   help="torch.compile modes: none, default, reduce-overhead, max-autotune "
                        "(default none)")
    p.add_argument("--backend", metavar="NAME", help="torch.compile backend (default inductor)")
    p.add_argument("--mode", type=_choices(axes.MODES), metavar="infer,train",
                   help="inference and/or a training step: forward, loss, backward, SGD step "
                        "(default infer)")
    p.add_argument("--threads", type=_positive_int, metavar="N",
                   help="torch intra-op threads per case")
    p.add_argument("--repeats", type=_positive_int, metavar="N",
                   help="measure each case in N fresh processes, spread over the run, so "
                        "'harness compare' sees process-to-process noise (default 1)")
    p.add_argument("--shard", type=_shard, metavar="I/N",
                   help="run only shard I of N: a deterministic, balanced slice of the sweep "
                        "(merge the shards with 'harness results merge')")
    p.add_argument("--isolation", choices=ISOLATION_MODES, default="process",
                   help="run each case in a fresh process (default) or in this one")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="run the cases here (default) or on a Ray cluster, one benchmark per "
                        "node at a time (needs pip install 'harness[ray]')")
    p.add_argument("--address", metavar="auto|HOST:PORT",
                   help="the Ray cluster to use (default: start a local one for this run)")
    p.add_argument("--nodes", type=_node_kinds, metavar="SELECTOR[,SELECTOR]",
                   help="Ray nodes to use, by label (accelerator=H100) or custom resource "
                        "(cpu-only); several: one run per kind, then their comparison")
    p.add_argument("--timeout", type=_seconds(), metavar="SECONDS",
                   help="end a case that runs longer as 'timeout' (default 300; process "
                        "isolation only)")
    p.add_argument("--memory-limit", type=_bytes, metavar="SIZE",
                   help="cap each case's extra address space, e.g. 4GiB (process isolation)")
    p.add_argument("--resume", type=Path, metavar="PATH",
                   help="finish an interrupted run: redo its request, skipping recorded cases")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress display")
    p.add_argument("--max-time", type=_seconds(), metavar="SECONDS",
                   help="time budget per case after warm-up (default 1)")
    p.add_argument("--min-time", type=_seconds(allow_zero=True), metavar="SECONDS",
                   help="sample at least this long before stopping early (default 0.2)")
    p.add_argument("--warmup-time", type=_seconds(allow_zero=True), metavar="SECONDS",
                   help="minimum warm-up per case (default 0.25)")
    p.add_argument("--target-precision", type=_fraction, metavar="FRACTION",
                   help="stop sampling once the median's 95%% CI half-width is within this "
                        "fraction (default 2%%)")
    p.add_argument("--target-mde", type=_fraction, metavar="FRACTION",
                   help="sample until a comparison with a like run could detect a change of "
                        "this size (e.g. 3%%), or the time budget is spent")
    p.add_argument("--out", "-o", type=Path, metavar="PATH",
                   help="results file (JSON Lines; appended to if it exists; "
                        "default: a new file under results/)")
    p.add_argument("--profile", action="store_true",
                   help="after the sweep, profile each case that ran (as 'harness profile', "
                        "in this process) into profiles/<results file name>/ beside the results")
    _common(p)
    p.set_defaults(func=cmd_run)

    p = commands.add_parser("results", help="list the runs in results files; "
                                             "'results merge SHARD... -o OUT' joins shards")
    p.add_argument("paths", nargs="*", type=Path, default=[Path("results")], metavar="PATH",
                   help="results files or directories (default: results/)")
    p.add_argument("--out", "-o", type=Path, metavar="PATH", help="merge: the merged file")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    p.set_defaults(func=cmd_results)

    p = commands.add_parser("compare", help="compare two runs case by case: what got slower")
    p.add_argument("baseline", metavar="BASELINE",
                   help="results file or directory, optionally FILE#RUN to pick one run")
    p.add_argument("candidate", metavar="CANDIDATE", help="the same, for the new code or machine")
    p.add_argument("--metric", choices=compare.METRICS, default="latency")
    p.add_argument("--threshold", type=_fraction, default=compare.DEFAULT_THRESHOLD,
                   metavar="FRACTION", help="smallest change that counts, e.g. 5%% (default)")
    p.add_argument("--fail-on-regression", action="store_true",
                   help="exit 1 if any case got significantly worse by at least the threshold")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    p.set_defaults(func=cmd_compare)
    p = commands.add_parser("profile", help="profile one case with torch.profiler: a trace for "
                                             "TensorBoard, top operators, memory")
    _one_case_options(p)
    p.add_argument("--steps", type=_positive_int, default=profile.DEFAULT_STEPS, metavar="N",
                   help=f"steps recorded, after {profile.WAIT_STEPS} skipped and "
                        f"{profile.WARMUP_STEPS} warm-up steps "
                        f"(default {profile.DEFAULT_STEPS})")
    p.add_argument("--with-stack", action="store_true",
                   help="record Python call stacks of operators (slower; TensorBoard shows them)")
    p.add_argument("--top", type=_positive_int, default=profile.DEFAULT_TOP, metavar="N",
                   help=f"rows of each operator table (default {profile.DEFAULT_TOP})")
    p.add_argument("--out", "-o", type=Path, default=profile.DEFAULT_FOLDER, metavar="DIR",
                   help=f"folder of profiles (default {profile.DEFAULT_FOLDER}); this one goes "
                        "in DIR/<time>-<model>/<case>/")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress display")
    _common(p)
    p.set_defaults(func=cmd_profile)
    p = commands.add_parser(
        "ab", help="time one case's baseline and candidate code turn about, then compare",
        description="Time one case with two versions of the model code (by default HEAD "
                    "against the working tree) in two processes at once, in alternating "
                    "turns of about 20 ms, so the machine's drift hits both alike; then "
                    "judge the per-turn ratios as 'harness compare' does.")
    _one_case_options(p)
    p.add_argument("--baseline", default="HEAD", metavar="REV|DIR",
                   help="the baseline's model code: a git revision of this checkout or a "
                        "folder with a plugins package (default HEAD)")
    p.add_argument("--candidate", metavar="REV|DIR",
                   help="the candidate's model code, likewise (default: the working tree)")
    p.add_argument("--time", type=_seconds(), default=AB_TIME, metavar="SECONDS",
                   help=f"seconds of timed samples per side (default {AB_TIME:g})")
    p.add_argument("--timeout", type=_seconds(), default=AB_TIMEOUT, metavar="SECONDS",
                   help=f"longest wait for one side's answer (default {AB_TIMEOUT:g})")
    p.add_argument("--threshold", type=_fraction, default=compare.DEFAULT_THRESHOLD,
                   metavar="PCT", help="smallest change that counts, e.g. 3%% (default 5%%)")
    p.add_argument("--fail-on-regression", action="store_true",
                   help="exit 1 if the candidate is significantly slower by the threshold")
    p.add_argument("--out", "-o", type=Path, default=Path("results/ab"), metavar="DIR",
                   help="folder of sessions (default results/ab); this one writes "
                        "DIR/<time>-<model>/baseline.jsonl and candidate.jsonl")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress display")
    _common(p)
    p.set_defaults(func=cmd_ab)
    _history_and_report(commands)

    p = commands.add_parser("import-asv", help="turn asv's results into harness runs, "
                                               "for compare and reports")
    p.add_argument("directory", nargs="?", type=Path, default=Path("results/asv/results"),
                   metavar="DIR", help="asv's results directory (default results/asv/results)")
    p.add_argument("--out", "-o", type=Path, required=True, metavar="PATH",
                   help="results file to write (JSON Lines; appended to if it exists)")
    p.add_argument("--commit", metavar="PREFIX", help="only the results of this commit")
    p.add_argument("--machine", metavar="NAME", help="only the results of this asv machine")
    _common(p)
    p.set_defaults(func=cmd_import_asv)

    p = commands.add_parser("export", help="write a run as pytest-benchmark JSON")
    p.add_argument("run", metavar="RUN", help="results file or directory, or FILE#RUN")
    p.add_argument("--out", "-o", type=Path, required=True, metavar="PATH",
                   help="the JSON file, for 'pytest-benchmark compare'")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    p.set_defaults(func=cmd_export)
    return parser


def _history_and_report(commands: Any) -> None:
    """The ``history`` and ``report`` subcommands: both read a series of runs."""
    def runs_and_order(p: argparse.ArgumentParser) -> None:
        p.add_argument("runs", nargs="*", default=["results"], metavar="RUN",
                       help="results files or directories, or FILE#RUN for one run "
                            "(default: results/)")
        p.add_argument("--order", choices=history.ORDERS, default="time",
                       help="order runs by their time (default) or by the commit they "
                            "measured, as 'git rev-list --topo-order' of the repository here")
        p.add_argument("--threshold", type=_fraction, default=compare.DEFAULT_THRESHOLD,
                       metavar="FRACTION", help="smallest step that counts, e.g. 5%% (default)")
        p.add_argument("--debug", action="store_true", help="show tracebacks on errors")

    p = commands.add_parser("history", help="find the runs where a case got slower or faster")
    runs_and_order(p)
    p.add_argument("--metric", choices=history.METRICS, default="latency")
    p.add_argument("--fail-on-regression", action="store_true",
                   help="exit 1 if any case stepped to a worse level")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.set_defaults(func=cmd_history)

    p = commands.add_parser("report", help="write a self-contained HTML report of runs")
    runs_and_order(p)
    p.add_argument("--out", "-o", type=Path, default=Path("report.html"), metavar="PATH",
                   help="the HTML file to write (default report.html)")
    p.add_argument("--title", default="harness report", help="the report's heading")
    p.set_defaults(func=cmd_report)


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
        plan = build_plan(registry, Request(suite=args.suite, models=tuple(args.model),
                                            dims=dict(args.dim), devices=("cpu",)))
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


_SELECTION_OPTIONS = ("suite", "model", "dim", "batch_sizes", "devices", "dtypes", "precision",
                      "compile", "backend", "mode", "threads", "timeout", "max_time",
                      "min_time", "warmup_time", "target_precision", "target_mde", "repeats",
                      "shard")


def _target_precision(args: argparse.Namespace) -> float | None:
    """``--target-mde`` is a target precision in a comparison's terms."""
    if args.target_mde is None:
        return args.target_precision
    if args.target_precision is not None:
        raise UsageError("give --target-mde or --target-precision, not both")
    return args.target_mde / compare.MDE_PER_PRECISION


def _request(args: argparse.Namespace) -> Request:
    return Request(
        suite=args.suite, models=tuple(args.model), batch_sizes=args.batch_sizes,
        dims=dict(args.dim), devices=args.devices, dtypes=args.dtypes,
        precision=args.precision, compile_modes=args.compile, backend=args.backend,
        modes=args.mode, threads=args.threads, timeout=args.timeout, repeats=args.repeats,
        shard=args.shard,
        measure={"max_time": args.max_time, "min_time": args.min_time,
                 "warmup_time": args.warmup_time,
                 "target_precision": _target_precision(args)})


def _check_executor_options(args: argparse.Namespace) -> None:
    if args.executor != "ray":
        given = [o for o in ("address", "nodes") if getattr(args, o)]
        if given:
            raise UsageError(f"--{given[0]} needs --executor ray")
        return
    if args.isolation == "none":
        raise UsageError("--executor ray runs each case in its own process; "
                         "drop --isolation none")
    if args.profile:
        raise UsageError("--profile profiles on this machine, not on the cluster's nodes; "
                         "drop it, or run 'harness profile' on a node")
    if args.resume and args.nodes and len(args.nodes) > 1:
        raise UsageError("--resume finishes one node kind's results file; give --nodes "
                         "one selector")
    ray_executor.require_ray()


def cmd_run(args: argparse.Namespace) -> int:
    registry = _registry(args)
    if args.isolation == "none" and args.memory_limit:
        raise UsageError("--memory-limit needs --isolation process")
    _check_executor_options(args)
    run_id, done, peaks = None, set(), None
    if args.resume:
        given = [f"--{o.replace('_', '-')}" for o in _SELECTION_OPTIONS if getattr(args, o)]
        if given or args.out:
            raise UsageError(f"--resume repeats the run's own request; drop {', '.join(given)}"
                             f"{' --out' if args.out else ''}")
        header, recorded = last_run(args.resume)
        request = Request.from_dict(header["request"])
        run_id = header["run_id"]
        done = {case_key_of_record(r) for r in recorded}
        peaks = header.get("environment", {}).get("peak_flops")
    else:
        request = _request(args)
    plan = build_plan(registry, request)
    out = args.resume or args.out or default_path(plan.label)
    resumed = _Resumed(run_id, frozenset(done), peaks)
    if args.executor == "ray":
        return _run_on_ray(args, registry, plan, out, resumed)
    if args.profile:
        profile.require_viewer()
        profiles = profile.output_folder(out.parent / "profiles" / out.stem)
    executor = make_executor(args.isolation, registry,
                             *plugin_selection(args.plugin, args.disable_plugin),
                             timeout=plan.timeout, memory_limit=args.memory_limit)
    rows = _sweep(args, registry, plan, executor, out, resumed)
    failures: list[str] = []
    if args.profile:
        ran = [dataclasses.replace(c, batch_size=r["batch_size"]) for c, r in rows
               if r["status"] == "ok"]
        failures = _profile(registry, ran, profiles, profile.DEFAULT_STEPS, False,
                            profile.DEFAULT_TOP, args.quiet)
        for message in failures:
            console.stderr.print(f"harness: error: {message}", markup=False, soft_wrap=True)
    return 1 if _failed(rows) or failures else 0


@dataclasses.dataclass(frozen=True)
class _Resumed:
    """What ``--resume`` takes from the run it finishes (nothing for a new run)."""

    run_id: str | None
    done: frozenset
    peaks: dict[str, float | None] | None


def _failed(rows: Sequence[tuple[Case, dict[str, Any]]]) -> list[dict[str, Any]]:
    return [r for _, r in rows if r["status"] not in ("ok", "skipped")]


def _sweep(args: argparse.Namespace, registry: Registry, plan: Plan, executor: Executor,
           out: Path, resumed: _Resumed, executor_header: dict[str, Any] | None = None
           ) -> list[tuple[Case, dict[str, Any]]]:
    """Calibrate, then measure the plan's unrecorded cases into ``out``, showing progress
    and ending with the results table; the (case, record) pairs of this sweep."""
    cases = [c for c in plan.cases if c.key() not in resumed.done]
    rows = []
    with console.Progress(len(cases), quiet=args.quiet) as progress:
        peaks = resumed.peaks
        if peaks is None:
            progress.status("calibrating peak FLOP/s")
            peaks = calibrate_peaks(executor, cases)
        header = {"command": ["harness", *sys.argv[1:]], "request": plan.request.to_dict(),
                  "environment": {**environment.collect(), "peak_flops": peaks},
                  "settings": {**dataclasses.asdict(plan.measure), "timeout": plan.timeout,
                               "isolation": args.isolation}}
        if executor_header:
            header["executor"] = executor_header
        if resumed.run_id:
            header["resumed"] = True
        with ResultsWriter(out, header, run_id=resumed.run_id) as writer:
            runner = Runner(plan, registry, executor, writer, peaks, args.max_batch_size,
                            on_start=lambda index, case: progress.start(index, case.label),
                            on_status=progress.status)
            for case, record in runner.run(cases):
                progress.finish(console.outcome(record))
                rows.append((case, record))
    failed = _failed(rows)
    skipped = sum(r["status"] == "skipped" for _, r in rows)
    done = resumed.done
    title = (f"{len(rows)} cases: {len(rows) - len(failed) - skipped} ok, {len(failed)} failed, "
             f"{skipped} skipped" + (f" ({len(done)} already recorded)" if done else ""))
    console.stdout.print(console.results_table(rows, title))
    console.stdout.print(f"results: {out}", soft_wrap=True)
    return rows


def _run_on_ray(args: argparse.Namespace, registry: Registry, plan: Plan, out: Path,
                resumed: _Resumed) -> int:
    """The plan on each node kind of ``--nodes`` in turn (one results file each), then,
    for several kinds, their comparison against the first and its HTML report."""
    kinds: Sequence[NodeKind | None] = args.nodes or (None,)
    paths = [out if len(kinds) == 1 else kind.results_path(out) for kind in kinds]
    failed = False
    with ray_executor.connect(args.address) as ray:
        executors = [ray_executor.RayExecutor(ray, kind,
                                              *plugin_selection(args.plugin, args.disable_plugin),
                                              timeout=plan.timeout,
                                              memory_limit=args.memory_limit)
                     for kind in kinds]  # every selector is checked before anything runs
        for executor, path in zip(executors, paths):
            if len(kinds) > 1:
                console.stdout.print(f"nodes {executor.kind.text}:", soft_wrap=True)
            rows = _sweep(args, registry, plan, executor, path, resumed,
                          {**executor.describe(), "address": args.address or "local"})
            failed = failed or bool(_failed(rows))
    for path in paths[1:]:
        _print_comparison(load_selection(paths[0]), load_selection(path),
                          [str(paths[0]), str(path)], "latency", compare.DEFAULT_THRESHOLD,
                          as_json=False, fail=False)
    if len(paths) > 1:
        html = report.render(load_runs(paths), f"harness: {plan.label} on "
                             f"{', '.join(k.text for k in kinds)}")
        written = report.write(html, out.with_name(f"{out.stem}-comparison.html"))
        console.stdout.print(f"report: {written}", soft_wrap=True)
    return 1 if failed else 0


def _profile(registry: Registry, cases: Sequence[Case], folder: Path, steps: int,
             with_stack: bool, top: int, quiet: bool) -> list[str]:
    """Profile each case into its own folder under ``folder`` and print the summaries and
    the command that shows them; a case that fails is left out and its message returned."""
    results, failures = [], []
    with console.Progress(len(cases), quiet=quiet) as progress:
        for index, case in enumerate(cases):
            progress.start(index, f"profiling {case.label}")
            try:
                results.append(profile.profile_case(
                    registry.model(case.model).spec, case,
                    folder / profile.case_folder_name(case), steps, with_stack))
                progress.finish("done")
            except HarnessError as exc:
                failures.append(str(exc))
                progress.finish("failed")
    for result in results:
        console.print_profile(result, top)
    if results:
        console.stdout.print(f"view: tensorboard --logdir {shlex.quote(str(folder))}",
                             soft_wrap=True, markup=False)
    return failures


def _one_case(args: argparse.Namespace, registry: Registry, command: str) -> Case:
    spec = registry.model(args.model).spec
    several = [name for name, values in args.dim if len(values) > 1]
    if several:
        raise UsageError(f"harness {command} takes one value per dimension; {several[0]} has "
                         "several ('harness run' sweeps them)")
    plan = build_plan(registry, Request(
        models=(spec.name,), batch_sizes=(args.batch_size or max(spec.batch_sizes),),
        dims=dict(args.dim), devices=(args.device,), dtypes=(args.dtype,),
        precision=args.precision, compile_modes=(args.compile,), backend=args.backend,
        modes=(args.mode,), threads=args.threads))
    if not plan.cases:
        raise UsageError(f"model {spec.name!r} has no training step; use --mode infer")
    return plan.cases[0]


def cmd_profile(args: argparse.Namespace) -> int:
    profile.require_viewer()
    registry = _registry(args)
    case = _one_case(args, registry, "profile")
    folder = profile.output_folder(args.out / profile.run_name(case.model))
    failures = _profile(registry, [case], folder, args.steps, args.with_stack, args.top,
                        args.quiet)
    if failures:
        raise HarnessError(failures[0])
    return 0


def cmd_ab(args: argparse.Namespace) -> int:
    registry = _registry(args)
    case = _one_case(args, registry, "ab")
    config = MeasureConfig(max_time=args.time)
    with tempfile.TemporaryDirectory(prefix="harness-ab-") as scratch, \
            console.Progress(1, quiet=args.quiet) as progress:
        sides = [interleave.side(case, revision, Path(scratch) / role)
                 for role, revision in (("baseline", args.baseline),
                                        ("candidate", args.candidate))]
        progress.start(0, f"{case.label}: {sides[0].source} against "
                          f"{sides[1].source}, turn about")
        records = interleave.measure_interleaved(
            *sides, config, plugins=args.plugin, disabled=args.disable_plugin,
            timeout=args.timeout,
            on_turn=lambda done: progress.status(f"{case.label}: {done:.0%}"))
        progress.finish("done")
    folder = default_path(case.model, args.out).with_suffix("")
    env = {**environment.collect(), "peak_flops": {}}
    paths = []
    for side, record in zip(sides, records):
        role = record["interleaved"]["side"]
        header = {"command": ["harness", *sys.argv[1:]], "environment": env,
                  "settings": {**dataclasses.asdict(config), "timeout": args.timeout,
                               "isolation": "interleaved"},
                  "interleaved": {"session": record["interleaved"]["session"], "side": role,
                                  "source": side.source}}
        paths.append(folder / f"{role}{SUFFIX}")
        with ResultsWriter(paths[-1], header) as writer:
            writer.write_case(record)
    status = _print_comparison(load(paths[0]), load(paths[1]), [str(p) for p in paths],
                               "latency", args.threshold, args.json, args.fail_on_regression)
    if not args.json:
        console.stdout.print(f"results: {folder}", soft_wrap=True)
    return status


def cmd_results(args: argparse.Namespace) -> int:
    if args.paths and args.paths[0] == Path("merge"):
        if len(args.paths) < 2 or not args.out:
            raise UsageError("usage: harness results merge SHARD.jsonl... --out MERGED.jsonl")
        summary = merge_runs(args.paths[1:], args.out)
        missing = summary["missing_shards"]
        console.stdout.print(f"merged {summary['cases']} cases from {summary['runs']} runs into "
                             f"{summary['out']}" + (f"; missing shards: {missing}" if missing
                                                    else ""), soft_wrap=True)
        return 0
    runs = list_runs(args.paths)
    if args.json:
        print(json.dumps(runs, indent=2))
    else:
        console.stdout.print(console.runs_table(runs))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    return _print_comparison(load_selection(args.baseline), load_selection(args.candidate),
                             [args.baseline, args.candidate], args.metric, args.threshold,
                             args.json, args.fail_on_regression)


def _print_comparison(baseline: pd.DataFrame, candidate: pd.DataFrame, names: Sequence[str],
                      metric: str, threshold: float, as_json: bool, fail: bool) -> int:
    """The comparison's tables (or JSON); 1 if ``fail`` and a case regressed."""
    table = compare.compare(baseline, candidate, metric, threshold)
    counts = compare.summarise(table, metric)
    keys = [set(compare.latest_cases(f)) for f in (baseline, candidate)]
    only = {"baseline": len(keys[0] - keys[1]), "candidate": len(keys[1] - keys[0])}
    environments = [environment_of(f.iloc[0]) for f in (baseline, candidate)]
    hardware = compare.different_machines(environments)
    speedups = compare.geomean_speedups(table, metric=metric)
    regressed = bool(table["regressed"].any())
    if as_json:
        print(json.dumps({"metric": metric, "threshold": threshold, "summary": counts,
                          "only_in": only, "different_machines": hardware,
                          "geomean_speedups": speedups.to_dict("records"),
                          "cases": table.to_dict("records")}, indent=2, default=str))
    else:
        title = (f"{metric}: {names[0]} -> {names[1]} "
                 f"(threshold {threshold:.1%}, q <= {compare.ALPHA})")
        console.stdout.print(console.comparison_table(table.to_dict("records"), metric,
                                                      title, hardware))
        if hardware or len(speedups) > 1:
            console.stdout.print(console.speedup_table(speedups.to_dict("records")))
        summary = ", ".join(f"{n} {v}" for v, n in counts.items())
        extra = ", ".join(f"{n} only in {side}" for side, n in only.items() if n)
        console.stdout.print(f"{len(table)} cases: {summary}" + (f"; {extra}" if extra else ""),
                             soft_wrap=True)
    return 1 if regressed and fail else 0


def cmd_history(args: argparse.Namespace) -> int:
    found = history.history(load_runs(args.runs), args.metric, args.threshold, args.order)
    counts = history.summary(found)
    if args.json:
        print(json.dumps(history.as_mapping(found), indent=2, default=str))
    else:
        console.stdout.print(console.history_table(found))
        if found.steps:
            console.stdout.print(console.steps_table(found))
        console.stdout.print(f"{len(found.runs)} runs, {len(found.series)} cases: "
                             f"{counts['regressions']} regressions, "
                             f"{counts['improvements']} improvements", soft_wrap=True)
    return 1 if counts["regressions"] and args.fail_on_regression else 0


def cmd_report(args: argparse.Namespace) -> int:
    html = report.render(load_runs(args.runs), args.title, args.order, args.threshold)
    console.stdout.print(f"report: {report.write(html, args.out)}", soft_wrap=True)
    return 0


def cmd_import_asv(args: argparse.Namespace) -> int:
    runs = load_asv_runs(args.directory, _registry(args), args.commit, args.machine)
    for run in runs:
        with ResultsWriter(args.out, {**run.header, "command": ["harness", *sys.argv[1:]]}) as out:
            for case in run.cases:
                out.write_case(case)
        env = run.header["environment"]
        console.stdout.print(f"{env['git']['commit'][:12]} on {env['hostname']} "
                             f"({env['asv_env']}): {len(run.cases)} cases, run {out.run_id}",
                             soft_wrap=True)
    console.stdout.print(f"results: {args.out}", soft_wrap=True)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    document = to_pytest_benchmark(load_selection(args.run))
    try:
        args.out.write_text(json.dumps(document, indent=2, default=str))
    except OSError as exc:
        raise UsageError(f"cannot write {args.out}: {exc.strerror}") from None
    console.stdout.print(f"{len(document['benchmarks'])} cases: {args.out}", soft_wrap=True)
    return 0


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
