"""The Hugging Face plugin: its specs hold for the models transformers builds, sizes sweep
through dimensions, hub models come from their configuration, and without transformers
the suite says what to install."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from harness.errors import PluginError, UsageError
from harness.execute.check import check_model
from harness.models.registry import load_registry
from harness.sweep.plan import select_models
from harness_plugins import huggingface

transformers = pytest.importorskip("transformers", reason="the hf extra is not installed")

SMALL = {  # every built-in model at a few milliseconds a call
    "hf_bert": {"S": 16, "V": 500, "HIDDEN": 32, "LAYERS": 1},
    "hf_gpt2": {"S": 16, "V": 500, "HIDDEN": 32, "LAYERS": 1},
    "hf_llama": {"S": 16, "V": 500, "HIDDEN": 32, "LAYERS": 1},
    "hf_t5": {"S": 16, "T": 4, "V": 500, "HIDDEN": 32, "LAYERS": 1},
    "hf_vit": {"H": 48, "W": 32, "HIDDEN": 24, "LAYERS": 1},
    "hf_convnext": {"H": 64, "W": 96, "C": 8, "DEPTH": 1},
}


@pytest.fixture(scope="module")
def registry():
    return load_registry()


def test_the_transformers_suite_has_an_encoder_decoders_an_encoder_decoder_and_vision(registry):
    models = registry.suite_models(registry.suite("transformers"))
    assert models == list(SMALL)
    tags = {tag for name in models for tag in registry.model(name).spec.tags}
    assert {"encoder", "decoder", "encoder-decoder", "vision", "text"} <= tags


@pytest.mark.parametrize("name", list(SMALL))
def test_each_model_returns_its_declared_shapes_at_other_sizes_and_trains(registry, name):
    result = check_model(registry.model(name).spec, "huggingface", SMALL[name])
    assert result.ok, result.problems
    assert result.training == "ok" and result.observed == tuple(result.expected)


def test_outputs_follow_the_dimensions_symbolically(registry):
    vit = registry.model("hf_vit").spec
    assert vit.expected_shapes(2, {"H": 48, "W": 32, "P": 16}) == [(2, 3 * 2 + 1, 192), (2, 192)]
    t5 = registry.model("hf_t5").spec
    assert t5.expected_shapes(3, {"S": 10, "T": 4}) == [(3, 4, 32128), (3, 10, 256)]
    with pytest.raises(Exception, match="S <= 512"):
        registry.model("hf_bert").spec.resolve_dims({"S": 513})


def test_token_inputs_stay_below_the_vocabulary(registry):
    spec = registry.model("hf_gpt2").spec
    (tokens,) = spec.example_inputs(4, {"V": 50, "S": 64})
    assert tokens.shape == (4, 64) and int(tokens.max()) < 50 and int(tokens.min()) >= 0


@pytest.mark.parametrize(
    "config, kind, shape",
    [
        ("BertConfig", "encoder", (2, 128, 32)),
        ("GPT2Config", "decoder", (2, 128, 500)),
        ("T5Config", "seq2seq", (2, 32, 500)),
        ("ViTConfig", "vision", (2, 2)),
    ],
)
def test_a_hub_model_is_built_from_its_configuration_with_the_head_of_its_kind(
    tmp_path, config, kind, shape
):
    sizes = {
        "BertConfig": {"vocab_size": 500, "hidden_size": 32, "num_hidden_layers": 1,
                       "num_attention_heads": 2, "intermediate_size": 64},
        "GPT2Config": {"vocab_size": 500, "n_embd": 32, "n_layer": 1, "n_head": 2,
                       "architectures": ["GPT2LMHeadModel"]},
        "T5Config": {"vocab_size": 500, "d_model": 32, "d_kv": 16, "d_ff": 64, "num_layers": 1,
                     "num_heads": 2, "decoder_start_token_id": 0},
        "ViTConfig": {"image_size": 32, "patch_size": 16, "hidden_size": 32,
                      "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64},
    }[config]  # fmt: skip
    getattr(transformers, config)(**sizes).save_pretrained(tmp_path)
    (spec,) = huggingface.hub_models(f"tiny={tmp_path}")
    assert spec.name == "tiny" and spec.tags == ("hub", kind)
    assert spec.expected_shapes(2)[0] == shape
    result = check_model(spec, "huggingface", {})
    assert result.ok, result.problems


def test_hub_ids_are_named_after_their_last_part_and_a_bad_one_is_refused(tmp_path):
    folder = tmp_path / "Bert-Tiny.v2"
    transformers.BertConfig(hidden_size=32, num_attention_heads=2).save_pretrained(folder)
    assert [s.name for s in huggingface.hub_models(f" {folder} ,")] == ["hf_bert_tiny_v2"]
    assert huggingface.hub_models("") == []
    with pytest.raises(PluginError, match="cannot resolve '/nonexistent/x'"):
        huggingface.hub_models("/nonexistent/x")


def test_an_unreachable_hub_model_is_one_line_naming_the_variable():
    env = {**os.environ, "HARNESS_HF_MODELS": "nobody-here/no-such-model", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "harness", "list"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 1  # a plugin error, as a broken plugin is
    (line,) = done.stderr.strip().splitlines()
    assert "HARNESS_HF_MODELS: cannot resolve 'nobody-here/no-such-model'" in line
    assert "Traceback" not in done.stderr


def test_without_transformers_there_are_no_models_and_the_suite_says_what_to_install(
    monkeypatch, registry
):
    monkeypatch.setattr(huggingface, "AVAILABLE", False)
    assert huggingface.harness_models() == []
    (suite,) = huggingface.harness_suites()
    with pytest.raises(UsageError, match=r"install the hf extra: pip install 'harness\[hf\]'"):
        select_models(registry, suite, [])
    with pytest.raises(PluginError, match="transformers is missing"):
        huggingface.hub_models("google-bert/bert-base-uncased")


@pytest.mark.slow
def test_the_transformers_suite_checks_and_runs_end_to_end_compiled_too(tmp_path):
    from harness.cli import main
    from harness.store.results import load

    assert main(["check", "--suite", "transformers"]) == 0
    out = tmp_path / "tf.jsonl"
    dims = [f"{k}={v}" for k, v in {"S": 16, "V": 500, "HIDDEN": 32, "LAYERS": 1}.items()]
    argv = ["run", "-m", "hf_bert,hf_gpt2", "-b", "2", "--compile", "none,default"]
    quick = ["--max-time", "0.2", "--warmup-time", "0.05", "--out", str(out)]
    assert main([*argv, *[a for d in dims for a in ("--dim", d)], *quick]) == 0
    cases = load(out)
    assert len(cases) == 4 and set(cases["status"]) == {"ok"}, cases["error"].tolist()
    assert sorted(cases["compile_mode"]) == ["default", "default", "none", "none"]
    compiled = cases[cases["compile_mode"] == "default"]
    assert compiled["compile.graphs"].ge(1).all()
