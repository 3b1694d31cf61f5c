"""The seed bound against hand calculations, THEORY's worked values, and its properties at scale."""

import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import infobound as ib
from infobound import AdapterSpec, InputError, Mode


def hand_bound(d_train, bits, n, sigma):
    return math.sqrt(2 * sigma**2 * math.log(2) * bits * d_train / n)


def test_theory_worked_values_roberta_large_qkv():
    spec = ib.preset_spec("roberta-large", "query,key,value", rank=8, bits=16)
    assert len(spec.layers) == 72
    lora = ib.bound(spec, n=392_702, sigma=1.0, mode="lora")
    b_only = ib.bound(spec, n=392_702, sigma=1.0, mode="b_only")
    assert round(lora.bound, 2) == 8.16 and round(b_only.bound, 2) == 5.77
    assert lora.vacuous and b_only.vacuous
    assert lora.trainable_params == 72 * 8 * 2048
    assert lora.bound == pytest.approx(hand_bound(72 * 8 * 2048, 16, 392_702, 1.0), rel=1e-14)


def test_named_terms_fit_together():
    spec = ib.preset_spec("llama-2-7b", rank=8, mode="b_only")
    res = ib.bound(spec, n=52_002)
    assert res.trainable_params == 2_097_152
    assert res.info_bits == 16 * 2_097_152
    assert res.info_nats == pytest.approx(res.info_bits * math.log(2), rel=1e-15)
    assert res.bound == pytest.approx(hand_bound(2_097_152, 16, 52_002, 0.5), rel=1e-14)
    assert res.kind.startswith("expectation bound")
    assert res.to_dict()["mode"] == "b_only"


def test_vacuous_means_at_least_loss_range():
    spec = AdapterSpec([("q", 8, 8)], rank=1, bits=1, mode="b_only")  # d_train = 8
    d, sigma = 8, 0.5
    n_edge = 2 * sigma**2 * math.log(2) * d / (2 * sigma) ** 2  # bound == 2σ exactly here
    assert ib.bound(spec, n=math.floor(n_edge)).vacuous
    assert not ib.bound(spec, n=math.ceil(n_edge) + 1).vacuous


def test_vectorised_equals_scalar_loop():
    spec = ib.preset_spec("roberta-base", "query,value")
    ranks = np.array([1, 2, 8, 64])[:, None, None]
    ns = np.array([10, 1e4, 1e9])[None, :, None]
    bits = np.array([1, 8, 32])[None, None, :]
    res = ib.bound(spec, n=ns, rank=ranks, bits=bits, mode="b_only")
    assert res.bound.shape == (4, 3, 3)
    for i, r in enumerate(ranks.ravel()):
        for j, n in enumerate(ns.ravel()):
            for k, q in enumerate(bits.ravel()):
                d_train = int(r) * 12 * 2 * 768
                expected = hand_bound(d_train, int(q), float(n), 0.5)
                assert res.bound[i, j, k] == pytest.approx(expected, rel=1e-13)
                assert res.vacuous[i, j, k] == (expected >= 1.0)


def test_sample_size_ratio_and_equivalent_rank():
    spec = AdapterSpec([("a", 12, 12), ("b", 12, 12)], rank=3)
    n_needed = ib.sample_size(spec, 0.1, mode="lora")
    assert n_needed == pytest.approx(2 * 0.25 * math.log(2) * 16 * 3 * 48 / 0.01, rel=1e-14)
    assert ib.bound(spec, n=n_needed).bound == pytest.approx(0.1, rel=1e-12)
    assert ib.mode_ratio(spec, "b_only", "lora") == pytest.approx(1 / math.sqrt(2), rel=1e-15)
    assert ib.equivalent_rank(spec, 3) == pytest.approx(6.0)
    assert ib.bound(spec, n=100, mode="b_only", rank=6).bound == pytest.approx(ib.bound(spec, n=100).bound)
    rect = AdapterSpec([("up", 10, 30)], rank=2, extra={"head": 7})
    # b_only rank r' with r'·30 + 7 = 2·(10 + 30) + 7
    assert ib.equivalent_rank(rect, 2) == pytest.approx(80 / 30)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n": 0}, "n must be a finite number >= 1, got 0"),
        ({"n": 0.5}, "n must be a finite number >= 1, got 0.5"),
        ({"n": float("nan")}, "n must be a finite number >= 1, got nan"),
        ({"n": np.array([10, np.inf])}, "n must be a finite number >= 1, got inf"),
        ({"n": 10, "sigma": 0}, "sigma must be a finite number > 0, got 0"),
        ({"n": 10, "sigma": -1.0}, "sigma must be a finite number > 0"),
        ({"n": 10, "sigma": float("inf")}, "sigma must be a finite number > 0, got inf"),
        ({"n": 10, "bits": 65}, "bits must be an integer in \\[1, 64\\], got 65"),
        ({"n": 10, "bits": 2.5}, "bits must be an integer in \\[1, 64\\]"),
        ({"n": 10, "rank": 0}, "rank must be an integer >= 1, got 0"),
        ({"n": 10, "rank": np.array([1, 9])}, "layer 'v' \\(8 -> 4\\) allows at most 4, got 9"),
        ({"n": 10, "mode": "x"}, "mode must be one of"),
        ({"n": "ten"}, "n must be a finite number >= 1"),
    ],
)
def test_bad_input(kwargs, message):
    spec = AdapterSpec([("q", 8, 8), ("v", 8, 4)], rank=2)
    with pytest.raises(ValueError, match=message):
        ib.bound(spec, **kwargs)


def test_scale_llama_70b_all_linear_full_q64():
    spec = ib.preset_spec("llama-2-70b", "all-linear", mode="full", bits=64)
    n = np.logspace(0, 12, 49)
    res = ib.bound(spec, n=n)
    d_train = 68_976_648_192 - 2 * 32_000 * 8192 - 8192 * 161  # published total minus non-linear parts
    assert res.trainable_params == d_train
    assert np.all(np.isfinite(res.bound)) and np.all(np.diff(res.bound) < 0)
    assert res.bound[-1] == pytest.approx(hand_bound(d_train, 64, 1e12, 0.5), rel=1e-13)
    assert res.vacuous[0] and res.bound[0] > 1e6


def test_one_parameter():
    spec = AdapterSpec([("w", 1, 1)], rank=1, bits=1, mode="full")
    assert ib.bound(spec, n=1).bound == pytest.approx(math.sqrt(0.5 * math.log(2)), rel=1e-15)


# --------------------------------------------------------------------------- properties
dims = st.integers(1, 4096)
layer_lists = st.lists(st.tuples(dims, dims), min_size=1, max_size=6)


def make_spec(shapes, extra):
    return AdapterSpec([(f"l{i}", a, b) for i, (a, b) in enumerate(shapes)], rank=1, extra={"x": extra})


@settings(max_examples=150, deadline=None)
@given(layer_lists, st.integers(0, 10**6), st.integers(1, 10**12), st.integers(1, 63),
       st.floats(0.01, 100), st.sampled_from(list(Mode)))
def test_monotone_in_every_argument(shapes, extra, n, bits, sigma, mode):
    spec = make_spec(shapes, extra)
    r = max(1, spec.max_rank // 2)
    base = ib.bound(spec, n=n, bits=bits, sigma=sigma, rank=r, mode=mode).bound
    assert math.isfinite(base) and base > 0
    assert ib.bound(spec, n=n, bits=bits + 1, sigma=sigma, rank=r, mode=mode).bound > base
    assert ib.bound(spec, n=n, bits=bits, sigma=sigma * 1.5, rank=r, mode=mode).bound > base
    assert ib.bound(spec, n=n + 1, bits=bits, sigma=sigma, rank=r, mode=mode).bound < base
    if r + 1 <= spec.max_rank:
        up = ib.bound(spec, n=n, bits=bits, sigma=sigma, rank=r + 1, mode=mode).bound
        assert up >= base if mode is Mode.FULL else up > base


@settings(max_examples=150, deadline=None)
@given(layer_lists, st.integers(0, 10**6), st.integers(1, 10**9), st.data())
def test_mode_ordering(shapes, extra, n, data):
    spec = make_spec(shapes, extra)
    r = data.draw(st.integers(1, spec.max_rank))
    bounds = {m: ib.bound(spec, n=n, rank=r, mode=m).bound for m in Mode}
    assert bounds[Mode.B_ONLY] <= bounds[Mode.LORA]
    assert bounds[Mode.A_ONLY] <= bounds[Mode.LORA]
    if all(r * (a + b) <= a * b for a, b in shapes):
        assert bounds[Mode.FULL] >= bounds[Mode.LORA]


def test_import_loads_neither_torch_nor_sympy():
    code = (
        "import sys, infobound; "
        "s = infobound.preset_spec('roberta-base'); infobound.bound(s, n=10); "
        "print(sorted(m for m in ('torch', 'sympy', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_spec_and_bounds_refuse_unknown_preset():
    with pytest.raises(InputError, match="preset must be one of roberta-base"):
        ib.preset_spec("bert")
