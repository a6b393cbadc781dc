"""Plugin discovery and registration, through real entry points and real modules."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.errors import PluginError, SuiteError
from harness.execute.check import check_model
from harness.models.registry import load_registry
from tests.conftest import TOY_PLUGIN, plugin_pyproject

BUILTIN_FAMILIES = {
    "gan",
    "unet",
    "vision",
    "dense",
    "sequence",
    "autoencoder",
    "einops",
    "calibration",
}
HF_FAMILY = {"transformers"} if importlib.util.find_spec("transformers") else set()
REQUIRED_SUITES = {
    "gan", "classifiers", "sequence", "autoencoders", "segmentation", "smoke", "all", "transformers"
}  # fmt: skip


def test_builtin_plugins_arrive_through_the_entry_point_group(registry):
    assert {
        "gan",
        "unet",
        "vision",
        "dense",
        "sequence",
        "autoencoders",
        "einops_models",
        "huggingface",
        "builtin_suites",
    } <= set(registry.plugins)
    assert {m.spec.family for m in registry.models.values()} == BUILTIN_FAMILIES | HF_FAMILY
    assert registry.models["dcgan_generator"].plugin == "gan"


def test_builtin_suites_exist_and_all_and_smoke_hold_every_model(registry):
    assert REQUIRED_SUITES <= set(registry.suites)
    for name in ("all", "smoke"):
        assert registry.suite_models(registry.suites[name]) == list(registry.models)
    assert registry.suite_models(registry.suites["gan"])[:2] == [
        "dcgan_generator",
        "dcgan_discriminator",
    ]


def _install(package: Path, target: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            str(package),
        ],
        check=True,
        capture_output=True,
    )


def _make_package(root: Path, dist: str, module: str, body: str, ep_name: str) -> Path:
    root.mkdir()
    (root / "pyproject.toml").write_text(
        plugin_pyproject(
            dist, {ep_name: module}, "1.2.3", f'\n[tool.setuptools]\npy-modules = ["{module}"]\n'
        )
    )
    (root / f"{module}.py").write_text(textwrap.dedent(body))
    return root


@pytest.fixture(scope="module")
def installed_plugins(tmp_path_factory) -> Path:
    """A good and a broken third-party plugin, pip-installed into one folder."""
    base = tmp_path_factory.mktemp("third_party")
    site = base / "site"
    _install(_make_package(base / "good", "harness-toy", "harness_toy", TOY_PLUGIN, "toy"), site)
    _install(
        _make_package(
            base / "bad",
            "harness-broken",
            "harness_broken",
            "import not_a_real_dependency_xyz\n",
            "broken",
        ),
        site,
    )
    return site


def test_installed_third_party_plugin_is_discovered_and_broken_one_is_named(
    installed_plugins, monkeypatch
):
    monkeypatch.syspath_prepend(str(installed_plugins))
    with pytest.raises(PluginError) as info:
        load_registry()
    message = str(info.value)
    assert "plugin 'broken'" in message and "harness-broken 1.2.3" in message
    assert "ModuleNotFoundError" in message and "--disable-plugin broken" in message

    registry = load_registry(disabled=["broken"])
    assert registry.models["toy_linear"].plugin == "toy"
    assert "dcgan_generator" in registry.models


def test_installed_plugin_models_show_in_the_cli(installed_plugins, tmp_path):
    env = {
        "PYTHONPATH": str(installed_plugins),
        "HARNESS_DISABLE_PLUGINS": "broken",
        "PATH": str(Path(sys.executable).parent),
    }
    out = subprocess.run(
        [sys.executable, "-m", "harness.cli", "list", "--model", "toy_linear", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert '"plugin": "toy"' in out.stdout and '"params": 27' in out.stdout


def test_local_module_plugin_via_option_and_environment(plugin_module, monkeypatch):
    name = plugin_module(TOY_PLUGIN)
    assert "toy_linear" in load_registry(extra=[name]).models
    monkeypatch.setenv("HARNESS_PLUGINS", name)
    assert load_registry().models["toy_boom"].plugin == name


def test_two_plugins_registering_one_name_are_both_named(plugin_module):
    name = plugin_module("""
        import harness
        from harness import Input, ModelSpec
        from torch import nn

        @harness.hookimpl
        def harness_models():
            return [ModelSpec(name="mlp", constructor=nn.Identity, inputs=[Input("x", "(B, 1)")],
                              outputs=["(B, 1)"])]
    """)
    with pytest.raises(
        PluginError,
        match=rf"model 'mlp' is registered by both plugin 'dense' "
        rf"and plugin '{name}'",
    ):
        load_registry(extra=[name])


def test_module_that_fails_to_import_is_named(plugin_module):
    name = plugin_module("raise RuntimeError('plugin exploded')\n")
    with pytest.raises(
        PluginError,
        match=rf"'{name}' failed to import: RuntimeError: "
        "plugin exploded",
    ):
        load_registry(extra=[name])


def test_missing_module_is_a_plugin_error():
    with pytest.raises(PluginError, match="'no_such_module_abc' failed to import"):
        load_registry(extra=["no_such_module_abc"])


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ("return [{'name': 'x'}]", r"returned a dict .*expected harness.ModelSpec"),
        ("return 42", "returned int; expected a list"),
        ("raise ValueError('oops')", "raised in harness_models: ValueError: oops"),
        (
            "return [ModelSpec(name='evil', constructor=nn.Identity, inputs=[Input('x', '(B, 2)')],"
            " outputs=['(B, __import__(\"os\").getpid())'])]",
            r"model 'evil': expression .*__import__.* uses a function call",
        ),
        (
            "return [ModelSpec(name='nojoin', constructor=nn.Identity,"
            " inputs=[Input('x', '(B, 2)')], outputs=['(B, 2)'], suites=['gann'])]",
            r"model 'nojoin' joins unknown suite 'gann'; did you mean 'gan'\?; fix the model's "
            r"suites, or skip the plugin with --disable-plugin harness_test_plugin_\d+$",
        ),
    ],
)
def test_malformed_specs_name_the_plugin_and_the_problem(plugin_module, body, complaint):
    name = plugin_module(f"""
        import harness
        from harness import Input, ModelSpec
        from torch import nn

        @harness.hookimpl
        def harness_models():
            {body}
    """)
    with pytest.raises(PluginError, match=rf"plugin '{name}'.*{complaint}"):
        load_registry(extra=[name])


def test_misspelt_hook_is_rejected_by_validation(plugin_module):
    name = plugin_module("""
        import harness

        @harness.hookimpl
        def harness_model():
            return []
    """)
    with pytest.raises(PluginError, match="not a valid harness plugin.*harness_model"):
        load_registry(extra=[name])


def test_plugin_suite_and_model_joining_an_existing_suite(plugin_module, tmp_path):
    suite = tmp_path / "toys.toml"
    suite.write_text('models = ["toy_linear", "mlp"]\n[model.toy_linear]\ndims = { N = [4, 8] }\n')
    name = plugin_module(
        TOY_PLUGIN.replace("batch_sizes=(1, 2)),", "batch_sizes=(1, 2), suites=['gan']),")
        + f"""
    @harness.hookimpl
    def harness_suites():
        return [{str(suite)!r}]
    """
    )
    registry = load_registry(extra=[name])
    assert registry.suite_models(registry.suites["toys"]) == ["toy_linear", "mlp"]
    assert registry.suite_models(registry.suites["gan"])[-1] == "toy_linear"
    assert "gan" in registry.suites_of("toy_linear")


def test_suite_naming_an_unknown_model_names_file_and_model(plugin_module, tmp_path):
    suite = tmp_path / "typo.toml"
    suite.write_text('models = ["dcgan_generatr"]\n')
    name = plugin_module(f"""
        import harness

        @harness.hookimpl
        def harness_suites():
            return [{str(suite)!r}]
    """)
    with pytest.raises(
        SuiteError,
        match=rf"{suite}: unknown model 'dcgan_generatr'; "
        "did you mean 'dcgan_generator'",
    ):
        load_registry(extra=[name])


def test_duplicate_suite_names_are_an_error(plugin_module, tmp_path):
    (tmp_path / "gan.toml").write_text('models = ["mlp"]\n')
    name = plugin_module(f"""
        import harness

        @harness.hookimpl
        def harness_suites():
            return [{str(tmp_path / "gan.toml")!r}]
    """)
    with pytest.raises(PluginError, match="suite 'gan' is defined twice"):
        load_registry(extra=[name])


def _guide_block(after: str) -> str:
    """The code block after ``after`` in the plugin guide, which a reader copies."""
    guide = (Path(__file__).parents[1] / "docs" / "plugins-and-suites.md").read_text()
    start = guide.index("```", guide.index(after))
    body_start = guide.index("\n", start) + 1
    return guide[body_start : guide.index("```", body_start)]


def test_the_plugin_guides_package_installs_and_passes_check(tmp_path, monkeypatch):
    package = tmp_path / "harness-tinynets"
    package.mkdir()
    (package / "pyproject.toml").write_text(_guide_block("`pyproject.toml`:"))
    (package / "harness_tinynets.py").write_text(_guide_block("`harness_tinynets.py`:"))
    _install(package, tmp_path / "site")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    registry = load_registry()
    registered = registry.models["tiny_conv"]
    assert registered.plugin == "tinynets"
    assert "tiny_conv" in registry.suite_models(registry.suites["classifiers"])
    result = check_model(registered.spec, registered.plugin, {"H": 32, "W": 32})
    assert result.ok and result.observed == ((2, 32, 8, 8),)
