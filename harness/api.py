"""The Python API: the commands' work from a notebook or a script, DataFrames back, and
any ``nn.Module`` measured without a plugin (:func:`bench`).

Each function takes the options of its command as keyword arguments, named as the
command line's (``batch_sizes=[1, 8]`` for ``--batch-sizes 1,8``, ``compile="default"``,
``max_time=0.5``; ``models`` and ``dims`` for ``--model`` and ``--dim``), and checks them
with the command line's own parser: a mistake raises :class:`harness.HarnessError` (a
``UsageError`` for a bad argument) with the message the CLI prints, and nothing is
measured. The frames are ``harness.store.frame``'s, one row per case.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Iterable, Mapping, Sequence
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
        elif isinstance(value, Mapping):  # dims, or a side's environment variables
            for key, item in value.items():
                argv += [flag, f"{key}={_text(item)}"]
        elif name == "dim" or name.endswith("_env"):
            label = "dims" if name == "dim" else name
            raise UsageError(f"{label} must be a mapping of names to values, not {value!r}")
        else:
            argv += [flag, _text(value)]
    return argv


def _parse(
    command: str, positional: Iterable[str], options: Mapping[str, Any], caller: str = ""
) -> Any:
    argv = [command, *positional, *_argv(options)]
    return cli.parse(argv, caller=f"harness.{caller or command}()")


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
    args = _parse(
        "run", [], {"suite": suite, "model": models, "dim": dims, "quiet": quiet, **options}
    )
    return _measured(args)


def _measured(args: Any, registry: Any = None) -> pd.DataFrame:
    """The cases of ``harness run`` with ``args``, measured; the plugins' registry
    unless ``registry`` is given."""
    from harness.commands import run as command
    from harness.store.results import load

    for option in ("resume", "profile", "json"):
        if getattr(args, option):
            raise UsageError(f"harness.run() does not take {option}; use 'harness run --{option}'")
    if args.executor != "local":
        raise UsageError("harness.run() measures on this machine; use 'harness run --executor ray'")
    with tempfile.TemporaryDirectory(prefix="harness-") as scratch:
        if args.out is None:
            args.out = Path(scratch) / "run.jsonl"
        registry, plan, out, resumed = command.prepare(args, registry)
        executor = command.local_executor(args, registry, plan)
        run_id, _ = command.sweep(args, registry, plan, executor, out, resumed)
        cases = load(out)
    return cases[cases["run_id"] == run_id].reset_index(drop=True)


def bench(
    model: Any,
    example_inputs: Any,
    *,
    name: str | None = None,
    quiet: bool = True,
    **options: Any,
) -> pd.DataFrame:
    """Measure any module without writing a plugin: ``model`` (an ``nn.Module``, or a
    function of no arguments that builds one) called on ``example_inputs`` (a tensor or
    a tuple of tensors, the batch first), swept like :func:`run` (``batch_sizes``,
    ``dtypes``, ``mode``, ``compile``, ``max_time``...; by default the example's batch
    size). Other batch sizes get random inputs of the example's shape (integer inputs:
    values below the example's largest plus one); the outputs' shapes, read from one call
    on the example, are checked at every batch size.

    A factory defined in an importable module builds the model in a fresh process per
    case, as :func:`run` does. A module object, or a factory defined in a notebook or a
    script's main module, is measured in this process (``isolation="none"``), each case
    on its own copy, the object left as it was.
    """
    from harness.models.portable import import_path
    from harness.models.registry import BENCH_PLUGIN, RegisteredModel, Registry

    for option in ("suite", "models", "model", "dims", "dim"):
        if option in options:
            raise UsageError(
                f"harness.bench() takes no {option}: it measures the model it is given; "
                "use harness.run() for registered models"
            )
    spec = _spec_of(model, example_inputs, name)
    portable = import_path(spec.constructor) is not None  # else make_executor refuses
    isolation = options.pop("isolation", None) or ("process" if portable else "none")
    registry = Registry({spec.name: RegisteredModel(spec, BENCH_PLUGIN)}, {}, [])
    args = _parse(
        "run",
        [],
        {"model": spec.name, "quiet": quiet, **options, "isolation": isolation},
        caller="bench",
    )
    return _measured(args, registry)


def _spec_of(model: Any, example_inputs: Any, name: str | None) -> Any:
    """A spec for ``model`` whose shapes are the example's, the batch symbolic."""
    import copy
    import re

    import torch
    from torch import nn

    from harness.models.spec import Input, ModelSpec, flatten_outputs

    inputs = (example_inputs,) if isinstance(example_inputs, torch.Tensor) else example_inputs
    if (
        not isinstance(inputs, (tuple, list))
        or not all(isinstance(t, torch.Tensor) and t.dim() >= 1 for t in inputs)
        or not inputs
    ):
        raise UsageError(
            "example_inputs must be a tensor or a tuple of tensors, each with the batch first"
        )
    batch = inputs[0].shape[0]
    if any(t.shape[0] != batch for t in inputs):
        sizes = ", ".join(str(t.shape[0]) for t in inputs)
        raise UsageError(
            f"the example inputs' first dimensions differ ({sizes}); each is the batch"
        )
    if isinstance(model, nn.Module):
        built, build = model, lambda: copy.deepcopy(model)
    elif callable(model):
        built, build = model(), model
        if not isinstance(built, nn.Module):
            raise UsageError(
                f"the model factory returned a {type(built).__name__} object, not an nn.Module"
            )
    else:
        raise UsageError(
            f"model must be an nn.Module or a function building one, not {model!r:.60}"
        )
    with torch.no_grad():
        outputs = flatten_outputs(built(*inputs))

    def shape(tensor: torch.Tensor) -> str:
        sizes = ["B" if i == 0 and n == batch else str(n) for i, n in enumerate(tensor.shape)]
        return f"({', '.join(sizes)}{',' if len(sizes) == 1 else ''})"

    declared = [
        Input(f"x{i}", shape(t))
        if t.is_floating_point()
        else Input(
            f"x{i}", shape(t), dtype="index", high=int(t.max()) + 1, low=min(0, int(t.min()))
        )
        for i, t in enumerate(inputs)
    ]
    named = getattr(model, "__name__", "<")  # a factory's own name, else the class's
    words = re.sub(r"(?<!^)(?=[A-Z])", "_", type(built).__name__ if "<" in named else named)
    words = words.lower()
    return ModelSpec(
        name=name or re.sub(r"[^a-z0-9_]", "_", words).strip("_") or "model",
        constructor=build,
        inputs=declared,
        outputs=[shape(t) for t in outputs],
        batch_sizes=(batch,),
        trainable=any(p.requires_grad for p in built.parameters()),
        source="harness.bench",
    )


def ab(
    models: str | Iterable[str] | None = None,
    *,
    suite: str | None = None,
    dims: Mapping[str, int | Iterable[int]] | None = None,
    quiet: bool = True,
    **options: Any,
) -> pd.DataFrame:
    """Each case of two versions timed turn about, as ``harness ab`` times it, to its
    verdict: one row per case with ``compare``'s columns (``ratio``, ``ci_low``,
    ``ci_high``, ``q_value``, ``verdict``...), and a row with verdict ``failed``
    (``status``, ``error``, ``side``) for a case whose side failed. The sides are the
    command's: ``baseline`` and ``candidate`` (revisions of the git checkout the
    process runs in, or folders), ``baseline_python``, ``candidate_compile``,
    ``candidate_env={"KEY": "VALUE"}``...; ``out`` keeps the sides' results files.

    >>> harness.ab("mlp", baseline="HEAD~1", batch_sizes=[16], threshold="2%")
    """
    import pandas as pd

    from harness.analysis import compare as comparing
    from harness.commands import ab as command
    from harness.store.results import load

    args = _parse(
        "ab", [], {"suite": suite, "model": models, "dim": dims, "quiet": quiet, **options}
    )
    if args.json or args.fail_on_regression:
        raise UsageError("harness.ab() returns the verdicts; drop json and fail_on_regression")
    with tempfile.TemporaryDirectory(prefix="harness-ab-") as scratch:
        if args.out is None:
            args.out = Path(scratch) / "ab"
        folder, outcomes = command.measure(args)
        failed = pd.DataFrame(command.failure_rows(outcomes))
        if len(failed) == len(outcomes):
            return failed
        baseline, candidate = (load(path) for path in command.side_files(folder))
    judged = comparing.compare(baseline, candidate, "latency", args.threshold)
    return pd.concat([judged, failed], ignore_index=True) if len(failed) else judged


def load(
    *sources: str | Path,
    model: str | Sequence[str] = (),
    suite: str | Sequence[str] = (),
    kind: str | Sequence[str] = (),
    since: str | None = None,
    until: str | None = None,
    commits: str | None = None,
    where: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """The cases of results files, folders of them, results stores, or ``SOURCE#RUN`` for
    one run, as ``harness compare`` and ``history`` read them; the keywords are the
    commands' filters (``--model``, ``--where dtype=bfloat16``...), which a store applies
    where its data lies: ``harness.load("store/", model="lstm", since="2026-11-01")``."""
    from harness.store.filters import Filters
    from harness.store.sources import load_runs

    if not sources:
        raise UsageError("harness.load() needs a results file, folder, store or SOURCE#RUN")

    def names(value: str | Sequence[str]) -> list[str]:
        return [value] if isinstance(value, str) else list(value)

    options = {
        k: names(v) if not isinstance(v, (int, str)) else [str(v)] for k, v in (where or {}).items()
    }
    filters = Filters.of_options(
        argparse.Namespace(model=names(model), suite=names(suite), kind=names(kind),
                           since=since, until=until, commits=commits,
                           where=[(k, tuple(map(str, v))) for k, v in options.items()])
    )  # fmt: skip
    return load_runs(sources, filters)


def _cases(source: Any) -> pd.DataFrame:
    import pandas as pd

    from harness.store.sources import load_selection

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
