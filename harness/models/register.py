"""One-line registration: ``@harness.register(...)`` beside a model's constructor, in the
manner of timm's ``@register_model``. The registry collects every model a plugin module
registered this way, besides what its ``harness_models`` hook returns (which keeps
working as before), so a plugin module needs no hook for its models.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any, TypeVar

from harness.models.spec import ModelSpec, SpecError

Constructor = TypeVar("Constructor", bound=Callable[..., Any])

_REGISTERED = "__harness_models__"
"""Where a module keeps the models registered in it: on the module object, so another
copy of the module (a git revision's tree imported by ``harness ab``) keeps its own."""


def register(name: str | None = None, /, **spec: Any) -> Callable[[Constructor], Constructor]:
    """Register the decorated constructor (a function or an ``nn.Module`` class) as a
    model. The keyword arguments are :class:`~harness.ModelSpec`'s (``inputs`` and
    ``outputs`` at least; ``dims``, ``kwargs``, ``family``, ``suites``...); the name is
    the constructor's in lower case unless given. The constructor is returned unchanged.

    >>> @harness.register(inputs=[Input("x", "(B, NIN)")], outputs=["(B, 1)"], dims={"NIN": 100})
    ... def perceptron(NIN: int) -> nn.Module: ...
    """

    def decorate(constructor: Constructor) -> Constructor:
        missing = [key for key in ("inputs", "outputs") if key not in spec]
        label = getattr(constructor, "__qualname__", repr(constructor))
        if missing:
            raise SpecError(f"@harness.register on {label}: give {' and '.join(missing)}")
        model = ModelSpec(name or label.lower(), constructor, **spec)
        module = sys.modules.get(constructor.__module__)
        if module is None:
            raise SpecError(f"@harness.register on {label}: it is not defined in a module")
        if _REGISTERED not in vars(module):
            setattr(module, _REGISTERED, {})
        getattr(module, _REGISTERED)[model.name] = model
        return constructor

    return decorate


def registered_in(module: ModuleType) -> list[ModelSpec]:
    """The models registered by decorators in ``module``, in the order they were."""
    return list(vars(module).get(_REGISTERED, {}).values())
