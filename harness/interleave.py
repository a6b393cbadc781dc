"""Baseline and candidate timed turn about, so the machine's drift hits both alike.

On a shared or virtual machine the speed of the same code wanders by several percent
over seconds (other tenants, clock frequency, the host's scheduler), so two runs made
minutes apart can differ by more than the 5 % change one wants to see. ``harness ab``
therefore keeps the baseline and the candidate warm in two processes at once and times
them in short alternating turns (about 20 ms each, the order shuffled every turn).
Each turn of the candidate is judged against the baseline's turn next to it, so
whatever slowed the machine during those milliseconds slowed both; ``harness compare``
sees the shared session and judges the per-turn ratios (:func:`compare.shift_of_turns`).

The sides differ in their model code: each side's ``harness_plugins`` package (the
built-in models) is loaded from a folder: the working tree, a git revision checked out
into a temporary folder, or any folder holding such a package. The measuring engine is
this harness for both, so a change to the harness itself cannot muddy the verdict.
"""

from __future__ import annotations

import io
import json
import os
import random
import select
import subprocess
import sys
import tarfile
import tempfile
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from harness.devices import default_threads
from harness.environment import git_state
from harness.errors import HarnessError, UsageError
from harness.isolation import describe_exit
from harness.plan import Case
from harness.timing import MeasureConfig, Measurement

TURN_TIME = 0.02  # seconds per side per turn: well inside the drift's correlation time
MIN_TURNS = 12  # the paired test's interval needs a dozen turns to mean much
START_TIMEOUT = 120.0  # seconds for a side's process to import torch and the harness
WORKING_TREE = "working tree"


@dataclass(frozen=True)
class Side:
    """One side of a comparison: a case and where its model code comes from."""

    case: Case
    plugins: Path | None = None  # a folder to import harness_plugins from; None: installed
    source: str = WORKING_TREE  # what that folder holds, for the record
    git: Mapping[str, Any] | None = None  # its commit, for the run header; None: the tree's

    def describe(self, role: str) -> str:
        return f"{role} ({self.source})"


class InterleaveError(HarnessError):
    """A side that failed to build, crashed or hung: the comparison has no verdict."""


def side(case: Case, revision: str | None, into: Path) -> Side:
    """``case`` with the model code of ``revision``: None for the working tree, a folder,
    or a git revision of the checkout the built-in plugins come from (extracted under
    ``into``)."""
    import harness_plugins

    if revision is None:
        return Side(case)
    folder = Path(revision)
    if folder.is_dir():
        package = folder / "plugins" if (folder / "plugins" / "__init__.py").exists() else folder
        if not (package / "__init__.py").exists():
            raise UsageError(f"{revision} is neither a checkout with plugins/ nor a plugins "
                             "folder; give a git revision or such a folder")
        return Side(case, package.resolve(), f"folder {package}", git_state(package))
    repo = Path(harness_plugins.__file__).resolve().parent.parent
    sha = _git(repo, "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}").strip()
    archive = _git(repo, "archive", "--format=tar", sha, "plugins", text=False)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return Side(case, into / "plugins", f"{revision} ({sha[:10]})",
                {"commit": sha, "dirty": False})


def _git(repo: Path, *args: str, text: bool = True) -> Any:
    try:
        done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True,
                              text=text, check=False)
    except FileNotFoundError:
        raise UsageError("git is not installed; give the side as a folder instead") from None
    if done.returncode:
        raise UsageError(f"no revision {args[-1].removesuffix('^{commit}')!r} in {repo} "
                         "(git could not find it); give a commit, branch or tag there, or "
                         "a folder holding a plugins package")
    return done.stdout


class _Worker:
    """One side's process: warmed up once, then asked for ``n`` samples at a time."""

    def __init__(self, side: Side, role: str, timeout: float):
        self.label = side.describe(role)
        self.timeout = timeout
        self._stderr: IO[str] = tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen([sys.executable, "-m", "harness.interleave"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._stderr, text=True)

    def ask(self, message: Any) -> dict[str, Any]:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps(message) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass  # it died: receive() says how
        return self.receive(self.timeout)

    def receive(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        readable, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not readable:
            raise InterleaveError(f"{self.label} did not answer within {timeout:g} s; "
                                  "raise --timeout if the model is that slow")
        line = self.proc.stdout.readline()
        if not line:
            raise InterleaveError(f"{self.label}: {self._death()}")
        answer = json.loads(line)
        if "error" in answer:
            raise InterleaveError(f"{self.label} failed: {answer['error']}")
        return answer

    def _death(self) -> str:
        how = describe_exit(self.proc.wait())
        self._stderr.seek(0)
        tail = [line for line in self._stderr.read().splitlines() if line.strip()][-1:]
        return how + (f": {tail[0]}" if tail else "")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self._stderr):
            if stream:
                stream.close()


def measure_interleaved(baseline: Side, candidate: Side, config: MeasureConfig = MeasureConfig(),
                        *, plugins: Sequence[str] = (), disabled: Sequence[str] = (),
                        timeout: float = 300.0, seed: int | None = None,
                        on_turn: Callable[[float], None] | None = None
                        ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Time both sides turn about until each has ``config.max_time`` of samples (and at
    least :data:`MIN_TURNS` turns); one record per side, sharing a session id.

    Both processes are pinned to the same cores (:func:`shared_cores`): two vCPUs of
    one VM can differ in speed by several percent, which pairing cannot cancel.
    ``on_turn`` gets the fraction done after every turn (for a progress display).
    """
    cpus = shared_cores(baseline.case.threads or default_threads())
    sides = (baseline, candidate)
    roles = ("baseline", "candidate")
    workers: list[_Worker] = []
    try:
        for side, role in zip(sides, roles):
            workers.append(_Worker(side, role, timeout))
        for work in workers:  # importing torch is slow on a busy machine, never a hang
            work.receive(max(timeout, START_TIMEOUT))
        ready = []
        for side, work in zip(sides, workers):  # one at a time: warm-up undisturbed
            ready.append(work.ask({"case": side.case.to_dict(), "config": asdict(config),
                                   "plugins_dir": str(side.plugins) if side.plugins else None,
                                   "plugins": list(plugins), "disabled": list(disabled),
                                   "sys_path": sys.path, "cpus": cpus}))
        counts = [max(1, round(TURN_TIME / (r["last"] * r["block_size"]))) for r in ready]
        samples: list[list[float]] = [[], []]
        turns: list[list[int]] = [[], []]
        spent = [0.0, 0.0]
        order = [0, 1]
        shuffle = random.Random(seed).shuffle
        while min(spent) < config.max_time or len(turns[0]) < MIN_TURNS:
            shuffle(order)  # neither side always goes first after the other
            for i in order:
                got = workers[i].ask(counts[i])["samples"]
                samples[i] += got
                turns[i].append(len(got))
                spent[i] += sum(got) * ready[i]["block_size"]
            if on_turn:
                on_turn(min(1.0, min(spent) / config.max_time))
    finally:
        for work in workers:
            work.close()
    session = uuid.uuid4().hex[:12]
    return tuple(_record(side, role, r, s, t, session)  # type: ignore[return-value]
                 for side, role, r, s, t in zip(sides, roles, ready, samples, turns))


def shared_cores(threads: int) -> list[int] | None:
    """The last ``threads`` cores this process may use (away from core 0, where the
    system's interrupts and the harness's driver tend to run); None where a process
    cannot be pinned."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    return allowed[-threads:] if threads < len(allowed) else allowed


def _record(side: Side, role: str, ready: dict[str, Any], samples: list[float],
            turns: list[int], session: str) -> dict[str, Any]:
    from harness import worker

    measured = Measurement(tuple(samples), ready["block_size"], ready["warmup_iters"],
                           ready["first_call"])
    return {**worker.base_record(side.case), "threads": ready["threads"],
            **worker.latency_fields(side.case, measured),
            "interleaved": {"session": session, "side": role, "source": side.source,
                            "turns": turns}}


def _serve() -> None:
    """A side's process: build and warm the case, then time blocks on request."""
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # a model's prints go to stderr, never into the protocol

    def send(**message: Any) -> None:
        protocol.write(json.dumps(message) + "\n")

    try:
        import torch

        from harness import worker
        from harness.registry import load_registry
        from harness.timing import time_blocks, warm_up

        send(started=True)
        job = json.loads(sys.stdin.readline())
        sys.path[:] = job["sys_path"]  # where the driver found --plugin modules
        if job["cpus"]:
            os.sched_setaffinity(0, job["cpus"])
        if job["plugins_dir"]:
            import harness_plugins  # its submodules, the models, come from the side's folder

            harness_plugins.__path__[:] = [job["plugins_dir"]]
        registry = load_registry(job["plugins"], job["disabled"], from_env=False)
        case = Case.from_dict(job["case"])
        spec = registry.model(case.model).spec
        with worker.prepared(spec, case) as step:
            warm = warm_up(step, case.device, MeasureConfig(**job["config"]))
            send(block_size=warm.block_size, last=warm.last, first_call=warm.first_call,
                 warmup_iters=warm.iters, threads=torch.get_num_threads())
            for line in sys.stdin:
                step()  # untimed: the first call after the other side's turn meets cold caches
                send(samples=time_blocks(step, case.device, warm.block_size, json.loads(line)))
    except Exception as exc:  # noqa: BLE001 - whatever the model raised is the answer
        from harness.worker import error_message

        send(error=error_message(exc))


if __name__ == "__main__":
    _serve()
