"""Every registered model honours its declared shapes: the contract the harness trusts."""

from __future__ import annotations

import pytest

from harness.execute.check import check_model
from harness.models.registry import load_registry
from harness.models.spec import flatten_outputs

REGISTRY = load_registry()
NAMES = sorted(REGISTRY.models)
SMOKE = REGISTRY.suites["smoke"]


@pytest.mark.parametrize("name", NAMES)
def test_default_configuration_matches_declared_shapes_at_two_batch_sizes(name):
    registered = REGISTRY.models[name]
    result = check_model(registered.spec, registered.plugin)
    assert result.ok, result.problems
    assert result.observed == result.expected
    assert result.training == ("ok" if registered.spec.trainable else "skipped")


@pytest.mark.parametrize("name", NAMES)
def test_smoke_configuration_matches_declared_shapes_at_batch_three(name):
    spec = REGISTRY.models[name].spec
    override = SMOKE.overrides.get(name)
    dims = {k: v[0] for k, v in override.dims.items()} if override else {}
    model = spec.build(dims).eval()
    outputs = flatten_outputs(model(*spec.example_inputs(3, dims)))
    assert [tuple(o.shape) for o in outputs] == spec.expected_shapes(3, dims)


def test_there_is_a_model_for_every_seed_architecture():
    expected = {
        "dcgan_generator",
        "dcgan_discriminator",
        "dcgan_chain",
        "pix2pix_unet",
        "unet_recursive",
        "unet_down",
        "unet2",
        "segan_generator",
        "alexnet",
        "inception_module",
        "googlenet",
        "resnet_layer",
        "resnet_small",
        "perceptron",
        "softmax_classifier",
        "mlp",
        "mlp_conv1x1",
        "embedding_classifier",
        "rnn",
        "lstm",
        "conv1d",
        "conv1d_padded",
        "conv1d_causal",
        "conv_transpose1d",
        "qrnn",
        "autoencoder",
        "vae",
        "einops_mlp",
        "conv_encoder",
        "conv_decoder",
        "conv_autoencoder",
    }
    assert expected <= set(NAMES)
    for name in expected:
        assert REGISTRY.models[name].spec.source.startswith("seed 00"), name
