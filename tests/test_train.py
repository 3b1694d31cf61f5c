"""train_stacked / evaluate_stacked: K stacked runs against K separate plain-Adam runs, scipy metrics, determinism."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from torch import nn
from torch.nn import functional as F

from infobound.errors import InputError
from infobound.harness.train import evaluate_stacked, train_stacked
from infobound.lora import inject_lora, trainable_parameters

K, N, D, C = 3, 24, 16, 3
SEEDS = [5, 6, 7]
TARGETS = ["0", "2"]


def mlp(d_out=C) -> nn.Sequential:
    gen = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(D, 12), nn.Tanh(), nn.Linear(12, d_out))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[-1]))
    return model


def data(seed=1, m=N, regression=False):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(K, m, D, generator=gen)
    if regression:
        return x, torch.randn(K, m, 2, generator=gen)
    return x, torch.randint(0, C, (K, m), generator=gen)


def stacked_model(mode, d_out=C):
    model = mlp(d_out)
    inject_lora(model, TARGETS, rank=2, mode=mode, stack=K, seeds=SEEDS)
    return model


def reference_batches(n, batch_size, seed, steps):
    """The documented scheme, written out: permutations from Generator(seed), drop the remainder."""
    gen = torch.Generator().manual_seed(seed)
    out, perm, pos = [], torch.randperm(n, generator=gen), 0
    for _ in range(steps):
        if pos + batch_size > n:
            perm, pos = torch.randperm(n, generator=gen), 0
        out.append(perm[pos:pos + batch_size])
        pos += batch_size
    return out


def separate_run(k, mode, x, y, steps, lr, batch_size, seed, loss, d_out=C, weight_decay=0.0):
    """One unstacked run with a plain Adam loop (the reference)."""
    model = mlp(d_out)
    inject_lora(model, TARGETS, rank=2, mode=mode, seed=SEEDS[k])
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=weight_decay)
    batches = reference_batches(N, batch_size, seed, steps) if batch_size else [slice(None)] * steps
    for idx in batches:
        out = model(x[k][idx])
        value = F.cross_entropy(out, y[k][idx]) if loss == "cross_entropy" else F.mse_loss(out, y[k][idx])
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
    return model


@pytest.mark.parametrize("mode", ["lora", "b_only", "a_only", "full"])
@pytest.mark.parametrize("batch_size", [None, 8])
def test_stacked_training_equals_separate_runs(mode, batch_size):
    x, y = data()
    model = stacked_model(mode)
    result = train_stacked(model, x, y, steps=25, lr=1e-2, batch_size=batch_size, seed=11, weight_decay=1e-3)
    assert result.loss_history.shape == (25, K) and result.stack == K
    moved = False
    for k in range(K):
        single = separate_run(k, mode, x, y, 25, 1e-2, batch_size, 11, "cross_entropy", weight_decay=1e-3)
        for name, p in single.named_parameters():
            if "lora_" in name:
                stacked = model.get_parameter(name)[k]
                np.testing.assert_allclose(stacked.detach(), p.detach(), atol=1e-5, err_msg=f"{name}[{k}]")
                moved |= p.requires_grad and bool(p.detach().abs().max() > 1e-3)
    assert moved  # the runs did train


def test_stacked_mse_training_equals_separate_runs():
    x, y = data(regression=True)
    model = stacked_model("b_only", d_out=2)
    train_stacked(model, x, y, steps=20, lr=1e-2, loss="mse")
    for k in range(K):
        single = separate_run(k, "b_only", x, y, 20, 1e-2, None, 0, "mse", d_out=2)
        for name in ("0.lora_B", "2.lora_B"):
            np.testing.assert_allclose(model.get_parameter(name)[k].detach(), single.get_parameter(name).detach(), atol=1e-5)


def test_training_reduces_loss_and_reports_progress():
    x, y = data()
    model = stacked_model("lora")
    seen = []
    result = train_stacked(model, x, y, steps=40, lr=3e-2, progress=seen.append)
    assert seen == list(range(40))
    assert np.all(result.final_loss < result.loss_history[0])
    np.testing.assert_array_equal(result.final_loss, result.loss_history[-1])
    # the first recorded loss is the base model's mean cross-entropy, by hand with scipy
    base = mlp()
    logits = base(x).detach().double().numpy()
    ce = logsumexp(logits, axis=-1) - np.take_along_axis(logits, y.numpy()[..., None], -1)[..., 0]
    np.testing.assert_allclose(result.loss_history[0], ce.mean(axis=1), rtol=1e-5)


def test_evaluate_against_scipy_and_chunking():
    x, y = data(m=30)
    model = stacked_model("lora")
    train_stacked(model, *data(), steps=10, lr=1e-2)
    metrics = evaluate_stacked(model, x, y)
    with torch.no_grad():
        logits = model(x).double().numpy()  # (K, m, C)
    labels = y.numpy()
    ce = logsumexp(logits, axis=-1) - np.take_along_axis(logits, labels[..., None], -1)[..., 0]
    wrong = logits.argmax(-1) != labels
    np.testing.assert_allclose(metrics["loss"], ce.mean(axis=1), rtol=1e-5)
    np.testing.assert_array_equal(metrics["zero_one"], wrong.astype(np.int8))
    np.testing.assert_allclose(metrics["error"], wrong.mean(axis=1), rtol=0, atol=1e-15)
    assert metrics["zero_one"].dtype == np.int8 and metrics["zero_one"].shape == (K, 30)
    chunked = evaluate_stacked(model, x, y, batch_size=7)
    np.testing.assert_array_equal(chunked["zero_one"], metrics["zero_one"])
    np.testing.assert_allclose(chunked["loss"], metrics["loss"], rtol=1e-6)
    # error_only: the same errors (numpy's argmax of the logits), no loss
    quick = evaluate_stacked(model, x, y, error_only=True)
    assert set(quick) == {"error", "zero_one"}
    np.testing.assert_array_equal(quick["zero_one"], wrong.astype(np.int8))
    assert quick["error"].tolist() == metrics["error"].tolist()
    # mse: mean over examples and outputs
    xr, yr = data(regression=True)
    reg = stacked_model("b_only", d_out=2)
    with torch.no_grad():
        mse = ((reg(xr) - yr) ** 2).double().numpy().mean(axis=(1, 2))
    np.testing.assert_allclose(evaluate_stacked(reg, xr, yr, loss="mse")["loss"], mse, rtol=1e-6)


def test_deterministic_bit_identical():
    x, y = data()
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        runs = []
        for _ in range(2):
            model = stacked_model("lora")
            result = train_stacked(model, x, y, steps=15, lr=1e-2, batch_size=8, seed=3)
            runs.append((model, result, evaluate_stacked(model, x, y)))
    finally:
        torch.use_deterministic_algorithms(previous)
    (m1, r1, e1), (m2, r2, e2) = runs
    for (n1, p1), (n2, p2) in zip(m1.named_parameters(), m2.named_parameters()):
        assert n1 == n2 and torch.equal(p1, p2), n1
    np.testing.assert_array_equal(r1.loss_history, r2.loss_history)
    for key in e1:
        np.testing.assert_array_equal(e1[key], e2[key])
    # a different minibatch seed gives a different run
    other = stacked_model("lora")
    train_stacked(other, x, y, steps=15, lr=1e-2, batch_size=8, seed=4)
    assert not torch.equal(other.get_parameter("0.lora_B"), m1.get_parameter("0.lora_B"))


def test_model_mode_restored_and_no_merge():
    x, y = data()
    model = stacked_model("lora")
    model.eval()
    train_stacked(model, x, y, steps=2, lr=1e-2)
    assert not model.training
    model.train()
    evaluate_stacked(model, x, y)
    assert model.training and not any(getattr(m, "merged", False) for m in model.modules())


def test_input_errors():
    x, y = data()
    unstacked = mlp()
    inject_lora(unstacked, TARGETS, rank=2)
    with pytest.raises(InputError, match="stacked"):
        train_stacked(unstacked, x, y, steps=1, lr=1e-2)
    shared_head = mlp()
    inject_lora(shared_head, ["0"], rank=2, stack=K, seeds=SEEDS, train_extra=["2"])
    with pytest.raises(InputError, match="shared by all 3 replicas.*2.weight"):
        train_stacked(shared_head, x, y, steps=1, lr=1e-2)
    model = stacked_model("lora")
    with pytest.raises(InputError, match="loss must be one of cross_entropy, mse"):
        train_stacked(model, x, y, steps=1, lr=1e-2, loss="hinge")
    with pytest.raises(InputError, match="x_train"):
        train_stacked(model, x[:2], y, steps=1, lr=1e-2)
    with pytest.raises(InputError, match="y_train"):
        train_stacked(model, x, y.float(), steps=1, lr=1e-2)
    with pytest.raises(InputError, match="batch_size"):
        train_stacked(model, x, y, steps=1, lr=1e-2, batch_size=N + 1)
    with pytest.raises(InputError, match="lr"):
        train_stacked(model, x, y, steps=1, lr=0.0)
    with pytest.raises(InputError, match="steps"):
        train_stacked(model, x, y, steps=-1, lr=1e-2)
    with pytest.raises(InputError, match=r"labels must be class indices in \[0, 2\]"):
        train_stacked(model, x, y + C, steps=1, lr=1e-2)
    with pytest.raises(InputError, match="progress"):
        train_stacked(model, x, y, steps=1, lr=1e-2, progress=3)
    frozen = copy.deepcopy(model).requires_grad_(False)
    assert trainable_parameters(frozen) == []
    with pytest.raises(InputError, match="no trainable parameter"):
        train_stacked(frozen, x, y, steps=1, lr=1e-2)


@pytest.mark.parametrize("weight_decay", [0.0, 1e-2])
def test_plain_adam_updates_equal_torch_adam_bit_for_bit(weight_decay):
    from infobound.harness.train import PlainAdam

    gen = torch.Generator().manual_seed(4)
    start = [torch.randn(3, 4, 5, generator=gen), torch.randn(7, generator=gen)]
    ours = [p.clone().requires_grad_(True) for p in start]
    theirs = [p.clone().requires_grad_(True) for p in start]
    a = PlainAdam(ours, lr=3e-2, weight_decay=weight_decay)
    b = torch.optim.Adam(theirs, lr=3e-2, weight_decay=weight_decay)
    for _ in range(40):
        grads = [torch.randn(p.shape, generator=gen) * 10 for p in start]
        for opt, params in ((a, ours), (b, theirs)):
            opt.zero_grad(set_to_none=True)
            for p, g in zip(params, grads):
                p.grad = g.clone()
            opt.step()
    for p, q, s in zip(ours, theirs, start):
        assert torch.equal(p, q) and not torch.equal(p, s)
