"""The ``harness`` command line: its options, parsed here; what each command does is in
:mod:`harness.commands`, imported only when that command runs, so ``harness --help`` and
``--version`` never import torch, pandas or rich.
"""

from __future__ import annotations

import argparse
import contextvars
import os
import re
import shutil
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import harness
from harness import axes
from harness.errors import HarnessError, HarnessWarning, UsageError

DESCRIPTION = """\
Benchmark PyTorch models that plugins provide: list and check them, measure them over a
sweep of batch sizes, devices, dtypes and compile modes, compare two runs, follow their
history, write an HTML report, profile one case, time two versions turn about (ab) and
find the commit that made a model slower (bisect).

Errors are one line on stderr (harness: error: ...), with exit status 2 for bad usage
and 1 for failures; --debug shows the traceback instead."""

EPILOG = """\
examples:
  harness list --suite smoke                 the models of a suite, with their shapes
  harness run --suite smoke                  measure them into results/<time>-smoke.jsonl
  harness run -m mlp,vae -b 1,32 --compile none,default -o results/mine.jsonl
  harness compare results/old.jsonl results/new.jsonl --fail-on-regression
  harness ab -m mlp --threshold 3%           HEAD against the working tree, turn about
  harness profile -m resnet_small -b 8       a trace and the top operators of one case
  harness --plugin my_models run -m my_net   models from a module of your own

'harness COMMAND --help' shows a command's options."""

# The largest values the options take: beyond any real use, within the range of the
# timers and counters they reach (a timeout of 1e12 s overflows the OS's poll).
MAX_SECONDS = 7 * 24 * 3600  # a week
MAX_BATCH = axes.MAX_BATCH
MAX_DIM = 2**62  # the largest size a shape may have
MAX_REPEATS = 1000
MAX_COUNT = 1_000_000  # profiled steps, rows of a table, shards
MAX_BYTES = 2**60


class _Parser(argparse.ArgumentParser):
    """One-line usage errors, like every other error of the harness; a subcommand's
    options are added (``options``, importing what they need) only when it is used."""

    def __init__(self, *args: Any, options: Callable[[_Parser], None] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._options = options

    def _add_options(self) -> None:
        options, self._options = self._options, None
        if options:
            options(self)

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        self._add_options()
        return super().parse_known_args(args, namespace)

    def format_help(self) -> str:
        self._add_options()
        return super().format_help()

    def format_usage(self) -> str:
        self._add_options()
        return super().format_usage()

    def error(self, message: str) -> NoReturn:
        text = f"{message} (see '{self.prog} --help')"
        if _RAISING.get():  # the Python API's parse: an exception, not an exit
            raise UsageError(text)
        self.exit(2, f"{self.prog}: error: {text}\n")


_RAISING = contextvars.ContextVar("harness_cli_raising", default=False)


def _shown(text: str) -> str:
    """An option's value as an error quotes it: a 5000-digit number is not repeated."""
    return repr(text if len(text) <= 40 else f"{text[:37]}...")


def _positive_ints(text: str, most: int = MAX_BATCH) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:  # not integers, or more digits than Python converts
        values = ()
    if not values or any(not 1 <= v <= most for v in values):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers from 1 to {most:,}, got {_shown(text)}"
        )
    return values


def _count(most: int) -> Callable[[str], int]:
    """One integer from 1 to ``most``."""

    def parse(text: str) -> int:
        try:
            (value,) = _positive_ints(text, most)
        except (argparse.ArgumentTypeError, ValueError):
            raise argparse.ArgumentTypeError(
                f"expected one integer from 1 to {most:,}, got {_shown(text)}"
            ) from None
        return value

    return parse


def _shard(text: str) -> tuple[int, int]:
    index, _, count = text.partition("/")
    try:
        shard = int(index), int(count)
    except ValueError:
        shard = (0, 0)
    if not 1 <= shard[0] <= shard[1] <= MAX_COUNT:
        raise argparse.ArgumentTypeError(
            f"expected I/N with 1 <= I <= N <= {MAX_COUNT:,}, got {_shown(text)}"
        )
    return shard


def _node_kinds(text: str) -> tuple[Any, ...]:
    from harness.execute.ray_executor import NodeKind

    try:
        kinds = tuple(dict.fromkeys(NodeKind.parse(t.strip()) for t in text.split(",")))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return kinds


def _choices(allowed: Sequence[str]) -> Callable[[str], tuple[str, ...]]:
    def parse(text: str) -> tuple[str, ...]:
        values = tuple(v.strip() for v in text.split(",") if v.strip())
        bad = [v for v in values if v not in allowed]
        if not values or bad:
            raise argparse.ArgumentTypeError(
                f"{', '.join(bad) or repr(text)} not in {', '.join(allowed)}"
            )
        return values

    return parse


_UNITS = {
    "": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


def _bytes(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    unit = match.group(2).lower() if match else None
    size = float(match.group(1)) * _UNITS[unit] if match and unit in _UNITS else 0.0
    if not 1 <= size <= MAX_BYTES:  # an overflow to inf is too large, too
        raise argparse.ArgumentTypeError(
            f"expected a size from 1 byte to 1024 PiB such as 2GiB or 500MB, got {_shown(text)}"
        )
    return int(size)


def _dim(text: str) -> tuple[str, tuple[int, ...]]:
    name, sep, values = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(
            f"expected NAME=VALUE[,VALUE...] such as H=64,128, got {_shown(text)}"
        )
    try:
        return name.strip(), _positive_ints(values, MAX_DIM)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"dimension {name.strip()}: expected integers from 1 to 2**62 such as "
            f"{name.strip()}=64,128, got {_shown(values)}"
        ) from None


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def _seconds(allow_zero: bool = False) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        low = 0 <= value if allow_zero else 0 < value  # nan fails both
        if not (low and value <= MAX_SECONDS):
            least = "from 0" if allow_zero else "above 0 and"
            raise argparse.ArgumentTypeError(
                f"expected a number of seconds {least} up to "
                f"{MAX_SECONDS} (a week), got {_shown(text)}"
            )
        return value

    return parse


def _fraction(text: str) -> float:
    raw = text[:-1] if text.endswith("%") else text
    try:
        value = float(raw) / (100 if text.endswith("%") else 1)
    except ValueError:
        value = -1.0
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(
            f"expected a fraction above 0 and below 1 like 0.02 or 2%, got {_shown(text)}"
        )
    return value


OUT_RULE = (
    "missing folders are created under the current folder; elsewhere the parent folder must exist"
)


def _out_path(text: str) -> Path:
    """Where an ``--out`` goes: a mistyped path outside the current folder is an error, not
    a new tree of folders (harness creates missing folders only under the current folder)."""
    path = Path(text)
    parent = Path(os.path.abspath(path)).parent
    if not (parent.exists() or parent.is_relative_to(Path.cwd().absolute())):
        missing = parent
        while not missing.parent.exists():
            missing = missing.parent
        raise argparse.ArgumentTypeError(
            f"folder {missing} does not exist: create it first (harness creates missing "
            "folders only under the current folder)"
        )
    return path


def _common(parser: argparse.ArgumentParser, dest: str = "") -> None:
    """``--plugin``, ``--disable-plugin`` and ``--debug``: given before the command
    (``dest`` "global_") or after it, to the same effect."""
    group = parser.add_argument_group("plugins and diagnostics")
    group.add_argument(
        "--plugin",
        action="extend",
        type=_names,
        default=[],
        dest=f"{dest}plugin",
        metavar="MODULE[,MODULE]",
        help="also load these importable modules as plugins (repeatable; "
        "or set HARNESS_PLUGINS=a.b,c.d)",
    )
    group.add_argument(
        "--disable-plugin",
        action="extend",
        type=_names,
        default=[],
        dest=f"{dest}disable_plugin",
        metavar="NAME[,NAME]",
        help="do not load these plugins (repeatable; or set HARNESS_DISABLE_PLUGINS)",
    )
    group.add_argument(
        "--debug", action="store_true", dest=f"{dest}debug", help="show tracebacks on errors"
    )


def _debug_only(parser: argparse.ArgumentParser) -> None:
    """The diagnostics of a command that loads no plugins."""
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")


def _selection(parser: argparse.ArgumentParser, *, dims: bool) -> None:
    parser.add_argument("--suite", "-s", metavar="NAME", help="a suite (see 'harness list')")
    parser.add_argument(
        "--model",
        "-m",
        action="extend",
        type=_names,
        default=[],
        metavar="NAME[,NAME]",
        help="models to use (repeatable); with --suite, a subset of the suite",
    )
    if dims:
        parser.add_argument(
            "--dim",
            "-d",
            action="append",
            type=_dim,
            default=[],
            metavar="NAME=V[,V]",
            help="dimension values, e.g. H=64,128 (repeatable; lists are swept)",
        )


def _integers(axis: axes.Axis) -> Callable[[str], tuple[int, ...] | str]:
    """Comma-separated integers from 1 to the axis's most, or 'auto' where it takes that."""

    def parse(text: str) -> tuple[int, ...] | str:
        return axes.AUTO if axis.auto and text == axes.AUTO else _positive_ints(text, axis.most)

    return parse


def _axis_option(
    p: Any, axis: axes.Axis, flag: axes.Flag, several: bool = False, role: str = ""
) -> None:
    """``flag`` of ``axis`` on ``p`` (a parser or a group of its options), taking one
    value, or a comma-separated list when ``several``; ``role`` fills ab's ``{role}``."""
    check: dict[str, Any] = {}  # none for a name, such as a backend's
    if axis.values:
        check = {"type": _choices(axis.values)} if several else {"choices": axis.values}
    elif axis.most:
        check = {"type": _integers(axis) if several else _count(axis.most)}
    p.add_argument(
        *(name.format(role=role) for name in flag.names),
        metavar=flag.metavar,
        default=flag.default,
        help=flag.help and flag.help.format(role=role),
        **check,
    )


def _sweep(p: argparse.ArgumentParser) -> None:
    """The sweep's axes beyond models and dimensions (run, ab, bisect)."""
    for axis in axes.AXES:
        _axis_option(p, axis, axis.option, several=axis.sweeps)


def _env_assignment(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise argparse.ArgumentTypeError(
            f"expected NAME=VALUE such as OMP_NUM_THREADS=1, got {_shown(text)}"
        )
    return name, value


def _interpreter(text: str) -> str:
    found = shutil.which(text) or (
        text if os.access(text, os.X_OK) and Path(text).is_file() else None
    )
    if not found:
        raise argparse.ArgumentTypeError(
            f"no Python interpreter at {_shown(text)}; give the "
            "python of a virtual environment, e.g. venv/bin/python"
        )
    return str(Path(found).absolute())


def _side_options(p: argparse.ArgumentParser) -> None:
    """What may differ between the sides of harness ab, besides their code."""
    for role in ("baseline", "candidate"):
        group = p.add_argument_group(f"{role} settings (default: as the sweep says, for both)")
        group.add_argument(
            f"--{role}-python",
            type=_interpreter,
            metavar="PATH",
            help=f"the {role}'s interpreter: another environment (torch, plugin "
            "or harness version); it needs this harness's version",
        )
        for axis, flag in axes.SIDES:
            _axis_option(group, axis, flag, role=role)
        group.add_argument(
            f"--{role}-env",
            action="append",
            type=_env_assignment,
            default=[],
            metavar="NAME=VALUE",
            help=f"an environment variable of the {role}'s processes (repeatable)",
        )


def _interleaving(p: argparse.ArgumentParser, unit: str) -> None:
    """How interleaved sessions are judged and timed (ab, bisect)."""
    from harness.abtest import session
    from harness.commands.ab import AB_THRESHOLD, AB_TIMEOUT

    p.add_argument(
        "--threshold",
        type=_fraction,
        default=AB_THRESHOLD,
        metavar="PCT",
        help=f"smallest change that matters, e.g. 3%% (default {AB_THRESHOLD:.0%}%)",
    )
    p.add_argument(
        "--time",
        type=_seconds(),
        default=session.MAX_TIME,
        metavar="SECONDS",
        help=f"most time {unit} may take, both sides (default {session.MAX_TIME:g})",
    )
    p.add_argument(
        "--pair-time",
        type=_seconds(),
        default=session.PAIR_TIME,
        metavar="SECONDS",
        help=f"timed seconds a side in each pair of processes (default {session.PAIR_TIME:g})",
    )
    p.add_argument(
        "--timeout",
        type=_seconds(),
        default=AB_TIMEOUT,
        metavar="SECONDS",
        help=f"longest wait for one side's answer (default {AB_TIMEOUT:g})",
    )


def _one_case_options(p: argparse.ArgumentParser) -> None:
    """The options naming one case (profile): one value per axis."""
    p.add_argument("--model", "-m", required=True, metavar="NAME", help="the model")
    _axis_option(p, axes.BATCH, axes.BATCH.one)
    p.add_argument(
        "--dim",
        "-d",
        action="append",
        type=_dim,
        default=[],
        metavar="NAME=V",
        help="a dimension's value, e.g. H=128 (repeatable)",
    )
    for axis in axes.AXES:
        if axis is not axes.BATCH:
            _axis_option(p, axis, axis.one)


def _where(text: str) -> tuple[str, tuple[str, ...]]:
    from harness.store.filters import FILTERABLE

    key, sep, values = text.partition("=")
    if not sep or key not in FILTERABLE or not _names(values):
        raise argparse.ArgumentTypeError(
            f"expected KEY=VALUE[,VALUE] with KEY one of {', '.join(FILTERABLE)}, "
            f"got {_shown(text)}"
        )
    return key, tuple(_names(values))


def _filters(p: argparse.ArgumentParser) -> None:
    """Which cases of the runs to read: a store reads only those, files are filtered."""
    group = p.add_argument_group("filters (a store reads only what they keep)")
    group.add_argument(
        "--model", action="extend", type=_names, default=[], metavar="A,B", help="only these models"
    )
    group.add_argument(
        "--suite",
        action="extend",
        type=_names,
        default=[],
        metavar="A,B",
        help="only cases of these suites",
    )
    group.add_argument(
        "--kind",
        action="extend",
        type=_names,
        default=[],
        metavar="A,B",
        help="only runs of these hardware kinds ('harness results STORE')",
    )
    group.add_argument("--since", metavar="DATE", help="only runs at or after this ISO date/time")
    group.add_argument("--until", metavar="DATE", help="only runs at or before this ISO date/time")
    group.add_argument(
        "--commits",
        metavar="A..B|C,D",
        help="only runs of these commits: a git range here, or hashes/prefixes",
    )
    group.add_argument(
        "--where",
        action="append",
        type=_where,
        default=[],
        metavar="KEY=VALUE",
        help="only cases with this option, e.g. dtype=bfloat16 (repeatable)",
    )


def _out(p: argparse.ArgumentParser, what: str, **kwargs: Any) -> None:
    """``--out``, with the rule for missing folders in its help."""
    p.add_argument("--out", "-o", type=_out_path, help=f"{what} ({OUT_RULE})", **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="harness",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"harness {harness.__version__}")
    _common(parser, dest="global_")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("list", help="list registered models", options=_list_options)
    commands.add_parser(
        "check", help="check models' output shapes against their specs", options=_check_options
    )
    commands.add_parser(
        "run",
        help="measure models over a sweep of batch sizes, devices, dtypes, compile modes and modes",
        options=_run_options,
    )
    commands.add_parser(
        "results",
        help="list the runs in results files or a store; 'results merge SHARD... -o OUT' "
        "joins shards; 'results ingest RUN... --store DIR' keeps runs in a columnar store",
        options=_results_options,
    )
    commands.add_parser(
        "compare", help="compare two runs case by case: what got slower", options=_compare_options
    )
    commands.add_parser(
        "profile",
        help="profile one case with torch.profiler: a trace, top operators, memory",
        options=_profile_options,
    )
    commands.add_parser(
        "ab",
        help="did it get slower? baseline and candidate timed turn about, case by case",
        description="Time each case of a sweep with a baseline and a candidate (by default HEAD "
        "against the working tree of the git checkout here) in pairs of fresh "
        "processes, turn about, so the machine's drift hits both alike; stop each "
        "case once a confidence sequence settles its verdict.",
        options=_ab_options,
    )
    commands.add_parser(
        "bisect",
        help="which commit made it slower? bisection by interleaved A/B",
        description="Confirm that BAD is slower than GOOD (interleaved, as harness ab), then "
        "bisect the first-parent history between them in the git checkout here, "
        "timing each midpoint against GOOD and BAD, to the commit that made each "
        "case slower. The checkout, its index and git bisect state are not touched.",
        options=_bisect_options,
    )
    commands.add_parser(
        "history", help="find the runs where a case got slower or faster", options=_history_options
    )
    commands.add_parser(
        "report", help="write a self-contained HTML report of runs", options=_report_options
    )
    commands.add_parser(
        "import-asv",
        help="turn asv's results into harness runs, for compare and reports",
        options=_import_asv_options,
    )
    commands.add_parser(
        "export", help="write a run as pytest-benchmark JSON", options=_export_options
    )
    return parser


def _list_options(p: argparse.ArgumentParser) -> None:
    from harness.commands.catalogue import cmd_list

    _selection(p, dims=False)
    p.add_argument("--json", action="store_true", help="print a JSON array instead of a table")
    _common(p)
    p.set_defaults(func=cmd_list)


def _check_options(p: argparse.ArgumentParser) -> None:
    from harness.commands.catalogue import cmd_check
    from harness.execute.isolation import ISOLATION_MODES
    from harness.sweep.plan import DEFAULT_TIMEOUT

    _selection(p, dims=True)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument(
        "--isolation",
        choices=ISOLATION_MODES,
        default="process",
        help="check each model in a fresh process (default: a crash or hang "
        "fails that model only) or in this one",
    )
    p.add_argument(
        "--timeout",
        type=_seconds(),
        metavar="SECONDS",
        help=f"fail a model whose check runs longer (default {DEFAULT_TIMEOUT:g}; "
        "process isolation only)",
    )
    _common(p)
    p.set_defaults(func=cmd_check)


def _run_options(p: argparse.ArgumentParser) -> None:
    from harness.commands.run import cmd_run
    from harness.execute.isolation import ISOLATION_MODES
    from harness.execute.runner import DEFAULT_MAX_BATCH

    _selection(p, dims=True)
    _sweep(p)
    p.add_argument(
        "--max-batch-size",
        type=_count(MAX_BATCH),
        default=DEFAULT_MAX_BATCH,
        metavar="N",
        help=f"upper bound of the 'auto' search (default {DEFAULT_MAX_BATCH})",
    )
    p.add_argument(
        "--repeats",
        type=_count(MAX_REPEATS),
        metavar="N",
        help="measure each case in N fresh processes, spread over the run, so "
        "'harness compare' sees process-to-process noise (default 1)",
    )
    p.add_argument(
        "--shard",
        type=_shard,
        metavar="I/N",
        help="run only shard I of N: a deterministic, balanced slice of the sweep "
        "(merge the shards with 'harness results merge')",
    )
    p.add_argument(
        "--isolation",
        choices=ISOLATION_MODES,
        default="process",
        help="run each case in a fresh process (default) or in this one",
    )
    p.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="run the cases here (default) or on a Ray cluster, one benchmark per "
        "node at a time (needs pip install 'harness[ray]')",
    )
    p.add_argument(
        "--address",
        metavar="auto|HOST:PORT",
        help="the Ray cluster to use (default: start a local one for this run)",
    )
    p.add_argument(
        "--nodes",
        type=_node_kinds,
        metavar="SELECTOR[,SELECTOR]",
        help="Ray nodes to use, by label (accelerator=H100) or custom resource "
        "(cpu-only); several: one run per kind, then their comparison",
    )
    p.add_argument(
        "--timeout",
        type=_seconds(),
        metavar="SECONDS",
        help="end a case that runs longer as 'timeout' (default 300; process isolation only)",
    )
    p.add_argument(
        "--memory-limit",
        type=_bytes,
        metavar="SIZE",
        help="cap each case's extra address space, e.g. 4GiB (process isolation)",
    )
    p.add_argument(
        "--resume",
        type=Path,
        metavar="PATH",
        help="finish an interrupted run: redo its request, skipping recorded cases, "
        "with the plugins it loaded",
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no progress display")
    p.add_argument(
        "--max-time",
        type=_seconds(),
        metavar="SECONDS",
        help="time budget per case after warm-up (default 1)",
    )
    p.add_argument(
        "--min-time",
        type=_seconds(allow_zero=True),
        metavar="SECONDS",
        help="sample at least this long before stopping early (default 0.2)",
    )
    p.add_argument(
        "--warmup-time",
        type=_seconds(allow_zero=True),
        metavar="SECONDS",
        help="minimum warm-up per case (default 0.25)",
    )
    p.add_argument(
        "--target-precision",
        type=_fraction,
        metavar="FRACTION",
        help="stop sampling once the median's 95%% CI half-width is within this "
        "fraction (default 2%%)",
    )
    p.add_argument(
        "--target-mde",
        type=_fraction,
        metavar="FRACTION",
        help="sample until a comparison with a like run could detect a change of "
        "this size (e.g. 3%%), or the time budget is spent",
    )
    _out(
        p,
        "results file (JSON Lines; appended to if it exists; default: a new file under results/)",
        metavar="PATH",
    )
    p.add_argument(
        "--json", action="store_true", help="print a JSON summary of the cases instead of the table"
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="after the sweep, profile each case that ran (as 'harness profile', "
        "in this process) into profiles/<results file name>/ beside the results",
    )
    _common(p)
    p.set_defaults(func=cmd_run)


def _results_options(p: argparse.ArgumentParser) -> None:
    from harness.commands.compare import cmd_results

    p.add_argument(
        "paths",
        nargs="*",
        type=Path,
        default=[Path("results")],
        metavar="PATH",
        help="results files or directories, or a store (default: results/)",
    )
    _out(p, "merge: the merged file", metavar="PATH")
    p.add_argument(
        "--store", type=Path, metavar="DIR", help="ingest: the store folder (made if new)"
    )
    p.add_argument(
        "--kind",
        metavar="KIND",
        help="ingest: the runs' hardware kind (default: the GPU, else CPU model)",
    )
    p.add_argument(
        "--rebuild",
        action="store_true",
        help="ingest: make the store again from exactly these files",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _debug_only(p)
    p.set_defaults(func=cmd_results)


def _compare_options(p: argparse.ArgumentParser) -> None:
    from harness.analysis import compare
    from harness.commands.compare import cmd_compare

    p.add_argument(
        "baseline",
        metavar="BASELINE",
        help="results file or directory, optionally FILE#RUN to pick one run",
    )
    p.add_argument("candidate", metavar="CANDIDATE", help="the same, for the new code or machine")
    _filters(p)
    p.add_argument("--metric", choices=compare.METRICS, default="latency")
    p.add_argument(
        "--threshold",
        type=_fraction,
        default=compare.DEFAULT_THRESHOLD,
        metavar="FRACTION",
        help="smallest change that counts, e.g. 5%% (default)",
    )
    p.add_argument(
        "--fail-on-regression",
        action="store_true",
        help="exit 1 if any case got significantly worse by at least the threshold",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    _debug_only(p)
    p.set_defaults(func=cmd_compare)


def _profile_options(p: argparse.ArgumentParser) -> None:
    from harness.commands.profile import cmd_profile
    from harness.execute import profile

    _one_case_options(p)
    p.add_argument(
        "--steps",
        type=_count(MAX_COUNT),
        default=profile.DEFAULT_STEPS,
        metavar="N",
        help=f"steps recorded, after {profile.WAIT_STEPS} skipped and "
        f"{profile.WARMUP_STEPS} warm-up steps "
        f"(default {profile.DEFAULT_STEPS})",
    )
    p.add_argument(
        "--with-stack",
        action="store_true",
        help="record Python call stacks of operators (slower; TensorBoard shows them)",
    )
    p.add_argument(
        "--top",
        type=_count(MAX_COUNT),
        default=profile.DEFAULT_TOP,
        metavar="N",
        help=f"rows of each operator table (default {profile.DEFAULT_TOP})",
    )
    _out(
        p,
        f"folder of profiles (default {profile.DEFAULT_FOLDER}); this one goes in "
        "DIR/<time>-<model>/<case>/",
        default=profile.DEFAULT_FOLDER,
        metavar="DIR",
    )
    p.add_argument("--json", action="store_true", help="print the tables as JSON")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress display")
    _common(p)
    p.set_defaults(func=cmd_profile)


def _ab_options(p: argparse.ArgumentParser) -> None:
    from harness.commands.ab import cmd_ab

    _selection(p, dims=True)
    _sweep(p)
    p.add_argument(
        "--baseline",
        metavar="REV|DIR",
        help="the baseline's model code: a git revision of the checkout here, or a "
        "folder (default HEAD; the installed code when only interpreters, "
        "options or environments differ)",
    )
    p.add_argument(
        "--candidate",
        metavar="REV|DIR",
        help="the candidate's model code, likewise (default: the working tree)",
    )
    _side_options(p)
    _interleaving(p, "a case")
    p.add_argument(
        "--fail-on-regression", action="store_true", help="exit 1 if a case is significantly slower"
    )
    _out(
        p,
        "folder of sessions (default results/ab); this one writes "
        "DIR/<time>-<label>/baseline.jsonl and candidate.jsonl",
        default=Path("results/ab"),
        metavar="DIR",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress display")
    _common(p)
    p.set_defaults(func=cmd_ab)


def _bisect_options(p: argparse.ArgumentParser) -> None:
    from harness.commands.bisect import cmd_bisect

    p.add_argument("good", metavar="GOOD", help="a revision that was fast")
    p.add_argument("bad", metavar="BAD", help="a later revision that is slower")
    _selection(p, dims=True)
    _sweep(p)
    _interleaving(p, "each session")
    _out(p, "also write the --json document here, updated after every case", metavar="PATH")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress lines")
    _common(p)
    p.set_defaults(func=cmd_bisect)


def _runs_and_order(p: argparse.ArgumentParser) -> None:
    """What ``history`` and ``report`` share: both read a series of runs."""
    from harness.analysis import compare, history

    p.add_argument(
        "runs",
        nargs="*",
        default=["results"],
        metavar="RUN",
        help="results files or directories, a store, or SOURCE#RUN for one run (default: results/)",
    )
    _filters(p)
    p.add_argument(
        "--order",
        choices=history.ORDERS,
        default="time",
        help="order runs by their time (default) or by the commit they "
        "measured, as 'git rev-list --topo-order' of the repository here",
    )
    p.add_argument(
        "--threshold",
        type=_fraction,
        default=compare.DEFAULT_THRESHOLD,
        metavar="FRACTION",
        help="smallest step that counts, e.g. 5%% (default)",
    )
    _debug_only(p)


def _history_options(p: argparse.ArgumentParser) -> None:
    from harness.analysis import history
    from harness.commands.history import cmd_history

    _runs_and_order(p)
    p.add_argument("--metric", choices=history.METRICS, default="latency")
    p.add_argument(
        "--fail-on-regression",
        action="store_true",
        help="exit 1 if any case stepped to a worse level",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.set_defaults(func=cmd_history)


def _report_options(p: argparse.ArgumentParser) -> None:
    from harness.commands.history import cmd_report

    _runs_and_order(p)
    _out(
        p,
        "the HTML file to write (default report.html)",
        default=Path("report.html"),
        metavar="PATH",
    )
    p.add_argument("--title", default="harness report", help="the report's heading")
    p.add_argument(
        "--bisect",
        action="append",
        type=Path,
        default=[],
        metavar="JSON",
        help="mark the culprits of a 'harness bisect --json' document on the history (repeatable)",
    )
    p.set_defaults(func=cmd_report)


def _import_asv_options(p: argparse.ArgumentParser) -> None:
    from harness.commands.files import cmd_import_asv

    p.add_argument(
        "directory",
        nargs="?",
        type=Path,
        default=Path("results/asv/results"),
        metavar="DIR",
        help="asv's results directory (default results/asv/results)",
    )
    _out(
        p,
        "results file to write (JSON Lines; appended to if it exists)",
        required=True,
        metavar="PATH",
    )
    p.add_argument("--commit", metavar="PREFIX", help="only the results of this commit")
    p.add_argument("--machine", metavar="NAME", help="only the results of this asv machine")
    _common(p)
    p.set_defaults(func=cmd_import_asv)


def _export_options(p: argparse.ArgumentParser) -> None:
    from harness.commands.files import cmd_export

    p.add_argument("run", metavar="RUN", help="results file or directory, or FILE#RUN")
    _out(p, "the JSON file, for 'pytest-benchmark compare'", required=True, metavar="PATH")
    _debug_only(p)
    p.set_defaults(func=cmd_export)


def _merge_global_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Options given before the command join those given after it."""
    if hasattr(args, "plugin"):
        args.plugin = [*args.global_plugin, *args.plugin]
        args.disable_plugin = [*args.global_disable_plugin, *args.disable_plugin]
    elif args.global_plugin or args.global_disable_plugin:
        parser.error(f"harness {args.command} loads no plugins; drop --plugin and --disable-plugin")
    args.debug = args.debug or args.global_debug


_python_warning = warnings.formatwarning


def _one_line_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    line: str | None = None,
) -> str:
    """The harness's own warnings as one line, like its errors; others as Python shows them."""
    if issubclass(category, HarnessWarning):
        return f"harness: warning: {' '.join(str(message).split())}\n"
    return _python_warning(message, category, filename, lineno, line)


def _option_strings(parser: argparse.ArgumentParser, command: str) -> set[str]:
    """Every option string ``harness COMMAND`` takes (``--batch-sizes``, ``-b``, ...)."""
    (commands,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    chosen = commands.choices[command]
    chosen._add_options()
    return {s for a in [*parser._actions, *chosen._actions] for s in a.option_strings}


def parse(argv: Sequence[str], caller: str | None = None) -> argparse.Namespace:
    """A command's options as :func:`main` parses them, a usage error raised as a
    :class:`UsageError` with the same message: the Python API (``harness.api``) checks
    its arguments here, so that both say the same about the same mistake. ``caller``
    (``"harness.run()"``) is the function whose keyword arguments the options are: an
    option the command does not take is refused by that name (not abbreviated)."""
    token = _RAISING.set(True)
    try:
        parser = build_parser()
        if caller is not None:
            known = _option_strings(parser, argv[0])
            unknown = [a for a in argv if a.startswith("--") and a not in known]
            if unknown:
                raise UsageError(
                    f"{caller} has no argument {unknown[0][2:].replace('-', '_')!r}; its "
                    f"arguments are the options of 'harness {argv[0]}' "
                    f"(see 'harness {argv[0]} --help')"
                )
        args = parser.parse_args(argv)
        _merge_global_options(parser, args)
    finally:
        _RAISING.reset(token)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _merge_global_options(parser, args)
    shown, warnings.formatwarning = warnings.formatwarning, _one_line_warning
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
    finally:
        warnings.formatwarning = shown


if __name__ == "__main__":
    sys.exit(main())
