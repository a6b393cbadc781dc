"""The built-in vision, dense, sequence and auto-encoder plugins against seed 002.

Parameter counts are worked out by hand from the layers in the seed's code, and the
output shapes the slides print are reproduced through each spec.
"""

from __future__ import annotations

import pytest
import torch

from harness.errors import ShapeError
from harness.models.register import registered_in
from harness.models.spec import ModelSpec, flatten_outputs
from harness_plugins import autoencoders, dense, sequence, vision

MODULES = (vision, dense, sequence, autoencoders)
SPECS: dict[str, ModelSpec] = {
    spec.name: spec for module in MODULES for spec in registered_in(module)
}


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def run(
    spec: ModelSpec,
    batch_size: int,
    dims: dict[str, int] | None = None,
    model: torch.nn.Module | None = None,
) -> list[tuple[int, ...]]:
    """Shapes of the outputs of ``spec``'s model on its example inputs, in eval mode."""
    model = (model or spec.build(dims)).eval()
    with torch.no_grad():
        outputs = model(*spec.example_inputs(batch_size, dims))
    return [tuple(t.shape) for t in flatten_outputs(outputs)]


def test_each_plugin_registers_exactly_its_models_in_its_family() -> None:
    expected = {
        vision: (
            {"alexnet", "inception_module", "googlenet", "resnet_layer", "resnet_small"},
            "vision",
        ),
        dense: ({"perceptron", "softmax_classifier", "mlp", "mlp_conv1x1"}, "dense"),
        sequence: (
            {
                "embedding_classifier",
                "rnn",
                "lstm",
                "conv1d",
                "conv1d_padded",
                "conv1d_causal",
                "conv_transpose1d",
                "qrnn",
            },
            "sequence",
        ),
        autoencoders: ({"autoencoder", "vae"}, "autoencoder"),
    }
    for module, (names, family) in expected.items():
        specs = registered_in(module)
        assert sorted(s.name for s in specs) == sorted(names)
        assert {s.family for s in specs} == {family}


SEED_PARAM_COUNTS = {
    "alexnet": (
        3 * 64 * 11 * 11
        + 64  # Conv2d(3, 64, 11, stride=4, padding=2)
        + 64 * 192 * 5 * 5
        + 192  # Conv2d(64, 192, 5, padding=2)
        + 192 * 384 * 3 * 3
        + 384  # Conv2d(192, 384, 3, padding=1)
        + 384 * 256 * 3 * 3
        + 256  # Conv2d(384, 256, 3, padding=1)
        + 256 * 256 * 3 * 3
        + 256  # Conv2d(256, 256, 3, padding=1)
        + 256 * 6 * 6 * 4096
        + 4096  # Linear(256 * 6 * 6, 4096)
        + 4096 * 4096
        + 4096  # Linear(4096, 4096)
        + 4096 * 1000
        + 1000  # Linear(4096, num_classes=1000)
    ),
    "resnet_layer": (
        64 * 64 * 3 * 3
        + 64  # conv1: Conv2d(64, 64, 3, padding=1)
        + 64
        + 64  # conv1: BatchNorm2d(64) weight, bias
        + 64 * 64 * 3 * 3
        + 64  # conv2: Conv2d(64, 64, 3, padding=1)
        + 64
        + 64  # conv2: BatchNorm2d(64) weight, bias
    ),
    "perceptron": 100 * 1 + 1,  # Linear(NUM_INPUTS=100, 1)
    "softmax_classifier": 100 * 20 + 20,  # Linear(NUM_INPUTS=100, NUM_OUTPUTS=20)
    "mlp": (
        100 * 1024
        + 1024  # Linear(NUM_INPUTS, HIDDEN_SIZE)
        + 1024 * 1024
        + 1024  # Linear(HIDDEN_SIZE, HIDDEN_SIZE)
        + 1024 * 20
        + 20  # Linear(HIDDEN_SIZE, NUM_OUTPUTS)
    ),
    "mlp_conv1x1": (
        100 * 1024 * 1
        + 1024  # Conv1d(NUM_INPUTS, HIDDEN_SIZE, 1)
        + 1024 * 1024 * 1
        + 1024  # Conv1d(HIDDEN_SIZE, HIDDEN_SIZE, 1)
        + 1024 * 20 * 1
        + 20  # Conv1d(HIDDEN_SIZE, NUM_OUTPUTS, 1)
    ),
    "rnn": (
        512 * 100
        + 512 * 512  # RNN(100, 512): weight_ih_l0, weight_hh_l0
        + 512
        + 512  # RNN: bias_ih_l0, bias_hh_l0
        + 512 * 10
        + 10  # Linear(HIDDEN_SIZE, NUM_OUTPUTS=10)
    ),
    "lstm": (
        4 * 512 * 100
        + 4 * 512 * 512  # LSTM(100, 512): weight_ih_l0, weight_hh_l0 (4 gates)
        + 4 * 512
        + 4 * 512  # LSTM: bias_ih_l0, bias_hh_l0
    ),
    "conv1d": 1 * 1024 * 3 + 1024,  # Conv1d(1, 1024, 3)
    "conv1d_padded": 1 * 1024 * 3 + 1024,  # Conv1d(1, 1024, 3, padding=1)
    "conv1d_causal": 1 * 1024 * 3 + 1024,  # Conv1d(1, 1024, 3) after F.pad
    "conv_transpose1d": 1 * 1 * 8 + 1,  # ConvTranspose1d(1, 1, 8, stride=4)
    "qrnn": 100 * (512 * 2) * 2 + 512 * 2,  # fQRNNLayer(100, 512): Conv1d(100, 512 * 2, 2)
    "autoencoder": (
        784 * 400
        + 400  # encoder Linear(784, 400)
        + 400 * 400
        + 400  # encoder Linear(400, 400)
        + 400 * 20
        + 20  # encoder Linear(400, 20)
        + 20 * 400
        + 400  # decoder Linear(20, 400)
        + 400 * 400
        + 400  # decoder Linear(400, 400)
        + 400 * 784
        + 784  # decoder Linear(400, 784)
    ),
    "vae": (
        784 * 400
        + 400  # fc1 Linear(784, 400)
        + 400 * 20
        + 20  # fc21 Linear(400, 20)
        + 400 * 20
        + 20  # fc22 Linear(400, 20)
        + 20 * 400
        + 400  # fc3 Linear(20, 400)
        + 400 * 784
        + 784  # fc4 Linear(400, 784)
    ),
}


@pytest.mark.parametrize("name", sorted(SEED_PARAM_COUNTS))
def test_default_parameter_count_equals_seed_layers(name: str) -> None:
    assert n_params(SPECS[name].build()) == SEED_PARAM_COUNTS[name]


def test_embedding_classifier_embedding_is_the_seeds_emb_2() -> None:
    model = SPECS["embedding_classifier"].build()
    assert n_params(model.embedding) == 10000 * 100  # nn.Embedding(VOCAB_SIZE, HIDDEN_SIZE)
    # The slide looks up a (10, 1) tensor of zeros and prints (10, 1, 100).
    assert tuple(model.embedding(torch.zeros(10, 1).long()).shape) == (10, 1, 100)


# (model, batch size, dims, the shapes the slides print)
SEED_SHAPES = [
    ("alexnet", 1, {}, [(1, 1000)]),
    ("resnet_layer", 1, {}, [(1, 64, 100, 100)]),
    ("mlp_conv1x1", 1, {}, [(1, 20, 1)]),
    ("rnn", 1, {}, [(1, 100, 10)]),
    ("lstm", 1, {}, [(1, 100, 512), (1, 1, 512), (1, 1, 512)]),
    ("conv1d", 1, {}, [(1, 1024, 6)]),
    ("conv1d_padded", 1, {}, [(1, 1024, 8)]),
    ("conv1d_causal", 1, {}, [(1, 1024, 8)]),
    ("conv_transpose1d", 1, {}, [(1, 1, 12)]),
    ("autoencoder", 10, {}, [(10, 784)]),
    ("vae", 10, {}, [(10, 784), (10, 20), (10, 20)]),
]


@pytest.mark.parametrize(
    "name, batch_size, dims, seed_shapes", SEED_SHAPES, ids=[case[0] for case in SEED_SHAPES]
)
def test_spec_reproduces_shapes_printed_on_the_slides(
    name: str, batch_size: int, dims: dict[str, int], seed_shapes: list[tuple[int, ...]]
) -> None:
    spec = SPECS[name]
    assert spec.expected_shapes(batch_size, dims) == seed_shapes
    assert run(spec, batch_size, dims) == seed_shapes


# Small enough to run every model quickly; each override stays within its constraints.
SMALL_DIMS = {
    "alexnet": {"H": 63, "W": 80, "NUM_CLASSES": 7},
    "inception_module": {"H": 5, "W": 6},
    "googlenet": {"H": 31, "W": 40, "NUM_CLASSES": 7},
    "resnet_layer": {"C": 8, "H": 6, "W": 5},
    "resnet_small": {"N": 2, "H": 8, "W": 8, "NUM_CLASSES": 5},
    "perceptron": {"NIN": 7},
    "softmax_classifier": {"NIN": 7, "NOUT": 3},
    "mlp": {"NIN": 7, "NHID": 16, "NOUT": 3},
    "mlp_conv1x1": {"NIN": 7, "NHID": 16, "NOUT": 3, "T": 5},
    "embedding_classifier": {"V": 50, "E": 8, "NUM_CLASSES": 3, "T": 6},
    "rnn": {"NIN": 7, "HID": 16, "NOUT": 3, "L": 2, "T": 5},
    "lstm": {"NIN": 7, "HID": 16, "L": 3, "T": 5},
    "conv1d": {"K": 5, "T": 5},
    "conv1d_padded": {"K": 5, "T": 3},
    "conv1d_causal": {"K": 4, "T": 3},
    "conv_transpose1d": {"K": 3, "S": 2, "T": 5},
    "qrnn": {"NIN": 7, "NOUT": 16, "K": 3, "T": 5},
    "autoencoder": {"NIN": 12},
    "vae": {},
}


def test_small_configurations_cover_every_model() -> None:
    assert sorted(SMALL_DIMS) == sorted(SPECS)


@pytest.mark.parametrize("name", sorted(SMALL_DIMS))
def test_outputs_match_declared_shapes_at_other_sizes(name: str) -> None:
    spec, dims = SPECS[name], SMALL_DIMS[name]
    model = spec.build(dims)
    for batch_size in (1, 3):
        assert run(spec, batch_size, dims, model) == spec.expected_shapes(batch_size, dims)


def test_causal_conv_output_never_depends_on_later_inputs() -> None:
    model = SPECS["conv1d_causal"].build().eval()
    x = torch.randn(1, 1, 8)
    with torch.no_grad():
        y = model(x)
        for t in range(8):
            changed = x.clone()
            changed[..., t] += 1.0
            y_changed = model(changed)
            assert torch.equal(y_changed[..., :t], y[..., :t]), f"output before {t} changed"
            assert not torch.allclose(y_changed[..., t], y[..., t]), f"output {t} ignores input {t}"


def test_padded_conv_output_depends_on_the_next_input_unlike_the_causal_one() -> None:
    model = SPECS["conv1d_padded"].build().eval()
    x = torch.randn(1, 1, 8)
    changed = x.clone()
    changed[..., 4] += 1.0
    with torch.no_grad():
        assert not torch.allclose(model(changed)[..., 3], model(x)[..., 3])


def test_qrnn_runs_with_and_without_state_and_uses_it() -> None:
    spec = SPECS["qrnn"]
    model = spec.build({"T": 6}).eval()
    (x,) = spec.example_inputs(2, {"T": 6})
    with torch.no_grad():
        hts, h_last = model(x)
        hts_zero, h_last_zero = model(x, torch.zeros(2, 512))
        hts_state, h_last_state = model(x, torch.ones(2, 512))
    expected = spec.expected_shapes(2, {"T": 6})
    for outputs in ((hts, h_last), (hts_zero, h_last_zero), (hts_state, h_last_state)):
        assert [tuple(t.shape) for t in outputs] == expected
    # No state means a zero state; a given state is pooled through every step.
    assert torch.allclose(hts_zero, hts) and torch.allclose(h_last_zero, h_last)
    assert not torch.allclose(hts_state, hts)
    # The returned state is the last step's output.
    assert torch.equal(h_last_state, hts_state[:, -1])


def test_qrnn_zero_state_follows_input_dtype() -> None:
    model = SPECS["qrnn"].build({"NIN": 4, "NOUT": 8}).to(torch.bfloat16)
    hts, h_last = model(torch.randn(2, 5, 4, dtype=torch.bfloat16))
    # A float32 zero state would promote every h_t to float32.
    assert hts.dtype == h_last.dtype == torch.bfloat16


def test_qrnn_step_follows_f_pooling_recurrence() -> None:
    model = SPECS["qrnn"].build({"NIN": 3, "NOUT": 4}).eval()
    x = torch.randn(1, 2, 3)
    with torch.no_grad():
        hts, _ = model(x)
        # kwidth 2: step 0 sees (0, x0), so h_0 = (1 - f_0) * z_0 from a zero state.
        zt, ft = torch.chunk(
            model.conv(torch.nn.functional.pad(x.transpose(1, 2), (1, 0))), 2, dim=1
        )
        z, f = torch.tanh(zt), torch.sigmoid(ft)
        h0 = (1 - f[..., 0]) * z[..., 0]
        h1 = f[..., 1] * h0 + (1 - f[..., 1]) * z[..., 1]
    assert torch.allclose(hts[:, 0], h0) and torch.allclose(hts[:, 1], h1)


@pytest.mark.parametrize("name, smallest", [("alexnet", 63), ("googlenet", 31)])
def test_smallest_declared_image_size_runs_and_one_less_is_rejected(
    name: str, smallest: int
) -> None:
    spec = SPECS[name]
    model = spec.build().eval()
    dims = {"H": smallest, "W": smallest}
    assert run(spec, 1, dims, model) == [(1, 1000)]
    for too_small in ({"H": smallest - 1}, {"W": smallest - 1}):
        with pytest.raises(ShapeError):
            spec.resolve_dims(too_small)
    # The constraint is tight: the network itself cannot take one pixel less.
    with torch.no_grad(), pytest.raises(RuntimeError):
        model(torch.randn(1, 3, smallest - 1, smallest))


def test_googlenet_has_nine_inception_modules_and_ends_at_1024_channels() -> None:
    model = SPECS["googlenet"].build()
    blocks = [m for m in model.modules() if isinstance(m, vision.Inception)]
    assert len(blocks) == 9
    assert blocks[-1].out_channels == model.fc.in_features == 1024


def test_inception_module_3a_widths_give_256_channels() -> None:
    model = SPECS["inception_module"].build()
    assert model.out_channels == 64 + 128 + 32 + 32 == 256
    assert model.branch5[1][0].kernel_size == (5, 5)  # a real 5x5, not two 3x3


def test_resnet_small_stacks_num_blocks_residual_layers() -> None:
    model = SPECS["resnet_small"].build({"N": 5})
    assert sum(isinstance(m, vision.ResLayer) for m in model.modules()) == 5
    assert model.stem[0].bias is None


def test_mlp_and_its_conv1x1_form_compute_the_same_function() -> None:
    linear, conv = SPECS["mlp"].build().eval(), SPECS["mlp_conv1x1"].build().eval()
    with torch.no_grad():
        for lin_layer, conv_layer in zip(linear, conv):
            if isinstance(lin_layer, torch.nn.Linear):
                conv_layer.weight.copy_(lin_layer.weight.unsqueeze(2))
                conv_layer.bias.copy_(lin_layer.bias)
        x = torch.randn(4, 100)
        assert torch.allclose(conv(x.unsqueeze(2)).squeeze(2), linear(x), atol=1e-5)
