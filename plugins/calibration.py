"""A model whose work is an exact multiple of one knob, to validate the harness itself.

``calibration_matmul`` multiplies its input by one orthogonal matrix WORK times, so
its FLOPs (and, on a compute-bound device, its time) scale exactly with WORK: WORK=21
against WORK=20 is a true 5 % slowdown. ``scripts/validate_compare.py`` uses it to
measure how often ``harness compare`` detects such a change and how often it cries
wolf. The orthogonal matrix keeps activations bounded however large WORK is.
"""

from __future__ import annotations

import torch
from torch import nn

import harness
from harness import Dim, Input


@harness.register(
    "calibration_matmul",
    inputs=[Input("x", "(B, N)")],
    outputs=["(B, N)"],
    description="WORK products with one orthogonal N x N matrix: work scales exactly",
    family="calibration",
    tags=("calibration",),
    source="harness (validation of compare)",
    dims={"N": Dim(256, kwarg="size"), "WORK": Dim(20, kwarg="work")},
    batch_sizes=(64,),
)
class MatmulChain(nn.Module):
    def __init__(self, size: int = 256, work: int = 20):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.weight = nn.Parameter(
            nn.init.orthogonal_(torch.empty(size, size), generator=generator)
        )
        self.work = work

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(self.work):
            x = x @ self.weight
        return x
