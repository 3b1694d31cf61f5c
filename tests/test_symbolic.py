"""The sympy form of the seed bound against the numeric module, hand-summed layers and THEORY.md.

References: ``infobound.bounds`` (numpy, written independently of the sympy expressions), layer sums
computed here by hand, the worked values of THEORY.md §1, and sympy's own ``simplify``.
"""

from __future__ import annotations

import math
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import sympy

import infobound
from infobound import bounds
from infobound import symbolic as sym
from infobound.errors import InputError
from infobound.spec import AdapterSpec, Mode

N_POINTS = 300
RTOL = 1e-12
REPO_ROOT = Path(__file__).resolve().parents[1]


@lru_cache(maxsize=None)
def make_spec(name: str) -> AdapterSpec:
    if name == "custom":
        # mixed shapes, one layer with its own rank, and extras trained in every mode
        layers = [
            ("block.q", 64, 64),
            ("block.up", 64, 256),
            ("block.down", 256, 64),
            ("block.narrow", 96, 24),  # limits the adapter rank to 24
            ("block.fixed", 48, 40, 5),  # rank 5 whatever the adapter rank
        ]
        return infobound.custom_spec(layers, rank=4, bits=8, extra={"head": 650, "bias": 33})
    if name == "roberta-large":
        return infobound.preset_spec("roberta-large", "query,value")
    if name == "llama-2-70b":
        return infobound.preset_spec("llama-2-70b", "all-linear")
    raise KeyError(name)


SPECS = ("custom", "roberta-large", "llama-2-70b")
MODES = tuple(Mode)


def random_points(spec: AdapterSpec, seed: int) -> dict[str, np.ndarray]:
    """Ranks within the spec's limit, n in [1, 1e12], bits in 1..64, sigma in (0, 10]."""
    rng = np.random.default_rng(seed)
    return {
        "rank": rng.integers(1, spec.max_rank + 1, N_POINTS),
        "n": np.maximum(1.0, np.floor(10.0 ** rng.uniform(0.0, 12.0, N_POINTS))),
        "bits": rng.integers(1, 65, N_POINTS),
        "sigma": 10.0 * (1.0 - rng.random(N_POINTS)),  # 1 - [0, 1) = (0, 1]
    }


def hand_sums(spec: AdapterSpec) -> dict:
    """Σ d_in, Σ d_out, Σ d_in·d_out over the layers, and the extras, summed here by hand."""
    return {
        sym.sum_d_in: sum(layer.d_in for layer in spec.layers),
        sym.sum_d_out: sum(layer.d_out for layer in spec.layers),
        sym.sum_d_in_d_out: sum(layer.d_in * layer.d_out for layer in spec.layers),
        sym.extra: sum(spec.extra.values()),
    }


# ------------------------------------------------------------------------ numeric agreement
@pytest.mark.parametrize("mode", MODES, ids=str)
@pytest.mark.parametrize("spec_name", SPECS)
def test_lambdified_bound_matches_numeric(spec_name, mode):
    spec = make_spec(spec_name)
    point = random_points(spec, seed=10 * SPECS.index(spec_name) + MODES.index(mode))
    fn = sym.lambdify_bound(mode, spec)
    got = fn(**point)
    want = bounds.seed_bound(spec, point["n"], mode=mode, **{k: point[k] for k in ("rank", "bits", "sigma")}).bound
    assert got.shape == (N_POINTS,)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=0)
    # scalar call with the spec's defaults gives a float, like the numeric result
    scalar = fn(n=12345)
    assert isinstance(scalar, float)
    assert scalar == pytest.approx(bounds.seed_bound(spec, 12345, mode=mode).bound, rel=RTOL)


@pytest.mark.parametrize("mode", MODES, ids=str)
@pytest.mark.parametrize("spec_name", SPECS)
def test_sample_size_matches_numeric(spec_name, mode):
    spec = make_spec(spec_name)
    point = random_points(spec, seed=7)
    # a gap asks something only inside (0, 2σ): a fraction of the loss range from 1e-5 to 0.99
    gap = 2.0 * point["sigma"] * 10.0 ** np.random.default_rng(8).uniform(-5.0, np.log10(0.99), N_POINTS)
    expr = sym.sample_size_expr(mode, spec)
    assert expr.free_symbols <= {sym.rank, sym.bits, sym.sigma, sym.gap}
    fn = sympy.lambdify((sym.rank, sym.gap, sym.bits, sym.sigma), expr, "numpy")
    got = fn(point["rank"].astype(float), gap, point["bits"].astype(float), point["sigma"])
    want = bounds.sample_size(spec, gap, rank=point["rank"], bits=point["bits"], sigma=point["sigma"], mode=mode)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=0)


@pytest.mark.parametrize("spec_name", SPECS)
def test_mode_ratio_matches_numeric(spec_name):
    spec = make_spec(spec_name)
    ranks = random_points(spec, seed=11)["rank"]
    for mode in MODES:
        for other in MODES:
            expr = sym.mode_ratio_expr(mode, other, spec)
            assert expr.free_symbols <= {sym.rank}
            got = sympy.lambdify(sym.rank, expr, "numpy")(ranks.astype(float)) * np.ones(N_POINTS)
            want = bounds.mode_ratio(spec, mode, other, rank=ranks)
            np.testing.assert_allclose(got, want, rtol=RTOL, atol=0, err_msg=f"{mode}/{other}")


@pytest.mark.parametrize("spec_name", SPECS)
def test_equivalent_rank_matches_numeric(spec_name):
    spec = make_spec(spec_name)
    ranks = random_points(spec, seed=13)["rank"]
    for mode in (Mode.LORA, Mode.B_ONLY, Mode.A_ONLY):
        for reference in MODES:
            expr = sym.equivalent_rank_expr(mode=mode, reference=reference, spec=spec)
            got = sympy.lambdify(sym.rank, expr, "numpy")(ranks.astype(float)) * np.ones(N_POINTS)
            want = bounds.equivalent_rank(spec, ranks, mode=mode, reference=reference)
            np.testing.assert_allclose(got, want, rtol=RTOL, atol=0, err_msg=f"{mode} vs {reference}")
            # and the two bounds really are equal there (checked numerically on real ranks)
            lhs = sym.seed_bound_expr(mode, spec).subs(sym.rank, expr.subs(sym.rank, 3))
            rhs = sym.seed_bound_expr(reference, spec).subs(sym.rank, 3)
            values = {sym.n: 1000, sym.bits: 16, sym.sigma: sympy.Rational(1, 2)}
            if float(expr.subs(sym.rank, 3)) > 0:
                assert float(lhs.subs(values)) == pytest.approx(float(rhs.subs(values)), rel=1e-12)


# ------------------------------------------------------------------- expressions themselves
@pytest.mark.parametrize("spec_name", ("roberta-large", "llama-2-70b"))
@pytest.mark.parametrize("mode", MODES, ids=str)
def test_generic_expression_with_hand_sums_matches_spec(spec_name, mode):
    spec = make_spec(spec_name)
    sums = hand_sums(spec)
    r = 16
    d_train = sym.trainable_params_expr(mode).subs(sums).subs(sym.rank, r)
    assert d_train == spec.with_(mode=mode, rank=r).trainable_params
    bound = sym.seed_bound_expr(mode).subs(sums).subs({sym.rank: r, sym.n: 5000, sym.bits: 4, sym.sigma: 2})
    want = bounds.seed_bound(spec, 5000, rank=r, bits=4, sigma=2, mode=mode).bound
    assert float(bound) == pytest.approx(want, rel=RTOL)


def test_generic_trainable_params_by_mode():
    r, si, so, sio, ex = sym.rank, sym.sum_d_in, sym.sum_d_out, sym.sum_d_in_d_out, sym.extra
    expected = {
        Mode.LORA: r * (si + so) + ex,
        Mode.B_ONLY: r * so + ex,
        Mode.A_ONLY: r * si + ex,
        Mode.FULL: sio + ex,
    }
    for mode, want in expected.items():
        assert sympy.expand(sym.trainable_params_expr(mode) - want) == 0


def test_spec_expression_has_exact_integers_and_only_rank():
    spec = make_spec("custom")
    # by hand: free layers q (64,64), up (64,256), down (256,64), narrow (96,24); fixed (48,40) at rank 5
    extras = 650 + 33
    expected = {
        Mode.LORA: (128 + 320 + 320 + 120) * sym.rank + 5 * (48 + 40) + extras,
        Mode.B_ONLY: (64 + 256 + 64 + 24) * sym.rank + 5 * 40 + extras,
        Mode.A_ONLY: (64 + 64 + 256 + 96) * sym.rank + 5 * 48 + extras,
        Mode.FULL: sympy.Integer(64 * 64 + 64 * 256 + 256 * 64 + 96 * 24 + 48 * 40 + extras),
    }
    for mode, want in expected.items():
        expr = sym.trainable_params_expr(mode, spec)
        assert sympy.expand(expr - want) == 0
        assert expr.free_symbols <= {sym.rank}
        poly = sympy.Poly(expr, sym.rank)
        assert all(isinstance(c, sympy.Integer) for c in poly.all_coeffs())
    assert sym.seed_bound_expr(Mode.FULL, spec).free_symbols == {sym.n, sym.bits, sym.sigma}


def test_sample_size_closed_form_and_exact_log2():
    for mode in MODES:
        d_train = sym.trainable_params_expr(mode)
        hand = 2 * sym.sigma**2 * sympy.log(2) * sym.bits * d_train / sym.gap**2
        assert sympy.simplify(sym.sample_size_expr(mode) - hand) == 0
        assert sympy.log(2) in sym.seed_bound_expr(mode).atoms(sympy.log)


def test_worked_values_of_theory():
    # THEORY §1: RoBERTa-large q/k/v (72 matrices 1024×1024), r = 8, q = 16, n = 392,702, σ = 1
    spec = infobound.preset_spec("roberta-large", "query,key,value")
    assert len(spec.layers) == 72
    for mode, value in ((Mode.LORA, 8.16), (Mode.B_ONLY, 5.77)):
        got = sym.lambdify_bound(mode, spec)(rank=8, bits=16, n=392_702, sigma=1.0)
        assert round(got, 2) == value


@pytest.mark.parametrize("name,targets", (("roberta-large", "query,value"), ("llama-2-70b", "all-linear")))
def test_b_only_over_lora_ratio_of_preset_by_hand(name, targets):
    preset = infobound.get_preset(name)
    layers = preset.select(targets)
    sum_out = sum(layer.d_out for layer in layers)
    sum_both = sum(layer.d_in + layer.d_out for layer in layers)
    want = math.sqrt(sum_out / sum_both)
    spec = infobound.preset_spec(name, targets)
    ratio = sym.mode_ratio_expr("b_only", "lora", spec)
    assert ratio.free_symbols == set()  # without extras the rank cancels
    assert float(ratio) == pytest.approx(want, rel=1e-14)
    generic = sym.mode_ratio_expr("b_only", "lora").subs(hand_sums(spec))
    assert float(generic) == pytest.approx(want, rel=1e-14)


# ---------------------------------------------------------------------------- derived facts
def test_every_derived_fact_is_proven():
    facts = sym.derived_facts()
    names = {fact.name for fact in facts}
    required = {
        "b_only_over_lora",
        "b_only_over_lora_square",
        "sample_size_attains_gap",
        "b_only_rank_doubling",
        "a_only_over_lora",
        "a_only_over_lora_square",
        "a_only_rank_doubling",
    }
    assert required <= names
    for fact in facts:
        assert fact.proven is True, fact.name
        assert isinstance(fact.statement, str) and fact.statement.strip()


def test_proof_criterion_rejects_false_identities():
    # the same criterion as the facts use, on statements that are false
    ratio = sym.mode_ratio_expr("b_only", "lora")
    assert not sym._prove(ratio, 1 / sympy.sqrt(2))  # extras and non-square layers break it
    assert not sym._prove(ratio.subs(sym.extra, 0), sympy.sqrt(sym.sum_d_in / (sym.sum_d_in + sym.sum_d_out)))
    assert sym._prove(ratio.subs(sym.extra, 0), sympy.sqrt(sym.sum_d_out / (sym.sum_d_in + sym.sum_d_out)))


def test_rank_doubling_numerically_for_square_layers():
    spec = infobound.preset_spec("roberta-large", "query,value")  # 48 square layers, no extras
    assert float(sym.equivalent_rank_expr(spec=spec).subs(sym.rank, 8)) == 16.0
    b_only = sym.lambdify_bound("b_only", spec)(rank=16, n=10_000)
    lora = sym.lambdify_bound("lora", spec)(rank=8, n=10_000)
    assert b_only == pytest.approx(lora, rel=RTOL)


# ------------------------------------------------------------------------ LaTeX and modes
@pytest.mark.parametrize("mode", MODES, ids=str)
def test_latex_output(mode):
    for text in (sym.to_latex(mode), sym.to_latex(mode, make_spec("custom")), sym.latex(sym.sample_size_expr(mode))):
        assert isinstance(text, str) and text.strip()
    assert "sqrt" in sym.to_latex(mode)
    assert "sqrt" in sym.latex(sym.seed_bound_expr(mode, make_spec("custom")))


def test_modes_accept_strings_and_enum():
    assert sym.seed_bound_expr(" B_only ") == sym.seed_bound_expr(Mode.B_ONLY)
    assert sym.mode_ratio_expr("a_only", Mode.LORA) == sym.mode_ratio_expr(Mode.A_ONLY, "lora")


def test_full_mode_broadcasts_over_rank():
    spec = make_spec("custom")
    got = sym.lambdify_bound("full", spec)(rank=np.arange(1, 6), n=1000)
    want = bounds.seed_bound(spec, 1000, rank=np.arange(1, 6), mode="full").bound
    assert got.shape == (5,)
    np.testing.assert_allclose(got, want, rtol=RTOL)


# ----------------------------------------------------------------------------------- errors
def test_bad_input_raises_input_error():
    with pytest.raises(InputError, match="mode must be one of"):
        sym.seed_bound_expr("c_only")
    with pytest.raises(InputError, match="mode must be one of"):
        sym.lambdify_bound("both", make_spec("custom"))
    with pytest.raises(InputError, match="spec must be an AdapterSpec"):
        sym.trainable_params_expr("lora", spec="roberta-large")
    with pytest.raises(InputError, match="spec must be an AdapterSpec"):
        sym.lambdify_bound("lora", None)
    with pytest.raises(InputError, match="mode full"):
        sym.equivalent_rank_expr(mode="full")
    fn = sym.lambdify_bound("lora", make_spec("custom"))
    with pytest.raises(InputError, match="rank"):
        fn(rank=25, n=100)  # the narrow layer allows at most 24
    with pytest.raises(InputError, match="n must be"):
        fn(n=0)
    with pytest.raises(InputError, match="bits must be"):
        fn(n=10, bits=65)
    with pytest.raises(InputError, match="sigma must be"):
        fn(n=10, sigma=0.0)


def test_importing_infobound_does_not_load_sympy():
    code = "import infobound, sys; print('sympy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
