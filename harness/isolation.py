"""Where a case runs: in a fresh child process (the default) or in the harness itself.

A child per case means a segfault, an abort, the kernel's OOM killer or a hang
takes down one case, never the sweep, and every case starts from the same clean
state (no allocator cache, no compiled graphs, no threads from the previous one).
Children are forked from a forkserver that has torch and the plugins imported, so a
case starts in milliseconds rather than the seconds a fresh interpreter needs; the
forkserver itself never runs a kernel, so no CUDA context or thread pool is forked.
"""

from __future__ import annotations

import ctypes
import json
import multiprocessing
import resource
import signal
import sys
from collections.abc import Mapping, Sequence
from importlib.metadata import entry_points
from typing import Any

from harness import environment, worker
from harness.devices import DTYPES
from harness.flops import calibrate_peak
from harness.plan import Case
from harness.registry import ENTRY_POINT_GROUP, Registry, load_registry
from harness.timing import MeasureConfig

ISOLATION_MODES = ("process", "none")


class InlineExecutor:
    """Runs cases in this process: fastest to start, but a crash or hang is the harness's."""

    isolation = "none"

    def __init__(self, registry: Registry):
        self.registry = registry

    def measure(self, case: Case, config: MeasureConfig,
                peaks: Mapping[str, float]) -> dict[str, Any]:
        return worker.measure_case(self.registry.model(case.model).spec, case, config, peaks)

    def probe(self, case: Case, batch_size: int) -> str:
        return worker.probe_case(self.registry.model(case.model).spec, case, batch_size)

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


def _child(conn: Any, job_text: str) -> None:
    """Entry point of a case's process: run one job, send back one JSON answer."""
    _die_with_forkserver()
    job = json.loads(job_text)
    sys.path[:] = job["sys_path"]
    try:
        if job["memory_limit"]:
            _limit_address_space(job["memory_limit"])
        if job["kind"] == "calibrate":
            answer: Any = calibrate_peak(job["device"], DTYPES[job["dtype"]], job["threads"])
        elif job["kind"] == "environment":
            answer = environment.collect()
        else:
            registry = load_registry(job["plugins"], job["disabled"], from_env=False)
            case = Case.from_dict(job["case"])
            spec = registry.model(case.model).spec
            if job["kind"] == "probe":
                answer = worker.probe_case(spec, case, job["batch_size"])
            else:
                answer = worker.measure_case(spec, case, MeasureConfig(**job["config"]),
                                             job["peaks"])
        conn.send(json.dumps({"answer": answer}))
    except BaseException as exc:  # report anything, even SystemExit, to the parent
        conn.send(json.dumps({"exception": worker.error_message(exc)}))
    finally:
        conn.close()


def describe_exit(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        hint = " (the out-of-memory killer sends this)" if name == "SIGKILL" else ""
        return f"process killed by {name}{hint}"
    return f"process exited with status {exitcode} without a result"


class _Abnormal(Exception):
    """A child that timed out or died; ``status`` is ``timeout`` or ``crashed``."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status


class ProcessExecutor:
    """Runs each job in a fresh forked child with a hard timeout."""

    isolation = "process"

    def __init__(self, plugins: Sequence[str], disabled: Sequence[str], timeout: float,
                 memory_limit: int | None = None):
        self.plugins = list(plugins)
        self.disabled = list(disabled)
        self.timeout = timeout
        self.memory_limit = memory_limit
        self._ctx = multiprocessing.get_context("forkserver")
        modules = [ep.value.split(":")[0] for ep in entry_points(group=ENTRY_POINT_GROUP)]
        self._ctx.set_forkserver_preload(["torch", "harness.preload", "harness.isolation",
                                          *modules])

    def _run(self, job: dict[str, Any], timeout: float) -> Any:
        job = {**job, "plugins": self.plugins, "disabled": self.disabled,
               "memory_limit": self.memory_limit, "sys_path": sys.path}
        receiver, sender = self._ctx.Pipe(duplex=False)
        process = self._ctx.Process(target=_child, args=(sender, json.dumps(job)), daemon=True)
        process.start()
        sender.close()
        try:
            if not receiver.poll(timeout):
                process.kill()
                raise _Abnormal("timeout", f"no result after the {timeout:g} s timeout; "
                                           "raise it with --timeout")
            try:
                message = json.loads(receiver.recv())
            except EOFError:
                process.join()
                raise _Abnormal("crashed", describe_exit(process.exitcode)) from None
        finally:
            receiver.close()
            if process.is_alive():
                process.kill()
            process.join()
        if "exception" in message:
            raise RuntimeError(message["exception"])
        return message["answer"]

    def measure(self, case: Case, config: MeasureConfig,
                peaks: Mapping[str, float]) -> dict[str, Any]:
        job = {"kind": "measure", "case": case.to_dict(), "config": config.__dict__,
               "peaks": dict(peaks)}
        try:
            return self._run(job, self.timeout)
        except _Abnormal as exc:
            return worker.unmeasured(case, exc.status, str(exc))
        except RuntimeError as exc:
            return worker.unmeasured(case, "error", str(exc))

    def probe(self, case: Case, batch_size: int) -> str:
        job = {"kind": "probe", "case": case.to_dict(), "batch_size": batch_size}
        try:
            return self._run(job, self.timeout)
        except _Abnormal as exc:
            # A probe the kernel killed most likely exhausted memory: treat as too big.
            return "oom" if "SIGKILL" in str(exc) else f"{exc.status}: {exc}"
        except RuntimeError as exc:
            return f"error: {exc}"

    def environment(self) -> dict[str, Any]:
        """This machine's fingerprint as a case's process sees it (threads included)."""
        return self._run({"kind": "environment"}, self.timeout)

    def calibrate(self, device: str, dtype: str, threads: int | None) -> float | None:
        try:
            return self._run({"kind": "calibrate", "device": device, "dtype": dtype,
                              "threads": threads},
                             self.timeout)
        except (_Abnormal, RuntimeError):
            return None


def make_executor(isolation: str, registry: Registry, plugins: Sequence[str],
                  disabled: Sequence[str], timeout: float,
                  memory_limit: int | None) -> InlineExecutor | ProcessExecutor:
    if isolation == "none":
        return InlineExecutor(registry)
    return ProcessExecutor(plugins, disabled, timeout, memory_limit)
