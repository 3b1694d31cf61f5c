"""Uniform quantisation of trained parameters to a grid fixed before any data is seen.

The information bounds charge ``q`` bits per trained parameter (``I(W; S) ≤ H(W) ≤ q · d_train``),
which holds once every trained parameter takes one of ``2**q`` values chosen in advance. A
``UniformGrid(bits, clip)`` is such a set: ``2**bits`` points evenly spaced on ``[-clip, clip]``
(both ends included), ``step = 2·clip / (2**bits - 1)``.

Rounding is computed in float64 and the result is cast back to the tensor's dtype. For
``bits ≥ 24`` a float32 tensor cannot hold every grid point: the values are then grid points
rounded to float32 precision. Casting is a function of the grid point, so the number of distinct
values is still at most ``2**bits`` and the information count stays valid. From about ``bits ≥ 52``
the float64 arithmetic itself (``(x + clip) / step``) is no finer than the grid, so values are
grid points to float64 precision, with the same guarantee on the count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from .codelength import Grid
from .errors import InputError

__all__ = ["QuantizeSummary", "UniformGrid", "quantize_trainable_"]


@dataclass(frozen=True)
class UniformGrid(Grid):
    """``2**bits`` points evenly spaced on ``[-clip, clip]``; values outside are clamped to the ends.

    The grid of ``codelength.Grid`` (its checks, ``levels`` and ``step`` are inherited, so the two
    are one definition), on torch tensors and up to 64 bits; ``Grid.indices`` and ``Grid.values``
    are its numpy twins, index for index (tested).
    """

    max_bits: ClassVar[int] = 64

    @property
    def _last(self) -> float:
        """Index of the last point as float64 (``2**bits - 1``, rounded to float64 for bits > 53)."""
        return float(self.levels - 1)

    def points(self, max_points: int = 2**20) -> torch.Tensor:
        """All grid points as a float64 tensor (only for grids of at most ``max_points`` points)."""
        if self.levels > max_points:
            raise InputError(f"points: a {self.bits}-bit grid has {self.levels} points, more than max_points={max_points}")
        return self._value(torch.arange(self.levels, dtype=torch.float64))

    def quantize(self, tensor: torch.Tensor) -> torch.Tensor:
        """The nearest grid point of every entry (clamped to ``[-clip, clip]``), in ``tensor``'s dtype."""
        if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
            raise InputError(f"quantize needs a floating-point torch tensor, got {_describe(tensor)}")
        x = tensor.detach().to(torch.float64).clamp(-self.clip, self.clip)
        index = torch.round((x + self.clip) / self.step).clamp(0.0, self._last)  # float64 index
        return self._value(index).to(tensor.dtype)

    def _value(self, index: torch.Tensor) -> torch.Tensor:
        """Grid point ``-clip + index·step`` (as numpy's linspace: the last point is exactly ``clip``)."""
        value = index * self.step - self.clip
        return torch.where(index == self._last, torch.full_like(value, self.clip), value)


@dataclass(frozen=True)
class QuantizeSummary:
    """What ``quantize_trainable_`` did."""

    parameters: int
    """Parameter tensors quantised."""
    elements: int
    """Scalar entries quantised."""
    fraction_clipped: float
    """Fraction of entries with ``|x| > clip`` (moved to an end of the grid)."""
    max_abs_error: float
    """Largest ``|q(x) - x|`` over all entries, clipped ones included."""
    max_rounding_error: float
    """Largest ``|q(x) - x|`` over entries inside ``[-clip, clip]``; at most ``step / 2`` (plus dtype precision)."""


@torch.no_grad()
def quantize_trainable_(model: nn.Module, grid: UniformGrid) -> QuantizeSummary:
    """Round every parameter with ``requires_grad`` of ``model`` to ``grid``, in place."""
    if not isinstance(model, nn.Module):
        raise InputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(grid, UniformGrid):
        raise InputError(f"grid must be a UniformGrid, got {type(grid).__name__}")
    params = [p for p in model.parameters() if p.requires_grad]
    elements = clipped = 0
    max_abs = max_round = 0.0
    for p in params:
        old = p.detach().to(torch.float64)
        p.copy_(grid.quantize(p))
        err = (p.detach().to(torch.float64) - old).abs()
        outside = old.abs() > grid.clip
        elements += p.numel()
        clipped += int(outside.sum())
        if err.numel():
            max_abs = max(max_abs, float(err.max()))
            inside = err[~outside]
            if inside.numel():
                max_round = max(max_round, float(inside.max()))
    fraction = clipped / elements if elements else 0.0
    return QuantizeSummary(len(params), elements, fraction, max_abs, max_round)


def _describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of dtype {value.dtype}"
    return type(value).__name__
