"""The calibration model: its work is exactly proportional to WORK, and it stays bounded."""

from __future__ import annotations

import torch

from harness.measure.flops import count_flops
from harness.models.register import registered_in
from harness_plugins import calibration


def _spec():
    (spec,) = registered_in(calibration)
    return spec


def test_flops_scale_exactly_with_work():
    spec = _spec()
    flops = {}
    for work in (20, 21):
        dims = spec.resolve_dims({"N": 64, "WORK": work})
        model = spec.build(dims)
        (x,) = spec.example_inputs(8, dims)
        flops[work] = count_flops(lambda model=model, x=x: model(x))
    assert flops[20] == 2 * 8 * 64 * 64 * 20
    assert flops[21] / flops[20] == 21 / 20


def test_orthogonal_weight_keeps_activations_bounded_at_any_work():
    spec = _spec()
    dims = spec.resolve_dims({"N": 32, "WORK": 500})
    model = spec.build(dims)
    (x,) = spec.example_inputs(4, dims)
    with torch.no_grad():
        y = model(x)
    assert y.shape == x.shape
    torch.testing.assert_close(y.norm(dim=1), x.norm(dim=1), rtol=1e-3, atol=1e-3)
