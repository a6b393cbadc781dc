"""Hooks a harness plugin implements. These docstrings are the plugin author's reference.

A plugin is any module with functions marked ``@harness.hookimpl`` and named after
the hooks below. Make it known through the ``harness.plugins`` entry-point group
of your package (``pip install`` it and ``harness list`` shows its models), or load
a local module with ``harness --plugin my.module`` or ``HARNESS_PLUGINS=my.module``.

Every hook is a collecting hook: each plugin adds to the result, and the harness
checks the combination (two plugins registering one model name is an error naming
both).
"""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from harness.models.spec import ModelSpec
    from harness.models.suites import Suite

PROJECT = "harness"
hookspec = pluggy.HookspecMarker(PROJECT)


@hookspec
def harness_models() -> Sequence[ModelSpec]:
    """Return the models this plugin provides, one :class:`harness.ModelSpec` each.

    Called once per process, so build nothing heavy here: a spec holds the
    constructor, not a model. Names are the stable, user-facing identifiers
    (``harness run --model NAME``, result files, history across commits): choose
    them once, lowercase with underscores, and never reuse a name for a different
    architecture.

    Shapes are symbolic strings over the batch size ``B`` and the dimensions the spec
    declares, e.g. ``"(B, 3, H, W)"`` or ``"(B, C // 2 ** I, (H - 2) // 2 + 1)"``.
    Only names, integers, ``+ - * // % **`` and parentheses are allowed; anything
    else is rejected when the plugin loads, with an error naming plugin, model and
    expression.
    """


@hookspec
def harness_suites() -> Sequence[Suite | str | PathLike[str]]:
    """Return suites this plugin contributes: paths to suite TOML files, or :class:`Suite`.

    A suite names models (``models = ["dcgan_generator", ...]`` or ``["*"]`` for
    all) and may override their dimensions, batch sizes and the run's sweep
    defaults; docs/plugins-and-suites.md ("Suite format") documents every key. Suite names
    must be unique across plugins. To add one of your models to an existing suite,
    list the suite in the model's ``ModelSpec(suites=...)`` instead.
    """
