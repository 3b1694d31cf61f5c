"""UniformGrid and quantize_trainable_ against a brute-force nearest-point search over np.linspace."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from infobound.errors import InputError
from infobound.lora import inject_lora
from infobound.quantize import UniformGrid, quantize_trainable_


def samples(n, clip, seed=0, dtype=torch.float32) -> torch.Tensor:
    """Values inside and outside [-clip, clip], plus the ends and zero."""
    gen = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, generator=gen, dtype=torch.float64) * 3 - 1.5) * clip
    return torch.cat([x, torch.tensor([-clip, 0.0, clip], dtype=torch.float64)]).to(dtype)


def brute_nearest(x: np.ndarray, grid: np.ndarray) -> np.ndarray:
    return grid[np.abs(x[:, None] - grid[None, :]).argmin(axis=1)]


@pytest.mark.parametrize("bits", [1, 2, 3, 5, 8])
@pytest.mark.parametrize("clip", [0.5, 2.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_quantize_matches_brute_force_nearest_point(bits, clip, dtype):
    points = np.linspace(-clip, clip, 2**bits)  # enumerated independently of the code under test
    x = samples(2000, clip, seed=bits, dtype=dtype)
    q = UniformGrid(bits, clip).quantize(x)
    assert q.dtype == dtype and q.shape == x.shape
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    xs, qs = x.double().numpy(), q.double().numpy()
    np.testing.assert_allclose(qs, brute_nearest(qs, points), rtol=0, atol=tol)  # q is a grid point
    best = np.abs(xs[:, None] - points[None, :]).min(axis=1)
    np.testing.assert_allclose(np.abs(qs - xs), best, rtol=0, atol=tol)  # ... and a nearest one (ties: either)
    untied = np.abs(xs) > 1e-3 * clip  # away from the tie at 0 the nearest point is unique
    np.testing.assert_allclose(qs[untied], brute_nearest(xs, points)[untied], rtol=0, atol=tol)


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
def test_distinct_values_at_most_two_to_the_bits_and_all_reached(bits):
    grid = UniformGrid(bits, 1.0)
    x = samples(5000, 1.0, seed=3)
    q = grid.quantize(x)
    distinct = torch.unique(q).numel()
    assert distinct <= 2**bits
    assert distinct == 2**bits  # 5000 values spread over [-1.5, 1.5] hit every point
    assert math.isclose(grid.step, 2 / (2**bits - 1))


@pytest.mark.parametrize("bits", [1, 4, 8, 16])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_idempotent(bits, dtype):
    grid = UniformGrid(bits, 0.75)
    q = grid.quantize(samples(3000, 0.75, seed=bits, dtype=dtype))
    assert torch.equal(grid.quantize(q), q)


@pytest.mark.parametrize("bits", [2, 6, 12])
def test_clipping_and_rounding_error(bits):
    clip = 1.25
    grid = UniformGrid(bits, clip)
    x = samples(4000, clip, seed=bits, dtype=torch.float64)
    q = grid.quantize(x)
    outside = x.abs() > clip
    assert outside.any()
    assert torch.equal(q[outside], torch.sign(x[outside]) * clip)  # clamped to the ends exactly
    step = 2 * clip / (2**bits - 1)
    assert (q - x)[~outside].abs().max() <= step / 2 + 1e-12
    assert q.abs().max() <= clip


@pytest.mark.parametrize("bits", [24, 30])
def test_float32_beyond_24_bits_is_a_grid_point_to_float32_precision(bits):
    clip = 1.0
    step = 2 * clip / (2**bits - 1)
    x = samples(2000, clip, seed=bits, dtype=torch.float32)
    q = UniformGrid(bits, clip).quantize(x).double().numpy()
    frac = (q + clip) / step
    distance = np.abs(frac - np.round(frac)) * step  # distance to the nearest grid point, float64
    assert distance.max() <= np.finfo(np.float32).eps * clip
    inside = np.abs(x.double().numpy()) <= clip
    assert np.abs(q - x.double().numpy())[inside].max() <= step / 2 + np.finfo(np.float32).eps


def test_dtype_is_preserved():
    x = samples(100, 1.0)
    for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        assert UniformGrid(3, 1.0).quantize(x.to(dtype)).dtype == dtype


def test_quantize_trainable_rounds_only_trained_parameters():
    gen = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 12), nn.Tanh(), nn.Linear(12, 3))
    inject_lora(model, ["0"], rank=2, mode="b_only", train_extra=["2"])
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    grid = UniformGrid(3, 1.0)
    summary = quantize_trainable_(model, grid)
    trained = ["0.lora_B", "2.weight", "2.bias"]
    points = np.linspace(-1.0, 1.0, 8)
    old = np.concatenate([before[n].double().numpy().ravel() for n in trained])
    new = np.concatenate([model.get_parameter(n).detach().double().numpy().ravel() for n in trained])
    np.testing.assert_allclose(new, brute_nearest(old, points), atol=1e-6)
    for name, p in model.named_parameters():
        if name not in trained:
            assert torch.equal(p, before[name]), name
    assert summary.parameters == 3 and summary.elements == 12 * 2 + 12 * 3 + 3 == old.size
    assert summary.fraction_clipped == pytest.approx(np.mean(np.abs(old) > 1.0))
    assert summary.max_abs_error == pytest.approx(np.abs(new - old).max(), abs=1e-6)
    assert summary.max_rounding_error <= grid.step / 2 + 1e-6
    assert summary.max_rounding_error == pytest.approx(np.abs(new - old)[np.abs(old) <= 1.0].max(), abs=1e-6)


def test_points_and_validation():
    np.testing.assert_allclose(UniformGrid(3, 2.0).points().numpy(), np.linspace(-2, 2, 8), atol=1e-15)
    for bits in (0, 65, 1.5, True, "8"):
        with pytest.raises(InputError, match="bits"):
            UniformGrid(bits, 1.0)
    for clip in (0, -1.0, math.inf, math.nan, "1", True):
        with pytest.raises(InputError, match="clip"):
            UniformGrid(4, clip)
    with pytest.raises(InputError, match="floating-point"):
        UniformGrid(4, 1.0).quantize(torch.arange(3))
    with pytest.raises(InputError, match="max_points"):
        UniformGrid(40, 1.0).points()
    with pytest.raises(InputError, match="grid"):
        quantize_trainable_(nn.Linear(2, 2), 8)
    assert UniformGrid(64, 1.0).quantize(torch.tensor([2.0, -3.0])).tolist() == [1.0, -1.0]
