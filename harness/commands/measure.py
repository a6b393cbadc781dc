"""The commands that measure: `harness run` (here or on a Ray cluster), `harness profile`
and `harness ab`."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import random
import re
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness import (
    ab,
    compare,
    console,
    environment,
    interleave,
    profile,
    ray_executor,
    report,
    sequential,
    significance,
    sources,
)
from harness.axes import AUTO, AXES, requested, side_options
from harness.commands import registry_of
from harness.commands.analyse import print_comparison
from harness.errors import HarnessError, ResultsError, UsageError
from harness.isolation import make_executor
from harness.noise import NO_HEARTBEATS, machine_noise
from harness.plan import Case, Plan, Request, build_plan
from harness.ray_executor import NodeKind
from harness.record import CaseRecord, RunHeader
from harness.registry import Registry, load_registry, plugin_selection
from harness.results import (
    SUFFIX,
    ResultsWriter,
    default_path,
    last_run,
    load,
    load_runs,
    load_selection,
)
from harness.runner import Executor, Runner, calibrate_peaks

AB_TIMEOUT = 300.0
AB_THRESHOLD = 0.02  # the smallest change that matters, unless told otherwise
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


def cmd_run(args: argparse.Namespace) -> int:
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
    registry = registry_of(args)
    plan = build_plan(registry, request)
    out = args.resume or args.out or default_path(plan.label)
    resumed = _Resumed(run_id, frozenset(done), peaks)
    if args.executor == "ray":
        return _run_on_ray(args, registry, plan, out, resumed)
    if args.profile:
        profiles = profile.output_folder(out.parent / "profiles" / out.stem)
    executor = make_executor(
        args.isolation,
        registry,
        *plugin_selection(args.plugin, args.disable_plugin),
        timeout=plan.timeout,
        memory_limit=args.memory_limit,
    )
    rows = _sweep(args, registry, plan, executor, out, resumed)
    failures: list[str] = []
    if args.profile:
        ran = [dataclasses.replace(c, batch_size=r.batch_size) for c, r in rows if r.ok]
        results, failures = _profile(
            registry, ran, profiles, profile.DEFAULT_STEPS, False, args.quiet
        )
        _show_profiles(results, profiles, profile.DEFAULT_TOP)
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
class _Resumed:
    """What ``--resume`` takes from the run it finishes (nothing for a new run)."""

    run_id: str | None
    done: frozenset
    peaks: dict[str, float | None] | None


def _failed(rows: Sequence[tuple[Case, CaseRecord]]) -> list[CaseRecord]:
    return [r for _, r in rows if r.status not in ("ok", "skipped")]


def _sweep(
    args: argparse.Namespace,
    registry: Registry,
    plan: Plan,
    executor: Executor,
    out: Path,
    resumed: _Resumed,
    executor_header: dict[str, Any] | None = None,
) -> list[tuple[Case, CaseRecord]]:
    """Calibrate, then measure the plan's unrecorded cases into ``out``, showing progress
    and ending with the results table; the (case, record) pairs of this sweep."""
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
                    progress.finish(console.outcome(record))
                    if args.debug:
                        _show_details(case.label, record.traceback, record.output_tail)
                    rows.append((case, record))
    failed = _failed(rows)
    skipped = sum(r.status == "skipped" for _, r in rows)
    done = resumed.done
    noise = (
        machine_noise(load(out)).get(writer.run_id, NO_HEARTBEATS)
        if any(r.ok for _, r in rows)
        else None
    )
    if args.json:
        print(
            json.dumps(
                {
                    "results": str(out),
                    "run_id": writer.run_id,
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
        return rows
    title = (
        f"{len(rows)} cases: {len(rows) - len(failed) - skipped} ok, {len(failed)} failed, "
        f"{skipped} skipped" + (f" ({len(done)} already recorded)" if done else "")
    )
    console.stdout.print(console.results_table(rows, title))
    if noise:
        console.stdout.print(console.noise_line(noise), soft_wrap=True)
    console.stdout.print(f"results: {out}", soft_wrap=True)
    return rows


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


def _show_details(label: str, traceback: str | None, output_tail: str | None) -> None:
    """``--debug``: where a case failed and what it printed last, for the plugin's author."""
    for told, what in ((traceback, "traceback"), (output_tail, "last output")):
        if told:
            console.stderr.print(f"{label} {what}:\n{told}", soft_wrap=True)


def _run_on_ray(
    args: argparse.Namespace, registry: Registry, plan: Plan, out: Path, resumed: _Resumed
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
            rows = _sweep(
                args,
                registry,
                plan,
                executor,
                path,
                resumed,
                {**executor.describe(), "address": args.address or "local"},
            )
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


def _profile(
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


def _show_profiles(results: Sequence[profile.ProfileResult], folder: Path, top: int) -> None:
    """Each profile's tables, then how to look at the traces."""
    for result in results:
        console.print_profile(result, top)
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
    results, failures = _profile(registry, [case], folder, args.steps, args.with_stack, args.quiet)
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
        _show_profiles(results, folder, args.top)
    return 0


def cmd_ab(args: argparse.Namespace) -> int:
    plugins, disabled = plugin_selection(args.plugin, args.disable_plugin)
    with contextlib.ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="harness-ab-")))
        sides = _ab_sides(args, scratch)
        tree = sides[1].code or sides[0].code  # the cases are planned with this code
        if tree:
            stack.enter_context(sources.activated(tree))
        registry = load_registry(
            args.plugin,
            args.disable_plugin,
            local=tree.entry_points if tree else (),
            distribution=tree.distribution if tree else None,
        )
        plan = build_plan(registry, ab_request(args))
        if tree:
            require_defined(registry, plan, tree)
        settings = ab.Settings(
            args.threshold,
            args.time,
            args.pair_time,
            plugins=tuple(plugins),
            disabled=tuple(disabled),
        )
        cpus = interleave.cores_for([side.case(c) for c in plan.cases for side in sides])
        folder = default_path(plan.label, args.out).with_suffix("")
        spawner = stack.enter_context(interleave.Spawner(cpus, args.timeout))
        writers = [
            stack.enter_context(
                ResultsWriter(
                    folder / f"{side.role}{SUFFIX}",
                    _ab_header(args, plan, settings, side, spawner.hello(side)),
                )
            )
            for side in sides
        ]
        outcomes = _ab_cases(args, plan, sides, settings, spawner, writers)
    return _ab_report(args, folder, outcomes)


def _ab_sides(args: argparse.Namespace, scratch: Path) -> tuple[interleave.Side, interleave.Side]:
    """Both sides: code (a revision or folder; HEAD and the working tree by default, the
    installed code when only interpreters, options or environments differ), interpreter,
    case options and environment variables."""
    repo = sources.repository(Path.cwd())
    reference = sources.read_layout(sources.FolderView(repo)) if repo else None

    def code(value: str, role: str) -> sources.CodeSource:
        if Path(value).is_dir():
            return sources.folder(Path(value), reference)
        if repo is None:
            raise UsageError(
                f"--{role} {value!r} is not a folder, and {Path.cwd()} is not in "
                "a git checkout to find it as a revision; run harness ab inside "
                "the plugin package's checkout, or give a folder"
            )
        return sources.revision(repo, value, scratch / role)

    settings = {
        role: (
            side_options(args, role),
            dict(getattr(args, f"{role}_env")),
            getattr(args, f"{role}_python"),
        )
        for role in ("baseline", "candidate")
    }
    differ = any(any(parts) for parts in settings.values())
    if args.baseline is None and args.candidate is None:
        if differ:
            codes: list[sources.CodeSource | None] = [None, None]
        elif repo is None:
            raise UsageError(
                f"harness ab compares HEAD with the working tree of the git "
                f"checkout it runs in, and {Path.cwd()} is not in one; run it "
                "there, or give --baseline/--candidate (revisions or folders), "
                "--baseline-python/--candidate-python, or per-side options"
            )
        else:
            codes = [code("HEAD", "baseline"), sources.working_tree(repo)]
    else:
        codes = [
            code(args.baseline or "HEAD", "baseline"),
            code(args.candidate, "candidate")
            if args.candidate
            else sources.working_tree(repo)
            if repo
            else None,
        ]
    return tuple(
        interleave.Side(role, c, python, options, env)  # type: ignore[return-value]
        for (role, (options, env, python)), c in zip(settings.items(), codes)
    )


def ab_request(args: argparse.Namespace) -> Request:
    if args.batch_sizes == AUTO:
        raise UsageError("harness ab times given batch sizes; give -b N[,N] instead of auto")
    return Request(
        suite=args.suite, models=tuple(args.model), dims=dict(args.dim), **requested(args)
    )


_AB_ALTERNATIVES = (
    ", or give the sides as folders, interpreters (--baseline-python) or "
    "settings (--candidate-compile ...)"
)


def require_defined(
    registry: Registry,
    plan: Plan,
    tree: sources.CodeSource,
    command: str = "harness ab",
    alternatives: str = _AB_ALTERNATIVES,
) -> None:
    """Refuse to time a model the sides' code does not define: both would run the same."""
    for name in dict.fromkeys(c.model for c in plan.cases):
        registered = registry.model(name)
        if not tree.defines(registered.file):
            raise UsageError(
                f"model {name!r} is not defined by {tree.description}: plugin "
                f"{registered.plugin!r} registers it from {registered.file}, so both sides "
                f"would time that same code; run {command} in the checkout of the package "
                f"that defines it{alternatives}"
            )


def _ab_header(
    args: argparse.Namespace,
    plan: Plan,
    settings: ab.Settings,
    side: interleave.Side,
    hello: dict[str, Any],
) -> RunHeader:
    """A side's run header: exactly what the side was, as its own process reported it."""
    env = {**hello.get("environment", {}), "peak_flops": {}}
    if side.code and side.code.git:
        env["git"] = dict(side.code.git)  # the commit the side measured, not the driver's
    code = side.code.to_dict() if side.code else None
    if code:
        del code["modules"], code["root"]  # temporary paths, gone after the command
    return RunHeader(
        command=("harness", *sys.argv[1:]),
        request=plan.request.to_dict(),
        environment=env,
        settings={**settings.to_dict(), "timeout": args.timeout, "isolation": "interleaved"},
        side={
            "role": side.role,
            "source": side.source,
            "code": code,
            "python": hello.get("executable"),
            "python_version": hello.get("python"),
            "torch": hello.get("torch"),
            "harness": hello.get("harness"),
            "protocol": hello.get("protocol"),
            "options": dict(side.options),
            "env": dict(side.env),
        },
    )


def _ab_cases(
    args: argparse.Namespace,
    plan: Plan,
    sides: Sequence[interleave.Side],
    settings: ab.Settings,
    spawner: interleave.Spawner,
    writers: Sequence[ResultsWriter],
) -> list[ab.Outcome]:
    """Each case of the plan to its verdict, with progress and an estimate of the time left."""

    def write(base: CaseRecord, cand: CaseRecord) -> None:
        writers[0].write_case(base)
        writers[1].write_case(cand)

    rng = random.Random()
    outcomes: list[ab.Outcome] = []
    total = len(plan.cases)
    with console.Progress(total, quiet=args.quiet) as progress:
        for index, case in enumerate(plan.cases):
            label = f"[{index + 1}/{total}] {case.label}"
            progress.start(index, case.label)
            typical = (
                statistics.median(o.elapsed_s for o in outcomes)
                if outcomes
                else settings.max_time / 2
            )

            def on_look(
                pairs: int,
                elapsed: float,
                look: sequential.Look | None,
                label: str = label,
                left: int = total - index - 1,
                typical: float = typical,
            ) -> None:
                low, high = look.interval if look else (0.0, math.inf)
                bounds = f"[{low:.3f}, {high:.3f}]" if math.isfinite(high) else "[open]"
                eta = left * typical + max(0.0, typical - elapsed)
                progress.status(
                    f"{label}: {pairs} pairs, {look.ratio:.3f} {bounds}, "
                    f"{elapsed:.0f} s; about {_duration(eta)} left"
                )

            outcome = ab.measure_case(case, *sides, settings, spawner, write, rng, total, on_look)
            outcomes.append(outcome)
            progress.finish(_outcome_text(outcome))
            if args.debug and outcome.status != "ok":
                _show_details(case.label, outcome.traceback, outcome.output_tail)
    return outcomes


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def _outcome_text(outcome: ab.Outcome) -> str:
    if outcome.status != "ok":
        return f"{outcome.status}: {outcome.error}"
    ratio = f" {outcome.look.ratio:.3f}" if outcome.look else ""
    return f"{outcome.verdict}{ratio} after {outcome.pairs} pairs, {_duration(outcome.elapsed_s)}"


def _ab_report(args: argparse.Namespace, folder: Path, outcomes: Sequence[ab.Outcome]) -> int:
    """The comparison of every settled case as ``compare`` judges the files, then the
    cases that failed; 1 if any failed (or regressed, with --fail-on-regression)."""
    paths = [folder / f"{role}{SUFFIX}" for role in ("baseline", "candidate")]
    failures = [
        {
            "case": o.case.label,
            "model": o.case.model,
            "batch_size": o.case.batch_size,
            "verdict": "failed",
            "status": o.status,
            "error": o.error,
            "side": o.failed_side,
            "pairs": o.pairs,
            "time_s": o.elapsed_s,
        }
        for o in outcomes
        if o.status != "ok"
    ]
    status = 0
    if len(failures) < len(outcomes):
        status = print_comparison(
            load(paths[0]),
            load(paths[1]),
            [str(p) for p in paths],
            "latency",
            args.threshold,
            args.json,
            args.fail_on_regression,
            failures,
        )
    elif args.json:
        print(
            json.dumps(
                {"metric": "latency", "threshold": args.threshold, "cases": failures}, indent=2
            )
        )
    else:
        console.print_failures(failures)
    if not args.json:
        console.stdout.print(f"results: {folder}", soft_wrap=True)
    return 1 if failures else status
