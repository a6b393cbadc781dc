"""`harness bisect`: the commit between GOOD and BAD that made each case slower."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness import console
from harness.abtest import pair, session, sources
from harness.abtest.bisect import BAD, GOOD, Bisection, Bisector, Commit, first_parents
from harness.analysis import compare
from harness.commands.ab import ab_request, require_defined
from harness.errors import UsageError
from harness.models.registry import load_registry, plugin_selection
from harness.sweep.plan import build_plan


def cmd_bisect(args: argparse.Namespace) -> int:
    repo = sources.repository(Path.cwd())
    if repo is None:
        raise UsageError(
            f"harness bisect bisects the git history of the checkout it runs in, "
            f"and {Path.cwd()} is not in one; run it in the plugin package's "
            "checkout"
        )
    history = first_parents(repo, args.good, args.bad)
    plugins, disabled = plugin_selection(args.plugin, args.disable_plugin)
    settings = session.Settings(
        args.threshold, args.time, args.pair_time, plugins=tuple(plugins), disabled=tuple(disabled)
    )
    say = _printer(args.quiet)
    found: list[Bisection] = []
    with contextlib.ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="harness-bisect-")))
        bad_tree = sources.revision(repo, history[-1].sha, scratch / "plan")
        stack.enter_context(sources.activated(bad_tree))  # the cases are planned with BAD
        registry = load_registry(
            args.plugin,
            args.disable_plugin,
            local=bad_tree.entry_points,
            distribution=bad_tree.distribution,
        )
        plan = build_plan(registry, ab_request(args))
        require_defined(registry, plan, bad_tree, "harness bisect", "")
        spawner = stack.enter_context(pair.Spawner(pair.cores_for(plan.cases), args.timeout))
        bisector = Bisector(repo, scratch, settings, spawner, on_event=say)
        say(
            f"bisecting {len(plan.cases)} case(s) over {len(history) - 1} commits: good "
            f"{history[0]}, bad {history[-1]}"
        )
        for case in plan.cases:
            say(f"{case.label}: timing bad against good")
            found.append(bisector.bisect(case, history, len(plan.cases)))
            document = _document(history, settings, found)
            if args.out:
                _write(args.out, document)
    if args.json:
        print(json.dumps(document, indent=2))
    else:
        for result in found:
            _print(result)
    return 0 if all(r.culprit for r in found) else 1


def _printer(quiet: bool):
    def say(message: str) -> None:
        if not quiet:
            console.stderr.print(message, soft_wrap=True)

    return say


def _write(path: Path, document: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(document, indent=2) + "\n")
    except OSError as exc:
        raise UsageError(
            f"cannot write {path}: {exc.strerror}; give --out a writable path"
        ) from None


def _session(outcome: session.Outcome | None) -> dict[str, Any] | None:
    if outcome is None:
        return None
    low, high = outcome.look.interval if outcome.look else (None, None)
    return {
        "verdict": outcome.verdict,
        "status": outcome.status,
        "error": outcome.error,
        "ratio": outcome.look.ratio if outcome.look else None,
        "ci_low": _bound(low),
        "ci_high": _bound(high),
        "p_value": outcome.look.p_value if outcome.look else None,
        "pairs": outcome.pairs,
        "time_s": outcome.elapsed_s,
        "log_ratios": list(outcome.log_ratios),
    }


def _bound(x: float | None) -> float | None:
    return None if x is None else compare.bound(x)


def _commit(commit: Commit | None) -> dict[str, str] | None:
    return {"commit": commit.sha, "subject": commit.subject} if commit else None


def _case(result: Bisection) -> dict[str, Any]:
    check = _session(result.check)
    case = result.case
    return {
        **case.key().describe(),
        "culprit": result.culprit.sha if result.culprit else None,
        "subject": result.culprit.subject if result.culprit else None,
        "parent": result.parent.sha if result.parent else None,
        # the culprit against its parent; null without a culprit
        **{key: check[key] if check else None for key in ("ratio", "ci_low", "ci_high", "verdict")},
        "declined": result.declined,
        "suspects": [_commit(c) for c in result.suspects],
        "confirmation": _session(result.confirmation),
        "check": check,
        "steps": [s.to_dict() for s in result.steps],
        "sessions": result.sessions,
        "pairs": result.pairs,
        "time_s": result.time_s,
    }


def _document(
    history: Sequence[Commit], settings: session.Settings, found: Sequence[Bisection]
) -> dict[str, Any]:
    """The --json document; with one case, that case's fields are also at the top."""
    cases = [_case(r) for r in found]
    document = {
        "good": _commit(history[0]),
        "bad": _commit(history[-1]),
        "commits": len(history) - 1,
        "settings": settings.to_dict(),
        "cases": cases,
    }
    return {**cases[0], **document} if len(cases) == 1 else document


def _ratio(outcome: session.Outcome | None) -> str:
    if outcome is None or outcome.look is None:
        return "-"
    low, high = outcome.look.interval
    bounds = f" [{low:.3f}, {high:.3f}]" if math.isfinite(high) else ""
    return f"{outcome.look.ratio:.3f}{bounds}"


def _print(result: Bisection) -> None:
    def line(text: str) -> None:
        console.stdout.print(text, soft_wrap=True)

    took = (
        f"{len(result.steps)} steps, {result.sessions} sessions ({result.pairs} pairs), "
        f"{_minutes(result.time_s)}"
    )
    if result.declined:
        line(f"{result.case.label}: not bisected: {result.declined}")
        return
    if result.culprit is None:
        line(
            f"{result.case.label}: no culprit: every commit that could be it was skipped; "
            f"it is one of {', '.join(c.sha[:10] for c in result.suspects)} ({took})"
        )
    else:
        assert result.parent is not None
        line(f"{result.case.label}: culprit {result.culprit}")
        line(
            f"  {_ratio(result.check)} against its parent {result.parent.sha[:10]} "
            f"({result.check.verdict if result.check else '-'}); {took}"
        )
    line(
        f"  bad against good: {_ratio(result.confirmation)} after {result.confirmation.pairs} pairs"
    )
    for number, step in enumerate(result.steps, 1):
        vs = (
            f"vs good {step.ratio_to(GOOD):.3f}, vs bad {step.ratio_to(BAD):.3f}, "
            if step.rounds
            else ""
        )
        why = f" ({step.reason})" if step.reason else ""
        line(
            f"  step {number}: {step.commit.sha[:10]} {step.verdict}{why}: {vs}"
            f"{step.pairs} pairs, {step.time_s:.0f} s  {step.commit.subject}"
        )


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"
