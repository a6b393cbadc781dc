"""Fully connected models of seed 002: logistic regression, the softmax classifier and
the MLP, the last also written as the slides' "MLP as a CNN" with 1x1 convolutions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from itertools import pairwise

from torch import nn

import harness
from harness import Dim, Input

LayerFactory = Callable[[int, int], nn.Module]

NIN = Dim(100, kwarg="num_inputs")
NHID = Dim(1024, kwarg="hidden_size")
NOUT = Dim(20, kwarg="num_outputs")
FEATURES = Input("x", "(B, NIN)")


@harness.register(
    inputs=[FEATURES],
    outputs=["(B, 1)"],
    description="Logistic regression: Linear(NIN, 1) + Sigmoid",
    family="dense",
    tags=("linear", "classifier"),
    source="seed 002 (Fully Connected: A perceptron slide)",
    dims={"NIN": NIN},
    batch_sizes=(1, 256),
)
def perceptron(num_inputs: int = 100) -> nn.Sequential:
    """The slides' logistic regression: one unit squashed by a sigmoid."""
    return nn.Sequential(nn.Linear(num_inputs, 1), nn.Sigmoid())


def _log_softmax_classifier(layer: LayerFactory, sizes: Sequence[int]) -> nn.Sequential:
    """``layer(n_in, n_out)`` for each consecutive pair of ``sizes``, Tanh between them,
    LogSoftmax over dim 1 at the end.

    Dim 1 is the feature axis both of ``(B, F)`` for Linear and of ``(B, C, T)`` for
    Conv1d, so the same builder gives the MLP and its 1x1-convolution twin.
    """
    modules: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(pairwise(sizes)):
        if i:
            modules.append(nn.Tanh())
        modules.append(layer(n_in, n_out))
    modules.append(nn.LogSoftmax(dim=1))
    return nn.Sequential(*modules)


_pointwise_conv: LayerFactory = partial(nn.Conv1d, kernel_size=1)
"""A kernel of width 1 is a fully connected layer applied at every time step."""


@harness.register(
    inputs=[FEATURES],
    outputs=["(B, NOUT)"],
    description="Softmax classifier: Linear(NIN, NOUT) + LogSoftmax",
    family="dense",
    tags=("linear", "classifier"),
    source="seed 002 (Fully Connected: Multiclass classifier slide)",
    dims={"NIN": NIN, "NOUT": NOUT},
    batch_sizes=(1, 256),
)
def softmax_classifier(num_inputs: int = 100, num_outputs: int = 20) -> nn.Sequential:
    """The slides' multiclass linear classifier (log-probabilities, for NLLLoss)."""
    return _log_softmax_classifier(nn.Linear, (num_inputs, num_outputs))


@harness.register(
    inputs=[FEATURES],
    outputs=["(B, NOUT)"],
    description="MLP 100-1024-1024-20 with Tanh and LogSoftmax",
    family="dense",
    tags=("mlp", "classifier"),
    source="seed 002 (Fully Connected: MultiLayer Perceptron slide)",
    dims={"NIN": NIN, "NHID": NHID, "NOUT": NOUT},
    batch_sizes=(1, 256),
)
def mlp(num_inputs: int = 100, hidden_size: int = 1024, num_outputs: int = 20) -> nn.Sequential:
    """The slides' MLP: two Tanh hidden layers and a log-softmax output."""
    return _log_softmax_classifier(nn.Linear, (num_inputs, hidden_size, hidden_size, num_outputs))


@harness.register(
    inputs=[Input("x", "(B, NIN, T)")],
    outputs=["(B, NOUT, T)"],
    description="The MLP as 1x1 Conv1d layers, applied at every time step",
    family="dense",
    tags=("mlp", "cnn", "classifier"),
    source="seed 002 (Multi-Layer Perceptron: MLP as a CNN slide)",
    dims={"NIN": NIN, "NHID": NHID, "NOUT": NOUT, "T": 1},
    batch_sizes=(1, 256),
)
def mlp_conv1x1(
    num_inputs: int = 100, hidden_size: int = 1024, num_outputs: int = 20
) -> nn.Sequential:
    """The same MLP with Conv1d(., ., 1) layers, sweeping it over a time axis."""
    return _log_softmax_classifier(
        _pointwise_conv, (num_inputs, hidden_size, hidden_size, num_outputs)
    )
