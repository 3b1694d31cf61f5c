"""One readable training loop for K runs of the same shape at once (stacked ``LoRALinear`` replicas).

A stacked model maps ``(K, batch, d) -> (K, batch, C)``: its ``LoRALinear`` layers hold K independent
adapters over one frozen base, and plain ``nn.Linear`` layers and elementwise activations broadcast
over the leading K. The objective is the sum over replicas of each replica's mean loss, so the
gradient of replica k's parameters is exactly replica k's own gradient; Adam is elementwise, so
training K stacked replicas equals K separate runs (same seeds, same data).

Every trainable parameter must therefore belong to one replica: a trainable module shared by all
replicas (a plain classifier head) would see the sum of K gradients and couple the runs, so
``train_stacked`` refuses it.

Minibatches (``batch_size`` given): a ``torch.Generator`` seeded with ``seed`` draws a permutation of
the n training indices; consecutive slices of ``batch_size`` indices form the steps' batches; when
fewer than ``batch_size`` indices remain, a fresh permutation is drawn (the remainder is dropped). All
replicas use the same indices at a step (each on its own data). ``batch_size=None`` is full batch.

Everything here is deterministic (index_select, bmm, cross-entropy): the same inputs give
bit-identical outputs. Modules that draw random numbers in training mode (dropout) use torch's
global generator; seed it for repeatable runs. Global torch settings (threads) are left alone.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from numbers import Real

import numpy as np
import torch
from torch import nn

from ..errors import Choice, InputError
from ..validation import check_int
from ..lora import fixed_input, lora_layers, stack_size, trainable_parameters

__all__ = ["Loss", "PlainAdam", "TrainResult", "evaluate_stacked", "make_adam", "train_stacked"]


class Loss(Choice):
    """Training / evaluation loss."""

    CROSS_ENTROPY = "cross_entropy"
    """Mean cross-entropy of logits ``(K, n, C)`` against int64 labels ``(K, n)``; also the 0-1 error."""
    MSE = "mse"
    """Mean squared error over examples and outputs, targets ``(K, n, d_out)`` (or ``(K, n)`` if d_out = 1)."""


@dataclass(frozen=True)
class TrainResult:
    """What ``train_stacked`` did; the model itself is trained in place."""

    loss_history: np.ndarray
    """(steps, K) float64: each replica's mean training loss on the step's batch, before the step's update."""
    steps: int
    stack: int
    """K, the number of replicas."""
    seconds: float
    """Wall-clock time of the loop (not part of any deterministic output)."""

    @property
    def final_loss(self) -> np.ndarray:
        """(K,) the last recorded batch loss (NaN before any step); use ``evaluate_stacked`` after training."""
        if self.steps == 0:
            return np.full(self.stack, np.nan)
        return self.loss_history[-1]


def train_stacked(
    model: nn.Module,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    *,
    steps: int,
    lr: float,
    weight_decay: float = 0.0,
    batch_size: int | None = None,
    loss: Loss | str = Loss.CROSS_ENTROPY,
    seed: int = 0,
    progress: Callable[[int], object] | None = None,
) -> TrainResult:
    """Train the K stacked replicas of ``model`` with Adam over ``trainable_parameters(model)``.

    ``x_train``: (K, n, d) float; ``y_train``: (K, n) int64 labels (cross_entropy) or (K, n, d_out)
    float targets (mse). ``progress(step)`` is called after every step (e.g. a tqdm bar's update).
    The model is put in training mode for the loop and returned to its previous mode after.
    """
    loss = Loss.parse(loss)
    k = _stack_of(model)
    steps = check_int("steps", steps, 0)
    lr = _check_real("lr", lr, positive=True)
    weight_decay = _check_real("weight_decay", weight_decay, positive=False)
    seed = check_int("seed", seed, 0, 2**63 - 1)
    if progress is not None and not callable(progress):
        raise InputError(f"progress must be a callable taking the step number, or None, got {progress!r}")
    device = _device_of(model)
    x, y = _check_data(x_train, y_train, k, loss, device, "x_train", "y_train")
    n = x.shape[1]
    if batch_size is not None:
        batch_size = check_int(f"batch_size (n = {n} training examples)", batch_size, 1, n)
    params = _replica_parameters(model, k)

    optimizer = make_adam(params, lr=lr, weight_decay=weight_decay)
    batches = _batch_indices(n, batch_size, seed, device)
    if loss is Loss.CROSS_ENTROPY:
        with torch.no_grad():
            _check_labels(model(x[:, :1]), y)
    history = torch.empty(steps, k, dtype=x.dtype, device=device)  # kept on device: no sync per step
    was_training = model.training
    model.train()
    start = time.perf_counter()
    # full batch: the first layer sees this same x at every step, so its products with frozen
    # tensors are computed once (lora.fixed_input); minibatches are new tensors and skip it
    fixed = fixed_input(model, x) if batch_size is None else contextlib.nullcontext()
    try:
        with fixed:
            for step in range(steps):
                idx = next(batches)
                xb = x if idx is None else x.index_select(1, idx)  # (K, b, d)
                yb = y if idx is None else y.index_select(1, idx)
                per_replica = _per_replica_loss(model(xb), yb, loss)  # (K,)
                optimizer.zero_grad(set_to_none=True)
                per_replica.sum().backward()  # replica k's parameters get replica k's gradient only
                optimizer.step()
                history[step] = per_replica.detach()
                if progress is not None:
                    progress(step)
    finally:
        model.train(was_training)
    return TrainResult(history.to("cpu", torch.float64).numpy(), steps, k, time.perf_counter() - start)


@torch.no_grad()
def evaluate_stacked(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    loss: Loss | str = Loss.CROSS_ENTROPY,
    batch_size: int | None = None,
    error_only: bool = False,
) -> dict[str, np.ndarray]:
    """Per-replica metrics of a stacked model on ``x`` (K, m, d), ``y`` as for ``train_stacked``.

    Returns numpy arrays: ``loss`` (K,) float64, the mean cross-entropy or MSE; for cross_entropy
    also ``error`` (K,) float64, the 0-1 error rate (ties in the logits go to the lowest class index),
    and ``zero_one`` (K, m) int8, each example's 0-1 loss (kept for per-example bounds; int8, so
    differences of two such arrays stay exact). ``batch_size`` evaluates in chunks of that many
    examples (same numbers, less memory). The model is evaluated in eval mode and returned to its
    previous mode; adapters are never merged by this. ``error_only`` (cross_entropy): only ``error``
    and ``zero_one``, without the cross-entropy (the same error; for choosing among many models).
    """
    loss = Loss.parse(loss)
    k = _stack_of(model)
    x, y = _check_data(x, y, k, loss, _device_of(model), "x", "y")
    m = x.shape[1]
    chunk = m if batch_size is None else check_int("batch_size", batch_size, 1)
    was_training = model.training
    model.eval()
    sums = torch.zeros(k, dtype=torch.float64)
    wrong = []
    try:
        for lo in range(0, m, chunk):
            out = model(x[:, lo:lo + chunk])
            yb = y[:, lo:lo + chunk]
            if loss is Loss.CROSS_ENTROPY:
                _check_labels(out, yb)
                if not error_only:
                    sums += _cross_entropy(out, yb).to("cpu", torch.float64).sum(dim=1)
                wrong.append((out.argmax(dim=-1) != yb).to("cpu", torch.int8))
            else:
                sums += _squared_error(out, yb).to("cpu", torch.float64).flatten(1).sum(dim=1)
    finally:
        model.train(was_training)
    if loss is Loss.CROSS_ENTROPY:
        zero_one = torch.cat(wrong, dim=1).numpy() if wrong else np.zeros((k, 0), np.int8)
        if error_only:
            return {"error": zero_one.mean(axis=1, dtype=np.float64), "zero_one": zero_one}
        return {
            "loss": (sums / m).numpy(),
            "error": zero_one.mean(axis=1, dtype=np.float64),
            "zero_one": zero_one,
        }
    outputs = y.shape[2]
    return {"loss": (sums / (m * outputs)).numpy()}


ADAM_EPS = 1e-8


def make_adam(params, *, lr: float, weight_decay: float = 0.0):
    """Adam with ``torch.optim.Adam``'s defaults (betas (0.9, 0.999), eps 1e-8, L2 weight decay
    added to the gradient). On CUDA: ``torch.optim.Adam`` with its fused kernel. Elsewhere:
    ``PlainAdam``, the same arithmetic as ``torch.optim.Adam``'s default CPU implementation, op for
    op (bit-identical updates), without the optimizer framework: it skips ``torch.optim``'s per-step
    overhead and its import of ``torch._dynamo`` (about 2 s in every new worker process)."""
    params = list(params)
    if params and all(p.device.type == "cuda" and p.is_floating_point() for p in params):
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True)
    return PlainAdam(params, lr=lr, weight_decay=weight_decay)


class PlainAdam:
    """``torch.optim.Adam`` (single-tensor implementation, no amsgrad, no maximize) for a fixed list
    of parameters: ``zero_grad(set_to_none=True)`` and ``step()``."""

    def __init__(self, params, *, lr: float, weight_decay: float = 0.0, betas=(0.9, 0.999), eps: float = ADAM_EPS):
        self.params = list(params)
        self.lr, self.weight_decay, self.betas, self.eps = lr, weight_decay, betas, eps
        self.exp_avg = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.steps = 0

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        beta1, beta2 = self.betas
        self.steps += 1
        step = float(self.steps)  # torch keeps the count as a float32 tensor: exact to 2**24
        bias_correction1 = 1 - beta1**step
        bias_correction2_sqrt = (1 - beta2**step) ** 0.5
        step_size = self.lr / bias_correction1
        for p, exp_avg, exp_avg_sq in zip(self.params, self.exp_avg, self.exp_avg_sq):
            grad = p.grad
            if grad is None:
                continue
            if self.weight_decay != 0:
                grad = grad.add(p, alpha=self.weight_decay)
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(self.eps)
            p.addcdiv_(exp_avg, denom, value=-step_size)


# ------------------------------------------------------------------------------------ helpers
def _per_replica_loss(out: torch.Tensor, y: torch.Tensor, loss: Loss) -> torch.Tensor:
    if loss is Loss.CROSS_ENTROPY:
        return _cross_entropy(out, y).mean(dim=1)  # (K, b) -> (K,)
    return _squared_error(out, y).flatten(1).mean(dim=1)


def _cross_entropy(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(K, b, C) logits, (K, b) labels -> (K, b) per-example cross-entropy."""
    if out.dim() != 3 or out.shape[:2] != y.shape:
        raise InputError(f"model output must have shape (K, batch, classes) = {tuple(y.shape)} + (C,), got {tuple(out.shape)}")
    # log Σ exp(z) − z_y: the same value as F.cross_entropy, about 3× faster on (K, b, C) on CPU
    return torch.logsumexp(out, dim=-1) - out.gather(-1, y.unsqueeze(-1)).squeeze(-1)


def _check_labels(out: torch.Tensor, y: torch.Tensor) -> None:
    c = out.shape[-1]
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= c):
        raise InputError(f"labels must be class indices in [0, {c - 1}] for {c} model outputs, got range "
                         f"[{int(y.min())}, {int(y.max())}]")


def _squared_error(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if out.shape != y.shape:
        raise InputError(f"model output {tuple(out.shape)} and targets {tuple(y.shape)} must have the same shape for mse")
    return (out - y.to(out.dtype)) ** 2


def _stack_of(model: nn.Module) -> int:
    if not isinstance(model, nn.Module):
        raise InputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    k = stack_size(model)
    if k is None:
        raise InputError("model must carry stacked LoRALinear layers (inject_lora(..., stack=K)); its layers are unstacked")
    return k


def _replica_parameters(model: nn.Module, k: int) -> list[nn.Parameter]:
    """The optimizer's parameters; each must belong to one stacked replica."""
    params = trainable_parameters(model)
    if not params:
        raise InputError("model has no trainable parameter")
    own = {id(p) for _, layer in lora_layers(model) for n, p in layer.named_parameters() if n.startswith("lora_")}
    shared = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in own]
    if shared:
        raise InputError(
            f"train_stacked: trainable parameters shared by all {k} replicas would couple the runs: "
            f"{', '.join(shared)}; freeze them, or adapt those layers with LoRALinear (e.g. mode='full')"
        )
    return params


def _device_of(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _check_data(x, y, k: int, loss: Loss, device, xname: str, yname: str) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.as_tensor(x)
    y = torch.as_tensor(y)
    if x.dim() != 3 or x.shape[0] != k or not x.is_floating_point():
        raise InputError(f"{xname} must be a float tensor of shape (K={k}, n, d), got {x.dtype} {tuple(x.shape)}")
    if loss is Loss.CROSS_ENTROPY:
        if y.dtype != torch.int64 or tuple(y.shape) != tuple(x.shape[:2]):
            raise InputError(f"{yname} must be an int64 tensor of class labels, shape (K, n) = {tuple(x.shape[:2])}, "
                             f"got {y.dtype} {tuple(y.shape)}")
    else:
        if y.dim() == 2:
            y = y.unsqueeze(-1)
        if not y.is_floating_point() or y.dim() != 3 or tuple(y.shape[:2]) != tuple(x.shape[:2]):
            raise InputError(f"{yname} must be a float tensor of targets, shape (K, n, d_out) with (K, n) = "
                             f"{tuple(x.shape[:2])}, got {y.dtype} {tuple(y.shape)}")
    if x.shape[1] == 0:
        raise InputError(f"{xname} must hold at least one example, got shape {tuple(x.shape)}")
    return x.to(device), y.to(device)


def _batch_indices(n: int, batch_size: int | None, seed: int, device):
    """Yield each step's example indices (None: the full batch); see the module docstring."""
    if batch_size is None:
        while True:
            yield None
    gen = torch.Generator(device="cpu").manual_seed(seed)
    perm, pos = torch.randperm(n, generator=gen), 0
    while True:
        if pos + batch_size > n:
            perm, pos = torch.randperm(n, generator=gen), 0
        yield perm[pos:pos + batch_size].to(device)
        pos += batch_size


def _check_real(name: str, value, positive: bool) -> float:
    allowed = "a finite number > 0" if positive else "a finite number >= 0"
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise InputError(f"{name} must be {allowed}, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise InputError(f"{name} must be {allowed}, got {value!r}")
    return float(value)
