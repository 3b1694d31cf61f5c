"""LoRALinear, inject_lora and spec_from_model against hand counts, numpy/scipy references and PEFT's rules."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from infobound.errors import InputError
from infobound.lora import (
    fixed_input,
    folded_replicas,
    FrozenInit,
    LoRALinear,
    inject_lora,
    spec_from_model,
    stack_size,
    trainable_parameters,
)
from infobound.presets import select_layers
from infobound.spec import LayerSpec, Mode

MODES = ["lora", "b_only", "a_only", "full"]
INITS = ["orthonormal", "gaussian", "kaiming"]
TRAINED = {"lora": {"lora_A", "lora_B"}, "b_only": {"lora_B"}, "a_only": {"lora_A"}, "full": {"lora_delta"}}


def linear(d_in=16, d_out=12, seed=0, dtype=torch.float32) -> nn.Linear:
    layer = nn.Linear(d_in, d_out).to(dtype)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(d_out, d_in, generator=gen, dtype=dtype) / math.sqrt(d_in))
        layer.bias.copy_(torch.randn(d_out, generator=gen, dtype=dtype))
    return layer


def mlp(seed=0) -> nn.Sequential:
    model = nn.Sequential(linear(16, 12, seed), nn.Tanh(), linear(12, 8, seed + 1), nn.Tanh(), linear(8, 3, seed + 2))
    return model


def randomise_trained(layer: LoRALinear, seed=1) -> None:
    """Give every trained tensor non-zero values (the trained factor starts at zero)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if p.requires_grad:
                p.copy_(0.3 * torch.randn(p.shape, generator=gen, dtype=p.dtype))


def x_like(*shape, seed=7) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------------- init state
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("init", INITS)
def test_adapted_model_equals_base_at_init_exactly(mode, init):
    base = mlp()
    adapted = copy.deepcopy(base)
    inject_lora(adapted, ["0", "2", "4"], rank=2, mode=mode, init=init, seed=3)
    x = x_like(5, 16)
    assert torch.equal(adapted(x), base(x))
    stacked = copy.deepcopy(base)
    inject_lora(stacked, "all-linear", rank=2, mode=mode, init=init, stack=3, seeds=[1, 2, 3])
    xs = x_like(3, 5, 16)
    # the stacked layer adds ΔW = 0 to W0 exactly, then multiplies in one batched product (bmm),
    # whose rounding may differ from nn.Linear's in the last bit
    for layer in stacked.modules():
        if hasattr(layer, "delta_weight"):
            assert not layer.delta_weight().any()
    torch.testing.assert_close(stacked(xs), base(xs), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("mode", MODES)
def test_gradients_reach_only_the_trained_factor(mode):
    layer = LoRALinear(linear(), rank=2, mode=mode)
    randomise_trained(layer)  # so that A in lora mode gets a non-zero gradient too
    layer(x_like(4, 16)).pow(2).sum().backward()
    for name, p in layer.named_parameters():
        if name in TRAINED[mode]:
            assert p.requires_grad and p.grad is not None and p.grad.abs().max() > 0, name
        else:
            assert not p.requires_grad and p.grad is None, name
    optimizer = torch.optim.Adam(trainable_parameters(layer), lr=1e-2)
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    named = dict(layer.named_parameters())
    assert in_optimizer == {id(named[n]) for n in TRAINED[mode]}
    # one step moves only what trains
    before = {n: p.detach().clone() for n, p in layer.named_parameters()}
    optimizer.step()
    for name, p in layer.named_parameters():
        assert torch.equal(p, before[name]) != (name in TRAINED[mode]), name


@pytest.mark.parametrize("mode", MODES)
def test_inject_freezes_everything_but_adapters_and_extras(mode):
    model = mlp()
    replaced = inject_lora(model, ["0", "2"], rank=2, mode=mode, train_extra=["4"])
    assert replaced == ["0", "2"]
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    expected = {f"{i}.{t}" for i in ("0", "2") for t in TRAINED[mode]} | {"4.weight", "4.bias"}
    assert trainable == expected


# --------------------------------------------------------------------------------- inits
@pytest.mark.parametrize("d_in,d_out,r", [(16, 12, 2), (12, 16, 5), (7, 7, 7)])
def test_orthonormal_factors_have_orthonormal_rows_or_columns(d_in, d_out, r):
    a = LoRALinear(linear(d_in, d_out), rank=r, mode="b_only", seed=4).lora_A.detach().double()  # (r, d_in)
    np.testing.assert_allclose(a @ a.T, np.eye(r), atol=1e-5)
    a = LoRALinear(linear(d_in, d_out), rank=r, mode="lora", seed=4).lora_A.detach().double()
    np.testing.assert_allclose(a @ a.T, np.eye(r), atol=1e-5)
    b = LoRALinear(linear(d_in, d_out), rank=r, mode="a_only", seed=4).lora_B.detach().double()  # (d_out, r)
    np.testing.assert_allclose(b.T @ b, np.eye(r), atol=1e-5)


def test_orthonormal_spans_top_singular_vectors_of_documented_uniform_draw():
    d_in, d_out, r, seed = 10, 6, 3, 11
    m = (torch.rand(d_out, d_in, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) - 0.5).numpy()
    u, _, vh = np.linalg.svd(m)  # numpy's LAPACK call, independent of the layer's torch SVD
    a = LoRALinear(linear(d_in, d_out, dtype=torch.float64), r, "b_only", seed=seed).lora_A.detach().numpy()
    np.testing.assert_allclose(a.T @ a, vh[:r].T @ vh[:r], atol=1e-10)  # same row-space projector
    b = LoRALinear(linear(d_in, d_out, dtype=torch.float64), r, "a_only", seed=seed).lora_B.detach().numpy()
    np.testing.assert_allclose(b @ b.T, u[:, :r] @ u[:, :r].T, atol=1e-10)


def test_orthonormal_draw_is_isotropic_on_average():
    # M's law is invariant under signed permutations of columns (rows), so E[AᵀA] = (r/d_in) I and
    # E[B Bᵀ] = (r/d_out) I exactly; Monte Carlo over 300 seeds.
    d_in, d_out, r, runs = 8, 6, 2, 300
    base = linear(d_in, d_out, dtype=torch.float64)
    mean_a = sum(LoRALinear(base, r, "b_only", seed=s).lora_A.detach().numpy().T
                 @ LoRALinear(base, r, "b_only", seed=s).lora_A.detach().numpy() for s in range(runs)) / runs
    np.testing.assert_allclose(mean_a, r / d_in * np.eye(d_in), atol=0.06)
    mean_b = sum((lambda b: b @ b.T)(LoRALinear(base, r, "a_only", seed=s).lora_B.detach().numpy())
                 for s in range(runs)) / runs
    np.testing.assert_allclose(mean_b, r / d_out * np.eye(d_out), atol=0.06)


def test_gaussian_and_kaiming_distributions():
    d_in, d_out, r = 200, 150, 16
    base = linear(d_in, d_out, dtype=torch.float64)
    a = LoRALinear(base, r, "b_only", init="gaussian", seed=2).lora_A.detach().numpy().ravel()
    assert stats.kstest(a, stats.norm(0, 1 / math.sqrt(r)).cdf).pvalue > 1e-3
    b = LoRALinear(base, r, "a_only", init="gaussian", seed=2).lora_B.detach().numpy().ravel()
    assert stats.kstest(b, stats.norm(0, 1 / math.sqrt(r)).cdf).pvalue > 1e-3
    # PEFT's kaiming_uniform_(a=√5): gain = √(2/(1+5)), bound = gain·√(3/fan_in) = 1/√fan_in
    bound_a = math.sqrt(2 / 6) * math.sqrt(3 / d_in)
    a = LoRALinear(base, r, "lora", init="kaiming", seed=2).lora_A.detach().numpy().ravel()
    assert np.abs(a).max() <= bound_a
    assert stats.kstest(a, stats.uniform(-bound_a, 2 * bound_a).cdf).pvalue > 1e-3
    bound_b = math.sqrt(2 / 6) * math.sqrt(3 / r)  # frozen B: (d_out, r), fan_in = r
    b = LoRALinear(base, r, "a_only", init="kaiming", seed=2).lora_B.detach().numpy().ravel()
    assert np.abs(b).max() <= bound_b
    assert stats.kstest(b, stats.uniform(-bound_b, 2 * bound_b).cdf).pvalue > 1e-3


@pytest.mark.parametrize("init", INITS)
def test_draws_ignore_global_rng_and_depend_on_seed(init):
    torch.manual_seed(1)
    first = LoRALinear(linear(), 2, "b_only", init=init, seed=5).lora_A.detach().clone()
    torch.manual_seed(2)
    torch.rand(100)
    again = LoRALinear(linear(), 2, "b_only", init=init, seed=5).lora_A.detach()
    other = LoRALinear(linear(), 2, "b_only", init=init, seed=6).lora_A.detach()
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)


# --------------------------------------------------------------------------------- stacking
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("init", INITS)
def test_stacked_replicas_draw_and_compute_like_separate_layers(mode, init):
    seeds = [3, 9, 3]
    base = linear()
    stacked = LoRALinear(base, 2, mode, init=init, stack=3, seeds=seeds)
    singles = [LoRALinear(copy.deepcopy(base), 2, mode, init=init, seed=s) for s in seeds]
    for k, single in enumerate(singles):
        randomise_trained(single, seed=20 + k)
        for name, p in single.named_parameters():
            if name.startswith("lora_"):
                sp = getattr(stacked, name)
                assert sp.shape == (3, *p.shape) and sp.requires_grad == p.requires_grad
                if not p.requires_grad:
                    assert torch.equal(sp[k], p)  # the frozen draw is identical
                with torch.no_grad():
                    sp[k].copy_(p)
    x = x_like(3, 5, 16)
    out = stacked(x)
    assert out.shape == (3, 5, 12)
    for k, single in enumerate(singles):
        np.testing.assert_allclose(out[k].detach(), single(x[k]).detach(), atol=1e-5)


def test_folded_replicas_equal_the_stacked_layout_and_are_refused_outside_the_context():
    layer = LoRALinear(linear(), 2, "lora", stack=3, seeds=[1, 2, 3])
    randomise_trained(layer, seed=5)
    x = x_like(3, 4, 7, 16)  # (K, b, tokens, d_in)
    stacked = layer(x)
    with folded_replicas():
        folded = layer(x.reshape(12, 7, 16))  # what a one-batch network hands its layers
    assert torch.equal(folded.reshape(3, 4, 7, 12), stacked)
    with pytest.raises(InputError, match="K=3"):
        layer(x.reshape(12, 7, 16))
    with folded_replicas(), pytest.raises(InputError, match="K=3"):
        layer(torch.zeros(4, 7, 16))  # 4 rows cannot hold 3 replicas


def test_stacked_inject_replica_equals_unstacked_inject():
    seeds = [4, 8]
    stacked = mlp()
    inject_lora(stacked, ["0", "2"], rank=2, mode="b_only", stack=2, seeds=seeds)
    assert stack_size(stacked) == 2
    for k, s in enumerate(seeds):
        single = mlp()
        inject_lora(single, ["0", "2"], rank=2, mode="b_only", seed=s)
        for name in ("0.lora_A", "2.lora_A"):
            assert torch.equal(stacked.get_parameter(name)[k], single.get_parameter(name))
    twice = mlp()
    inject_lora(twice, ["0", "2"], rank=2, mode="b_only", stack=2, seeds=seeds)
    assert torch.equal(twice.get_parameter("0.lora_A"), stacked.get_parameter("0.lora_A"))


def test_layers_of_the_same_shape_draw_differently():
    model = Net()
    inject_lora(model, ["q"], rank=2, mode="b_only", seed=0)
    a0, a1 = model.get_parameter("blocks.0.q.lora_A"), model.get_parameter("blocks.1.q.lora_A")
    assert a0.shape == a1.shape and not torch.allclose(a0, a1)


# --------------------------------------------------------------------------------- merging
@pytest.mark.parametrize("mode", MODES)
def test_merge_unmerge_round_trip(mode):
    layer = LoRALinear(linear(), rank=2, mode=mode, alpha=3.0)
    randomise_trained(layer)
    x = x_like(6, 16)
    before = layer(x).detach()
    weight = layer.base.weight.detach().clone()
    layer.eval()  # never merges as a side effect
    assert not layer.merged and torch.equal(layer.base.weight, weight)
    layer.merge()
    # the merged weight, by hand in float64: W + (alpha / r) B A, or W + delta
    if mode == "full":
        delta = layer.lora_delta.detach().double()
    else:
        delta = 1.5 * layer.lora_B.detach().double() @ layer.lora_A.detach().double()
    np.testing.assert_allclose(layer.base.weight.detach().double(), weight.double() + delta, atol=1e-6)
    np.testing.assert_allclose(layer(x).detach(), before, rtol=1e-6, atol=1e-6)
    with pytest.raises(RuntimeError, match="already merged"):
        layer.merge()
    layer.unmerge()
    assert torch.equal(layer.base.weight, weight)
    assert torch.equal(layer(x).detach(), before)
    with pytest.raises(RuntimeError, match="not merged"):
        layer.unmerge()


def test_stacked_layer_refuses_merge():
    layer = LoRALinear(linear(), 2, "lora", stack=2)
    with pytest.raises(RuntimeError, match="stacked"):
        layer.merge()


def test_scaling_alpha_over_rank_against_numpy():
    layer = LoRALinear(linear(dtype=torch.float64), rank=2, mode="lora", alpha=8.0)
    randomise_trained(layer)
    x = x_like(5, 16).double()
    a, b = layer.lora_A.detach().numpy(), layer.lora_B.detach().numpy()
    w, bias = layer.base.weight.detach().numpy(), layer.base.bias.detach().numpy()
    expected = x.numpy() @ w.T + bias + 4.0 * (x.numpy() @ a.T) @ b.T  # scaling 8 / 2
    np.testing.assert_allclose(layer(x).detach().numpy(), expected, atol=1e-12)


# --------------------------------------------------------------------------------- targets
class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.q = nn.Linear(8, 8)
        self.xq = nn.Linear(8, 8)
        self.v = nn.Linear(8, 4)
        self.norm = nn.LayerNorm(8)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([Block(), Block()])
        self.head = nn.Linear(8, 3)


@pytest.mark.parametrize("targets,expected", [
    (["q"], ["blocks.0.q", "blocks.1.q"]),  # "xq" does not end with ".q"
    ("q,v", ["blocks.0.q", "blocks.0.v", "blocks.1.q", "blocks.1.v"]),
    (["0.xq", "head"], ["blocks.0.xq", "head"]),
    (["blocks.1.v"], ["blocks.1.v"]),
])
def test_targets_follow_peft_suffix_rule(targets, expected):
    model = Net()
    specs = [LayerSpec(n, m.in_features, m.out_features) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    assert [l.name for l in select_layers(specs, targets)] == expected
    assert inject_lora(model, targets, rank=2) == expected
    assert all(isinstance(model.get_submodule(n), LoRALinear) for n in expected)


# --------------------------------------------------------------------------------- spec
def optimizer_elements(model) -> int:
    optimizer = torch.optim.Adam(trainable_parameters(model), lr=1e-3)
    return sum(p.numel() for group in optimizer.param_groups for p in group["params"])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("rank", [1, 3])
@pytest.mark.parametrize("stack", [None, 4])
@pytest.mark.parametrize("extra", [(), ("head",)])
def test_spec_counts_match_what_the_optimizer_receives(mode, rank, stack, extra):
    model = Net()
    inject_lora(model, ["q", "v"], rank=rank, mode=mode, stack=stack, train_extra=extra)
    spec = spec_from_model(model, bits=8)
    head = 8 * 3 + 3 if extra else 0
    per_replica = (optimizer_elements(model) - head) / (stack or 1) + head
    assert spec.trainable_params == per_replica
    assert spec.mode is Mode.parse(mode) and spec.rank == rank and spec.bits == 8
    assert dict(spec.extra) == ({"head": head} if extra else {})
    assert [(l.name, l.d_in, l.d_out, l.rank) for l in spec.layers] == [
        ("blocks.0.q", 8, 8, None), ("blocks.0.v", 8, 4, None), ("blocks.1.q", 8, 8, None), ("blocks.1.v", 8, 4, None)]


def test_spec_hand_count_and_per_layer_ranks():
    model = mlp()
    inject_lora(model, ["0", "2"], rank=2, mode="lora")
    # 2·(16 + 12) + 2·(12 + 8) = 96
    assert spec_from_model(model).trainable_params == 96
    inject_lora(model, ["4"], rank=3, mode="lora")  # 3·(8 + 3) = 33 more; layers 0, 2 stay trained
    spec = spec_from_model(model)
    assert [l.rank for l in spec.layers] == [2, 2, 3]
    assert spec.trainable_params == 96 + 33 == optimizer_elements(model)


def test_spec_errors():
    with pytest.raises(InputError, match="no LoRALinear"):
        spec_from_model(mlp())
    model = mlp()
    inject_lora(model, ["0"], rank=2, mode="lora")
    inject_lora(model, ["2"], rank=2, mode="b_only")
    with pytest.raises(InputError, match="one mode"):
        spec_from_model(model)
    model = mlp()
    inject_lora(model, ["0"], rank=2, mode="b_only")
    model.requires_grad_(True)  # unfreezes the frozen factor and the base: the spec would miscount
    with pytest.raises(InputError, match="should train exactly lora_B"):
        spec_from_model(model)


# --------------------------------------------------------------------------------- input errors
def test_input_errors_name_the_parameter():
    with pytest.raises(InputError, match="mode must be one of"):
        LoRALinear(linear(), 2, mode="c_only")
    with pytest.raises(InputError, match="init must be one of orthonormal, gaussian, kaiming"):
        LoRALinear(linear(), 2, init="xavier")
    assert FrozenInit.parse("Gaussian") is FrozenInit.GAUSSIAN
    with pytest.raises(InputError, match="rank"):
        LoRALinear(linear(16, 12), 13)
    with pytest.raises(InputError, match="alpha"):
        LoRALinear(linear(), 2, alpha=0)
    with pytest.raises(InputError, match="base must be a torch.nn.Linear"):
        LoRALinear(nn.Conv1d(2, 2, 1), 2)
    with pytest.raises(InputError, match="seeds must hold one seed per replica"):
        LoRALinear(linear(), 2, stack=3, seeds=[1, 2])
    with pytest.raises(InputError, match="needs stack"):
        LoRALinear(linear(), 2, seeds=[1, 2])
    with pytest.raises(InputError, match="seed"):
        LoRALinear(linear(), 2, seed=-1)
    with pytest.raises(InputError, match=r"K=2"):
        LoRALinear(linear(), 2, stack=2)(x_like(3, 4, 16))
    with pytest.raises(InputError, match=r"rank must be at most min\(d_in, d_out\) = 4 for layer 'blocks.0.v'"):
        inject_lora(Net(), ["v"], rank=5)
    with pytest.raises(InputError, match="'k_proj' matches no nn.Linear.*blocks.0.q, blocks.0.xq"):
        inject_lora(Net(), ["k_proj"], rank=2)
    with pytest.raises(InputError, match="train_extra: 'classifier' matches no module"):
        inject_lora(Net(), ["q"], rank=2, train_extra=["classifier"])
    with pytest.raises(InputError, match="train_extra"):
        inject_lora(Net(), ["q"], rank=2, train_extra=["blocks"])  # contains an adapted layer
    with pytest.raises(InputError, match="stack size"):
        model = mlp()
        inject_lora(model, ["0"], rank=2, stack=2)
        inject_lora(model, ["2"], rank=2, stack=3)
        stack_size(model)


@pytest.mark.parametrize("mode", ["lora", "b_only", "a_only", "full"])
def test_fixed_input_gives_the_ordinary_forward_and_gradients_up_to_rounding(mode):
    gen = torch.Generator().manual_seed(3)
    base = nn.Linear(16, 12)
    with torch.no_grad():
        base.weight.copy_(torch.randn(12, 16, generator=gen) / 4)
        base.bias.copy_(torch.randn(12, generator=gen))
    layer = LoRALinear(base, rank=3, mode=mode, alpha=6.0, stack=4, seeds=[1, 2, 3, 4])
    with torch.no_grad():  # a trained factor away from its zero init, so every term counts
        for name in layer.trained_names():
            layer.get_parameter(name).copy_(torch.randn(layer.get_parameter(name).shape, generator=gen))
    x = torch.randn(4, 9, 16, generator=gen)
    other = torch.randn(4, 9, 16, generator=gen)

    def run(inp):
        layer.zero_grad(set_to_none=True)
        out = layer(inp)
        (out * torch.linspace(-1, 1, 12)).sum().backward()
        return out.detach(), {n: layer.get_parameter(n).grad.clone() for n in layer.trained_names()}

    plain, plain_grads = run(x)
    plain_other, _ = run(other)
    # the reference written out: replica k's x_k (W0 + scaling B_k A_k)^T + b, in float64
    w = base.weight.double() + layer.delta_weight().detach().double()
    reference = torch.einsum("kbi,koi->kbo", x.double(), w) + base.bias.double()
    with fixed_input(layer, x):
        fixed, fixed_grads = run(x)
        again, _ = run(x)  # the cached products are reused, not consumed
        with_other, _ = run(other)  # another tensor: the ordinary forward
        cached = layer._fixed[1]
    assert layer._fixed is None
    np.testing.assert_allclose(fixed.double(), reference, rtol=0, atol=1e-5)
    np.testing.assert_allclose(plain.double(), reference, rtol=0, atol=1e-5)
    assert torch.equal(again, fixed) and torch.equal(with_other, plain_other)
    for name, grad in plain_grads.items():
        np.testing.assert_allclose(fixed_grads[name], grad, rtol=1e-5, atol=1e-5)
    if mode != "b_only":
        assert cached == {}  # where A trains, the ordinary (merged) forward is kept
    else:
        assert torch.equal(cached["base"], nn.functional.linear(x, base.weight, base.bias))
        assert torch.equal(cached["xa"], torch.bmm(x, layer.lora_A.detach().transpose(1, 2)))
