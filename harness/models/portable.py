"""A spec that no plugin provides (``harness.bench``'s), as plain data a case's process
rebuilds: its constructor by import path, its shapes as text. A case process loads its
models from plugins by name, which cannot find these.
"""

from __future__ import annotations

import importlib
from typing import Any

from harness.errors import HarnessError
from harness.models.spec import Dim, Input, ModelSpec


def import_path(obj: Any) -> str | None:
    """``module:qualname`` of a function or class another process can import, else
    ``None`` (a lambda, a nested function, anything defined in ``__main__``: a script's
    or a notebook's main module is not re-run in a case's process)."""
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not module or not qualname or module == "__main__" or "<" in qualname:
        return None
    try:
        found = resolve(f"{module}:{qualname}")
    except (ImportError, AttributeError):
        return None
    return f"{module}:{qualname}" if found is obj else None


def resolve(path: str) -> Any:
    module, _, qualname = path.partition(":")
    found: Any = importlib.import_module(module)
    for part in qualname.split("."):
        found = getattr(found, part)
    return found


def to_portable(spec: ModelSpec) -> dict[str, Any] | None:
    """``spec`` as JSON-able data, or ``None`` when its constructor (or loss) cannot be
    imported by another process."""
    constructor = import_path(spec.constructor)
    if constructor is None or spec.loss is not None:
        return None
    return {
        "name": spec.name,
        "constructor": constructor,
        "inputs": [
            {
                "name": i.name,
                "shape": str(i.shape),
                "dtype": i.dtype,
                "high": None if i.high is None else str(i.high),
                "low": i.low,
            }
            for i in spec.inputs
        ],
        "outputs": [str(shape) for shape in spec.outputs],
        "dims": {name: [d.default, d.kwarg, d.doc] for name, d in spec.dims.items()},
        "constraints": [c.source for c in spec.constraints],
        "kwargs": dict(spec.kwargs),
        "batch_sizes": list(spec.batch_sizes),
        "trainable": spec.trainable,
        "description": spec.description,
        "source": spec.source,
    }


def from_portable(data: dict[str, Any]) -> ModelSpec:
    try:
        constructor = resolve(data["constructor"])
    except (ImportError, AttributeError) as exc:
        raise HarnessError(
            f"cannot import the model's constructor {data['constructor']}: {exc}"
        ) from None
    return ModelSpec(
        name=data["name"],
        constructor=constructor,
        inputs=[Input(**i) for i in data["inputs"]],
        outputs=data["outputs"],
        dims={name: Dim(*d) for name, d in data["dims"].items()},
        constraints=data["constraints"],
        kwargs=data["kwargs"],
        batch_sizes=data["batch_sizes"],
        trainable=data["trainable"],
        description=data["description"],
        source=data["source"],
    )
