"""Seed 004's practical: an einops MLP on images and 4,2,1 conv encoder/decoder/autoencoder.

The encoder and decoder are built from one list of stages each; the autoencoder
inserts residual blocks between those same stages rather than restating them.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from einops.layers.torch import Rearrange, Reduce
from torch import nn

import harness
from harness import Dim, Input

# Channels through the five stages: 3x32x32 -> 1024x1x1 and back. The decoder is not the
# exact reverse: its first layer goes from the 1024-d latent straight to 256.
ENCODER_CHANNELS = (3, 32, 64, 128, 256, 1024)
DECODER_CHANNELS = (1024, 256, 128, 64, 32, 3)


@harness.register(
    "einops_mlp",
    inputs=[Input("x", "(B, 3, H, W)")],
    outputs=["(B, 1)"],
    description="2-layer MLP on flattened images via einops Rearrange (optional Reduce)",
    family="einops",
    tags=("mlp", "einops", "linear"),
    source="seed 004 (section 2 exercise, coffee image MLP)",
    dims={
        "H": Dim(400, kwarg="height"),
        "W": Dim(600, kwarg="width"),
        "P": Dim(1, kwarg="pool"),
    },
    constraints=["H % P == 0", "W % P == 0"],
    batch_sizes=(1, 10),
)
class ImageMLP(nn.Module):
    """The practical's 2-layer MLP on whole images: flatten with einops, Linear to 5, to 1.

    ``pool > 1`` first mean-pools P x P patches with einops ``Reduce``, shrinking the
    first Linear, which otherwise holds 3 * H * W * 5 weights (3.6M at 400x600).
    """

    def __init__(self, height: int = 400, width: int = 600, pool: int = 1) -> None:
        super().__init__()
        pooling = (
            [Reduce("b c (h p1) (w p2) -> b c h w", "mean", p1=pool, p2=pool)] if pool > 1 else []
        )
        self.layers = nn.Sequential(
            *pooling,
            Rearrange("b c h w -> b (c h w)"),
            nn.Linear(3 * (height // pool) * (width // pool), 5),
            nn.ReLU(),
            nn.Linear(5, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class ResidualBlock(nn.Module):
    """Two 3,1,1 conv + BatchNorm layers added back onto the input, then ReLU; keeps the shape."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(channels, channels, 3, 1, 1),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, 1, 1),
            nn.BatchNorm2d(channels),
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.block(x))


def _stages(
    channels: Iterable[int],
    conv: type[nn.Conv2d] | type[nn.ConvTranspose2d],
    final_act: nn.Module | None,
    residual_after: Iterable[int],
) -> list[nn.Module]:
    """4,2,1 (de)conv stages through ``channels``, ReLU between, ``final_act`` at the end.

    A ResidualBlock at the stage's width follows each 1-based stage in ``residual_after``.
    """
    channels = tuple(channels)
    residual_after = set(residual_after)
    last = len(channels) - 1
    layers: list[nn.Module] = []
    for stage, (c_in, c_out) in enumerate(zip(channels, channels[1:]), start=1):
        layers.append(conv(c_in, c_out, 4, 2, 1))
        act = nn.ReLU() if stage < last else final_act
        if act is not None:
            layers.append(act)
        if stage in residual_after:
            layers.append(ResidualBlock(c_out))
    return layers


@harness.register(
    "conv_encoder",
    inputs=[Input("x", "(B, 3, H, W)")],
    outputs=["(B, 1024, H // 32, W // 32)"],
    description="5-layer 4,2,1 conv encoder, 3x32x32 -> 1024x1x1 without pooling",
    family="einops",
    tags=("cnn", "encoder"),
    source="seed 004 (section 3 exercise 1-2)",
    dims={"H": 32, "W": 32},
    constraints=["H % 32 == 0", "W % 32 == 0"],
    batch_sizes=(1, 32),
)
class ConvEncoder(nn.Sequential):
    """Five 4,2,1 convs halving H and W each: (B, 3, H, W) -> (B, 1024, H // 32, W // 32).

    No pooling, as the practical asks; the first layer is its ``c1``.
    """

    def __init__(self, residual_after: tuple[int, ...] = ()) -> None:
        super().__init__(*_stages(ENCODER_CHANNELS, nn.Conv2d, None, residual_after))


@harness.register(
    "conv_decoder",
    inputs=[Input("z", "(B, 1024, H, W)")],
    outputs=["(B, 3, 32 * H, 32 * W)"],
    description="5-layer 4,2,1 transposed-conv decoder, 1024x1x1 -> 3x32x32",
    family="einops",
    tags=("cnn", "decoder", "transposed-conv"),
    source="seed 004 (section 3 exercise 6)",
    dims={"H": 1, "W": 1},
    batch_sizes=(1, 32),
)
class ConvDecoder(nn.Sequential):
    """Five 4,2,1 transposed convs doubling H and W each, Sigmoid output in [0, 1]."""

    def __init__(self, residual_after: tuple[int, ...] = ()) -> None:
        super().__init__(
            *_stages(DECODER_CHANNELS, nn.ConvTranspose2d, nn.Sigmoid(), residual_after)
        )


@harness.register(
    "conv_autoencoder",
    inputs=[Input("x", "(B, 3, H, W)")],
    outputs=["(B, 3, H, W)"],
    description="Conv encoder + decoder with residual blocks between their stages",
    family="einops",
    tags=("cnn", "autoencoder", "residual", "batchnorm", "unsupervised"),
    source="seed 004 (sections 4-5, residual blocks and Autoencoder)",
    dims={"H": 32, "W": 32},
    constraints=["H % 32 == 0", "W % 32 == 0"],
    batch_sizes=(1, 32),
)
class Autoencoder(nn.Module):
    """The practical's block-designed autoencoder: residual encoder then residual decoder."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = ConvEncoder(residual_after=(2, 4))
        self.decoder = ConvDecoder(residual_after=(1, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))
