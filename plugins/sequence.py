"""Sequence models of seed 002: a bag-of-embeddings classifier, the RNN and LSTM layers,
1-D (valid, padded, causal and transposed) convolutions, and the f-pooling QRNN layer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

import harness
from harness import Dim, Input


@harness.register(
    "embedding_classifier",
    inputs=[Input("tokens", "(B, T)", dtype="index", high="V")],
    outputs=["(B, NUM_CLASSES)"],
    description="Bag of embeddings: Embedding(10000, 100), mean over tokens, Linear",
    family="sequence",
    tags=("embedding", "classifier", "text"),
    source="seed 002 (Embedding Layer slide, emb_2) plus a linear classifier",
    dims={
        "V": Dim(10000, kwarg="vocab_size"),
        "E": Dim(100, kwarg="embedding_dim"),
        "NUM_CLASSES": Dim(10, kwarg="num_classes"),
        "T": 50,
    },
    batch_sizes=(1, 64),
)
class EmbeddingClassifier(nn.Module):
    """Token ids -> the slides' ``nn.Embedding`` lookup -> mean over tokens -> Linear.

    Averaging makes it a bag of embeddings: order-free, and any sequence length
    gives one fixed-size vector for the classifier.
    """

    def __init__(
        self, vocab_size: int = 10000, embedding_dim: int = 100, num_classes: int = 10
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.fc = nn.Linear(embedding_dim, num_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.fc(self.embedding(tokens).mean(dim=1))


@harness.register(
    "rnn",
    inputs=[Input("x", "(B, T, NIN)")],
    outputs=["(B, T, NOUT)"],
    description="Elman RNN(100, 512) with a per-step Linear + LogSoftmax",
    family="sequence",
    tags=("rnn", "recurrent"),
    source="seed 002 (Recurrent Layer: Connecting an RNN with a FC layer slide)",
    dims={
        "NIN": Dim(100, kwarg="num_inputs"),
        "HID": Dim(512, kwarg="hidden_size"),
        "NOUT": Dim(10, kwarg="num_outputs"),
        "L": Dim(1, kwarg="num_layers"),
        "T": 100,
    },
    batch_sizes=(1, 16),
)
class RNNClassifier(nn.Module):
    """The slides' "Connecting an RNN with a FC layer": per-step log-probabilities.

    ``batch_first=True`` is what lets the Linear act on the RNN output directly: its
    last axis is then the hidden size at every (batch, time) position.
    """

    def __init__(
        self,
        num_inputs: int = 100,
        hidden_size: int = 512,
        num_outputs: int = 10,
        num_layers: int = 1,
    ) -> None:
        super().__init__()
        self.rnn = nn.RNN(num_inputs, hidden_size, num_layers=num_layers, batch_first=True)
        self.fc = nn.Sequential(nn.Linear(hidden_size, num_outputs), nn.LogSoftmax(dim=2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ht, _ = self.rnn(x)
        return self.fc(ht)


@harness.register(
    inputs=[Input("x", "(B, T, NIN)")],
    outputs=["(B, T, HID)", "(L, B, HID)", "(L, B, HID)"],
    description="LSTM(100, 512), batch first, returning outputs and (h, c) states",
    family="sequence",
    tags=("lstm", "recurrent"),
    source="seed 002 (LSTM Layer slide)",
    dims={
        "NIN": Dim(100, kwarg="num_inputs"),
        "HID": Dim(512, kwarg="hidden_size"),
        "L": Dim(1, kwarg="num_layers"),
        "T": 100,
    },
    batch_sizes=(1, 16),
)
def lstm(num_inputs: int = 100, hidden_size: int = 512, num_layers: int = 1) -> nn.LSTM:
    """The slides' LSTM layer; it returns ``(ht, (hT, cT))``, its outputs and both states."""
    return nn.LSTM(num_inputs, hidden_size, num_layers=num_layers, batch_first=True)


Padding = Literal["valid", "same", "causal"]

KERNEL = Dim(3, kwarg="kernel_width")
SIGNAL = Input("x", "(B, 1, T)")


def _register_conv1d(
    name: str, padding: Padding, output: str, description: str, constraints: Sequence[str] = ()
) -> Callable[[type[Conv1dLayer]], type[Conv1dLayer]]:
    """The three Conv1d slides differ only in padding, output length and constraint."""
    return harness.register(
        name,
        inputs=[SIGNAL],
        outputs=[output],
        description=description,
        family="sequence",
        tags=("cnn", "conv1d", padding),
        source=f"seed 002 (Convolutional Layer slides, {padding} padding)",
        kwargs={"padding": padding},
        dims={"K": KERNEL, "T": 8},
        constraints=constraints,
        batch_sizes=(1, 64),
    )


# Decorators apply from the bottom up: conv1d registers first, conv1d_causal last.
@_register_conv1d(
    "conv1d_causal",
    "causal",
    "(B, 1024, T)",
    "Causal Conv1d(1, 1024, 3): K - 1 zeros on the left only",
)
# An even K would make the padded output one step longer than T.
@_register_conv1d(
    "conv1d_padded",
    "same",
    "(B, 1024, T)",
    "Conv1d(1, 1024, 3) padded by K // 2 on both sides: same length",
    constraints=["K % 2 == 1"],
)
@_register_conv1d(
    "conv1d",
    "valid",
    "(B, 1024, T - K + 1)",
    "Conv1d(1, 1024, 3) without padding: K - 1 steps shorter",
    constraints=["T >= K"],
)
class Conv1dLayer(nn.Module):
    """The slides' ``Conv1d(1, 1024, 3)`` with one of their three paddings.

    ``valid``: none, the output loses ``K - 1`` steps. ``same``: ``K // 2`` zeros on
    both sides, the length is kept for odd ``K``. ``causal``: ``K - 1`` zeros on the
    left only, so output ``t`` sees inputs up to ``t`` and never later ones.
    """

    def __init__(
        self,
        in_channels: int = 1,
        hidden_size: int = 1024,
        kernel_width: int = 3,
        padding: Padding = "valid",
    ) -> None:
        super().__init__()
        if padding not in ("valid", "same", "causal"):
            raise ValueError(f"padding must be 'valid', 'same' or 'causal', got {padding!r}")
        self.left_pad = kernel_width - 1 if padding == "causal" else 0
        self.conv = nn.Conv1d(
            in_channels,
            hidden_size,
            kernel_width,
            padding=kernel_width // 2 if padding == "same" else 0,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.left_pad:
            x = F.pad(x, (self.left_pad, 0))
        return self.conv(x)


@harness.register(
    inputs=[SIGNAL],
    outputs=["(B, 1, (T - 1) * S + K)"],
    description="ConvTranspose1d(1, 1, 8, stride=4) as a learnable upsampler",
    family="sequence",
    tags=("cnn", "conv1d", "upsampling"),
    source="seed 002 (Transposed Convolutional Layer slide)",
    dims={"K": Dim(8, kwarg="kernel_width"), "S": Dim(4, kwarg="stride"), "T": 2},
    batch_sizes=(1, 64),
)
def conv_transpose1d(kernel_width: int = 8, stride: int = 4) -> nn.ConvTranspose1d:
    """The slides' learnable upsampler: ``T`` steps become ``(T - 1) * stride + kernel``."""
    return nn.ConvTranspose1d(1, 1, kernel_width, stride=stride)


@harness.register(
    "qrnn",
    inputs=[Input("x", "(B, T, NIN)")],
    outputs=["(B, T, NOUT)", "(B, NOUT)"],
    description="Quasi-RNN layer (causal conv + f-pooling), 100 -> 512, kernel 2",
    family="sequence",
    tags=("qrnn", "recurrent", "cnn"),
    source="seed 002 (QRNN slides, fQRNNLayer with its two bugs fixed)",
    dims={
        "NIN": Dim(100, kwarg="num_inputs"),
        "NOUT": Dim(512, kwarg="num_outputs"),
        "K": Dim(2, kwarg="kwidth"),
        "T": 100,
    },
    batch_sizes=(1, 16),
)
class FQRNNLayer(nn.Module):
    """Seed 002's ``fQRNNLayer``: a quasi-recurrent layer with f-pooling (Bradbury et al.).

    A causal convolution computes the candidates ``z_t`` and forget gates ``f_t`` of
    all steps in parallel; only the cheap pooling ``h_t = f_t * h_{t-1} + (1 - f_t) * z_t``
    runs sequentially. Two fixes to the slide's code: the time loop runs also when a
    state is passed (the slide indents it under ``else``), and the zero state follows
    the input's device and dtype.
    """

    def __init__(self, num_inputs: int = 100, num_outputs: int = 512, kwidth: int = 2) -> None:
        super().__init__()
        self.num_outputs = num_outputs
        self.kwidth = kwidth
        # Twice the feature maps: z_t and f_t come from the same convolution.
        self.conv = nn.Conv1d(num_inputs, num_outputs * 2, kwidth)

    def forward(
        self, x: torch.Tensor, state: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` is ``(B, T, num_inputs)``, ``state`` ``(B, num_outputs)``; returns all
        ``h_t`` as ``(B, T, num_outputs)`` and the last one as ``(B, num_outputs)``."""
        # Convolution part: channels first for Conv1d, left padding keeps it causal.
        xp = F.pad(x.transpose(1, 2), (self.kwidth - 1, 0))
        zt, ft = torch.chunk(self.conv(xp), 2, dim=1)
        ft = torch.sigmoid(ft)
        zt = torch.tanh(zt)
        # Sequential part: f-pooling through time, on (B, num_outputs, 1) slices.
        if state is None:
            ht_1 = torch.zeros(ft.size(0), self.num_outputs, 1, device=ft.device, dtype=ft.dtype)
        else:
            ht_1 = state.unsqueeze(2)
        zts = torch.chunk(zt, zt.size(2), dim=2)
        fts = torch.chunk(ft, ft.size(2), dim=2)
        hts = []
        for z, f in zip(zts, fts):
            ht = ht_1 * f + (1 - f) * z
            hts.append(ht.transpose(1, 2))
            ht_1 = ht
        return torch.cat(hts, dim=1), ht_1.squeeze(2)
