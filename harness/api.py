"""The Python API: the commands' work from a notebook or a script, DataFrames back.

Each function takes the options of its command as keyword arguments, named as the
command line's (``batch_sizes=[1, 8]`` for ``--batch-sizes 1,8``, ``compile="default"``,
``max_time=0.5``; ``models`` and ``dims`` for ``--model`` and ``--dim``), and checks them
with the command line's own parser: a mistake raises :class:`harness.HarnessError` (a
``UsageError`` for a bad argument) with the message the CLI prints, and nothing is
measured. The frames are ``harness.store.frame``'s, one row per case.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import cli
from harness.errors import UsageError

if TYPE_CHECKING:
    import pandas as pd


def _text(value: Any) -> str:
    if isinstance(value, (str, Path)):
        return str(value)
    if isinstance(value, Iterable):
        return ",".join(str(v) for v in value)
    return str(value)


def _argv(options: Mapping[str, Any]) -> list[str]:
    """Keyword arguments as the command line spells them; ``None`` and ``False`` leave
    an option out, ``True`` gives a flag."""
    argv: list[str] = []
    for name, value in options.items():
        if value is None or value is False:
            continue
        flag = "--" + name.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif name == "dim":
            if not isinstance(value, Mapping):
                raise UsageError(f"dims must be a mapping of names to sizes, not {value!r}")
            for dim, sizes in value.items():
                argv += [flag, f"{dim}={_text(sizes)}"]
        else:
            argv += [flag, _text(value)]
    return argv


def _parse(command: str, positional: Iterable[str], options: Mapping[str, Any]) -> Any:
    argv = [command, *positional, *_argv(options)]
    unknown = [a for a in argv if a.startswith("--") and a not in cli.option_strings(command)]
    if unknown:
        raise UsageError(
            f"harness.{command}() has no argument {unknown[0][2:].replace('-', '_')!r}; "
            f"its arguments are the options of 'harness {command}' (see 'harness {command} --help')"
        )
    return cli.parse(argv)


def run(
    suite: str | None = None,
    models: str | Iterable[str] | None = None,
    *,
    dims: Mapping[str, int | Iterable[int]] | None = None,
    quiet: bool = True,
    **options: Any,
) -> pd.DataFrame:
    """Measure a sweep as ``harness run`` does (the same plan, process isolation, records
    and statuses) and return its cases. ``out`` keeps the results file; without it the
    file is temporary. ``quiet=False`` shows progress on stderr.

    >>> harness.run(models="mlp", batch_sizes=[1, 8], dtypes=["float32", "bfloat16"])
    """
    from harness.commands import run as command
    from harness.store.results import load

    args = _parse(
        "run", [], {"suite": suite, "model": models, "dim": dims, "quiet": quiet, **options}
    )
    for option in ("resume", "profile", "json"):
        if getattr(args, option):
            raise UsageError(f"harness.run() does not take {option}; use 'harness run --{option}'")
    if args.executor != "local":
        raise UsageError("harness.run() measures on this machine; use 'harness run --executor ray'")
    with tempfile.TemporaryDirectory(prefix="harness-") as scratch:
        if args.out is None:
            args.out = Path(scratch) / "run.jsonl"
        registry, plan, out, resumed = command.prepare(args)
        executor = command.local_executor(args, registry, plan)
        run_id, _ = command.sweep(args, registry, plan, executor, out, resumed)
        cases = load(out)
    return cases[cases["run_id"] == run_id].reset_index(drop=True)


def load(*sources: str | Path) -> pd.DataFrame:
    """The cases of results files, folders of them, or ``FILE#RUN`` for one run, as
    ``harness compare`` and ``history`` read them."""
    from harness.store.results import load_runs

    if not sources:
        raise UsageError("harness.load() needs a results file, folder or FILE#RUN")
    return load_runs(sources)


def _cases(source: Any) -> pd.DataFrame:
    import pandas as pd

    from harness.store.results import load_selection

    return source if isinstance(source, pd.DataFrame) else load_selection(source)


def compare(baseline: Any, candidate: Any, **options: Any) -> pd.DataFrame:
    """Each case of two runs judged as ``harness compare`` judges it: values, ratio and
    its interval, p and q, the smallest change it could see, and the verdict. A run is a
    results file, ``FILE#RUN``, or a frame from :func:`run` or :func:`load`; ``metric``
    and ``threshold`` (e.g. ``"3%"`` or ``0.03``) as on the command line."""
    from harness.analysis import compare as comparing

    args = _parse("compare", ["-", "-"], options)
    if args.json or args.fail_on_regression:
        raise UsageError("harness.compare() returns the table; drop json and fail_on_regression")
    return comparing.compare(_cases(baseline), _cases(candidate), args.metric, args.threshold)
