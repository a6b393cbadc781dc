"""`harness run`: a sweep measured into a results file, progress, and the results table."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from harness import console
from harness.analysis import compare, report, significance
from harness.analysis.noise import NO_HEARTBEATS, machine_noise
from harness.axes import AXES, requested
from harness.commands import registry_of
from harness.commands.compare import noise_line, print_comparison
from harness.commands.profile import profile_cases, show_profiles
from harness.errors import ResultsError, UsageError
from harness.execute import profile, ray_executor
from harness.execute.isolation import make_executor
from harness.execute.ray_executor import NodeKind
from harness.execute.runner import Executor, Runner, calibrate_peaks
from harness.measure import environment
from harness.measure.stats import format_bytes, format_rate, format_seconds, per_label
from harness.models.registry import Registry, plugin_selection
from harness.store.record import CaseRecord, RunHeader
from harness.store.results import (
    ResultsWriter,
    default_path,
    last_run,
    load,
)
from harness.store.sources import load_runs, load_selection
from harness.sweep.plan import Case, Plan, Request, build_plan

# run options that --resume refuses: the resumed run's own request decides them
_SELECTION_OPTIONS = (
    "suite",
    "model",
    "dim",
    *(axis.option.dest for axis in AXES),
    "timeout",
    "max_time",
    "min_time",
    "warmup_time",
    "target_precision",
    "target_mde",
    "repeats",
    "shard",
)


def _target_precision(args: argparse.Namespace) -> float | None:
    """``--target-mde`` is a target precision in a comparison's terms."""
    if args.target_mde is None:
        return args.target_precision
    if args.target_precision is not None:
        raise UsageError("give --target-mde or --target-precision, not both")
    return args.target_mde / significance.MDE_PER_PRECISION


def _request(args: argparse.Namespace) -> Request:
    return Request(
        suite=args.suite,
        models=tuple(args.model),
        dims=dict(args.dim),
        **requested(args),
        timeout=args.timeout,
        repeats=args.repeats,
        shard=args.shard,
        measure={
            "max_time": args.max_time,
            "min_time": args.min_time,
            "warmup_time": args.warmup_time,
            "target_precision": _target_precision(args),
        },
    )


def _check_executor_options(args: argparse.Namespace) -> None:
    if args.executor != "ray":
        given = [o for o in ("address", "nodes") if getattr(args, o)]
        if given:
            raise UsageError(f"--{given[0]} needs --executor ray")
        return
    if args.isolation == "none":
        raise UsageError("--executor ray runs each case in its own process; drop --isolation none")
    if args.profile:
        raise UsageError(
            "--profile profiles on this machine, not on the cluster's nodes; "
            "drop it, or run 'harness profile' on a node"
        )
    if args.resume and args.nodes and len(args.nodes) > 1:
        raise UsageError(
            "--resume finishes one node kind's results file; give --nodes one selector"
        )
    ray_executor.require_ray()


def prepare(
    args: argparse.Namespace, registry: Registry | None = None
) -> tuple[Registry, Plan, Path, Resumed]:
    """The registry (the plugins' unless given), plan, results file and resumed state
    that ``args`` ask for, every usage error raised before anything is measured."""
    if args.isolation == "none" and args.memory_limit:
        raise UsageError("--memory-limit needs --isolation process")
    if args.json and (args.profile or (args.nodes and len(args.nodes) > 1)):
        raise UsageError(
            "--json prints one run's cases; drop --profile (harness profile "
            "--json prints a profile) and give --nodes one selector"
        )
    _check_executor_options(args)
    run_id, done, peaks = None, set(), None
    if args.resume:
        given = [f"--{o.replace('_', '-')}" for o in _SELECTION_OPTIONS if getattr(args, o)]
        if given or args.out:
            raise UsageError(
                f"--resume repeats the run's own request; drop {', '.join(given)}"
                f"{' --out' if args.out else ''}"
            )
        header, recorded = last_run(args.resume)
        plugins, disabled = _recorded_plugins(header, args.resume)
        args.plugin = list(dict.fromkeys([*plugins, *args.plugin]))
        args.disable_plugin = list(dict.fromkeys([*disabled, *args.disable_plugin]))
        request = Request.from_dict(header.request)
        run_id = header.run_id
        done = {r.run_key() for r in recorded}
        peaks = header.environment.get("peak_flops")
    else:
        request = _request(args)
    registry = registry or registry_of(args)
    plan = build_plan(registry, request)
    out = args.resume or args.out or default_path(plan.label)
    return registry, plan, out, Resumed(run_id, frozenset(done), peaks)


def local_executor(args: argparse.Namespace, registry: Registry, plan: Plan) -> Executor:
    return make_executor(
        args.isolation,
        registry,
        *plugin_selection(args.plugin, args.disable_plugin),
        timeout=plan.timeout,
        memory_limit=args.memory_limit,
    )


def cmd_run(args: argparse.Namespace) -> int:
    registry, plan, out, resumed = prepare(args)
    if args.executor == "ray":
        return _run_on_ray(args, registry, plan, out, resumed)
    if args.profile:
        profiles = profile.output_folder(out.parent / "profiles" / out.stem)
    executor = local_executor(args, registry, plan)
    run_id, rows = sweep(args, registry, plan, executor, out, resumed)
    _show(args, out, run_id, rows, resumed.done)
    failures: list[str] = []
    if args.profile:
        ran = [dataclasses.replace(c, batch_size=r.batch_size) for c, r in rows if r.ok]
        results, failures = profile_cases(
            registry, ran, profiles, profile.DEFAULT_STEPS, False, args.quiet
        )
        show_profiles(results, profiles, profile.DEFAULT_TOP)
        for message in failures:
            console.stderr.print(f"harness: error: {message}", soft_wrap=True)
    return 1 if _failed(rows) or failures else 0


_PLUGIN_NAME = re.compile(r"[\w.-]{1,200}")


def _recorded_plugins(header: RunHeader, path: Path) -> tuple[list[str], list[str]]:
    """The modules a run loaded as plugins and the plugins it left out, as its header
    recorded them: ``--resume`` loads the same, without ``--plugin`` given again."""
    found = []
    for key in ("plugins", "disabled_plugins"):
        names = list(getattr(header, key))
        if not all(_PLUGIN_NAME.fullmatch(n) for n in names):
            raise ResultsError(
                f"cannot resume {path}: its run header's {key!r} is not a list of plugin names"
            )
        found.append(names)
    return found[0], found[1]


@dataclasses.dataclass(frozen=True)
class Resumed:
    """What ``--resume`` takes from the run it finishes (nothing for a new run)."""

    run_id: str | None
    done: frozenset
    peaks: dict[str, float | None] | None


def _failed(rows: Sequence[tuple[Case, CaseRecord]]) -> list[CaseRecord]:
    return [r for _, r in rows if r.status not in ("ok", "skipped")]


def sweep(
    args: argparse.Namespace,
    registry: Registry,
    plan: Plan,
    executor: Executor,
    out: Path,
    resumed: Resumed,
    executor_header: dict[str, Any] | None = None,
) -> tuple[str, list[tuple[Case, CaseRecord]]]:
    """Calibrate, then measure the plan's unrecorded cases into ``out``, showing progress
    unless quiet; the run's id and the (case, record) pairs of this sweep."""
    cases = [c for c in plan.cases if c.run_key() not in resumed.done]
    rows = []
    with console.Progress(len(cases), quiet=args.quiet) as progress:
        peaks = resumed.peaks
        if peaks is None:
            progress.status("calibrating peak FLOP/s")
            peaks = calibrate_peaks(executor, cases)
        plugins, disabled = plugin_selection(args.plugin, args.disable_plugin)
        header = RunHeader(
            command=("harness", *sys.argv[1:]),
            request=plan.request.to_dict(),
            plugins=tuple(plugins),
            disabled_plugins=tuple(disabled),
            environment={**environment.collect(), "peak_flops": peaks},
            settings={
                **dataclasses.asdict(plan.measure),
                "timeout": plan.timeout,
                "isolation": args.isolation,
            },
            executor=executor_header,
            **({"run_id": resumed.run_id, "resumed": True} if resumed.run_id else {}),
        )
        with ResultsWriter(out, header) as writer:
            runner = Runner(
                plan,
                registry,
                executor,
                writer,
                peaks,
                args.max_batch_size,
                on_start=lambda index, case: progress.start(index, case.label),
                on_status=progress.status,
            )
            # closed here, not whenever it is collected: a cluster's streams are cancelled
            # and joined on Ctrl-C before the cluster connection goes
            with contextlib.closing(runner.run(cases)) as records:
                for case, record in records:
                    progress.finish(outcome(record))
                    if args.debug:
                        show_details(case.label, record.traceback, record.output_tail)
                    rows.append((case, record))
    return writer.run_id, rows


def _show(
    args: argparse.Namespace,
    out: Path,
    run_id: str,
    rows: Sequence[tuple[Case, CaseRecord]],
    done: frozenset,
) -> None:
    """A sweep's results table, machine noise and file; or with ``--json`` its summary."""
    failed = _failed(rows)
    skipped = sum(r.status == "skipped" for _, r in rows)
    noise = (
        machine_noise(load(out)).get(run_id, NO_HEARTBEATS) if any(r.ok for _, r in rows) else None
    )
    if args.json:
        print(
            json.dumps(
                {
                    "results": str(out),
                    "run_id": run_id,
                    "summary": {
                        "cases": len(rows),
                        "ok": len(rows) - len(failed) - skipped,
                        "failed": len(failed),
                        "skipped": skipped,
                        "already_recorded": len(done),
                    },
                    "machine_noise": noise.sd if noise else None,
                    "cases": [_case_summary(case, record) for case, record in rows],
                },
                indent=2,
                default=str,
            )
        )
        return
    title = (
        f"{len(rows)} cases: {len(rows) - len(failed) - skipped} ok, {len(failed)} failed, "
        f"{skipped} skipped" + (f" ({len(done)} already recorded)" if done else "")
    )
    console.stdout.print(results_table(rows, title))
    if noise:
        console.stdout.print(noise_line(noise), soft_wrap=True)
    console.stdout.print(f"results: {out}", soft_wrap=True)


def _case_summary(case: Case, record: CaseRecord) -> dict[str, Any]:
    """A case of ``run --json``: what it is, how it ended, its latency (seconds; null
    where it did not run); the record in the results file has every figure."""
    latency = record.latency or {}
    return {
        **case.key().describe(),
        "case": case.label,  # with the repeat
        "batch_size": record.batch_size,  # as measured: a searched one is known now
        "repeat": record.repeat,
        "status": record.status,
        "error": record.error,
        **{f"{key}_s": latency.get(key) for key in ("median", "ci_low", "ci_high", "iqr")},
        "samples": latency.get("n"),
    }


def show_details(label: str, traceback: str | None, output_tail: str | None) -> None:
    """``--debug``: where a case failed and what it printed last, for the plugin's author."""
    for told, what in ((traceback, "traceback"), (output_tail, "last output")):
        if told:
            console.stderr.print(f"{label} {what}:\n{told}", soft_wrap=True)


def _run_on_ray(
    args: argparse.Namespace, registry: Registry, plan: Plan, out: Path, resumed: Resumed
) -> int:
    """The plan on each node kind of ``--nodes`` in turn (one results file each), then,
    for several kinds, their comparison against the first and its HTML report."""
    kinds: Sequence[NodeKind | None] = args.nodes or (None,)
    paths = [out if len(kinds) == 1 else kind.results_path(out) for kind in kinds]
    failed = False
    with ray_executor.connect(args.address) as ray:
        executors = [
            ray_executor.RayExecutor(
                ray,
                kind,
                *plugin_selection(args.plugin, args.disable_plugin),
                timeout=plan.timeout,
                memory_limit=args.memory_limit,
            )
            for kind in kinds
        ]  # every selector is checked before anything runs
        for executor, path in zip(executors, paths):
            if len(kinds) > 1:
                console.stdout.print(f"nodes {executor.kind.text}:", soft_wrap=True)
            node = {**executor.describe(), "address": args.address or "local"}
            run_id, rows = sweep(args, registry, plan, executor, path, resumed, node)
            _show(args, path, run_id, rows, resumed.done)
            failed = failed or bool(_failed(rows))
    for path in paths[1:]:
        print_comparison(
            load_selection(paths[0]),
            load_selection(path),
            [str(paths[0]), str(path)],
            "latency",
            compare.DEFAULT_THRESHOLD,
            as_json=False,
            fail=False,
        )
    if len(paths) > 1:
        html = report.render(
            load_runs(paths), f"harness: {plan.label} on {', '.join(k.text for k in kinds)}"
        )
        written = report.write(html, out.with_name(f"{out.stem}-comparison.html"))
        console.stdout.print(f"report: {written}", soft_wrap=True)
    return 1 if failed else 0


MEMORY_COLUMN = "mem added: tensors / RSS"


def _memory(record: CaseRecord) -> str:
    """What a case added at its peak: its tensors' bytes (on CUDA, the allocator's) and
    the rise of the process's resident set, both above the case's baseline."""
    memory = record.memory or {}
    tensors = memory.get("cuda_max_allocated_bytes", memory.get("tensor_peak_bytes"))
    return f"{format_bytes(tensors)} / {format_bytes(memory.get('cpu_peak_rss_bytes'))}"


def _compute(record: CaseRecord) -> str:
    """FLOP/s and the fraction of the calibrated peak; "-" when the FLOPs are unknown,
    "> peak?" for a case above the peak (a calibration problem, not a number)."""
    flops = record.flops or {}
    if not flops.get("per_step"):
        return "-"
    text = format_rate(flops["achieved_per_s"]).replace("/s", "FLOP/s")
    utilisation = flops.get("utilisation")
    if flops.get("peak_exceeded") or (utilisation or 0) > 1:  # files from before the flag
        text += " (> peak?)"
    elif utilisation is not None:
        text += f" ({utilisation:.0%})"
    return text


def _per(record: CaseRecord) -> str:
    """What an ok record's quartiles are of: "per call" or "per block of 16"."""
    latency = record.latency or {}
    return per_label([(latency.get("per"), latency.get("block_size"))])


def results_table(rows: Sequence[tuple[Case, CaseRecord]], title: str) -> Table:
    """Median and CI per call; the IQR's header (or, when the cases differ, each cell)
    says whether it is the spread of calls or of block means."""
    table = Table(title=title, title_justify="left")
    pers = {_per(rec) for _, rec in rows if rec.ok}
    common = pers.pop() if len(pers) == 1 else None
    for column in (
        "case",
        "status",
        "median",
        f"IQR ({common})" if common else "IQR",
        "95% CI",
        "throughput",
        MEMORY_COLUMN,
        "compute (of peak)",
        "vs eager",
        "n",
    ):
        table.add_column(
            column,
            justify="left" if column in ("case", "status") else "right",
            no_wrap=column == "case",
        )
    for case, rec in rows:
        label = (
            case.label
            if rec.batch_size in (None, case.batch_size)
            else (f"{case.label} -> B={rec.batch_size}")
        )
        if not rec.ok or rec.latency is None:
            colour = "yellow" if rec.status == "skipped" else "red"
            table.add_row(label, Text(rec.status, style=colour), rec.error or "", *[""] * 7)
            continue
        lat = rec.latency
        speedup = rec.speedup_vs_eager
        spread = format_seconds(lat["iqr"]) + ("" if common else f" ({_per(rec)})")
        table.add_row(
            label,
            "ok",
            format_seconds(lat["median"]),
            spread,
            f"{format_seconds(lat['ci_low'])} - {format_seconds(lat['ci_high'])}",
            f"{rec.throughput:,.1f}/s" if rec.throughput is not None else "-",
            _memory(rec),
            _compute(rec),
            f"{speedup:.2f}x" if speedup else "",
            str(lat["n"]),
        )
    return table


def outcome(record: CaseRecord) -> str:
    """One word and a number for a finished case: 'ok 3.75 ms' or 'error: ...'."""
    if not record.ok or record.median is None:
        return f"{record.status}: {record.error}"
    batch = f" at B={record.batch_size}" if record.batch_search else ""
    return f"ok {format_seconds(record.median)}{batch}"
