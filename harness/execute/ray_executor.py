"""Runs a plan's cases on a Ray cluster, one benchmark per machine at a time.

Every node offers one ``harness_slot`` (a custom resource). Each call the runner
makes (a measurement, a batch-size probe, a FLOP/s calibration) is a Ray task that
holds the slot, and the GPU as well for cuda cases, so two benchmarks never share a
machine's cores or GPU. Inside the task the call goes through the local
:class:`~harness.execute.isolation.ProcessExecutor`, so the case still runs in its own forked
process with its timeout and a hang or a crash costs one case, not the Ray worker.
A worker or node that dies under a task (or a task the cluster cancels) is retried
once on whichever slot of the kind frees first, then recorded as ``crashed``.

Ray is an optional extra: nothing here imports it until a cluster is asked for.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from harness.errors import HarnessError, UsageError
from harness.execute import worker
from harness.execute.isolation import ProcessExecutor
from harness.measure.timing import MeasureConfig
from harness.store.record import CaseRecord
from harness.sweep.plan import Case

SLOT = "harness_slot"
MISSING_RAY = "--executor ray needs Ray; install it with pip install 'harness[ray]'"
_SELECTOR = re.compile(r"(?P<key>[\w./-]+)(?:=(?P<value>[\w./-]+))?")


def require_ray() -> ModuleType:
    try:
        import ray
    except ImportError:
        raise HarnessError(MISSING_RAY) from None
    return ray


@dataclass(frozen=True)
class NodeKind:
    """Which nodes a run uses: ``KEY=VALUE`` matches a node label (``ray start --labels``),
    ``NAME`` a custom resource the node offers (``ray start --resources``)."""

    text: str

    @classmethod
    def parse(cls, text: str) -> NodeKind:
        if not _SELECTOR.fullmatch(text):
            raise ValueError(
                f"expected a node selector such as accelerator=H100 or cpu-only, got {text!r}"
            )
        return cls(text)

    @property
    def _parts(self) -> tuple[str, str | None]:
        key, _, value = self.text.partition("=")
        return key, value or None

    def matches(self, node: Mapping[str, Any]) -> bool:
        key, value = self._parts
        if value is None:
            return bool(node["Resources"].get(key))
        return node.get("Labels", {}).get(key) == value

    def task_options(self) -> dict[str, Any]:
        """What a task asks of Ray so that it lands on a node of this kind."""
        key, value = self._parts
        return {"resources": {key: 0.001}} if value is None else {"label_selector": {key: value}}

    def results_path(self, out: Path) -> Path:
        """This kind's results file beside ``out`` when one command runs several kinds."""
        slug = re.sub(r"[^\w.-]+", "_", self.text)
        return out.with_name(f"{out.stem}-{slug}{out.suffix}")


@contextmanager
def connect(address: str | None) -> Iterator[ModuleType]:
    """Connected to the cluster at ``address``, or to a local one started here, with one
    slot on its one node, and shut down on the way out (whatever happened inside)."""
    ray = require_ray()
    if address:
        _check_reachable(address)
        options: dict[str, Any] = {"address": address}
    else:
        options = {"num_cpus": os.cpu_count(), "resources": {SLOT: 1}, "include_dashboard": False}
    try:
        ray.init(**options, logging_level=logging.WARNING, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
        raise UsageError(
            f"cannot connect to {where}: {' '.join(str(exc).split())[:200]}; "
            "check --address, or leave it out to start a local cluster"
        ) from None
    try:
        yield ray
    finally:
        ray.shutdown()


def _check_reachable(address: str) -> None:
    """Refuse a HOST:PORT where nothing listens, which Ray would retry for minutes."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return  # "auto" and Ray Client addresses are Ray's to resolve
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise UsageError(
            f"cannot reach the Ray cluster at {address}: "
            f"{exc.strerror or exc}; check --address (the head node's "
            "HOST:PORT, 6379 by default), or leave it out to start a local "
            "cluster"
        ) from None


def slot_nodes(ray: ModuleType, kind: NodeKind | None) -> list[dict[str, Any]]:
    """The live nodes of ``kind`` that offer a benchmark slot; a usage error if none do."""
    alive = [n for n in ray.nodes() if n["Alive"]]
    slotted = [n for n in alive if n["Resources"].get(SLOT)]
    if not slotted:
        raise UsageError(
            f"no node of the Ray cluster offers a {SLOT}; start each node with "
            f"ray start --resources='{{\"{SLOT}\": 1}}'"
        )
    if kind is None:
        return slotted
    matching = [n for n in slotted if kind.matches(n)]
    if not matching:
        labels = sorted(
            {
                f"{k}={v}"
                for n in slotted
                for k, v in n.get("Labels", {}).items()
                if not k.startswith("ray.io/")
            }
        )
        resources = sorted(
            {r for n in slotted for r in n["Resources"] if not r.startswith("node:") and r != SLOT}
        )
        raise UsageError(
            f"no node with a {SLOT} matches --nodes {kind.text} "
            f"(labels: {', '.join(labels) or 'none'}; "
            f"resources: {', '.join(resources)})"
        )
    return matching


class _Cancelled(Exception):
    """The driver cancelled the run (Ctrl-C): the call ends without a record."""


class _WorkerDied(Exception):
    """The task's worker or node died twice; the message gives both reasons."""


class RayExecutor:
    """Runs each call as a Ray task on a slot of ``kind``; ``slots`` calls at once."""

    isolation = "process"

    def __init__(
        self,
        ray: ModuleType,
        kind: NodeKind | None,
        plugins: Sequence[str],
        disabled: Sequence[str],
        timeout: float,
        memory_limit: int | None = None,
    ):
        self._ray = ray
        self.kind = kind
        self.nodes = slot_nodes(ray, kind)
        self.slots = len(self.nodes)
        self._settings = (list(plugins), list(disabled), timeout, memory_limit)
        # Ray sets OMP_NUM_THREADS=1 in its workers; cases follow this shell's choice.
        self._threads_env = os.environ.get("OMP_NUM_THREADS")
        self._remote = ray.remote(_on_node)
        self._in_flight: set[Any] = set()
        self._lock = threading.Lock()
        self._cancelled = False

    def describe(self) -> dict[str, Any]:
        """The run header's account of where its cases ran."""
        return {
            "name": "ray",
            "nodes": self.kind.text if self.kind else None,
            "slots": self.slots,
            "hosts": sorted(n["NodeManagerHostname"] for n in self.nodes),
        }

    def _options(self, device: str) -> dict[str, Any]:
        options = {
            "num_cpus": 0,
            "num_gpus": 1 if device == "cuda" else 0,
            "max_retries": 0,
            **(self.kind.task_options() if self.kind else {}),
        }
        options["resources"] = {SLOT: 1, **options.get("resources", {})}
        return options

    def _call(self, device: str, method: str, *args: Any) -> Any:
        """The call's answer from a slot; a worker or node that dies is given one retry."""
        reasons = []
        for _ in range(2):
            with self._lock:
                if self._cancelled:
                    raise _Cancelled
                ref = self._remote.options(**self._options(device)).remote(
                    self._settings, self._threads_env, method, *args
                )
                self._in_flight.add(ref)
            try:
                return self._ray.get(ref)
            except self._ray.exceptions.RayError as exc:
                if self._cancelled:
                    raise _Cancelled from None
                if isinstance(exc, self._ray.exceptions.RayTaskError):  # the harness raised
                    raise RuntimeError(f"the Ray task failed: {_summary(exc)}") from None
                reasons.append(f"{type(exc).__name__}: {_summary(exc)}")
            finally:
                with self._lock:
                    self._in_flight.discard(ref)
        raise _WorkerDied(
            f"the Ray worker died, and again on the retry: {reasons[0]}; retry: {reasons[1]}"
        )

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            for ref in self._in_flight:
                self._ray.cancel(ref)

    def measure(self, case: Case, config: MeasureConfig, peaks: Mapping[str, float]) -> CaseRecord:
        try:
            record, node, environment = self._call(
                case.device, "measure", case, config, dict(peaks)
            )
        except _WorkerDied as exc:
            return worker.unmeasured(case, "crashed", str(exc))
        except RuntimeError as exc:
            return worker.unmeasured(case, "error", str(exc))
        return CaseRecord.from_json({**record, "node": node, "environment": environment})

    def probe(self, case: Case, batch_size: int) -> str:
        try:
            return self._call(case.device, "probe", case, batch_size)
        except _WorkerDied as exc:
            return f"crashed: {exc}"
        except RuntimeError as exc:
            return f"error: {exc}"

    def calibrate(self, device: str, dtype: str, threads: int | None) -> float | None:
        """Calibrated on a node of the kind: the run's nodes are alike by choice."""
        try:
            return self._call(device, "calibrate", device, dtype, threads)
        except (_WorkerDied, RuntimeError):
            return None


def _summary(exc: BaseException) -> str:
    """The last line of a Ray error: the exception itself, after any traceback."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def _on_node(settings: tuple, threads_env: str | None, method: str, *args: Any) -> Any:
    """One call on a node's slot, through a local ProcessExecutor; a measurement comes
    back with the node that made it and the environment its case's process saw."""
    import ray

    if threads_env is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = threads_env
    executor = ProcessExecutor(*settings)
    answer = getattr(executor, method)(*args)
    if method != "measure":
        return answer
    answer = answer.to_json()  # plain data across the cluster, whatever its versions
    context = ray.get_runtime_context()
    node = {
        "id": context.get_node_id(),
        "address": ray.util.get_node_ip_address(),
        "labels": {
            k: v for k, v in context.get_node_labels().items() if not k.startswith("ray.io/")
        },
    }
    return answer, node, executor.environment()
