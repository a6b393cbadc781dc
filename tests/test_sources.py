"""Where a side's model code comes from: layouts of plugin packages, git revisions,
folders, and the import hook that puts a tree ahead of what is installed."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import harness_plugins
from harness.abtest import sources
from harness.errors import UsageError
from harness.models.registry import load_registry

ROOT = Path(harness_plugins.__file__).resolve().parents[1]


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def _layout(root: Path) -> sources.Layout:
    return sources.read_layout(sources.FolderView(root))


def test_this_repository_maps_its_plugin_packages_by_setuptools_package_dir():
    layout = _layout(ROOT)
    assert layout.modules["harness_plugins"] == "plugins"
    assert layout.modules["harness_suites"] == "suites"
    assert layout.distribution == "harness"
    assert ("sequence", "harness_plugins.sequence") in layout.entry_points


@pytest.mark.parametrize(
    "files, expected",
    [
        (
            {
                "pyproject.toml": '[project]\nname = "a"\n',
                "src/mypkg/__init__.py": "",
                "tests/__init__.py": "",
            },
            {"mypkg": "src/mypkg"},
        ),
        ({"setup.py": "", "mypkg/__init__.py": "", "docs/__init__.py": ""}, {"mypkg": "mypkg"}),
        (
            {
                "pyproject.toml": '[tool.hatch.build.targets.wheel]\npackages = ["lib/hpkg"]\n',
                "lib/hpkg/__init__.py": "",
            },
            {"hpkg": "lib/hpkg"},
        ),
        (
            {
                "pyproject.toml": '[tool.poetry]\nname = "p"\n'
                'packages = [{include = "ppkg", from = "code"}]\n',
                "code/ppkg/__init__.py": "",
            },
            {"ppkg": "code/ppkg"},
        ),
        (
            {
                "setup.cfg": "[metadata]\nname = c\n[options]\npackage_dir =\n    =lib\n"
                "packages = cpkg\n[options.entry_points]\nharness.plugins =\n    c = cplugin\n",
                "lib/cpkg/__init__.py": "",
                "cplugin.py": "",
            },
            {"cplugin": "cplugin.py"},
        ),
    ],
)
def test_layouts_of_plugin_packages(tmp_path, files, expected):
    layout = _layout(_tree(tmp_path, files))
    assert {k: v for k, v in layout.modules.items() if k in expected} == expected
    assert "tests" not in layout.modules and "docs" not in layout.modules


def test_entry_points_and_distribution_come_from_the_build_configuration(tmp_path):
    layout = _layout(
        _tree(
            tmp_path,
            {
                "pyproject.toml": '[project]\nname = "My_Pkg"\n'
                '[project.entry-points."harness.plugins"]\nmine = "mypkg.plugin"\n',
                "src/mypkg/__init__.py": "",
                "src/mypkg/plugin.py": "",
            },
        )
    )
    assert layout.entry_points == (("mine", "mypkg.plugin"),)
    assert layout.distribution == "My_Pkg"


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t", *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def _repo(tmp_path: Path) -> Path:
    repo = _tree(
        tmp_path / "repo",
        {
            "pyproject.toml": '[project]\nname = "mypkg"\n',
            "src/mypkg/__init__.py": "VALUE = 1\n",
            "data/big.bin": "x" * 1000,
        },
    )
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "one")
    (repo / "src/mypkg/__init__.py").write_text("VALUE = 2\n")
    _git(repo, "commit", "-qam", "two")
    (repo / "src/mypkg/__init__.py").write_text("VALUE = 3\n")  # uncommitted
    return repo


def test_a_revision_is_extracted_without_touching_the_checkout(tmp_path):
    repo = _repo(tmp_path)
    before = _git(repo, "status", "--porcelain")
    source = sources.revision(repo, "HEAD~1", tmp_path / "side")
    assert Path(source.modules["mypkg"], "__init__.py").read_text() == "VALUE = 1\n"
    assert not (tmp_path / "side" / "data").exists()  # only the code is extracted
    assert source.git == {"commit": _git(repo, "rev-parse", "HEAD~1").strip(), "dirty": False}
    assert source.description.startswith("HEAD~1 (")
    assert _git(repo, "status", "--porcelain") == before
    assert (repo / "src/mypkg/__init__.py").read_text() == "VALUE = 3\n"


def test_the_working_tree_includes_uncommitted_changes(tmp_path):
    source = sources.working_tree(_repo(tmp_path))
    assert Path(source.modules["mypkg"], "__init__.py").read_text() == "VALUE = 3\n"
    assert source.git["dirty"] is True


def test_an_unknown_revision_and_a_tree_without_code_are_usage_errors(tmp_path):
    repo = _repo(tmp_path)
    with pytest.raises(UsageError, match="no revision 'nope'"):
        sources.revision(repo, "nope", tmp_path / "x")
    with pytest.raises(UsageError, match="holds no Python package of model code"):
        sources.folder(_tree(tmp_path / "empty", {"README": "hi"}))


def test_a_copy_of_the_plugins_folder_stands_for_this_repositorys_plugin_package(tmp_path):
    reference = _layout(ROOT)
    copy = _tree(tmp_path / "copy", {"plugins/__init__.py": "", "plugins/x.py": ""})
    assert sources.folder(copy, reference).modules == {"harness_plugins": str(copy / "plugins")}
    package = sources.folder(copy / "plugins", reference)
    assert package.modules == {"harness_plugins": str(copy / "plugins")}
    assert package.entry_points == reference.entry_points


def test_activation_puts_the_tree_first_and_restores_what_was_imported(tmp_path):
    import harness_plugins.calibration as installed

    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(ROOT / "plugins"), str(copy)], check=True)
    (copy / "calibration.py").write_text(
        (copy / "calibration.py")
        .read_text()
        .replace('"calibration_matmul",', '"calibration_from_tree",')
    )
    source = sources.folder(copy, _layout(ROOT))
    with sources.activated(source):
        registry = load_registry(
            [], [], from_env=False, local=source.entry_points, distribution=source.distribution
        )
        assert "calibration_from_tree" in registry.models
        assert "calibration_matmul" not in registry.models  # the installed copy is replaced
        assert source.defines(registry.model("calibration_from_tree").file)
    assert sys.modules["harness_plugins.calibration"] is installed
    assert "calibration_matmul" in load_registry([], [], from_env=False).models


def test_the_engine_is_never_taken_from_a_tree():
    assert "harness" not in sources.working_tree(ROOT).modules
