"""GAN-family architectures from the seeds: DCGAN (seeds 000, 002), pix2pix (003), SEGAN (002).

Where a seed gives code, the default configuration reproduces it layer for layer
(same layers, bias flags and order), so parameter counts match the seed's.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

import harness
from harness import Dim, Input


class GenUpStage(nn.Sequential):
    """One DCGAN generator stage, (B, C, H, W) -> (B, C // 2, 2H, 2W).

    Kept as its own block so the generator and the bare chain share one definition.
    """

    def __init__(self, channels: int) -> None:
        super().__init__(
            nn.ConvTranspose2d(channels, channels // 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(channels // 2),
            nn.ReLU(True),
        )


def _up_stages(channels: int, depth: int) -> nn.ModuleList:
    """``depth`` stages halving the channels from ``channels`` (seed 000's ``up_stages``)."""
    return nn.ModuleList(GenUpStage(channels // 2**i) for i in range(depth))


def _chain(stages: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
    """Apply the stages in order: (B, C, H, W) -> (B, C // 2 ** I, H * 2 ** I, W * 2 ** I)."""
    for stage in stages:
        x = stage(x)
    return x


@harness.register(
    "dcgan_generator",
    inputs=[Input("z", "(B, NZ, 1, 1)")],
    outputs=["(B, NC, 4 * 2 ** (I + 1), 4 * 2 ** (I + 1))"],
    description="DCGAN generator: z -> 4x4 projection, I doubling stages, 64x64 image",
    family="gan",
    tags=("cnn", "generator", "transposed-conv", "batchnorm"),
    source="seed 002 (DCGAN generator slide), structured as seed 000's Generator",
    dims={
        "NZ": Dim(100, kwarg="nz"),
        "NGF": Dim(64, kwarg="ngf"),
        "NC": Dim(3, kwarg="nc"),
        "I": Dim(3, kwarg="depth"),
    },
    batch_sizes=(1, 16),
)
class DCGANGenerator(nn.Module):
    """pytorch/examples' DCGAN generator (seed 002) in seed 000's project/chain/output layout.

    At the default depth 3 it has exactly the seed's Sequential layers: a 4x4
    projection of z to ``ngf * 8`` channels, three halving stages, and a final
    transposed conv to ``nc`` channels, giving 64x64 images.
    """

    def __init__(self, nz: int = 100, ngf: int = 64, nc: int = 3, depth: int = 3) -> None:
        super().__init__()
        top = ngf * 2**depth
        self.project = nn.ConvTranspose2d(nz, top, 4, 1, 0, bias=False)
        self.project_bn = nn.BatchNorm2d(top)
        self.up_stages = _up_stages(top, depth)
        self.output = nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.project_bn(self.project(z)), inplace=True)
        return torch.tanh(self.output(_chain(self.up_stages, h)))


@harness.register(
    "dcgan_discriminator",
    inputs=[Input("x", "(B, NC, H, W)")],
    outputs=["(B, 1, H // 16 - 3, W // 16 - 3)"],
    description="DCGAN discriminator: four 4,2,1 convs and a 4x4 real/fake score",
    family="gan",
    tags=("cnn", "discriminator", "batchnorm"),
    source="seed 002 (DCGAN discriminator slide)",
    dims={"NDF": Dim(64, kwarg="ndf"), "NC": Dim(3, kwarg="nc"), "H": 64, "W": 64},
    constraints=["H % 16 == 0 and H >= 64", "W % 16 == 0 and W >= 64"],
    batch_sizes=(1, 16),
)
class DCGANDiscriminator(nn.Module):
    """pytorch/examples' DCGAN discriminator (seed 002): four 4,2,1 convs, then a 4x4 score.

    Layers sit in one ``main`` Sequential in the seed's order, so state dicts match.
    """

    def __init__(self, ndf: int = 64, nc: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        for i in range(3):  # ndf -> 2 ndf -> 4 ndf -> 8 ndf, each with BatchNorm
            channels = ndf * 2**i
            layers += [
                nn.Conv2d(channels, 2 * channels, 4, 2, 1, bias=False),
                nn.BatchNorm2d(2 * channels),
                nn.LeakyReLU(0.2, inplace=True),
            ]
        layers += [nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False), nn.Sigmoid()]
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


@harness.register(
    "dcgan_chain",
    inputs=[Input("x", "(B, C, H, W)")],
    outputs=["(B, C // 2 ** I, H * 2 ** I, W * 2 ** I)"],
    description="I DCGAN generator stages: channels halve, H and W double per stage",
    family="gan",
    tags=("cnn", "block", "transposed-conv", "batchnorm"),
    source="seed 000 (Generator._chain)",
    dims={"C": Dim(512, kwarg="channels"), "I": Dim(3, kwarg="depth"), "H": 4, "W": 4},
    constraints=["C % 2 ** I == 0"],
    batch_sizes=(1, 16),
)
class DCGANChain(nn.Module):
    """Seed 000's ``_chain`` alone: I generator stages, the exponential-shape pattern."""

    def __init__(self, channels: int = 512, depth: int = 3) -> None:
        super().__init__()
        self.up_stages = _up_stages(channels, depth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _chain(self.up_stages, x)


class UnetSkipConnectionBlock(nn.Module):
    """pix2pix's recursive U-Net level (seed 003): down, submodule, up, then concat the input.

    Mirrors junyanz/pytorch-CycleGAN-and-pix2pix ``models/networks.py`` with
    ``norm_layer=BatchNorm2d``, where convs feeding a norm have no bias. As there,
    the in-place LeakyReLU also rewrites ``x`` before it is concatenated.
    """

    def __init__(
        self,
        outer_nc: int,
        inner_nc: int,
        input_nc: int | None = None,
        submodule: nn.Module | None = None,
        outermost: bool = False,
        innermost: bool = False,
        use_dropout: bool = False,
    ) -> None:
        super().__init__()
        self.outermost = outermost
        if input_nc is None:
            input_nc = outer_nc
        downconv = nn.Conv2d(input_nc, inner_nc, kernel_size=4, stride=2, padding=1, bias=False)
        downrelu = nn.LeakyReLU(0.2, True)
        downnorm = nn.BatchNorm2d(inner_nc)
        uprelu = nn.ReLU(True)
        upnorm = nn.BatchNorm2d(outer_nc)
        if outermost:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1)
            model = [downconv, submodule, uprelu, upconv, nn.Tanh()]
        elif innermost:
            upconv = nn.ConvTranspose2d(
                inner_nc, outer_nc, kernel_size=4, stride=2, padding=1, bias=False
            )
            model = [downrelu, downconv, uprelu, upconv, upnorm]
        else:
            upconv = nn.ConvTranspose2d(
                inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1, bias=False
            )
            model = [downrelu, downconv, downnorm, submodule, uprelu, upconv, upnorm]
            if use_dropout:
                model.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


@harness.register(
    "pix2pix_unet",
    inputs=[Input("x", "(B, IN_C, H, W)")],
    outputs=["(B, OUT_C, H, W)"],
    description="pix2pix U-Net generator from recursive UnetSkipConnectionBlocks",
    family="gan",
    tags=("cnn", "generator", "unet", "skip-connections", "batchnorm", "dropout"),
    source="seed 003 (pix2pix UnetSkipConnectionBlock, junyanz networks.py)",
    kwargs={"use_dropout": True},
    dims={
        "IN_C": Dim(3, kwarg="input_nc"),
        "OUT_C": Dim(3, kwarg="output_nc"),
        "N": Dim(8, kwarg="num_downs"),
        "NGF": Dim(64, kwarg="ngf"),
        "H": 256,
        "W": 256,
    },
    constraints=["N >= 5", "H % 2 ** N == 0", "W % 2 ** N == 0"],
    batch_sizes=(1, 4),
)
class UnetGenerator(nn.Module):
    """pix2pix's U-Net generator: ``num_downs`` nested skip blocks, innermost first.

    Each level halves H and W, so H and W must be multiples of ``2 ** num_downs``.
    """

    def __init__(
        self,
        input_nc: int = 3,
        output_nc: int = 3,
        num_downs: int = 8,
        ngf: int = 64,
        use_dropout: bool = True,
    ) -> None:
        super().__init__()
        block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, innermost=True)
        for _ in range(num_downs - 5):  # intermediate levels at ngf * 8 filters
            block = UnetSkipConnectionBlock(
                ngf * 8, ngf * 8, submodule=block, use_dropout=use_dropout
            )
        for mult in (4, 2, 1):  # narrow from ngf * 8 down to ngf
            block = UnetSkipConnectionBlock(ngf * mult, ngf * mult * 2, submodule=block)
        self.model = UnetSkipConnectionBlock(
            output_nc, ngf, input_nc=input_nc, submodule=block, outermost=True
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class DownConv1dBlock(nn.Module):
    """SEGAN encoder step: asymmetric "same" padding, then a strided conv dividing T by stride."""

    def __init__(self, ninp: int, fmap: int, kwidth: int, stride: int) -> None:
        super().__init__()
        assert stride > 1, stride
        self.kwidth = kwidth
        self.conv = nn.Conv1d(ninp, fmap, kwidth, stride=stride)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xp = F.pad(x, (self.kwidth // 2 - 1, self.kwidth // 2))
        return self.act(self.conv(xp))


class UpConv1dBlock(nn.Module):
    """SEGAN decoder step: a transposed conv multiplying T by stride.

    Odd kernels give one extra sample, dropped as the seed does to match TensorFlow.
    """

    def __init__(self, ninp: int, fmap: int, kwidth: int, stride: int, act: bool = True) -> None:
        super().__init__()
        assert stride > 1, stride
        self.kwidth = kwidth
        pad = max(0, (stride - kwidth) // -2)
        self.deconv = nn.ConvTranspose1d(ninp, fmap, kwidth, stride=stride, padding=pad)
        self.act = nn.ReLU(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.deconv(x)
        if self.kwidth % 2 != 0:
            h = h[:, :, :-1]
        return self.act(h)


@harness.register(
    "segan_generator",
    inputs=[Input("x", "(B, 1, T)")],
    outputs=["(B, 1, T)"],
    description="SEGAN 1-D U-Net generator: 4 strided convs down, 4 up, summed skips",
    family="gan",
    tags=("cnn", "conv1d", "generator", "unet", "skip-connections", "audio"),
    source="seed 002 (SEGAN skip-connections slides)",
    dims={"T": 8192, "K": Dim(31, kwarg="kwidth")},
    # Four poolings of 4; K >= 4 keeps every up step an exact x4 (see UpConv1dBlock).
    constraints=["T % 256 == 0", "K >= 4"],
    batch_sizes=(1, 8),
)
class Conv1dGenerator(nn.Module):
    """SEGAN's 1-D U-Net generator (seed 002), with encoder skips summed into the decoder.

    The decoder mirrors the encoder's feature maps down to one channel; its last
    layer has no activation.
    """

    def __init__(
        self, enc_fmaps: Sequence[int] = (64, 128, 256, 512), kwidth: int = 31, pooling: int = 4
    ) -> None:
        super().__init__()
        self.enc = nn.ModuleList()
        ninp = 1
        for fmap in enc_fmaps:
            self.enc.append(DownConv1dBlock(ninp, fmap, kwidth, pooling))
            ninp = fmap
        self.dec = nn.ModuleList()
        dec_fmaps = [*enc_fmaps[::-1][1:], 1]
        for di, fmap in enumerate(dec_fmaps, start=1):
            self.dec.append(UpConv1dBlock(ninp, fmap, kwidth, pooling, act=di < len(dec_fmaps)))
            ninp = fmap

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips: list[torch.Tensor] = []
        h = x
        for enc_layer in self.enc:
            h = enc_layer(h)
            skips.append(h)
        skips.pop()  # the bottleneck output is the decoder's input, not a skip
        for di, dec_layer in enumerate(self.dec):
            if di > 0:
                h = h + skips.pop()
            h = dec_layer(h)
        return h
