"""Plugin discovery and the registry of models and suites they provide.

Built-in and third-party plugins arrive the same way, through the
``harness.plugins`` entry-point group; local modules can be added by name. Each
plugin is imported and called on its own so that any failure names the plugin.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from os import PathLike
from types import ModuleType
from typing import Any

import pluggy

from harness.axes import expand_dims
from harness.errors import HarnessError, PluginError, SuiteError, UsageError, did_you_mean
from harness.models import hookspecs
from harness.models.register import registered_in
from harness.models.spec import ModelSpec
from harness.models.suites import ALL_MODELS, Suite, load_suite_file

ENTRY_POINT_GROUP = "harness.plugins"
PLUGINS_ENV = "HARNESS_PLUGINS"
DISABLE_ENV = "HARNESS_DISABLE_PLUGINS"


BENCH_PLUGIN = "harness.bench"
"""The plugin of a model ``harness.bench`` was handed: no plugin module provides it."""


@dataclass(frozen=True)
class RegisteredModel:
    spec: ModelSpec
    plugin: str
    file: str | None = None  # the plugin module's, to tell which tree of code defines it


class Registry:
    """Every model and suite, validated as a whole, with their plugins of origin."""

    def __init__(
        self, models: dict[str, RegisteredModel], suites: dict[str, Suite], plugins: Sequence[str]
    ):
        self.models = models
        self.suites = suites
        self.plugins = tuple(plugins)

    def model(self, name: str) -> RegisteredModel:
        try:
            return self.models[name]
        except KeyError:
            raise UsageError(
                f"unknown model {name!r}{did_you_mean(name, self.models)} (see 'harness list')"
            ) from None

    def suite(self, name: str) -> Suite:
        try:
            return self.suites[name]
        except KeyError:
            raise UsageError(
                f"unknown suite {name!r}{did_you_mean(name, self.suites)} "
                f"(available: {', '.join(sorted(self.suites))})"
            ) from None

    def suite_models(self, suite: Suite) -> list[str]:
        """The suite's models: those its file lists, then those whose specs join it."""
        listed = list(self.models) if suite.includes_all else list(suite.models)
        joined = sorted(
            n for n, m in self.models.items() if suite.name in m.spec.suites and n not in listed
        )
        return listed + joined

    def suites_of(self, model: str) -> list[str]:
        return sorted(s.name for s in self.suites.values() if model in self.suite_models(s))


def _plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def _register(pm: pluggy.PluginManager, module: ModuleType, name: str) -> None:
    try:
        pm.register(module, name=name)
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {name!r} is not a valid harness plugin: {exc}") from None


def _load_entry_point(ep: EntryPoint) -> ModuleType:
    dist = f" from {ep.dist.name} {ep.dist.version}" if ep.dist else ""
    try:
        return ep.load()
    except Exception as exc:  # any import-time failure of third-party code
        raise PluginError(
            f"plugin {ep.name!r} ({ep.value}{dist}) failed to import: "
            f"{type(exc).__name__}: {exc}; fix or uninstall it, or skip it "
            f"with --disable-plugin {ep.name}"
        ) from exc


def _import_module_plugin(path: str) -> ModuleType:
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`: local modules by dotted path
    try:
        return importlib.import_module(path)
    except Exception as exc:
        raise PluginError(
            f"plugin module {path!r} failed to import: "
            f"{type(exc).__name__}: {exc}; check the module path given to "
            f"--plugin or {PLUGINS_ENV}"
        ) from exc


def _env_list(var: str) -> list[str]:
    return [p.strip() for p in os.environ.get(var, "").split(",") if p.strip()]


def plugin_selection(
    extra: Sequence[str] = (), disabled: Sequence[str] = ()
) -> tuple[list[str], list[str]]:
    """Extra modules and disabled plugins, from the arguments plus the environment."""
    return ([*extra, *_env_list(PLUGINS_ENV)], [*disabled, *_env_list(DISABLE_ENV)])


def _normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503


def _entry_points(local: Sequence[tuple[str, str]], distribution: str | None) -> list[EntryPoint]:
    """The installed ``harness.plugins`` entry points, those of ``distribution`` replaced
    by ``local`` ones (a tree's, see :mod:`harness.abtest.sources`), sorted by name."""
    replaced = _normalised(distribution) if distribution else None
    installed = [
        ep
        for ep in entry_points(group=ENTRY_POINT_GROUP)
        if not (replaced and ep.dist and _normalised(ep.dist.name) == replaced)
    ]
    tree = [EntryPoint(name, value, ENTRY_POINT_GROUP) for name, value in local]
    return sorted(tree, key=lambda e: e.name) + sorted(installed, key=lambda e: e.name)


def load_plugins(
    extra: Sequence[str] = (),
    disabled: Sequence[str] = (),
    from_env: bool = True,
    local: Sequence[tuple[str, str]] = (),
    distribution: str | None = None,
) -> pluggy.PluginManager:
    """Import entry-point plugins, then ``extra`` modules (and $HARNESS_PLUGINS).

    ``local`` entry points (name, value) come first and replace the installed ones of
    ``distribution``: a tree of model code that a side of ``harness ab`` imports.
    """
    if from_env:
        extra, disabled = plugin_selection(extra, disabled)
    pm = _plugin_manager()
    disabled = set(disabled)
    for ep in _entry_points(local, distribution):
        if ep.name in disabled or pm.has_plugin(ep.name):
            continue  # a distribution seen twice on sys.path registers once
        _register(pm, _load_entry_point(ep), ep.name)
    for path in extra:
        if path not in disabled and not pm.has_plugin(path):
            _register(pm, _import_module_plugin(path), path)
    try:
        pm.check_pending()  # a hookimpl whose name matches no hook: a typo
    except pluggy.PluginValidationError as exc:
        raise PluginError(
            f"plugin {pm.get_name(exc.plugin)!r} is not a valid harness plugin: "
            f"{exc}; hooks are named in harness.models.hookspecs"
        ) from None
    return pm


def _call(impl: pluggy.HookImpl, hook: str) -> list:
    try:
        result = impl.function()
    except HarnessError as exc:
        raise PluginError(f"plugin {impl.plugin_name!r}: {exc}") from exc
    except Exception as exc:
        raise PluginError(
            f"plugin {impl.plugin_name!r} raised in {hook}: {type(exc).__name__}: {exc}"
        ) from exc
    if result is None:
        return []
    if isinstance(result, (str, bytes)) or not isinstance(result, Iterable):
        raise PluginError(
            f"plugin {impl.plugin_name!r}: {hook} returned {type(result).__name__}; expected a list"
        )
    return list(result)


def _collect_models(pm: pluggy.PluginManager) -> dict[str, RegisteredModel]:
    """Plugin by plugin in the order they were loaded: what its ``harness_models`` hook
    returns, then what its module registered with ``@harness.register``."""
    hooks = {impl.plugin_name: impl for impl in pm.hook.harness_models.get_hookimpls()}
    models: dict[str, RegisteredModel] = {}
    for name, plugin in pm.list_name_plugin():  # registration order
        impl = hooks.get(name)
        for spec in _call(impl, "harness_models") if impl is not None else ():
            if not isinstance(spec, ModelSpec):
                raise PluginError(
                    f"plugin {name!r}: harness_models returned a "
                    f"{type(spec).__name__} ({spec!r:.60}); "
                    "expected harness.ModelSpec"
                )
            _add(models, spec, name, plugin)
        for spec in registered_in(plugin) if isinstance(plugin, ModuleType) else ():
            _add(models, spec, name, plugin)
    return models


def _add(models: dict[str, RegisteredModel], spec: ModelSpec, plugin: str, obj: Any) -> None:
    if spec.name in models:
        other = models[spec.name].plugin
        raise PluginError(
            f"model {spec.name!r} is registered by both plugin {other!r} "
            f"and plugin {plugin!r}; model names are global, so "
            "rename one or disable a plugin with --disable-plugin"
        )
    models[spec.name] = RegisteredModel(spec, plugin, getattr(obj, "__file__", None))


def _collect_suites(pm: pluggy.PluginManager) -> dict[str, Suite]:
    suites: dict[str, Suite] = {}
    for impl in pm.hook.harness_suites.get_hookimpls():
        for item in _call(impl, "harness_suites"):
            if isinstance(item, (str, PathLike)):
                suite = load_suite_file(item)
            elif isinstance(item, Suite):
                suite = item
            else:
                raise PluginError(
                    f"plugin {impl.plugin_name!r}: harness_suites returned a "
                    f"{type(item).__name__}; expected a TOML path or harness Suite"
                )
            if suite.name in suites:
                raise PluginError(
                    f"suite {suite.name!r} is defined twice: in "
                    f"{suites[suite.name].source or 'a plugin'} and in "
                    f"{suite.source or impl.plugin_name}"
                )
            suites[suite.name] = suite
    return suites


def _without_missing(suite: Suite, models: Mapping[str, RegisteredModel]) -> Suite:
    """``suite`` without the models that are not loaded: with plugins disabled, a suite
    that names their models keeps the rest (a misspelt name is not told apart)."""
    return dataclasses.replace(
        suite,
        models=tuple(n for n in suite.models if n == ALL_MODELS or n in models),
        overrides={n: o for n, o in suite.overrides.items() if n in models},
    )


def _validate(
    models: dict[str, RegisteredModel], suites: dict[str, Suite], disabled: Sequence[str]
) -> None:
    if disabled:
        suites.update((name, _without_missing(suite, models)) for name, suite in suites.items())
    for suite in suites.values():
        where = suite.source or f"suite {suite.name!r}"
        for name in suite.models:
            if name != ALL_MODELS and name not in models:
                raise SuiteError(f"{where}: unknown model {name!r}{did_you_mean(name, models)}")
        for name, override in suite.overrides.items():
            spec = models[name].spec
            for dims in expand_dims(override.dims):
                try:
                    spec.resolve_dims(dims)
                except HarnessError as exc:
                    raise SuiteError(f"{where}: {exc}") from None
    for name, registered in models.items():
        for suite in registered.spec.suites:
            if suite not in suites:
                raise PluginError(
                    f"plugin {registered.plugin!r}: model {name!r} joins unknown "
                    f"suite {suite!r}{did_you_mean(suite, suites)}; fix the "
                    "model's suites, or skip the plugin with --disable-plugin "
                    f"{registered.plugin}"
                )


def load_registry(
    extra: Sequence[str] = (),
    disabled: Sequence[str] = (),
    from_env: bool = True,
    local: Sequence[tuple[str, str]] = (),
    distribution: str | None = None,
) -> Registry:
    pm = load_plugins(extra, disabled, from_env, local, distribution)
    models = _collect_models(pm)
    suites = _collect_suites(pm)
    _validate(models, suites, plugin_selection(extra, disabled)[1] if from_env else disabled)
    return Registry(models, suites, [name for name, _ in pm.list_name_plugin()])
