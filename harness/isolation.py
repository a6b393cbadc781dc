"""Where a case runs: in a fresh child process (the default) or in the harness itself.

A child per case means a segfault, an abort, the kernel's OOM killer or a hang
takes down one case, never the sweep, and every case starts from the same clean
state (no allocator cache, no compiled graphs, no threads from the previous one).
Children are forked from a forkserver that has torch and the plugins imported, so a
case starts in milliseconds rather than the seconds a fresh interpreter needs; the
forkserver itself never runs a kernel, so no CUDA context or thread pool is forked.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import io
import json
import multiprocessing
import os
import resource
import select
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from importlib.metadata import entry_points
from multiprocessing.connection import wait
from typing import Any

from harness import environment, worker
from harness.check import CheckResult, check_model, unchecked
from harness.devices import DTYPES
from harness.flops import calibrate_peak
from harness.plan import Case
from harness.record import CaseRecord
from harness.registry import ENTRY_POINT_GROUP, RegisteredModel, Registry, load_registry
from harness.timing import MeasureConfig

ISOLATION_MODES = ("process", "none")
OUTPUT_TAIL_BYTES = 4096  # of a failed case's own output, kept in its record
_CHUNK = 65536


class CaseOutput(io.TextIOBase):
    """What a case wrote to stdout and stderr: drained from its process's output pipe,
    or written here by ``redirect_stdout`` (``--isolation none``). Only the last
    :data:`OUTPUT_TAIL_BYTES` are kept, so a model printing megabytes per call neither
    floods the tables on the harness's stdout nor fills a disk, and a failed case's
    record still shows what it said last."""

    def __init__(self) -> None:
        super().__init__()
        self.fd: int | None = None  # the read end of the case's output pipe; None at its end
        self._tail = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._keep(text.encode("utf-8", "replace"))
        return len(text)

    def _keep(self, data: bytes) -> None:
        self._tail += data
        del self._tail[:-OUTPUT_TAIL_BYTES]

    def _pump(self) -> None:
        assert self.fd is not None
        chunk = os.read(self.fd, _CHUNK)
        if chunk:
            self._keep(chunk)
        else:
            self.fd = None

    def _drain(self) -> None:
        """Keep what is in the pipe now, without waiting for a writer that goes on."""
        for _ in range(64):
            if self.fd is None or not wait([self.fd], 0):
                return
            self._pump()

    def wait_for(self, answer: Any, timeout: float) -> bool:
        """Whether ``answer`` (anything with a file descriptor) became readable within
        ``timeout`` seconds; the output is drained meanwhile, so a case never blocks on
        a full pipe."""
        deadline = time.monotonic() + timeout
        while True:
            watched = [answer] if self.fd is None else [answer, self.fd]
            ready = wait(watched, max(0.0, deadline - time.monotonic()))
            if self.fd is not None and self.fd in ready:
                self._pump()
            if answer in ready:
                self._drain()
                return True
            if time.monotonic() >= deadline:
                return False

    def finish(self, timeout: float) -> None:
        """Keep the rest of the pipe: to its end, or ``timeout`` seconds' silence."""
        while self.fd is not None and wait([self.fd], timeout):
            self._pump()

    def tail(self) -> str | None:
        return self._tail.decode("utf-8", "replace") or None


def with_output(record: CaseRecord, output: CaseOutput) -> CaseRecord:
    """``record`` with the case's last output when it did not end ``ok``: often the only
    account of a crash (an abort's message) or of what the model complained about."""
    tail = output.tail()
    return dataclasses.replace(record, output_tail=tail) if tail and not record.ok else record


class InlineExecutor:
    """Runs cases in this process: fastest to start, but a crash or hang is the harness's."""

    isolation = "none"

    def __init__(self, registry: Registry):
        self.registry = registry

    def measure(self, case: Case, config: MeasureConfig, peaks: Mapping[str, float]) -> CaseRecord:
        # stdout only: stderr is the progress display's, which rich writes through sys.stderr
        output = CaseOutput()
        with contextlib.redirect_stdout(output):
            record = worker.measure_case(self.registry.model(case.model).spec, case, config, peaks)
        return with_output(record, output)

    def probe(self, case: Case, batch_size: int) -> str:
        with contextlib.redirect_stdout(CaseOutput()):
            return worker.probe_case(self.registry.model(case.model).spec, case, batch_size)

    def check(self, model: RegisteredModel, dims: Mapping[str, int]) -> CheckResult:
        return check_model(model.spec, model.plugin, dims)

    def calibrate(self, device: str, dtype: str, threads: int | None) -> float | None:
        try:
            return calibrate_peak(device, DTYPES[dtype], threads)
        except Exception:  # no matmul kernel for this dtype here: no peak, no utilisation
            return None


def _limit_address_space(extra_bytes: int) -> None:
    """Cap the child's address space at its current size plus ``extra_bytes``."""
    with open("/proc/self/statm") as fh:
        current = int(fh.read().split()[0]) * resource.getpagesize()
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (current + extra_bytes, hard))


_PR_SET_PDEATHSIG = 1


def _die_with_forkserver() -> None:
    """End this case when the forkserver ends, as it does when the process that started
    it dies (a killed Ray worker): an orphaned case would go on measuring beside the
    next one on the same machine."""
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def kill_group(process: Any) -> None:
    """Kill ``process`` (a multiprocessing Process or a Popen) and every process it
    started: it leads its own process group, so a model that forks leaves no orphan."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):  # not its group yet, or all gone
        alive = process.is_alive() if hasattr(process, "is_alive") else process.poll() is None
        if alive:
            process.kill()


def end_when_unread(fd: int) -> None:
    """Kill this process's group once nobody can read ``fd``, its answers' pipe: the
    harness is gone (even by kill -9), and an orphaned case would go on running beside
    the next one, or hang, only to fail to send its answer; what it started goes too
    where it leads its process group."""

    def watch() -> None:
        poller = select.poll()
        poller.register(fd, 0)  # a pipe's writer is told POLLERR once its reader is gone
        for _, event in poller.poll():
            if event & (select.POLLERR | select.POLLHUP):
                if os.getpgrp() == os.getpid():
                    os.killpg(os.getpid(), signal.SIGKILL)
                os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="harness-orphan-watch", daemon=True).start()


def _child(conn: Any, output: Any, job_text: str) -> None:
    """Entry point of a case's process: run one job, send back one JSON answer. Its
    stdout and stderr (file descriptors 1 and 2, so C code's prints too) go to
    ``output``, a pipe the harness keeps the tail of."""
    _die_with_forkserver()
    os.setpgrp()  # the case and whatever it starts are one group, killed as one
    end_when_unread(conn.fileno())
    os.dup2(output.fileno(), 1)
    os.dup2(output.fileno(), 2)
    output.close()
    job = json.loads(job_text)
    sys.path[:] = job["sys_path"]
    try:
        if job["memory_limit"]:
            _limit_address_space(job["memory_limit"])
        if job["kind"] == "calibrate":
            answer: Any = calibrate_peak(job["device"], DTYPES[job["dtype"]], job["threads"])
        elif job["kind"] == "environment":
            answer = environment.collect()
        elif job["kind"] == "check":
            registry = load_registry(job["plugins"], job["disabled"], from_env=False)
            registered = registry.model(job["model"])
            answer = check_model(registered.spec, registered.plugin, job["dims"]).to_dict()
        else:
            registry = load_registry(job["plugins"], job["disabled"], from_env=False)
            case = Case.from_dict(job["case"])
            spec = registry.model(case.model).spec
            if job["kind"] == "probe":
                answer = worker.probe_case(spec, case, job["batch_size"])
            else:
                answer = worker.measure_case(
                    spec, case, MeasureConfig(**job["config"]), job["peaks"]
                ).to_json()
        message = json.dumps({"answer": answer})
    except BaseException as exc:  # report anything, even SystemExit, to the parent
        message = json.dumps(
            {"exception": worker.error_message(exc), "traceback": worker.error_traceback(exc)}
        )
    with contextlib.suppress(OSError, ValueError):  # the output's tail, complete
        sys.stdout.flush()
        sys.stderr.flush()
    with contextlib.suppress(OSError):  # the harness is gone: nobody to tell
        conn.send(message)
    conn.close()


def describe_exit(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        hint = " (the out-of-memory killer sends this)" if name == "SIGKILL" else ""
        return f"process killed by {name}{hint}"
    return f"process exited with status {exitcode} without a result"


class CaseError(RuntimeError):
    """The job raised in the case's process; ``traceback`` is where (bounded)."""

    def __init__(self, message: str, traceback: str | None):
        super().__init__(message)
        self.traceback = traceback


class _Abnormal(Exception):
    """A child that timed out or died; ``status`` is ``timeout`` or ``crashed``."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status


class ProcessExecutor:
    """Runs each job in a fresh forked child with a hard timeout."""

    isolation = "process"

    def __init__(
        self,
        plugins: Sequence[str],
        disabled: Sequence[str],
        timeout: float,
        memory_limit: int | None = None,
    ):
        self.plugins = list(plugins)
        self.disabled = list(disabled)
        self.timeout = timeout
        self.memory_limit = memory_limit
        self._ctx = multiprocessing.get_context("forkserver")
        modules = [ep.value.split(":")[0] for ep in entry_points(group=ENTRY_POINT_GROUP)]
        self._ctx.set_forkserver_preload(
            ["torch", "harness.preload", "harness.isolation", *modules]
        )

    def _run(self, job: dict[str, Any], timeout: float, output: CaseOutput | None = None) -> Any:
        """The job's answer from a fresh child; what the child printed goes to ``output``."""
        job = {
            **job,
            "plugins": self.plugins,
            "disabled": self.disabled,
            "memory_limit": self.memory_limit,
            "sys_path": sys.path,
        }
        output = CaseOutput() if output is None else output
        receiver, sender = self._ctx.Pipe(duplex=False)
        printed, printer = self._ctx.Pipe(duplex=False)
        process = self._ctx.Process(
            target=_child, args=(sender, printer, json.dumps(job)), daemon=True
        )
        process.start()
        sender.close()
        printer.close()
        output.fd = printed.fileno()
        try:
            if not output.wait_for(receiver, timeout):
                raise _Abnormal(
                    "timeout", f"no result after the {timeout:g} s timeout; raise it with --timeout"
                )
            try:
                message = json.loads(receiver.recv())
            except EOFError:
                process.join()
                raise _Abnormal("crashed", describe_exit(process.exitcode)) from None
        finally:
            kill_group(process)  # what the case started ends with it, even if it hung
            process.join()
            receiver.close()
            printed.close()
            output.fd = None
        if "exception" in message:
            raise CaseError(message["exception"], message.get("traceback"))
        return message["answer"]

    def measure(self, case: Case, config: MeasureConfig, peaks: Mapping[str, float]) -> CaseRecord:
        job = {
            "kind": "measure",
            "case": case.to_dict(),
            "config": config.__dict__,
            "peaks": dict(peaks),
        }
        output = CaseOutput()
        try:
            record = CaseRecord.from_json(self._run(job, self.timeout, output))
        except _Abnormal as exc:
            record = worker.unmeasured(case, exc.status, str(exc))
        except CaseError as exc:
            record = worker.unmeasured(case, "error", str(exc), traceback=exc.traceback)
        return with_output(record, output)

    def probe(self, case: Case, batch_size: int) -> str:
        job = {"kind": "probe", "case": case.to_dict(), "batch_size": batch_size}
        try:
            return self._run(job, self.timeout)
        except _Abnormal as exc:
            # A probe the kernel killed most likely exhausted memory: treat as too big.
            return "oom" if "SIGKILL" in str(exc) else f"{exc.status}: {exc}"
        except RuntimeError as exc:
            return f"error: {exc}"

    def check(self, model: RegisteredModel, dims: Mapping[str, int]) -> CheckResult:
        """``harness check`` of one model in its own process: a crash or hang is its row."""
        name = model.spec.name
        try:
            answer = self._run({"kind": "check", "model": name, "dims": dict(dims)}, self.timeout)
        except _Abnormal as exc:
            return unchecked(name, model.plugin, dims, f"{exc.status}: {exc}")
        except RuntimeError as exc:
            return unchecked(name, model.plugin, dims, f"error: {exc}")
        return CheckResult.from_dict(answer)

    def environment(self) -> dict[str, Any]:
        """This machine's fingerprint as a case's process sees it (threads included)."""
        return self._run({"kind": "environment"}, self.timeout)

    def calibrate(self, device: str, dtype: str, threads: int | None) -> float | None:
        try:
            return self._run(
                {"kind": "calibrate", "device": device, "dtype": dtype, "threads": threads},
                self.timeout,
            )
        except (_Abnormal, RuntimeError):
            return None


def make_executor(
    isolation: str,
    registry: Registry,
    plugins: Sequence[str],
    disabled: Sequence[str],
    timeout: float,
    memory_limit: int | None,
) -> InlineExecutor | ProcessExecutor:
    if isolation == "none":
        return InlineExecutor(registry)
    return ProcessExecutor(plugins, disabled, timeout, memory_limit)
