"""A baseline and a candidate timed turn about in two processes, so the machine's drift
hits both alike: one *pair* of a ``harness ab`` session.

On a shared or virtual machine the speed of the same code wanders by several percent
over seconds (other tenants, clock frequency, the host's scheduler), so two runs made
minutes apart differ by more than the change one wants to see. A pair keeps both sides
warm in two fresh processes pinned to the same cores and times them in short alternating
turns (about 20 ms each, the order shuffled every turn); each candidate turn is judged
against the baseline turn beside it (:func:`significance.shift_of_turns`).

A side is whatever differs (:class:`Side`): its model code (a tree of
:mod:`harness.abtest.sources`), its interpreter (another environment, with another torch or
plugin version, speaking this module's versioned protocol), its case options (compile
mode, dtype, precision, backend, threads) and environment variables. Processes are
started ahead of need on cores the pair is not timed on, so the next pair's imports
overlap this pair's turns instead of adding to the wall time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import random
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.abtest.sources import CodeSource
from harness.errors import HarnessError, UsageError
from harness.execute.child import CaseOutput, describe_exit, enter, kill_group
from harness.measure.devices import default_threads
from harness.measure.timing import MeasureConfig, Measurement
from harness.store.record import CaseRecord
from harness.sweep.plan import Case

PROTOCOL = 2  # bumped whenever a message changes; both ends must speak the same one
TURN_TIME = 0.02  # seconds per side per turn: well inside the drift's correlation time
TURN_BLOCKS = 2  # at least, so a slow model's untimed call is a third of its turn, not half
MIN_TURNS = 12  # the paired test's interval needs a dozen turns to mean much
START_TIMEOUT = 120.0  # seconds for a side's process to import torch and the harness


@dataclass(frozen=True)
class Side:
    """What one side of a comparison is: model code, interpreter, case options and
    environment variables; whatever it does not set is the same on both sides."""

    role: str = "candidate"
    code: CodeSource | None = None  # None: the code installed in the interpreter
    python: str | None = None  # None: the interpreter running the harness
    options: Mapping[str, Any] = field(default_factory=dict)  # Case fields: dtype, threads...
    env: Mapping[str, str] = field(default_factory=dict)

    def case(self, case: Case) -> Case:
        return dataclasses.replace(case, **self.options)

    @property
    def source(self) -> str:
        return self.code.description if self.code else "installed"

    def describe(self) -> str:
        """'candidate (HEAD~1 (1a2b3c4d5e), python /v/bin/python, compile_mode=default)'."""
        parts = [self.source]
        if self.python:
            parts.append(f"python {self.python}")
        parts += [f"{k}={v}" for k, v in self.options.items()]
        parts += [f"{k}={v}" for k, v in self.env.items()]
        return f"{self.role} ({', '.join(parts)})"

    def process_key(self) -> tuple[Any, ...]:
        """Processes with the same key are interchangeable until they are given a case."""
        return self.python, tuple(sorted(self.env.items()))


class InterleaveError(HarnessError):
    """A side that failed to build, crashed or hung: this case has no verdict."""

    def __init__(
        self,
        message: str,
        role: str,
        status: str = "error",
        detail: str | None = None,
        traceback: str | None = None,
    ):
        super().__init__(message)
        self.role = role
        self.status = status
        self.detail = detail or message  # what went wrong, without naming the side
        self.traceback = traceback  # where the side's process failed, if it raised
        self.output_tail: str | None = None  # what the side's process printed last


class SideSetupError(UsageError):
    """A side whose interpreter cannot run this harness at all: no case can be measured."""


class _Worker:
    """One side's process: greets, is given one case, warms it up, then times turns."""

    def __init__(self, side: Side, timeout: float, cpus: Sequence[int] | None = None):
        self.side = side
        self.python = side.python or sys.executable
        self.timeout = timeout
        try:
            # started in the root folder: the interpreter's own harness, never one that
            # happens to sit in the current folder, is the side's engine; in a session of
            # its own, so whatever the model starts is killed with it
            self.proc = subprocess.Popen(
                [self.python, "-m", "harness.interleave"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=os.sep,
                env={**os.environ, **side.env},
                start_new_session=True,
            )
        except OSError as exc:
            raise SideSetupError(
                f"{side.role}'s interpreter {self.python} cannot be started: "
                f"{exc.strerror}; give the python of a virtual environment "
                "with harness installed"
            ) from None
        self.output = CaseOutput()  # its stderr, where a model's prints go too
        assert self.proc.stderr is not None
        self.output.fd = self.proc.stderr.fileno()
        if cpus:
            try:
                os.sched_setaffinity(self.proc.pid, cpus)  # imports stay off the timed cores
            except OSError:
                pass  # it died at once, or cannot be pinned here: greet() tells
        self.hello: dict[str, Any] | None = None

    @property
    def label(self) -> str:
        return self.side.describe()

    def greet(self) -> dict[str, Any]:
        """The side's interpreter, harness and torch, once its protocol is known to match."""
        if self.hello is not None:
            return self.hello
        try:
            answer = self.receive(max(self.timeout, START_TIMEOUT))
        except InterleaveError as exc:
            if self.side.python:
                raise SideSetupError(
                    f"{self.side.role}'s interpreter {self.python} cannot run "
                    f"the harness ({exc}); install this harness there "
                    f"(harness {_harness_of(sys.executable)})"
                ) from None
            raise
        hello = answer.get("hello", {"protocol": 1})  # protocol 1 had no greeting
        if not isinstance(hello, dict) or hello.get("protocol") != PROTOCOL:
            raise SideSetupError(
                f"{self.side.role}'s interpreter {self.python} runs harness "
                f"{_harness_of(self.python)}, which speaks ab protocol "
                f"{hello.get('protocol') if isinstance(hello, dict) else '?'}; this harness "
                f"{_harness_of(sys.executable)} speaks protocol {PROTOCOL}: install the same "
                "harness version in both environments"
            )
        self.hello = hello
        return hello

    def ask(self, message: Any) -> dict[str, Any]:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps(message) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # it died: receive() says how
        return self.receive(self.timeout)

    def receive(self, timeout: float) -> dict[str, Any]:
        try:
            return self._receive(timeout)
        except InterleaveError as exc:
            exc.output_tail = self.output.tail()
            raise

    def _receive(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        if not self.output.wait_for(self.proc.stdout, timeout):
            raise InterleaveError(
                f"{self.label} did not answer within {timeout:g} s; "
                "raise --timeout if the model is that slow",
                self.side.role,
                "timeout",
            )
        line = self.proc.stdout.readline()
        if not line:
            how, status = self._death()
            raise InterleaveError(f"{self.label}: {how}", self.side.role, status, how)
        try:
            answer = json.loads(line)
        except json.JSONDecodeError:
            raise InterleaveError(
                f"{self.label} sent a line that is not the ab protocol: {line.strip()[:80]!r}",
                self.side.role,
            ) from None
        if not isinstance(answer, dict):
            raise InterleaveError(
                f"{self.label} sent {type(answer).__name__}, not a message", self.side.role
            )
        if "error" in answer:
            raise InterleaveError(
                f"{self.label} failed: {answer['error']}",
                self.side.role,
                answer.get("status", "error"),
                str(answer["error"]),
                answer.get("traceback"),
            )
        return answer

    def _death(self) -> tuple[str, str]:
        try:
            code = self.proc.wait(self.timeout)
        except subprocess.TimeoutExpired:  # it closed its answers' pipe and went on
            kill_group(self.proc)
            self.proc.wait()
            return (
                f"closed its answers' pipe and did not exit within {self.timeout:g} s; killed"
            ), "crashed"
        kill_group(self.proc)  # whatever it started holds its stderr open no longer
        self.output.finish(1.0)
        lines = (self.output.tail() or "").splitlines()
        tail = [line for line in lines if line.strip()][-1:]
        return describe_exit(code) + (f": {tail[0]}" if tail else ""), "crashed"

    def close(self) -> None:
        kill_group(self.proc)
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream:
                with contextlib.suppress(OSError):  # a request never flushed to the dead
                    stream.close()


def _harness_of(python: str) -> str:
    """'0.2.0 at /venv/lib/.../harness': which harness an interpreter imports."""
    probe = (
        "import importlib.metadata as m, os, harness; "
        "print(m.version('harness'), 'at', os.path.dirname(harness.__file__))"
    )
    try:
        done = subprocess.run(
            [python, "-c", probe],
            capture_output=True,
            text=True,
            cwd=os.sep,
            timeout=START_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "(unknown version)"
    return done.stdout.strip() or "(unknown version)"


class Spawner:
    """Side processes started ahead of need: while one pair is timed on ``cpus``, the
    next pair's interpreters import torch on the other cores (where there are any), so a
    fresh pair costs its warm-up, not seconds of imports. Use as a context manager: the
    processes nobody took are killed at the end."""

    def __init__(self, cpus: Sequence[int] | None, timeout: float):
        self.cpus = list(cpus) if cpus else None
        allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        self.spare = [c for c in allowed if c not in (self.cpus or allowed)] or None
        self.timeout = timeout
        self._ready: dict[tuple[Any, ...], list[_Worker]] = {}
        self._started: list[_Worker] = []  # every process, so that none outlives the session

    def _start(self, side: Side, cpus: Sequence[int] | None = None) -> _Worker:
        with _interrupt_deferred():  # a Ctrl-C inside Popen would orphan its process
            work = _Worker(side, self.timeout, cpus)
            self._started.append(work)
        return work

    def take(self, side: Side) -> _Worker:
        """A started process for ``side``: one started ahead, else a new one."""
        waiting = self._ready.get(side.process_key())
        work = waiting.pop(0) if waiting else self._start(side)
        work.side = side  # the role and options may differ; the process does not
        return work

    def prepare(self, side: Side) -> None:
        """Start a process for ``side``'s next pair now, if it can import off the timed cores."""
        if self.spare is not None:
            self._ready.setdefault(side.process_key(), []).append(self._start(side, self.spare))

    def hello(self, side: Side) -> dict[str, Any]:
        """What ``side``'s interpreter is (harness, torch, python, environment)."""
        waiting = self._ready.setdefault(side.process_key(), [])
        if not waiting:
            waiting.append(self._start(side, self.spare))
        return waiting[0].greet()

    def __enter__(self) -> Spawner:
        return self

    def __exit__(self, *exc: object) -> None:
        for work in self._started:  # closing twice is harmless
            work.close()
        self._started.clear()
        self._ready.clear()


@contextlib.contextmanager
def _interrupt_deferred() -> Iterator[None]:
    """Hold a Ctrl-C back until the block ends, then raise it (or call the handler that
    was there). Holding SIGINT by a handler, not a signal mask: a mask would be inherited
    by the process the block starts."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread gets signals or may set handlers
        return
    held: list[Any] = []
    previous = signal.signal(signal.SIGINT, lambda *caught: held.append(caught))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if held and callable(previous):
        previous(*held[0])


@dataclass(frozen=True)
class PairSettings:
    """How one pair is timed and which plugins its sides load."""

    config: MeasureConfig = MeasureConfig()  # warm-up; ``max_time``: timed seconds a side
    plugins: tuple[str, ...] = ()
    disabled: tuple[str, ...] = ()
    require_defined: bool = True  # a tree side must define the model itself


def measure_pair(
    baseline: Side,
    candidate: Side,
    case: Case,
    spawner: Spawner,
    settings: PairSettings = PairSettings(),
    *,
    session: str,
    pair: int,
    rng: random.Random,
) -> tuple[CaseRecord, CaseRecord]:
    """One pair: both sides' processes given ``case`` (with each side's options), warmed
    up one at a time in random order, then timed turn about until each has
    ``config.max_time`` seconds of samples and at least :data:`MIN_TURNS` turns; one
    record per side."""
    sides = (baseline, candidate)
    cases = [s.case(case) for s in sides]
    workers: list[_Worker] = []
    try:
        for side in sides:
            workers.append(spawner.take(side))
        for work in workers:
            work.greet()
        for side in sides:  # the next pair's imports overlap this pair's turns
            spawner.prepare(side)
        config = settings.config
        ready: list[dict[str, Any]] = [{}, {}]
        order = [0, 1]
        rng.shuffle(order)
        for i in order:  # one at a time: warm-up undisturbed by the other side
            ready[i] = workers[i].ask(_job(sides[i], cases[i], settings, spawner.cpus))
        counts = [max(TURN_BLOCKS, round(TURN_TIME / (r["last"] * r["block_size"]))) for r in ready]
        samples: list[list[float]] = [[], []]
        turns: list[list[int]] = [[], []]
        spent = [0.0, 0.0]
        while min(spent) < config.max_time or len(turns[0]) < MIN_TURNS:
            rng.shuffle(order)  # neither side always goes first after the other
            for i in order:
                got = workers[i].ask({"turn": counts[i]})["samples"]
                samples[i] += got
                turns[i].append(len(got))
                spent[i] += sum(got) * ready[i]["block_size"]
    finally:
        for work in workers:
            work.close()
    return tuple(
        _record(side, c, r, s, t, session, pair)  # type: ignore[return-value]
        for side, c, r, s, t in zip(sides, cases, ready, samples, turns)
    )


def _job(
    side: Side, case: Case, settings: PairSettings, cpus: Sequence[int] | None
) -> dict[str, Any]:
    return {
        "case": case.to_dict(),
        "config": asdict(settings.config),
        "source": side.code.to_dict() if side.code else None,
        "require_defined": settings.require_defined,
        "plugins": list(settings.plugins),
        "disabled": list(settings.disabled),
        # this interpreter's path finds --plugin modules; another has its own
        "sys_path": None if side.python else sys.path,
        "cwd": os.getcwd(),
        "cpus": cpus,
    }


def shared_cores(threads: int) -> list[int] | None:
    """The last ``threads`` cores this process may use (away from core 0, where the
    system's interrupts and the harness's driver tend to run); None where a process
    cannot be pinned."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    return allowed[-threads:] if threads < len(allowed) else allowed


def cores_for(cases: Sequence[Case]) -> list[int] | None:
    """The cores both sides of these cases are pinned to: as many as the most threads."""
    return shared_cores(max(c.threads or default_threads() for c in cases))


def _record(
    side: Side,
    case: Case,
    ready: dict[str, Any],
    samples: list[float],
    turns: list[int],
    session: str,
    pair: int,
) -> CaseRecord:
    from harness.execute import worker

    case = dataclasses.replace(case, dims=ready["dims"])  # as the side's own spec resolved them
    measured = Measurement(
        tuple(samples), ready["block_size"], ready["warmup_iters"], ready["first_call"]
    )
    return CaseRecord.of_case(
        case,
        plugin=ready["plugin"],
        threads=ready["threads"],
        isolation="interleaved",
        **worker.latency_fields(case, measured),
        interleaved=_interleaved(side, session, pair, turns),
    )


def _interleaved(side: Side, session: str, pair: int, turns: list[int]) -> dict[str, Any]:
    """A record's account of the interleaved session and pair that measured it."""
    return {
        "session": session,
        "pair": pair,
        "side": side.role,
        "source": side.source,
        "turns": turns,
    }


def failed_records(
    baseline: Side, candidate: Side, case: Case, error: InterleaveError, session: str, pair: int
) -> tuple[CaseRecord, CaseRecord]:
    """What a pair that failed leaves: the failing side's status and message, and the
    other side ``skipped`` for it."""
    from harness.execute import worker

    records = []
    for side in (baseline, candidate):
        failed = side.role == error.role
        records.append(
            worker.unmeasured(
                side.case(case),
                error.status if failed else "skipped",
                str(error) if failed else f"the {error.role} failed",
                isolation="interleaved",
                interleaved=_interleaved(side, session, pair, []),
                traceback=error.traceback if failed else None,
                output_tail=error.output_tail if failed else None,
            )
        )
    return records[0], records[1]


def serve() -> None:
    """A side's process: greet, build and warm up the case it is given, then time turns."""
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    enter(protocol.fileno())  # a model's prints go to stderr, never into the protocol

    def send(**message: Any) -> None:
        protocol.write(json.dumps(message) + "\n")

    try:
        import torch

        import harness
        from harness.abtest.sources import activate
        from harness.execute.workload import prepared
        from harness.measure import environment
        from harness.measure.timing import time_blocks, warm_up
        from harness.models.registry import load_registry

        send(
            hello={
                "protocol": PROTOCOL,
                "harness": harness.__version__,
                "torch": torch.__version__,
                "python": platform.python_version(),
                "executable": sys.executable,
                "environment": environment.collect(),
            }
        )
        job = json.loads(sys.stdin.readline())
        os.chdir(job["cwd"])
        if job["sys_path"] is not None:
            sys.path[:] = job["sys_path"]  # where the driver found --plugin modules
        elif job["cwd"] not in sys.path:
            sys.path.append(job["cwd"])
        if job["cpus"]:
            os.sched_setaffinity(0, job["cpus"])
        source = CodeSource.from_dict(job["source"]) if job["source"] else None
        if source:
            activate(source)  # for the rest of this process's life
        registry = load_registry(
            job["plugins"],
            job["disabled"],
            from_env=False,
            local=source.entry_points if source else (),
            distribution=source.distribution if source else None,
        )
        case = Case.from_dict(job["case"])
        registered = registry.model(case.model)
        if source and job["require_defined"] and not source.defines(registered.file):
            raise UsageError(
                f"model {case.model!r} is not defined by {source.description}: "
                f"plugin {registered.plugin!r} registers it from "
                f"{registered.file or 'no file'}"
            )
        spec = registered.spec
        case = dataclasses.replace(  # this side's own defaults for what was not chosen
            case, dims=spec.resolve_dims({k: case.dims[k] for k in case.chosen})
        )
        with prepared(spec, case) as step:
            warm = warm_up(step, case.device, MeasureConfig(**job["config"]))
            send(
                block_size=warm.block_size,
                last=warm.last,
                first_call=warm.first_call,
                warmup_iters=warm.iters,
                threads=torch.get_num_threads(),
                dims=dict(case.dims),
                plugin=registered.plugin,
            )
            for line in sys.stdin:
                step()  # untimed: the first call after the other side's turn meets cold caches
                send(
                    samples=time_blocks(
                        step, case.device, warm.block_size, json.loads(line)["turn"]
                    )
                )
    except Exception as exc:  # noqa: BLE001 - whatever the model raised is the answer
        from harness.execute.failure import error_message, error_traceback, failure_status

        send(error=error_message(exc), status=failure_status(exc), traceback=error_traceback(exc))
