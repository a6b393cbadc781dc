"""The commands that describe the registry: `list` and `check`, with their tables."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

import torch
from rich.table import Table
from rich.text import Text
from torch.overrides import TorchFunctionMode

from harness import console
from harness.commands import registry_of
from harness.errors import UsageError
from harness.execute.check import CheckResult
from harness.execute.isolation import make_executor
from harness.execute.workload import count_params
from harness.measure.stats import format_count
from harness.models.registry import Registry, plugin_selection
from harness.sweep.plan import DEFAULT_TIMEOUT, Request, build_plan, select_models


class _NoRandomFills(TorchFunctionMode):
    """Random initialisers do nothing on the meta device, where there is nothing to fill:
    torch runs some of them there through decompositions that import ``torch._dynamo``
    (about 3 s), which would be most of ``harness list``'s time."""

    FILLS = frozenset(
        {
            "normal_",
            "uniform_",
            "trunc_normal_",
            "kaiming_uniform_",
            "kaiming_normal_",
            "xavier_uniform_",
            "xavier_normal_",
            "orthogonal_",
            "sparse_",
            "random_",
            "bernoulli_",
            "exponential_",
            "geometric_",
            "cauchy_",
            "log_normal_",
        }
    )
    FACTORIES = frozenset({"randn", "rand"})

    def __torch_function__(
        self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None
    ) -> Any:
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in self.FILLS:
            return args[0] if args else kwargs["tensor"]  # torch.nn.init passes it by name
        if name in self.FACTORIES:
            kwargs.pop("generator", None)
            return torch.empty(*args, **kwargs)
        return func(*args, **kwargs)


def _count_params(registry: Registry, name: str) -> int | None:
    """Parameters at the default configuration, built on the meta device (no memory).

    None when the model cannot be built at all; ``harness check`` says why.
    """
    spec = registry.model(name).spec
    try:
        with torch.device("meta"), _NoRandomFills():
            return count_params(spec.build())
    except Exception:  # some constructors need real tensors
        pass
    try:
        return count_params(spec.build())
    except Exception:
        return None


def cmd_list(args: argparse.Namespace) -> int:
    registry = registry_of(args)
    rows = []
    suite = registry.suite(args.suite) if args.suite else None
    names = select_models(registry, suite, args.model) if suite or args.model else registry.models
    for name in names:
        registered = registry.model(name)
        spec = registered.spec
        rows.append(
            {
                "name": name,
                "plugin": registered.plugin,
                "family": spec.family,
                "tags": list(spec.tags),
                "description": spec.description,
                "source": spec.source,
                "params": _count_params(registry, name),
                "inputs": [
                    {
                        "name": i.name,
                        "shape": str(i.shape),
                        "dtype": i.dtype,
                        "high": None if i.high is None else str(i.high),
                    }
                    for i in spec.inputs
                ],
                "outputs": [str(s) for s in spec.outputs],
                "dims": spec.default_dims,
                "constraints": [str(c) for c in spec.constraints],
                "kwargs": spec.default_kwargs,
                "batch_sizes": list(spec.batch_sizes),
                "trainable": spec.trainable,
                "suites": registry.suites_of(name),
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2, default=repr))
    else:
        everywhere = sorted(s.name for s in registry.suites.values() if s.includes_all)
        console.stdout.print(models_table(rows, everywhere))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    registry = registry_of(args)
    if args.suite or args.model:
        plan = build_plan(
            registry,
            Request(
                suite=args.suite, models=tuple(args.model), dims=dict(args.dim), devices=("cpu",)
            ),
        )
        targets = list({(c.model, tuple(c.dims.items())): c for c in plan.cases}.values())
        pairs = [(c.model, dict(c.dims)) for c in targets]
    else:
        pairs = [(name, registry.model(name).spec.default_dims) for name in registry.models]
    if args.isolation == "none" and args.timeout:
        raise UsageError(
            "--timeout needs --isolation process: a check in this process cannot be ended"
        )
    executor = make_executor(
        args.isolation,
        registry,
        *plugin_selection(args.plugin, args.disable_plugin),
        timeout=args.timeout or DEFAULT_TIMEOUT,
        memory_limit=None,
    )
    results = []
    with console.Progress(len(pairs)) as progress:
        for index, (name, dims) in enumerate(pairs):
            progress.start(index, name)
            results.append(executor.check(registry.model(name), dims))
            progress.finish("ok" if results[-1].ok else "FAIL")
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        console.stdout.print(check_table(results))
        console.print_lines(
            Text.assemble((r.name, "red"), f": {problem}")
            for r in results
            for problem in r.problems
        )
    return 1 if any(not r.ok for r in results) else 0


def models_table(rows: Sequence[dict[str, Any]], everywhere: Sequence[str] = ()) -> Table:
    """``everywhere`` names suites of every model, said once in the title, not per row."""
    title = f"{len(rows)} models" + (
        f" (all also in: {', '.join(everywhere)})" if everywhere else ""
    )
    table = Table(title=title, title_justify="left")
    for column in ("name", "family", "params", "inputs", "outputs", "suites", "plugin"):
        table.add_column(
            column,
            justify="right" if column == "params" else "left",
            no_wrap=column in ("name", "params"),
        )
    for row in rows:
        suites = [s for s in row["suites"] if s not in everywhere]
        table.add_row(
            row["name"],
            row["family"],
            format_count(row["params"]),
            "\n".join(f"{i['name']} {i['shape']}" for i in row["inputs"]),
            "\n".join(row["outputs"]),
            ", ".join(suites),
            row["plugin"],
        )
    return table


def check_table(results: Sequence[CheckResult]) -> Table:
    failed = sum(not r.ok for r in results)
    table = Table(title=f"{len(results)} models checked, {failed} failed", title_justify="left")
    for column in ("name", "params", "shapes (B=2)", "train", "result"):
        table.add_column(column, justify="right" if column == "params" else "left")
    for r in results:
        shapes = "\n".join(str(s) for s in (r.observed or r.expected or ()))
        verdict = Text("ok", style="green") if r.ok else Text("FAIL", style="red")
        table.add_row(r.name, format_count(r.params), shapes, r.training, verdict)
    return table
