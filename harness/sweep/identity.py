"""What a case is, across runs and machines, and what it is called: one key, one label.

Every table, chart, export and pytest-benchmark entry names a case by :attr:`CaseKey.label`,
so a case found slower by ``compare`` is the one ``history``, the report and the nightly
summary show under the same name. The key holds every dimension's value (defaults
included): a default that changes between commits makes a different case, never a
silently different one under the same name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from harness.axes import AUTO

_DEFAULTS = (("device", "cpu"), ("dtype", "float32"), ("mode", "infer"), ("precision", "cast"))


class CaseKey(NamedTuple):
    """A case's identity: all it was asked to be but its suite, threads and repeat."""

    model: str
    batch_size: int | None  # None: the batch size is searched for (``auto``)
    dims: tuple[tuple[str, int], ...]  # every dimension, sorted by name
    device: str = "cpu"
    dtype: str = "float32"
    precision: str = "cast"
    compile_mode: str = "none"
    backend: str | None = None  # None when eager, whatever --backend said
    mode: str = "infer"

    @classmethod
    def make(
        cls,
        model: str,
        batch_size: int | None,
        dims: Mapping[str, int],
        *,
        device: str = "cpu",
        dtype: str = "float32",
        precision: str = "cast",
        compile_mode: str = "none",
        backend: str | None = "inductor",
        mode: str = "infer",
    ) -> CaseKey:
        return cls(
            model,
            batch_size,
            tuple(sorted(dims.items())),
            device,
            dtype,
            precision,
            compile_mode,
            backend or "inductor" if compile_mode != "none" else None,
            mode,
        )

    @classmethod
    def of_record(cls, record: Mapping[str, Any], measured: bool = False) -> CaseKey:
        """The key of a record's fields (``CaseRecord.key``) or of a row of the results
        frame: as planned (a searched batch size is ``None``), or with ``measured`` at the
        batch size it was measured at, as runs are compared."""
        if measured:  # a DataFrame may hold batch sizes as floats
            batch = int(record["batch_size"])
        else:
            batch = None if record.get("batch_search") else record["batch_size"]
        return cls.make(
            record["model"],
            batch,
            record["dims"],
            device=record["device"],
            dtype=record["dtype"],
            precision=record["precision"],
            compile_mode=record["compile_mode"],
            backend=record["backend"],
            mode=record["mode"],
        )

    @property
    def options(self) -> list[str]:
        """What is not the default: ``cuda``, ``bfloat16``, ``amp``, ``compile=default``."""
        parts = [
            getattr(self, name) for name, default in _DEFAULTS if getattr(self, name) != default
        ]
        if self.compile_mode != "none":
            parts.append(
                f"compile={self.compile_mode}"
                + (f"/{self.backend}" if self.backend != "inductor" else "")
            )
        return parts

    @property
    def label(self) -> str:
        """``mlp[B=8,NIN=100,bfloat16,amp,compile=default]``: unique per key."""
        batch = AUTO if self.batch_size is None else self.batch_size
        parts = [f"B={batch}", *(f"{k}={v}" for k, v in self.dims), *self.options]
        return f"{self.model}[{','.join(parts)}]"

    def repeat_label(self, repeat: int) -> str:
        """The label of one of a run's repeats of the case: ``#2`` after it from the second."""
        return self.label + (f"#{repeat + 1}" if repeat else "")

    def describe(self) -> dict[str, Any]:
        """The case as JSON outputs give it: its label, then each field by name."""
        return {"case": self.label, **self._asdict(), "dims": dict(self.dims)}

    def benchmark_info(self) -> dict[str, Any]:
        """pytest-benchmark's ``extra_info`` for the case, as the pytest plugin and
        ``harness export`` both write it."""
        return {
            "harness_case": self.label,
            "model": self.model,
            "batch_size": self.batch_size,
            "dtype": self.dtype,
            "device": self.device,
            "compile_mode": self.compile_mode,
            "mode": self.mode,
            "dims": dict(self.dims),
        }

    def eager(self) -> CaseKey:
        """The uncompiled twin of this case, whose speed a compiled one is measured against."""
        return self._replace(compile_mode="none", backend=None)

    def any_batch(self) -> CaseKey:
        """This case at whatever batch size: the sizes share out-of-memory skips and a
        batch search."""
        return self._replace(batch_size=None)

    def sequence(self) -> CaseKey:
        """The cases that must run one after another, in one process of a sweep at a time:
        out-of-memory skipping, speedups over eager and batch searches link them."""
        return self.any_batch().eager()
