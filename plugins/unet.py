"""U-Nets: seed 000's recursive encode/recurse/decode U-Net and seed 001's 2-level one.

The shape formulas are the seeds': an encode step maps H to ``(H - 2) // 2 + 1``
(max-pool floor), and decoding doubles it back, which only returns H when H is even
at every level. The constraints state that gap instead of letting ``torch.cat`` fail.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

import harness
from harness import Dim, Input


class DoubleConv(nn.Sequential):
    """Two shape-preserving (3x3, padding 1) conv + BatchNorm + ReLU layers.

    Convs have no bias: the BatchNorm right after them adds its own shift.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


@harness.register(
    "unet_down",
    inputs=[Input("x", "(B, C, H, W)")],
    outputs=["(B, 2 * C, (H - 2) // 2 + 1, (W - 2) // 2 + 1)"],
    description="U-Net encode step Down[C, 2C]: 2x2 max-pool then a double 3x3 conv",
    family="unet",
    tags=("cnn", "block", "batchnorm", "pooling"),
    source="seed 000 (UNet._encode)",
    dims={"C": Dim(64, kwarg="in_channels"), "H": 64, "W": 64},
    constraints=["H >= 2 and W >= 2"],
    batch_sizes=(1, 8),
)
class Down(nn.Sequential):
    """Seed 000's encode step ``Down[C, 2C]``: (B, C, H, W) -> (B, 2C, (H-2)//2+1, (W-2)//2+1)."""

    def __init__(self, in_channels: int = 64) -> None:
        super().__init__(nn.MaxPool2d(2), DoubleConv(in_channels, 2 * in_channels))


class Up(nn.Module):
    """Seed 000's decode step ``Up[2C, C]``: upsample the deep map, concat the skip, convolve."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        out_channels = in_channels // 2
        self.up = nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)
        self.conv = DoubleConv(in_channels, out_channels)

    def forward(self, deep: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(deep)], 1))


@harness.register(
    "unet_recursive",
    inputs=[Input("x", "(B, NCH, H, W)")],
    outputs=["(B, NCLS, H, W)"],
    description="U-Net written as a shape-preserving encode/recurse/decode recursion",
    family="unet",
    tags=("cnn", "unet", "skip-connections", "batchnorm", "segmentation"),
    source="seed 000 (UNet.recurse)",
    dims={
        "NCH": Dim(3, kwarg="n_channels"),
        "NCLS": Dim(2, kwarg="n_classes"),
        "C": Dim(64, kwarg="base"),
        "D": Dim(4, kwarg="depth"),
        "H": 64,
        "W": 64,
    },
    # ((H - 2) // 2 + 1) * 2 == H must hold at every one of the D levels.
    constraints=["H % 2 ** D == 0", "W % 2 ** D == 0"],
    batch_sizes=(1, 8),
)
class UNetRecursive(nn.Module):
    """Seed 000's UNet: ``recurse`` encodes, recurses one level deeper, then decodes with the skip.

    ``downs[i]`` and ``ups[i]`` both work at ``base * 2 ** i`` channels, so the
    outermost level (depth = ``len(downs)``) uses index 0.
    """

    def __init__(
        self, n_channels: int = 3, n_classes: int = 2, base: int = 64, depth: int = 4
    ) -> None:
        super().__init__()
        self.inc = DoubleConv(n_channels, base)
        self.downs = nn.ModuleList(Down(base * 2**i) for i in range(depth))
        self.ups = nn.ModuleList(Up(base * 2 ** (i + 1)) for i in range(depth))
        self.outc = nn.Conv2d(base, n_classes, 1)

    def recurse(self, x: torch.Tensor, depth: int) -> torch.Tensor:
        """Shape-preserving: (B, C, H, W) -> (B, C, H, W) when H and W divide by 2 ** depth."""
        if depth == 0:
            return x
        idx = len(self.downs) - depth
        middle = self.recurse(self.downs[idx](x), depth - 1)
        return self.ups[idx](middle, x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.outc(self.recurse(self.inc(x), len(self.downs)))


@dataclass(frozen=True)
class UNet2Config:
    """Seed 001's ``UNet2Config``: kernel/stride/padding of each layer kind and the base width."""

    pool_kernel: int = 2
    pool_stride: int = 2
    conv_kernel: int = 3
    conv_stride: int = 1
    conv_padding: int = 1
    up_kernel: int = 2
    up_stride: int = 2
    up_padding: int = 0
    head_kernel: int = 1
    head_stride: int = 1
    head_padding: int = 0
    base_c: int = 64


class UNet2(nn.Module):
    """Seed 001's 2-level U-Net: conv blocks, one pool, one transposed-conv upsample, a skip.

    No normalisation, as in the seed. Odd H or W fail at the concat: pooling floors
    and the upsampler doubles, so the two sides differ by one.
    """

    def __init__(self, in_c: int = 3, out_c: int = 1, config: UNet2Config = UNet2Config()) -> None:
        super().__init__()
        self.config = config
        base = config.base_c
        self.down1_1 = self._conv(in_c, base)
        self.down1_2 = self._conv(base, base)
        self.pool = nn.MaxPool2d(config.pool_kernel, config.pool_stride)
        self.down2_1 = self._conv(base, 2 * base)
        self.down2_2 = self._conv(2 * base, 2 * base)
        self.upT = nn.ConvTranspose2d(
            2 * base, base, config.up_kernel, config.up_stride, config.up_padding
        )
        self.up1_1 = self._conv(base + base, base)
        self.up1_2 = self._conv(base, base)
        self.out1x1 = nn.Conv2d(
            base, out_c, config.head_kernel, config.head_stride, config.head_padding
        )

    def _conv(self, in_c: int, out_c: int) -> nn.Conv2d:
        """A conv block layer: the config's (typically 3,1,1) shape-preserving conv."""
        cfg = self.config
        return nn.Conv2d(in_c, out_c, cfg.conv_kernel, cfg.conv_stride, cfg.conv_padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = F.relu(self.down1_2(F.relu(self.down1_1(x))))
        deep = F.relu(self.down2_2(F.relu(self.down2_1(self.pool(skip)))))
        h = torch.cat([skip, self.upT(deep)], 1)
        h = F.relu(self.up1_2(F.relu(self.up1_1(h))))
        return self.out1x1(h)


@harness.register(
    "unet2",
    inputs=[Input("x", "(B, IN_C, H, W)")],
    outputs=["(B, OUT_C, H, W)"],
    description="2-level U-Net without normalisation, layers from a config record",
    family="unet",
    tags=("cnn", "unet", "skip-connections", "segmentation"),
    source="seed 001 (UNet2Spec / UNet2Config)",
    dims={
        "IN_C": Dim(3, kwarg="in_c"),
        "OUT_C": Dim(1, kwarg="out_c"),
        "BASE": Dim(64, kwarg="base_c"),
        "H": 64,
        "W": 64,
    },
    # Seed 001's h_upH / h_upW: pool then upsample must give H back.
    constraints=["2 * ((H - 2) // 2 + 1) == H", "2 * ((W - 2) // 2 + 1) == W"],
    batch_sizes=(1, 8),
)
def build_unet2(in_c: int = 3, out_c: int = 1, base_c: int = 64) -> UNet2:
    """UNet2 at the seed's default layer hyperparameters, with ``base_c`` as a benchmark knob."""
    return UNet2(in_c, out_c, UNet2Config(base_c=base_c))
