"""`harness profile` (and `run --profile`): cases under torch.profiler, and what they show."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from harness import console
from harness.axes import requested
from harness.commands import registry_of
from harness.errors import HarnessError, UsageError
from harness.execute import profile
from harness.execute.profile import ProfileResult
from harness.measure.stats import format_bytes, format_seconds
from harness.models.registry import Registry
from harness.sweep.plan import Case, Request, build_plan


def profile_cases(
    registry: Registry,
    cases: Sequence[Case],
    folder: Path,
    steps: int,
    with_stack: bool,
    quiet: bool,
) -> tuple[list[profile.ProfileResult], list[str]]:
    """Profile each case into its own folder under ``folder``: the results, and the
    messages of the cases that failed."""
    results, failures = [], []
    with console.Progress(len(cases), quiet=quiet) as progress:
        for index, case in enumerate(cases):
            progress.start(index, f"profiling {case.label}")
            try:
                results.append(
                    profile.profile_case(
                        registry.model(case.model).spec,
                        case,
                        folder / profile.case_folder_name(case),
                        steps,
                        with_stack,
                    )
                )
                progress.finish("done")
            except HarnessError as exc:
                failures.append(str(exc))
                progress.finish("failed")
    return results, failures


def show_profiles(results: Sequence[profile.ProfileResult], folder: Path, top: int) -> None:
    """Each profile's tables, then how to look at the traces."""
    for result in results:
        print_profile(result, top)
    if results:
        console.stdout.print(profile.view_hint(folder), soft_wrap=True, markup=False)


def _one_case(args: argparse.Namespace, registry: Registry, command: str) -> Case:
    spec = registry.model(args.model).spec
    several = [name for name, values in args.dim if len(values) > 1]
    if several:
        raise UsageError(
            f"harness {command} takes one value per dimension; {several[0]} has "
            "several ('harness run' sweeps them)"
        )
    fields = {
        **requested(args, one=True),
        "batch_sizes": (args.batch_size or max(spec.batch_sizes),),
    }
    plan = build_plan(registry, Request(models=(spec.name,), dims=dict(args.dim), **fields))
    if not plan.cases:
        raise UsageError(f"model {spec.name!r} has no training step; use --mode infer")
    return plan.cases[0]


def cmd_profile(args: argparse.Namespace) -> int:
    registry = registry_of(args)
    case = _one_case(args, registry, "profile")
    folder = profile.output_folder(args.out / profile.run_name(case.model))
    results, failures = profile_cases(
        registry, [case], folder, args.steps, args.with_stack, args.quiet
    )
    if failures:
        raise HarnessError(failures[0])
    if args.json:
        print(
            json.dumps(
                {**profile.as_mapping(results[0], args.top), "view": profile.view_hint(folder)},
                indent=2,
            )
        )
    else:
        show_profiles(results, folder, args.top)
    return 0


def _operators_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[str]]) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column(columns[0], overflow="fold")  # a long name wraps, never cut short
    for column in columns[1:]:
        table.add_column(column, justify="right", no_wrap=True)
    for row in rows:
        table.add_row(*row)
    return table


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def _share(part: float, whole: float) -> str:
    return f"{part / whole:.1%}" if whole else "-"


def print_profile(result: ProfileResult, top: int) -> None:
    """The top operators by self time (CPU, and the device's on CUDA) and by the memory they
    allocated (net of what they freed themselves; ranked with their callees, since the
    bytes themselves are allocated by ``aten::empty``), the memory peak, a compiled case's
    graphs, graph breaks and generated kernels, and the files."""
    case, steps = result.case, result.steps
    device = case.device.upper()
    parts: list[Any] = [
        Text.assemble(
            (case.label, "bold"),
            f": {steps} profiled steps of "
            f"{format_seconds(result.step_time)} on average, "
            f"{_plural(result.threads, 'thread')}",
        ),
        _operators_table(
            f"self CPU time, top {top} operators over {steps} steps",
            ("operator", "calls", "self CPU", "self CPU %", "CPU total"),
            (
                (
                    o.name,
                    str(o.calls),
                    format_seconds(o.self_time),
                    _share(o.self_time, result.cpu_time),
                    format_seconds(o.total_time),
                )
                for o in result.top("self_time", top)
            ),
        ),
    ]
    if case.device == "cuda":
        parts.append(
            _operators_table(
                f"self CUDA time, top {top} operators and kernels over {steps} steps",
                ("operator", "calls", "self CUDA", "self CUDA %", "CUDA total"),
                (
                    (
                        o.name,
                        str(o.calls),
                        format_seconds(o.self_device_time),
                        _share(o.self_device_time, result.device_time),
                        format_seconds(o.total_device_time),
                    )
                    for o in result.top("self_device_time", top)
                ),
            )
        )
    parts.append(
        _operators_table(
            f"{device} memory allocated, top {top} operators over {steps} steps",
            ("operator", "calls", "with callees", "self"),
            (
                (o.name, str(o.calls), format_bytes(o.total_memory), format_bytes(o.self_memory))
                for o in result.top("total_memory", top)
            ),
        )
    )
    parts.append(
        f"memory: peak {format_bytes(result.memory_peak)} allocated on "
        f"{case.device} during the profiled steps, above their start "
        f"({result.memory_events} allocator events)"
    )
    notes = result.compile
    if notes is not None:
        parts.append(
            f"compiled with {notes.backend}: {_plural(notes.graphs, 'graph')}, "
            f"{_plural(notes.graph_breaks, 'graph break')}"
        )
        parts += [
            f"  graph break ({count}x): {reason.splitlines()[0][:160]}"
            for reason, count in notes.break_reasons
        ]
        kernels = notes.generated_kernels
        parts.append(
            f"  generated kernels in the profile: {len(kernels)}"
            + (
                f" ({', '.join(kernels[:3])}{', ...' if len(kernels) > 3 else ''})"
                if kernels
                else ""
            )
        )
    parts.append(f"trace (TensorBoard; also opens in ui.perfetto.dev): {result.trace}")
    if result.memory_snapshot:
        parts.append(f"CUDA memory snapshot (pytorch.org/memory_viz): {result.memory_snapshot}")
        parts.append(f"CUDA memory timeline: {result.memory_timeline}")
    for part in parts:  # tables fit the terminal; a line with a path is never broken
        console.stdout.print(part, soft_wrap=not isinstance(part, Table))
