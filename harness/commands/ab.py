"""`harness ab`: two versions of each case timed turn about, each case to its verdict."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import random
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness import console
from harness.abtest import pair, session, sources
from harness.analysis import sequential
from harness.axes import AUTO, requested, side_options
from harness.commands.compare import print_comparison
from harness.commands.run import show_details
from harness.errors import UsageError
from harness.models.registry import Registry, load_registry, plugin_selection
from harness.store.record import CaseRecord, RunHeader
from harness.store.results import (
    SUFFIX,
    ResultsWriter,
    default_path,
    load,
)
from harness.sweep.plan import Plan, Request, build_plan

AB_TIMEOUT = 300.0


AB_THRESHOLD = 0.02  # the smallest change that matters, unless told otherwise


def cmd_ab(args: argparse.Namespace) -> int:
    return _ab_report(args, *measure(args))


def measure(args: argparse.Namespace) -> tuple[Path, list[session.Outcome]]:
    """Every case of ``args`` timed turn about to its verdict; the folder of the sides'
    results files and each case's outcome."""
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
        settings = session.Settings(
            args.threshold,
            args.time,
            args.pair_time,
            plugins=tuple(plugins),
            disabled=tuple(disabled),
        )
        cpus = pair.cores_for([side.case(c) for c in plan.cases for side in sides])
        folder = default_path(plan.label, args.out).with_suffix("")
        spawner = stack.enter_context(pair.Spawner(cpus, args.timeout))
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
    return folder, outcomes


def _ab_sides(args: argparse.Namespace, scratch: Path) -> tuple[pair.Side, pair.Side]:
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
        pair.Side(role, c, python, options, env)  # type: ignore[return-value]
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
    settings: session.Settings,
    side: pair.Side,
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
    sides: Sequence[pair.Side],
    settings: session.Settings,
    spawner: pair.Spawner,
    writers: Sequence[ResultsWriter],
) -> list[session.Outcome]:
    """Each case of the plan to its verdict, with progress and an estimate of the time left."""

    def write(base: CaseRecord, cand: CaseRecord) -> None:
        writers[0].write_case(base)
        writers[1].write_case(cand)

    rng = random.Random()
    outcomes: list[session.Outcome] = []
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

            outcome = session.measure_case(
                case, *sides, settings, spawner, write, rng, total, on_look
            )
            outcomes.append(outcome)
            progress.finish(_outcome_text(outcome))
            if args.debug and outcome.status != "ok":
                show_details(case.label, outcome.traceback, outcome.output_tail)
    return outcomes


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def _outcome_text(outcome: session.Outcome) -> str:
    if outcome.status != "ok":
        return f"{outcome.status}: {outcome.error}"
    ratio = f" {outcome.look.ratio:.3f}" if outcome.look else ""
    return f"{outcome.verdict}{ratio} after {outcome.pairs} pairs, {_duration(outcome.elapsed_s)}"


def side_files(folder: Path) -> list[Path]:
    """The baseline's and the candidate's results files in an ab session's folder."""
    return [folder / f"{role}{SUFFIX}" for role in ("baseline", "candidate")]


def failure_rows(outcomes: Sequence[session.Outcome]) -> list[dict[str, Any]]:
    """The cases with no verdict (a side failed), as rows beside the comparison's."""
    return [
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


def _ab_report(args: argparse.Namespace, folder: Path, outcomes: Sequence[session.Outcome]) -> int:
    """The comparison of every settled case as ``compare`` judges the files, then the
    cases that failed; 1 if any failed (or regressed, with --fail-on-regression)."""
    paths = side_files(folder)
    failures = failure_rows(outcomes)
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
