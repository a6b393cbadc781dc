"""``harness bisect``'s engine: which commit between a good and a bad one made a case slower.

Every judgement is interleaved (:mod:`harness.abtest.session`), so a shared machine's drift cannot
pass for a regression. First the bad commit is timed against the good one; a slowdown
that is not confirmed ends the bisection. Then the first-parent history between them is
halved: each midpoint is timed in rounds of two pairs of processes, one against the
good commit and one against the bad, until :func:`sequential.nearer` says which it
performs as. A midpoint that fails to build or run is skipped, as ``git bisect skip``
does, and so is one still unsettled after its time and the same again (an unsettled
confirmation also gets the same again). The commit found is timed once more against its
parent for the ratio reported.

Code comes from extracted trees (:func:`sources.revision`): the user's working tree,
index and ``git bisect`` state are never touched.
"""

from __future__ import annotations

import dataclasses
import math
import random
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.abtest import pair, session, sources
from harness.abtest.pair import InterleaveError, Side, Spawner
from harness.analysis import sequential
from harness.errors import UsageError
from harness.sweep.plan import Case

GOOD, SKIPPED, BAD = "good", "skipped", "bad"


@dataclass(frozen=True)
class Commit:
    sha: str
    subject: str

    def __str__(self) -> str:
        return f"{self.sha[:10]} {self.subject!r}"


def first_parents(repo: Path, good: str, bad: str) -> list[Commit]:
    """``good``, then the first-parent history from it to ``bad``, oldest first (a merge
    is one step, as ``git bisect --first-parent`` takes it)."""
    shas = [_sha(repo, rev) for rev in (good, bad)]
    if shas[0] == shas[1]:
        raise UsageError(
            f"{good} and {bad} are the same commit ({shas[0][:10]}); give a good "
            "commit older than the bad one"
        )
    if not _is_ancestor(repo, shas[0], shas[1]):
        raise UsageError(
            f"{good} ({shas[0][:10]}) is not an ancestor of {bad} "
            f"({shas[1][:10]}); give GOOD before BAD, on BAD's history"
        )
    lines = sources.git(
        repo, "log", "--first-parent", "--reverse", "--format=%H %s", f"{shas[0]}..{shas[1]}"
    ).splitlines()
    found = [Commit(*(line.split(" ", 1) + [""])[:2]) for line in lines if line.strip()]
    subject = sources.git(repo, "log", "-1", "--format=%s", shas[0]).strip()
    return [Commit(shas[0], subject), *found]


def _sha(repo: Path, rev: str) -> str:
    sha = sources.commit_of(repo, rev)
    if sha is None:
        raise UsageError(f"no revision {rev!r} in {repo}; give a commit, branch or tag there")
    return sha


def _is_ancestor(repo: Path, older: str, newer: str) -> bool:
    return (
        subprocess.run(
            ["git", "-C", str(repo), "merge-base", "--is-ancestor", older, newer],
            capture_output=True,
            check=False,
        ).returncode
        == 0
    )


@dataclass(frozen=True)
class Step:
    """One midpoint's judgement: ``good``, ``bad`` or ``skipped`` (and why)."""

    commit: Commit
    verdict: str
    rounds: tuple[tuple[float, float], ...]  # (log mid/good, log bad/mid) per round
    time_s: float
    reason: str | None = None

    @property
    def pairs(self) -> int:
        return 2 * len(self.rounds)

    def ratio_to(self, which: str) -> float | None:
        """The midpoint over the good commit, or over the bad one (its mean ratio)."""
        if not self.rounds:
            return None
        logs = [r[0] if which == GOOD else -r[1] for r in self.rounds]
        return math.exp(math.fsum(logs) / len(logs))

    def to_dict(self) -> dict[str, Any]:
        return {
            "commit": self.commit.sha,
            "subject": self.commit.subject,
            "verdict": self.verdict,
            "reason": self.reason,
            "ratio_vs_good": self.ratio_to(GOOD),
            "ratio_vs_bad": self.ratio_to(BAD),
            "pairs": self.pairs,
            "time_s": self.time_s,
            "log_ratios": [list(r) for r in self.rounds],
        }

    def __repr__(self) -> str:
        return f"Step({self.commit}, {self.verdict}, pairs={self.pairs}, {self.time_s:.0f} s)"


@dataclass(frozen=True)
class Bisection:
    """What a case's bisection found. ``culprit`` is None when the slowdown was
    ``declined`` (not confirmed, or smaller than the threshold) or every commit that could
    be it was skipped (``suspects`` lists them)."""

    case: Case
    good: Commit
    bad: Commit
    confirmation: session.Outcome
    steps: tuple[Step, ...] = ()
    culprit: Commit | None = None
    parent: Commit | None = None  # the culprit's parent on the first-parent history
    check: session.Outcome | None = None  # the culprit against its parent
    suspects: tuple[Commit, ...] = ()
    time_s: float = 0.0
    declined: str | None = None

    @property
    def _extra(self) -> list[session.Outcome]:
        """The culprit's own session, unless the confirmation was it (adjacent commits)."""
        return [self.check] if self.check and self.check is not self.confirmation else []

    @property
    def sessions(self) -> int:
        return 1 + len(self.steps) + len(self._extra)

    @property
    def pairs(self) -> int:
        return (
            self.confirmation.pairs
            + sum(s.pairs for s in self.steps)
            + sum(o.pairs for o in self._extra)
        )


class Bisector:
    """Bisects cases of one history, keeping each commit's extracted tree for reuse."""

    def __init__(
        self,
        repo: Path,
        scratch: Path,
        settings: session.Settings,
        spawner: Spawner,
        rng: random.Random | None = None,
        on_event: Callable[[str], None] = lambda message: None,
    ):
        self.repo = repo
        self.scratch = scratch
        self.settings = settings
        self.spawner = spawner
        self.rng = rng or random.Random()
        self.say = on_event
        self._trees: dict[str, sources.CodeSource] = {}

    def tree(self, commit: Commit) -> sources.CodeSource:
        if commit.sha not in self._trees:
            self._trees[commit.sha] = sources.revision(
                self.repo, commit.sha, self.scratch / commit.sha[:16]
            )
        return self._trees[commit.sha]

    def side(self, commit: Commit, role: str) -> Side:
        return Side(role, self.tree(commit))

    def session(
        self, case: Case, baseline: Commit, candidate: Commit, cases: int = 1, patience: int = 1
    ) -> session.Outcome:
        """``harness ab`` of one case between two commits, in ``patience`` times the time."""
        settings = dataclasses.replace(self.settings, max_time=patience * self.settings.max_time)
        return session.measure_case(
            case,
            self.side(baseline, "baseline"),
            self.side(candidate, "candidate"),
            settings,
            self.spawner,
            lambda base, cand: None,
            self.rng,
            cases,
        )

    def bisect(self, case: Case, history: Sequence[Commit], cases: int = 1) -> Bisection:
        """Confirm that ``history[-1]`` is slower than ``history[0]``, then find the commit."""
        started = time.monotonic()
        good, bad = history[0], history[-1]
        # an unsettled confirmation gets the same again, as an unsettled step does
        confirmation = self.session(case, good, bad, cases, patience=2)
        declined = _declined(confirmation, self.settings.threshold)
        if declined:
            return Bisection(
                case, good, bad, confirmation, time_s=time.monotonic() - started, declined=declined
            )
        self.say(f"confirmed: {_outcome(confirmation)}")
        steps: list[Step] = []
        groups: list[list[float]] = [list(confirmation.log_ratios)]  # for the spread of one pair
        sums: list[float] = list(groups[0])  # every estimate of log(bad/good)
        low, high, skipped = 0, len(history) - 1, set()
        while (mid := _midpoint(low, high, skipped)) is not None:
            step = self._step(case, history[mid], good, bad, groups, sums)
            steps.append(step)
            if step.verdict == BAD:
                high = mid
            elif step.verdict == GOOD:
                low = mid
            else:
                skipped.add(mid)
            left = high - low - 1 - sum(low < i < high for i in skipped)
            self.say(
                f"step {len(steps)}: {_step_text(step)}; "
                f"{left} commit{'s' if left != 1 else ''} left"
            )
        if high - low > 1:  # every commit between was skipped: it is one of them
            return Bisection(
                case,
                good,
                bad,
                confirmation,
                tuple(steps),
                suspects=tuple(history[low + 1 : high + 1]),
                time_s=time.monotonic() - started,
            )
        culprit = history[high]
        check = (
            confirmation
            if high == len(history) - 1 and low == 0
            else self.session(case, history[low], culprit, cases)
        )
        return Bisection(
            case,
            good,
            bad,
            confirmation,
            tuple(steps),
            culprit,
            history[low],
            check,
            time_s=time.monotonic() - started,
        )

    def _step(
        self,
        case: Case,
        mid: Commit,
        good: Commit,
        bad: Commit,
        groups: list[list[float]],
        sums: list[float],
    ) -> Step:
        pairing = self.settings.pair_settings()

        def one_pair(baseline: Commit, candidate: Commit) -> float:
            base, cand = pair.measure_pair(
                self.side(baseline, "baseline"),
                self.side(candidate, "candidate"),
                case,
                self.spawner,
                pairing,
                session="bisect",
                pair=0,
                rng=self.rng,
            )
            return session.pair_log_ratio(base, cand)

        return judge(mid, good, bad, one_pair, groups, sums, self.settings, self.say)


def judge(
    mid: Commit,
    good: Commit,
    bad: Commit,
    pair: Callable[[Commit, Commit], float],
    groups: list[list[float]],
    sums: list[float],
    settings: session.Settings,
    say: Callable[[str], None] = lambda message: None,
    clock: Callable[[], float] = time.monotonic,
) -> Step:
    """Rounds of (good vs mid, mid vs bad) pairs until ``mid`` is settled as good or bad;
    skipped if it fails (an :class:`InterleaveError` of its side), or is unsettled after
    twice ``settings.max_time``. ``pair`` gives one pair's log-ratio of its candidate over
    its baseline; ``groups`` (each comparison's log-ratios, for the spread of one pair)
    and ``sums`` (every estimate of log(bad/good)) carry what earlier sessions measured
    and gain this step's pairs."""
    started = clock()
    rounds: list[tuple[float, float]] = []
    to_good: list[float] = []
    to_bad: list[float] = []
    groups += [to_good, to_bad]
    budget = settings.max_time
    while True:
        round_started = clock()
        logs = []
        for baseline, candidate in ((good, mid), (mid, bad)):
            try:
                logs.append(pair(baseline, candidate))
            except InterleaveError as exc:
                if (exc.role == "baseline") != (baseline is mid):
                    raise  # good or bad themselves failed: nothing can be judged
                return Step(
                    mid, SKIPPED, tuple(rounds), clock() - started, f"{exc.status}: {exc.detail}"
                )
        rounds.append((logs[0], logs[1]))
        to_good.append(logs[0])
        to_bad.append(logs[1])
        sums.append(logs[0] + logs[1])
        sd, df = sequential.pooled_sd(groups)
        # a round is the difference of two pairs' log-ratios: twice one pair's variance,
        # widened as a t distribution of df degrees of freedom is, for the estimate's doubt
        spread = sd * math.sqrt(2 * df / (df - 2)) if df > 2 else math.nan
        found = sequential.nearer(
            [a - b for a, b in rounds], math.fsum(sums) / len(sums), spread, settings.alpha
        )
        now = clock()
        if found:
            return Step(mid, found, tuple(rounds), now - started)
        if now - started + (now - round_started) > budget:
            if budget > settings.max_time:
                return Step(
                    mid,
                    SKIPPED,
                    tuple(rounds),
                    now - started,
                    f"unsettled after {now - started:.0f} s",
                )
            budget += settings.max_time
            say(f"{mid}: unsettled after {len(rounds)} rounds; more time")


def _declined(confirmation: session.Outcome, threshold: float) -> str | None:
    """Why a confirmation session does not warrant a bisection, or None when it does."""
    if confirmation.status != "ok":
        return f"{confirmation.status}: {confirmation.error}"
    found = _outcome(confirmation)
    if confirmation.verdict != "slower":
        return f"not confirmed: bad against good is {found}"
    assert confirmation.look is not None
    if confirmation.look.interval[1] < 1 + threshold:
        return f"slower by less than the {threshold:.1%} threshold: {found}"
    return None


def _midpoint(low: int, high: int, skipped: set[int]) -> int | None:
    """The unskipped commit strictly between nearest the middle, or None."""
    between = [i for i in range(low + 1, high) if i not in skipped]
    return min(between, key=lambda i: (abs(2 * i - low - high), i)) if between else None


def _outcome(outcome: session.Outcome) -> str:
    if outcome.status != "ok" or outcome.look is None:
        return f"{outcome.status}: {outcome.error}"
    low, high = outcome.look.interval
    return (
        f"{outcome.verdict} {outcome.look.ratio:.3f} [{low:.3f}, {high:.3f}] after "
        f"{outcome.pairs} pairs, {outcome.elapsed_s:.0f} s"
    )


def _step_text(step: Step) -> str:
    ratios = ""
    if step.rounds:
        ratios = (
            f" (vs good {step.ratio_to(GOOD):.3f}, vs bad {step.ratio_to(BAD):.3f}; "
            f"{step.pairs} pairs, {step.time_s:.0f} s)"
        )
    reason = f": {step.reason}" if step.reason else ""
    return f"{step.commit} {step.verdict}{reason}{ratios}"
