"""`harness list` and `harness check`: what the plugins provide, and whether it is sound."""

from __future__ import annotations

import argparse
import json

import torch

from harness import console
from harness.check import check_model
from harness.commands import registry_of
from harness.plan import Request, build_plan, select_models
from harness.registry import Registry
from harness.worker import count_params


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
    registry = registry_of(args)
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
    registry = registry_of(args)
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
