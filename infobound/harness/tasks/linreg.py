"""``linreg``: THEORY.md §2, least squares with one bias-free linear layer and Gaussian data.

y = (W0 + Δ) x + ε with rank Δ = k, x ~ N(0, Σ), ε ~ N(0, s² I); the loss is the squared error
averaged over outputs (``LinregTask.loss_scale`` = 1 / d_out times THEORY's L).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from ...errors import InputError
from ...validation import check_int, check_real
from .base import (STREAM_TEACHER, STREAM_TEST_NOISE, STREAM_TEST_X, STREAM_TRAIN_NOISE, STREAM_TRAIN_X, Task,
                   TaskConfig, build_pretrained, random_orthonormal, stream_rng)

@dataclass(frozen=True)
class LinregConfig(TaskConfig):
    """Least squares. W0 has N(0, w0_scale²/d_in) entries (rounded to float32); Δ = delta_norm/√k ·
    U Vᵀ (U, V random orthonormal, k = ``delta_rank``), so ‖Δ‖_F = delta_norm; Σ = R diag(λ) Rᵀ with
    λ_j ∝ cov_decay^j (j = 0..d_in−1) scaled to Tr Σ = d_in, or ``cov_eigenvalues`` as given;
    R random orthogonal (``cov_basis="random"``) or I (``"identity"``); noise ε ~ N(0, noise_std² I)."""

    d_in: int = 32
    d_out: int = 16
    delta_rank: int = 2
    delta_norm: float = 1.0
    cov_decay: float = 0.8
    cov_eigenvalues: tuple[float, ...] | None = None
    cov_basis: str = "random"
    noise_std: float = 0.5
    w0_scale: float = 1.0
    test_size: int = 5000
    max_n: int = 10**6
    _rules: ClassVar[dict[str, tuple]] = {
        "d_in": ("int", 1), "d_out": ("int", 1), "delta_norm": ("float", 0.0),
        "cov_decay": ("float", 0.0, 1.0, True), "cov_basis": ("choice", ("random", "identity")),
        "noise_std": ("float", 0.0), "w0_scale": ("float", 0.0), "test_size": ("int", 1), "max_n": ("int", 1),
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        self._set("delta_rank", check_int("delta_rank", self.delta_rank, 1, min(self.d_in, self.d_out)))
        if self.cov_eigenvalues is not None:
            values = tuple(check_real("cov_eigenvalues", v, 0.0) for v in self.cov_eigenvalues)
            if len(values) != self.d_in:
                raise InputError(f"cov_eigenvalues must list d_in = {self.d_in} numbers >= 0, got {len(values)}")
            self._set("cov_eigenvalues", values)


class LinregTask(Task):
    """THEORY §2: y = W_targ x + ε, x ~ N(0, Σ), ε ~ N(0, s² I); the network is one bias-free layer.

    Exposes read-only float64 arrays: ``w0`` (d_out, d_in), exactly the network's float32 weight;
    ``delta`` = W_targ − W0; ``w_target``; ``cov`` = Σ (d_in, d_in); ``cov_eigenvalues``; and
    ``noise_var`` = s² (a float). The task's mse is the mean over outputs: its population loss at
    W0 + BA is ``loss_scale`` · L(A, B), L = Tr[(Δ − BA) Σ (Δ − BA)ᵀ] + d_out s² as in THEORY §2.
    """

    name, loss_kind, config_class = "linreg", "mse", LinregConfig
    prior_statement = ("The base weight W0 is drawn from its own random stream, not trained on any data, so "
                       "it never saw the fine-tuning data; no certificate is computed (the loss is unbounded).")
    default_targets = ("layer",)
    n_classes = None

    def __init__(self, config: LinregConfig | None = None):
        super().__init__(config)
        cfg = self.config
        self.d_in, self.d_out, self.max_n = cfg.d_in, cfg.d_out, cfg.max_n
        self.loss_scale = 1.0 / cfg.d_out
        rng = stream_rng(cfg.seed, STREAM_TEACHER)
        w0 = rng.standard_normal((cfg.d_out, cfg.d_in)) * cfg.w0_scale / math.sqrt(cfg.d_in)
        self.w0 = w0.astype(np.float32).astype(np.float64)  # the network holds it exactly
        u, v = random_orthonormal(rng, cfg.d_out, cfg.delta_rank), random_orthonormal(rng, cfg.d_in, cfg.delta_rank)
        self.delta = cfg.delta_norm / math.sqrt(cfg.delta_rank) * (u @ v.T)  # (d_out, k) @ (k, d_in)
        self.w_target = self.w0 + self.delta
        if cfg.cov_eigenvalues is not None:
            eig = np.asarray(cfg.cov_eigenvalues, dtype=np.float64)
        else:
            eig = cfg.cov_decay ** np.arange(cfg.d_in, dtype=np.float64)
            eig *= cfg.d_in / eig.sum()
        basis = random_orthonormal(rng, cfg.d_in, cfg.d_in) if cfg.cov_basis == "random" else np.eye(cfg.d_in)
        self.cov_eigenvalues, self.cov = eig, (basis * eig) @ basis.T  # R diag(λ) Rᵀ
        self._cov_sqrt = (basis * np.sqrt(eig)) @ basis.T  # symmetric square root of Σ
        self.noise_var = cfg.noise_std**2
        for array in (self.w0, self.delta, self.w_target, self.cov, self.cov_eigenvalues):
            array.flags.writeable = False

    def architecture(self) -> nn.Module:
        """The single linear layer with fresh, untrained weights (shapes only)."""
        return nn.Sequential(OrderedDict(layer=nn.Linear(self.d_in, self.d_out, bias=False)))

    def base_model(self) -> nn.Module:
        return build_pretrained(self.architecture, {"layer.weight": torch.from_numpy(self.w0.astype(np.float32))})

    def _draw(self, n: int, seed: int, x_tag: int, noise_tag: int, weight: np.ndarray):
        x = stream_rng(seed, x_tag).standard_normal((n, self.d_in)) @ self._cov_sqrt  # (n, d_in), Cov Σ
        noise = stream_rng(seed, noise_tag).standard_normal((n, self.d_out)) * self.config.noise_std
        y = x @ weight.T + noise  # (n, d_in) @ (d_in, d_out)
        return torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.float32))

    def _train_set(self, n: int, seed: int):
        return self._draw(n, seed, STREAM_TRAIN_X, STREAM_TRAIN_NOISE, self.w_target)

    def test_set(self):
        return self._draw(self.config.test_size, self.config.seed, STREAM_TEST_X, STREAM_TEST_NOISE, self.w_target)

    def source_test_set(self):
        return self._draw(self.config.test_size, self.config.seed, STREAM_TEST_X, STREAM_TEST_NOISE, self.w0)

    def describe(self) -> str:
        cfg, eig = self.config, self.cov_eigenvalues
        start = float(np.trace(self.delta @ self.cov @ self.delta.T)) + cfg.d_out * self.noise_var
        return (f"linreg: y = (W0 + Δ) x + ε, rank Δ = {cfg.delta_rank}, ‖Δ‖_F = {cfg.delta_norm}, x ~ N(0, Σ) "
                f"in R^{cfg.d_in} (eigenvalues {eig.max():.3g} to {eig.min():.3g}, {cfg.cov_basis} basis), ε ~ "
                f"N(0, {self.noise_var:g} I_{cfg.d_out}). Loss: squared error averaged over outputs = L / {cfg.d_out}; "
                f"at W0, L = Tr[Δ Σ Δᵀ] + d_out s² = {start:.4g}. Test: {cfg.test_size} samples; training sets: "
                f"fresh draws per seed (n <= {cfg.max_n}). {self.prior_statement}")
