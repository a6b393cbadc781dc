"""Suite files: the format, and the errors a hand-edited file can produce."""

from __future__ import annotations

import pytest

from harness.errors import SuiteError
from harness.models.suites import load_suite_file


def _suite(tmp_path, text: str, name: str = "mine"):
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def test_a_full_suite_file_parses(tmp_path):
    suite = load_suite_file(
        _suite(
            tmp_path,
            """
        description = "mine"
        models = ["a", "b"]
        [sweep]
        batch_sizes = [1, 8]
        max_time = 0.5
        [model.a]
        dims = { H = [64, 128], W = 64 }
        batch_sizes = 4
    """.replace("\n        ", "\n"),
        )
    )
    assert suite.name == "mine" and suite.models == ("a", "b")
    assert suite.sweep == {"batch_sizes": (1, 8), "max_time": 0.5}
    assert suite.overrides["a"].dims == {"H": (64, 128), "W": (64,)}
    assert suite.overrides["a"].batch_sizes == (4,)


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ('models = "a"', "'models' must be a non-empty list"),
        ("models = []", "'models' must be a non-empty list"),
        ('models = ["a"]\nbatch_size = 3', r"unknown key\(s\) batch_size"),
        ('models = ["a"]\n[sweep]\nmax_tme = 1', r"\[sweep\]: unknown key\(s\) max_tme"),
        ('models = ["a"]\n[sweep]\nmax_time = -1', "max_time must be a number"),
        ('models = ["a"]\n[sweep]\nbatch_sizes = [0]', "batch_sizes must be a positive integer"),
        (
            'models = ["a"]\n[model.b]\ndims = { H = 1 }',
            r"\[model.b\] configures a model the suite "
            "does not list",
        ),
        ('models = ["a"]\n[model.a]\ndims = { H = 1.5 }', r"dims.H must be a positive integer"),
        ('models = ["a"]\n[model.a]\ndim = { H = 1 }', r"unknown key\(s\) dim"),
        ("models = [", "is not valid TOML"),
    ],
)
def test_bad_suite_files_name_the_file_and_the_problem(tmp_path, text, complaint):
    path = _suite(tmp_path, text)
    with pytest.raises(SuiteError, match=complaint) as info:
        load_suite_file(path)
    assert str(path) in str(info.value)


def test_suite_override_breaking_a_constraint_is_found_at_load(registry, tmp_path):
    from harness.models.registry import _validate  # the registry-wide check on real specs

    suites = {
        "odd": load_suite_file(
            _suite(
                tmp_path, 'models = ["unet2"]\n[model.unet2]\ndims = { H = [64, 63] }\n', name="odd"
            )
        )
    }
    with pytest.raises(SuiteError, match=r"odd.toml: model 'unet2': H=63 breaks its constraint"):
        _validate(registry.models, suites, disabled=())
