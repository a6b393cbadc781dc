"""The GAN, U-Net and einops plugins: seed-faithful parameter counts and declared shapes.

Parameter counts are derived by hand from the seeds' layer lists (weights + biases +
2 per BatchNorm channel), never by rebuilding the module, so a drifted layer fails.
Forward passes run at small dimensions to keep every test fast on a laptop CPU.
"""

from __future__ import annotations

from types import ModuleType

import pytest
import torch
from torch import nn

from harness.errors import ShapeError
from harness.models.register import registered_in
from harness.models.spec import ModelSpec, flatten_outputs
from harness_plugins import einops_models, gan, unet

MODULES = {"gan": gan, "unet": unet, "einops": einops_models}
EXPECTED_NAMES = {
    "gan": {
        "dcgan_generator",
        "dcgan_discriminator",
        "dcgan_chain",
        "pix2pix_unet",
        "segan_generator",
    },
    "unet": {"unet_down", "unet_recursive", "unet2"},
    "einops": {"einops_mlp", "conv_encoder", "conv_decoder", "conv_autoencoder"},
}


def _spec(module: ModuleType, name: str) -> ModelSpec:
    return next(s for s in registered_in(module) if s.name == name)


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _bn(channels: int) -> int:
    return 2 * channels  # BatchNorm2d affine weight + bias


@pytest.mark.parametrize("family", sorted(MODULES))
def test_plugin_registers_exactly_the_listed_names_under_its_family(family: str) -> None:
    specs = registered_in(MODULES[family])
    assert {s.name for s in specs} == EXPECTED_NAMES[family]
    assert {s.family for s in specs} == {family}


# --- parameter counts from the seeds' layers -------------------------------------------


def test_dcgan_generator_default_matches_seed_002_sequential_parameter_count() -> None:
    expected = (
        100 * 512 * 4 * 4
        + _bn(512)  # ConvT(nz, ngf*8, 4, 1, 0), bias=False; BN(ngf*8)
        + 512 * 256 * 4 * 4
        + _bn(256)  # ConvT(ngf*8, ngf*4, 4, 2, 1), bias=False; BN
        + 256 * 128 * 4 * 4
        + _bn(128)  # ConvT(ngf*4, ngf*2, 4, 2, 1), bias=False; BN
        + 128 * 64 * 4 * 4
        + _bn(64)  # ConvT(ngf*2, ngf, 4, 2, 1), bias=False; BN
        + 64 * 3 * 4 * 4  # ConvT(ngf, nc, 4, 2, 1), bias=False
    )
    assert expected == 3_576_704
    assert _n_params(_spec(gan, "dcgan_generator").build()) == expected


def test_dcgan_discriminator_default_matches_seed_002_parameter_count() -> None:
    expected = (
        3 * 64 * 4 * 4  # Conv(nc, ndf, 4, 2, 1), bias=False
        + 64 * 128 * 4 * 4
        + _bn(128)  # Conv(ndf, ndf*2), bias=False; BN(ndf*2)
        + 128 * 256 * 4 * 4
        + _bn(256)  # Conv(ndf*2, ndf*4), bias=False; BN(ndf*4)
        + 256 * 512 * 4 * 4
        + _bn(512)  # Conv(ndf*4, ndf*8), bias=False; BN(ndf*8)
        + 512 * 1 * 4 * 4  # Conv(ndf*8, 1, 4, 1, 0), bias=False
    )
    assert _n_params(_spec(gan, "dcgan_discriminator").build()) == expected == 2_765_568


def test_pix2pix_unet_256_matches_networks_py_parameter_count() -> None:
    # UnetGenerator(3, 3, num_downs=8, ngf=64, BatchNorm2d): convs feeding a norm have no bias.
    outermost = (
        3 * 64 * 4 * 4  # downconv(input_nc, ngf), bias=False
        + 128 * 3 * 4 * 4
        + 3
    )  # upconv ConvT(ngf*2, output_nc) with bias
    level_64_128 = (
        64 * 128 * 4 * 4
        + _bn(128)  # downconv + downnorm
        + 256 * 64 * 4 * 4
        + _bn(64)
    )  # upconv ConvT(inner*2, outer) + upnorm
    level_128_256 = 128 * 256 * 4 * 4 + _bn(256) + 512 * 128 * 4 * 4 + _bn(128)
    level_256_512 = 256 * 512 * 4 * 4 + _bn(512) + 1024 * 256 * 4 * 4 + _bn(256)
    middle_512 = 512 * 512 * 4 * 4 + _bn(512) + 1024 * 512 * 4 * 4 + _bn(512)  # x (8 - 5)
    innermost = (
        512 * 512 * 4 * 4  # downconv, no downnorm
        + 512 * 512 * 4 * 4
        + _bn(512)
    )  # upconv ConvT(inner, outer) + upnorm
    expected = outermost + level_64_128 + level_128_256 + level_256_512 + 3 * middle_512 + innermost
    assert _n_params(_spec(gan, "pix2pix_unet").build()) == expected == 54_413_955


def test_segan_generator_default_matches_seed_002_parameter_count() -> None:
    k = 31
    expected = (
        1 * 64 * k
        + 64  # Conv1d(1, 64, 31) in DownConv1dBlock, with bias
        + 64 * 128 * k
        + 128  # Conv1d(64, 128)
        + 128 * 256 * k
        + 256  # Conv1d(128, 256)
        + 256 * 512 * k
        + 512  # Conv1d(256, 512)
        + 512 * 256 * k
        + 256  # ConvT1d(512, 256) in UpConv1dBlock, with bias
        + 256 * 128 * k
        + 128  # ConvT1d(256, 128)
        + 128 * 64 * k
        + 64  # ConvT1d(128, 64)
        + 64 * 1 * k
        + 1  # ConvT1d(64, 1), no activation
    )
    assert _n_params(_spec(gan, "segan_generator").build()) == expected == 10_671_361


def test_unet2_default_matches_seed_001_parameter_record() -> None:
    expected = (
        3 * 64 * 3 * 3
        + 64  # down1_1 Conv2d(inC, baseC, 3)
        + 64 * 64 * 3 * 3
        + 64  # down1_2 Conv2d(baseC, baseC, 3)
        + 64 * 128 * 3 * 3
        + 128  # down2_1 Conv2d(baseC, 2 baseC, 3)
        + 128 * 128 * 3 * 3
        + 128  # down2_2 Conv2d(2 baseC, 2 baseC, 3)
        + 128 * 64 * 2 * 2
        + 64  # upT ConvTranspose2d(2 baseC, baseC, 2)
        + 128 * 64 * 3 * 3
        + 64  # up1_1 Conv2d(baseC + baseC, baseC, 3)
        + 64 * 64 * 3 * 3
        + 64  # up1_2 Conv2d(baseC, baseC, 3)
        + 64 * 1 * 1 * 1
        + 1  # out1x1 Conv2d(baseC, outC, 1)
    )
    assert _n_params(_spec(unet, "unet2").build()) == expected == 403_777


def test_conv_encoder_first_layer_is_seed_004_c1() -> None:
    first = _spec(einops_models, "conv_encoder").build()[0]
    assert isinstance(first, nn.Conv2d)
    assert (
        first.in_channels,
        first.out_channels,
        first.kernel_size,
        first.stride,
        first.padding,
    ) == (3, 32, (4, 4), (2, 2), (1, 1))
    assert _n_params(first) == 3 * 32 * 4 * 4 + 32  # c1 = Conv2d(3, 32, 4, 2, 1), with bias


def test_einops_mlp_default_matches_practical_layer_sizes() -> None:
    expected = 3 * 400 * 600 * 5 + 5 + 5 * 1 + 1  # Linear(3*400*600, 5), Linear(5, 1)
    assert _n_params(_spec(einops_models, "einops_mlp").build()) == expected


def test_autoencoder_is_encoder_plus_decoder_plus_four_residual_blocks() -> None:
    def residual(c: int) -> int:  # two Conv2d(c, c, 3, 1, 1) with bias, two BatchNorm2d(c)
        return 2 * (c * c * 3 * 3 + c) + 2 * _bn(c)

    encoder = _n_params(_spec(einops_models, "conv_encoder").build())
    decoder = _n_params(_spec(einops_models, "conv_decoder").build())
    autoencoder = _spec(einops_models, "conv_autoencoder").build()
    expected = encoder + decoder + 2 * residual(64) + 2 * residual(256)
    assert _n_params(autoencoder) == expected
    widths = [
        [m.block[0].in_channels for m in part if isinstance(m, einops_models.ResidualBlock)]
        for part in (autoencoder.encoder, autoencoder.decoder)
    ]
    assert widths == [[64, 256], [256, 64]]


# --- seed-specific behaviour ------------------------------------------------------------


def test_dcgan_generator_chain_halves_channels_and_doubles_size_per_stage() -> None:
    model = _spec(gan, "dcgan_generator").build().eval()
    seen: list[tuple[int, ...]] = []
    for stage in model.up_stages:
        stage.register_forward_hook(lambda _m, _i, out: seen.append(tuple(out.shape)))
    with torch.no_grad():
        out = model(torch.randn(1, 100, 1, 1))
    c, h = 512, 4  # after project: (B, ngf * 2 ** I, 4, 4)
    assert seen == [(1, c // 2**i, h * 2**i, h * 2**i) for i in (1, 2, 3)]
    assert out.shape == (1, 3, 64, 64)


def test_unet2_odd_height_is_rejected_by_constraint_and_really_breaks_the_model() -> None:
    spec = _spec(unet, "unet2")
    with pytest.raises(ShapeError, match="H=63"):
        spec.resolve_dims({"H": 63})
    model = unet.build_unet2(base_c=4)  # raw module, no spec checks in the way
    with pytest.raises(RuntimeError, match="Expected size 63 but got size 62"):
        model(torch.randn(1, 3, 63, 63))


def test_unet_down_odd_height_65_floors_to_32() -> None:
    spec = _spec(unet, "unet_down")
    dims = {"C": 4, "H": 65, "W": 7}
    assert spec.expected_shapes(1, dims) == [(1, 8, 32, 3)]
    with torch.no_grad():
        out = spec.build(dims).eval()(*spec.example_inputs(1, dims))
    assert out.shape == (1, 8, 32, 3)


def test_segan_output_length_equals_input_length_at_default_kernel() -> None:
    model = _spec(gan, "segan_generator").build().eval()
    with torch.no_grad():
        out = model(torch.randn(2, 1, 1024))
    assert out.shape == (2, 1, 1024)


@pytest.mark.parametrize("kwidth", [4, 5, 8, 9])
def test_segan_length_is_preserved_for_any_kernel_width_of_at_least_4(kwidth: int) -> None:
    model = gan.Conv1dGenerator(enc_fmaps=(2, 2, 2, 2), kwidth=kwidth).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 512)).shape == (1, 1, 512)


def test_segan_kernel_width_3_is_rejected_and_really_changes_the_length() -> None:
    with pytest.raises(ShapeError, match="K >= 4"):
        _spec(gan, "segan_generator").resolve_dims({"K": 3})
    model = gan.Conv1dGenerator(enc_fmaps=(2, 2, 2, 2), kwidth=3).eval()
    with pytest.raises(RuntimeError):  # the up steps come out 2 short, so skips misalign
        model(torch.randn(1, 1, 512))


def test_pix2pix_five_downs_on_32x32_returns_the_input_size() -> None:
    spec = _spec(gan, "pix2pix_unet")
    dims = {"N": 5, "H": 32, "W": 32, "NGF": 4, "OUT_C": 2}
    with torch.no_grad():
        out = spec.build(dims).eval()(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 2, 32, 32)
    with pytest.raises(ShapeError):
        spec.resolve_dims({"N": 5, "H": 48})  # 48 is not a multiple of 2 ** 5


def test_pix2pix_default_puts_dropout_only_in_the_middle_ngf8_blocks() -> None:
    model = _spec(gan, "pix2pix_unet").build()
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert len(dropouts) == 8 - 5 and all(d.p == 0.5 for d in dropouts)


def test_einops_mlp_pooling_shrinks_the_first_linear_by_p_squared() -> None:
    spec = _spec(einops_models, "einops_mlp")
    model = spec.build({"H": 40, "W": 60, "P": 4})
    linear = next(m for m in model.modules() if isinstance(m, nn.Linear))
    assert linear.in_features == 3 * (40 // 4) * (60 // 4)
    with pytest.raises(ShapeError):
        spec.resolve_dims({"H": 42, "P": 4})


# --- declared shapes against real outputs -----------------------------------------------

SMALL_DIMS = [
    (gan, "dcgan_generator", {"NZ": 8, "NGF": 4, "NC": 1, "I": 2}),
    (gan, "dcgan_discriminator", {"NDF": 4, "NC": 2, "H": 64, "W": 96}),
    (gan, "dcgan_chain", {"C": 16, "I": 3, "H": 3, "W": 5}),
    (gan, "pix2pix_unet", {"NGF": 4, "N": 6, "IN_C": 1, "H": 64, "W": 128}),
    (gan, "segan_generator", {"T": 512, "K": 11}),
    (unet, "unet_down", {"C": 4, "H": 9, "W": 12}),
    (unet, "unet_recursive", {"C": 4, "D": 3, "NCLS": 3, "H": 16, "W": 24}),
    (unet, "unet2", {"BASE": 4, "OUT_C": 2, "H": 10, "W": 14}),
    (einops_models, "einops_mlp", {"H": 12, "W": 18, "P": 3}),
    (einops_models, "conv_encoder", {"H": 64, "W": 32}),
    (einops_models, "conv_decoder", {"H": 2, "W": 1}),
    (einops_models, "conv_autoencoder", {"H": 64, "W": 32}),
]
SMALL_IDS = [name for _, name, _ in SMALL_DIMS]


@pytest.mark.parametrize(("module", "name", "dims"), SMALL_DIMS, ids=SMALL_IDS)
def test_declared_output_shapes_match_the_model_at_small_dims(
    module: ModuleType, name: str, dims: dict[str, int]
) -> None:
    spec = _spec(module, name)
    model = spec.build(dims).eval()
    for batch in (1, 2):
        with torch.no_grad():
            outputs = flatten_outputs(model(*spec.example_inputs(batch, dims)))
        assert [tuple(o.shape) for o in outputs] == spec.expected_shapes(batch, dims)


@pytest.mark.parametrize(("module", "name", "dims"), SMALL_DIMS, ids=SMALL_IDS)
def test_training_step_at_batch_size_one_gives_finite_gradients(
    module: ModuleType, name: str, dims: dict[str, int]
) -> None:
    # Batch 1 in train mode: BatchNorm must never see a single value per channel, and
    # the in-place activations the seeds use must not break autograd.
    spec = _spec(module, name)
    model = spec.build(dims).train()
    loss = spec.compute_loss(flatten_outputs(model(*spec.example_inputs(1, dims))))
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
