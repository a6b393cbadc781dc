"""Image classifiers from seed 002 ("Deep architectures"): the slides' AlexNet, GoogLeNet
and its Inception module (Szegedy et al. 2015, which the slides only picture), and the
slides' residual layer together with a small ResNet built from it.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

import harness
from harness import Dim, Input

IMAGENET_CLASSES = Dim(1000, kwarg="num_classes")
IMAGE = Input("x", "(B, 3, H, W)")


@harness.register(
    inputs=[IMAGE],
    outputs=["(B, NUM_CLASSES)"],
    description="AlexNet as on seed 002's first AlexNet slide (torchvision layout)",
    family="vision",
    tags=("cnn", "classifier", "imagenet"),
    source="seed 002 (AlexNet slide)",
    dims={"NUM_CLASSES": IMAGENET_CLASSES, "H": 224, "W": 224},
    # Below 63 the map entering the third max pool is smaller than its 3x3 window.
    constraints=["H >= 63 and W >= 63"],
    batch_sizes=(1, 8),
)
class AlexNet(nn.Module):
    """The first AlexNet of seed 002, layer for layer (the torchvision model).

    The adaptive pool fixes the classifier's input at 256x6x6 for any image size
    the convolutions accept.
    """

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(),
            nn.Linear(256 * 6 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        # flatten rather than the seed's view: same result, and it also accepts
        # channels_last inputs, which view cannot reshape.
        return self.classifier(torch.flatten(x, 1))


def conv_relu(
    in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, padding: int = 0
) -> nn.Sequential:
    """GoogLeNet's unit: every convolution is followed by a ReLU (no batch norm, no LRN)."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=padding), nn.ReLU(inplace=True)
    )


class Inception(nn.Module):
    """GoogLeNet's Inception module: 1x1, 3x3, 5x5 and pooling branches side by side.

    The 1x1 "reduce" convolutions before the 3x3 and 5x5 and the 1x1 projection
    after the pool keep the wide branches cheap; every branch keeps the spatial
    size, so their outputs concatenate on the channel axis.
    """

    def __init__(
        self, in_ch: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, pool_proj: int
    ) -> None:
        super().__init__()
        self.branch1 = conv_relu(in_ch, c1, 1)
        self.branch3 = nn.Sequential(conv_relu(in_ch, c3r, 1), conv_relu(c3r, c3, 3, padding=1))
        self.branch5 = nn.Sequential(conv_relu(in_ch, c5r, 1), conv_relu(c5r, c5, 5, padding=2))
        self.branch_pool = nn.Sequential(
            nn.MaxPool2d(3, stride=1, padding=1), conv_relu(in_ch, pool_proj, 1)
        )
        self.out_channels = c1 + c3 + c5 + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.branch1, self.branch3, self.branch5, self.branch_pool)
        return torch.cat([branch(x) for branch in branches], dim=1)


# (c1, c3r, c3, c5r, c5, pool_proj) of each Inception module, from Table 1 of
# Szegedy et al. (2015); a 3x3/2 max pool separates the stages 3, 4 and 5.
INCEPTION_STAGES: tuple[dict[str, tuple[int, int, int, int, int, int]], ...] = (
    {"3a": (64, 96, 128, 16, 32, 32), "3b": (128, 128, 192, 32, 96, 64)},
    {
        "4a": (192, 96, 208, 16, 48, 64),
        "4b": (160, 112, 224, 24, 64, 64),
        "4c": (128, 128, 256, 24, 64, 64),
        "4d": (112, 144, 288, 32, 64, 64),
        "4e": (256, 160, 320, 32, 128, 128),
    },
    {"5a": (256, 160, 320, 32, 128, 128), "5b": (384, 192, 384, 48, 128, 128)},
)


@harness.register(
    "inception_module",
    inputs=[Input("x", "(B, CIN, H, W)")],
    outputs=["(B, 256, H, W)"],
    description="GoogLeNet's Inception module 3a (1x1/3x3/5x5/pool branches -> 256)",
    family="vision",
    tags=("cnn", "block", "inception"),
    source="seed 002 (Inception module slide); widths from Szegedy et al. 2015",
    dims={"CIN": Dim(192, kwarg="in_channels"), "H": 28, "W": 28},
    batch_sizes=(1, 16),
)
def inception_3a(in_channels: int = 192) -> Inception:
    """GoogLeNet's first Inception module ("3a", 256 output channels) on its own."""
    return Inception(in_channels, *INCEPTION_STAGES[0]["3a"])


def _googlenet_pool() -> nn.MaxPool2d:
    """3x3/2 max pool rounding up (as Caffe and torchvision do), so 224 ends at 7x7."""
    return nn.MaxPool2d(3, stride=2, ceil_mode=True)


@harness.register(
    inputs=[IMAGE],
    outputs=["(B, NUM_CLASSES)"],
    description="GoogLeNet with 9 Inception modules, no LRN or auxiliary heads",
    family="vision",
    tags=("cnn", "classifier", "imagenet", "inception"),
    source="seed 002 (GoogleNet slide); layout from Szegedy et al. 2015, Table 1",
    dims={"NUM_CLASSES": IMAGENET_CLASSES, "H": 224, "W": 224},
    # Below 31 the map entering the last max pool is 1x1, and a 3x3/2 pool
    # needs at least 2 even with ceil_mode.
    constraints=["H >= 31 and W >= 31"],
    batch_sizes=(1, 8),
)
class GoogLeNet(nn.Module):
    """GoogLeNet after the paper's table: a plain convolutional stem, nine Inception
    modules in three stages, global average pooling and one linear classifier.

    Left out, as most reimplementations do: local response normalisation and the two
    auxiliary classifiers (they only matter for training the original network).
    """

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        layers: OrderedDict[str, nn.Module] = OrderedDict(
            conv1=conv_relu(3, 64, 7, stride=2, padding=3),
            pool1=_googlenet_pool(),
            conv2=conv_relu(64, 64, 1),
            conv3=conv_relu(64, 192, 3, padding=1),
            pool2=_googlenet_pool(),
        )
        in_ch = 192
        for pool_index, stage in enumerate(INCEPTION_STAGES, start=3):
            if pool_index > 3:
                layers[f"pool{pool_index - 1}"] = _googlenet_pool()
            for name, widths in stage.items():
                layers[f"inception{name}"] = block = Inception(in_ch, *widths)
                in_ch = block.out_channels
        self.features = nn.Sequential(layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.4)
        self.fc = nn.Linear(in_ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.fc(self.dropout(x))


def conv_bn_relu(in_ch: int, out_ch: int, bias: bool = True) -> nn.Sequential:
    """The seed's residual branch unit: 3x3 convolution keeping the size, batch norm, ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=bias),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


@harness.register(
    "resnet_layer",
    inputs=[Input("x", "(B, C, H, W)")],
    outputs=["(B, C, H, W)"],
    description="Seed 002's residual layer: two conv-BN-ReLU units plus identity",
    family="vision",
    tags=("cnn", "block", "residual"),
    source="seed 002 (ResLayer slide)",
    dims={"C": Dim(64, kwarg="num_inputs"), "H": 100, "W": 100},
    batch_sizes=(1, 8),
)
class ResLayer(nn.Module):
    """Seed 002's residual layer: two conv/BN/ReLU units whose output is added to the
    input, so the layers learn a residual with respect to it. Width is unchanged,
    which is what lets the identity shortcut be a plain addition.
    """

    def __init__(self, num_inputs: int) -> None:
        super().__init__()
        self.conv1 = conv_bn_relu(num_inputs, num_inputs)
        self.conv2 = conv_bn_relu(num_inputs, num_inputs)
        self.out_relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv2_h = self.conv2(self.conv1(x))
        return self.out_relu(x + conv2_h)


RESNET_WIDTH = 64


@harness.register(
    "resnet_small",
    inputs=[IMAGE],
    outputs=["(B, NUM_CLASSES)"],
    description="Small CIFAR-style ResNet: conv stem, N seed ResLayers at 64 channels",
    family="vision",
    tags=("cnn", "classifier", "residual"),
    source="seed 002 (ResLayer slide), assembled into a network",
    dims={
        "N": Dim(3, kwarg="num_blocks"),
        "NUM_CLASSES": Dim(10, kwarg="num_classes"),
        "H": 32,
        "W": 32,
    },
    batch_sizes=(1, 32),
)
class ResNetSmall(nn.Module):
    """A CIFAR-sized ResNet made of seed 002's ResLayer: stem, residual blocks at one
    width and resolution, global average pooling, linear classifier.

    The stem convolution has no bias because the batch norm after it cancels one.
    """

    def __init__(self, num_blocks: int = 3, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = conv_bn_relu(3, RESNET_WIDTH, bias=False)
        self.blocks = nn.Sequential(*(ResLayer(RESNET_WIDTH) for _ in range(num_blocks)))
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(RESNET_WIDTH, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))
