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
import json
import multiprocessing
import resource
import signal
import sys
from collections.abc import Iterator, Mapping, Sequence
from importlib.metadata import entry_points
from typing import Any

from harness.errors import UsageError
from harness.execute import child, failure, worker
from harness.execute.check import CheckResult, check_model, unchecked
from harness.execute.child import CaseOutput, describe_exit, kill_group
from harness.measure import environment
from harness.measure.devices import DTYPES
from harness.measure.flops import calibrate_peak
from harness.measure.timing import MeasureConfig
from harness.models.portable import from_portable, to_portable
from harness.models.registry import (
    BENCH_PLUGIN,
    ENTRY_POINT_GROUP,
    RegisteredModel,
    Registry,
    load_registry,
)
from harness.models.spec import ModelSpec
from harness.store.record import CaseRecord
from harness.sweep.plan import Case

ISOLATION_MODES = ("process", "none")


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


@contextlib.contextmanager
def _main_not_rerun() -> Iterator[None]:
    """Start a process without multiprocessing's re-run of ``__main__`` in it: a case's
    process needs nothing of it, and a user's script calling ``harness.run`` without an
    ``if __name__ == "__main__":`` guard would run again in every case's process."""
    namespace = sys.modules["__main__"].__dict__
    saved = {name: namespace[name] for name in ("__file__", "__spec__") if name in namespace}
    namespace.pop("__file__", None)
    namespace["__spec__"] = None
    try:
        yield
    finally:
        namespace.pop("__spec__", None)
        namespace.update(saved)


def _spec(job: dict[str, Any], name: str) -> ModelSpec:
    """The model ``name`` from the job's own specs (``harness.bench``'s), else from the
    plugins the job names."""
    for data in job["specs"]:
        if data["name"] == name:
            return from_portable(data)
    return load_registry(job["plugins"], job["disabled"], from_env=False).model(name).spec


def _child(conn: Any, output: Any, job_text: str) -> None:
    """Entry point of a case's process: run one job, send back one JSON answer. Its
    stdout and stderr (file descriptors 1 and 2, so C code's prints too) go to
    ``output``, a pipe the harness keeps the tail of."""
    _die_with_forkserver()
    job = json.loads(job_text)
    child.enter(conn.fileno(), output.fileno(), job["sys_path"])
    output.close()
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
            case = Case.from_dict(job["case"])
            spec = _spec(job, case.model)
            if job["kind"] == "probe":
                answer = worker.probe_case(spec, case, job["batch_size"])
            else:
                answer = worker.measure_case(
                    spec, case, MeasureConfig(**job["config"]), job["peaks"]
                ).to_json()
        message = json.dumps({"answer": answer})
    except BaseException as exc:  # report anything, even SystemExit, to the parent
        message = json.dumps(
            {"exception": failure.error_message(exc), "traceback": failure.error_traceback(exc)}
        )
    with contextlib.suppress(OSError, ValueError):  # the output's tail, complete
        sys.stdout.flush()
        sys.stderr.flush()
    with contextlib.suppress(OSError):  # the harness is gone: nobody to tell
        conn.send(message)
    conn.close()


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
        specs: Sequence[dict[str, Any]] = (),
    ):
        self.plugins = list(plugins)
        self.specs = list(specs)  # models no plugin provides, as portable data
        self.disabled = list(disabled)
        self.timeout = timeout
        self.memory_limit = memory_limit
        self._ctx = multiprocessing.get_context("forkserver")
        modules = [ep.value.split(":")[0] for ep in entry_points(group=ENTRY_POINT_GROUP)]
        self._ctx.set_forkserver_preload(
            ["torch", "harness.execute.preload", "harness.execute.isolation", *modules]
        )

    def _run(self, job: dict[str, Any], timeout: float, output: CaseOutput | None = None) -> Any:
        """The job's answer from a fresh child; what the child printed goes to ``output``."""
        job = {
            **job,
            "plugins": self.plugins,
            "disabled": self.disabled,
            "specs": self.specs,
            "memory_limit": self.memory_limit,
            "sys_path": sys.path,
        }
        output = CaseOutput() if output is None else output
        receiver, sender = self._ctx.Pipe(duplex=False)
        printed, printer = self._ctx.Pipe(duplex=False)
        process = self._ctx.Process(
            target=_child, args=(sender, printer, json.dumps(job)), daemon=True
        )
        with _main_not_rerun():
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
    specs = [to_portable(m.spec) for m in registry.models.values() if m.plugin == BENCH_PLUGIN]
    if None in specs:
        raise UsageError(
            "harness.bench() can rebuild a model in a case's process only from a factory "
            "defined in an importable module (not a module object, a lambda or __main__); "
            "pass one, or isolation='none'"
        )
    return ProcessExecutor(plugins, disabled, timeout, memory_limit, specs)  # type: ignore[arg-type]
