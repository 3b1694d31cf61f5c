"""The seed bound of THEORY §1 as sympy expressions, mirroring ``infobound.bounds``.

    bound = sqrt( 2 σ² · ln 2 · bits · d_train / n )

The symbols carry the names of the numeric keyword arguments (``rank``, ``n``, ``bits``, ``sigma``,
``gap``), so a lambdified expression is called exactly like the numeric function. Without a spec,
``d_train`` is written in layer sums with one rank for every layer:

    ========  ========================================
    mode      d_train
    ========  ========================================
    lora      rank · (sum_d_in + sum_d_out) + extra
    b_only    rank · sum_d_out + extra
    a_only    rank · sum_d_in + extra
    full      sum_d_in_d_out + extra
    ========  ========================================

With a spec, ``d_train = per_rank · rank + constant`` with the spec's exact integers
(``AdapterSpec.rank_coefficients``): layers with their own rank, full fine-tuning and the extras sit
in ``constant``, so only ``rank`` remains free. Every function accepts a ``Mode`` or its string.

This module imports sympy; ``import infobound`` does not load it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import sympy

from .bounds import DEFAULT_SIGMA, check_bits, check_sigma, rank_values
from .validation import check_reals, scalar_or_array
from .errors import InputError
from .spec import AdapterSpec, Mode

__all__ = [
    "DerivedFact",
    "bits",
    "derived_facts",
    "equivalent_rank_expr",
    "extra",
    "gap",
    "lambdify_bound",
    "latex",
    "mode_ratio_expr",
    "n",
    "rank",
    "sample_size_expr",
    "seed_bound_expr",
    "sigma",
    "sum_d_in",
    "sum_d_in_d_out",
    "sum_d_out",
    "to_latex",
    "trainable_params_expr",
]

# ------------------------------------------------------------------------------------- symbols
rank = sympy.Symbol("rank", positive=True)
"""Adapter rank r (shared by every layer without its own rank)."""
n = sympy.Symbol("n", positive=True)
"""Number of training examples."""
bits = sympy.Symbol("bits", positive=True)
"""Bits per trained parameter (q)."""
sigma = sympy.Symbol("sigma", positive=True)
"""Sub-Gaussian parameter of the loss, in loss units (1/2 for a loss in [0, 1])."""
gap = sympy.Symbol("gap", positive=True)
"""Target generalisation gap ε, in loss units."""
sum_d_in = sympy.Symbol("sum_d_in", positive=True)
"""Σ_i d_in_i over the adapted layers."""
sum_d_out = sympy.Symbol("sum_d_out", positive=True)
"""Σ_i d_out_i over the adapted layers."""
sum_d_in_d_out = sympy.Symbol("sum_d_in_d_out", positive=True)
"""Σ_i d_in_i · d_out_i: entries of the adapted matrices."""
extra = sympy.Symbol("extra", nonnegative=True)
"""Extra fully trained parameters (classifier head, biases), counted in every mode."""

LN2 = sympy.log(2)  # exact: bits × ln 2 = nats

LATEX_NAMES: dict[sympy.Symbol, str] = {
    rank: "r",
    n: "n",
    bits: "q",
    sigma: r"\sigma",
    gap: r"\varepsilon",
    sum_d_in: r"\Sigma d_{\mathrm{in}}",
    sum_d_out: r"\Sigma d_{\mathrm{out}}",
    sum_d_in_d_out: r"\Sigma (d_{\mathrm{in}} d_{\mathrm{out}})",
    extra: r"d_{\mathrm{extra}}",
}
"""How each symbol is written in LaTeX (the sympy names stay the keyword-argument names)."""


# --------------------------------------------------------------------------------- expressions
def trainable_params_expr(mode: Mode | str, spec: AdapterSpec | None = None) -> sympy.Expr:
    """d_train for ``mode``: generic in the layer sums, or exact for ``spec`` (only ``rank`` free)."""
    return _trainable_params(Mode.parse(mode), _check_spec(spec))


@lru_cache(maxsize=256)
def _trainable_params(mode: Mode, spec: AdapterSpec | None) -> sympy.Expr:
    if spec is not None:
        per_rank, constant = spec.rank_coefficients(mode)
        return sympy.Integer(per_rank) * rank + sympy.Integer(constant)
    generic = {
        Mode.LORA: rank * (sum_d_in + sum_d_out),  # A: (r, d_in), B: (d_out, r)
        Mode.B_ONLY: rank * sum_d_out,  # B: (d_out, r)
        Mode.A_ONLY: rank * sum_d_in,  # A: (r, d_in)
        Mode.FULL: sum_d_in_d_out,  # W: (d_out, d_in)
    }
    return generic[mode] + extra


def seed_bound_expr(mode: Mode | str, spec: AdapterSpec | None = None) -> sympy.Expr:
    """sqrt(2 σ² · ln 2 · bits · d_train / n), with sympy's exact ``log(2)``."""
    return _seed_bound(Mode.parse(mode), _check_spec(spec))


@lru_cache(maxsize=256)
def _seed_bound(mode: Mode, spec: AdapterSpec | None) -> sympy.Expr:
    info_bits = bits * _trainable_params(mode, spec)  # H(W) <= bits · d_train   (bits)
    info_nats = info_bits * LN2  # I(W; S) <= info_nats   (nats)
    return sympy.sqrt(2 * sigma**2 * info_nats / n)  # |E gen| <= sqrt(2 σ² I / n)


def sample_size_expr(mode: Mode | str, spec: AdapterSpec | None = None) -> sympy.Expr:
    """The n at which the seed bound equals ``gap``, found with ``sympy.solve``.

    The solution is checked against the closed form n = 2 σ² ln2 · bits · d_train / gap².
    """
    return _sample_size(Mode.parse(mode), _check_spec(spec))


@lru_cache(maxsize=256)
def _sample_size(mode: Mode, spec: AdapterSpec | None) -> sympy.Expr:
    solutions = sympy.solve(sympy.Eq(_seed_bound(mode, spec), gap), n)
    if len(solutions) != 1:
        raise ArithmeticError(f"expected one sample size for mode {mode}, sympy found {solutions}")
    solution = solutions[0]
    closed_form = 2 * sigma**2 * LN2 * bits * _trainable_params(mode, spec) / gap**2
    if sympy.simplify(solution - closed_form) != 0:
        raise ArithmeticError(f"sample size {solution} differs from the closed form {closed_form}")
    return solution


def mode_ratio_expr(
    mode: Mode | str, other: Mode | str, spec: AdapterSpec | None = None
) -> sympy.Expr:
    """bound(mode) / bound(other) at the same rank, bits, n and σ, simplified."""
    return _mode_ratio(Mode.parse(mode), Mode.parse(other), _check_spec(spec))


@lru_cache(maxsize=256)
def _mode_ratio(mode: Mode, other: Mode, spec: AdapterSpec | None) -> sympy.Expr:
    return sympy.simplify(_seed_bound(mode, spec) / _seed_bound(other, spec))


def equivalent_rank_expr(
    mode: Mode | str = Mode.B_ONLY,
    reference: Mode | str = Mode.LORA,
    spec: AdapterSpec | None = None,
) -> sympy.Expr:
    """The (real) rank of ``mode`` whose bound equals that of ``reference`` at ``rank``.

    Solved with ``sympy.solve`` on the squared bounds (both are nonnegative, so the squares are equal
    exactly when the bounds are). The result may be below 1 or above what the layers allow.
    """
    return _equivalent_rank(Mode.parse(mode), Mode.parse(reference), _check_spec(spec))


@lru_cache(maxsize=256)
def _equivalent_rank(mode: Mode, reference: Mode, spec: AdapterSpec | None) -> sympy.Expr:
    if rank not in _trainable_params(mode, spec).free_symbols:
        raise InputError(f"mode {mode} has no rank-dependent parameters here; choose lora, b_only or a_only")
    other_rank = sympy.Symbol("rank_of_mode", real=True)  # the unknown rank of ``mode``
    lhs = _seed_bound(mode, spec).subs(rank, other_rank) ** 2
    rhs = _seed_bound(reference, spec) ** 2
    solutions = sympy.solve(sympy.Eq(lhs, rhs), other_rank)
    if len(solutions) != 1:
        raise ArithmeticError(f"expected one equivalent rank for {mode} vs {reference}, got {solutions}")
    return sympy.simplify(solutions[0])


# ------------------------------------------------------------------------------------ numerics
def lambdify_bound(mode: Mode | str, spec: AdapterSpec):
    """A numpy function ``f(*, rank=None, n, bits=None, sigma=0.5)`` evaluating the seed bound.

    Called like ``infobound.bounds.seed_bound(spec, n, rank=..., bits=..., sigma=...)`` and returning
    what its ``.bound`` holds: inputs are validated the same way and broadcast; a float for scalar
    inputs, a float64 array otherwise. ``rank`` and ``bits`` default to the spec's.
    """
    mode = Mode.parse(mode)
    spec = _check_spec(spec)
    if spec is None:
        raise InputError("spec must be an AdapterSpec to lambdify the bound, got None")
    compiled = sympy.lambdify((rank, n, bits, sigma), _seed_bound(mode, spec), modules="numpy")

    def bound_fn(*, rank=None, n, bits=None, sigma=DEFAULT_SIGMA):
        n_arr = check_reals("n", n, low=1.0, integer=True)
        sigma_arr = check_sigma(sigma)
        bits_arr = check_bits(spec.bits if bits is None else bits)
        rank_arr = rank_values(spec, rank)
        value = compiled(rank_arr, n_arr, bits_arr, sigma_arr)
        # full fine-tuning does not depend on rank: broadcast so the shape matches the numeric one
        value = np.broadcast_arrays(np.asarray(value, dtype=np.float64), rank_arr, n_arr, bits_arr, sigma_arr)[0]
        return scalar_or_array(np.array(value))

    bound_fn.__name__ = f"seed_bound_{mode.value}"
    bound_fn.__doc__ = f"Seed bound of mode {mode}: {_seed_bound(mode, spec)}"
    return bound_fn


# --------------------------------------------------------------------------------------- LaTeX
def latex(expr, **settings) -> str:
    """``sympy.latex`` with the symbols written as in THEORY.md (r, q, σ, ε, Σ d_in, ln 2, ...)."""
    names = dict(LATEX_NAMES)
    names.update(settings.pop("symbol_names", {}))
    settings.setdefault("ln_notation", True)  # \ln 2, as in THEORY.md
    return sympy.latex(expr, symbol_names=names, **settings)


def to_latex(mode: Mode | str, spec: AdapterSpec | None = None, **settings) -> str:
    """The seed bound of ``mode`` in LaTeX."""
    return latex(seed_bound_expr(mode, spec), **settings)


# ------------------------------------------------------------------------------- derived facts
@dataclass(frozen=True)
class DerivedFact:
    """A consequence of the seed bound; ``proven`` is ``sympy.simplify(lhs - rhs) == 0``."""

    name: str
    statement: str
    """The identity in LaTeX."""
    proven: bool


def _bound_name(mode: Mode, at: str = "r") -> str:
    return rf"B_{{\mathrm{{{mode.value.replace('_', '-')}}}}}({at})"


def _prove(lhs, rhs) -> bool:
    return bool(sympy.simplify(lhs - rhs) == 0)


def derived_facts() -> list[DerivedFact]:
    """Identities that follow from §1, each proven here by ``sympy.simplify(lhs - rhs) == 0``."""
    no_extra = {extra: 0}
    square = {sum_d_out: sum_d_in}  # Σ d_out = Σ d_in, e.g. every layer square
    facts = []

    for mode, sum_trained in ((Mode.B_ONLY, sum_d_out), (Mode.A_ONLY, sum_d_in)):
        ratio = mode_ratio_expr(mode, Mode.LORA).subs(no_extra)
        expected = sympy.sqrt(sum_trained / (sum_d_in + sum_d_out))
        facts.append(DerivedFact(
            f"{mode.value}_over_lora",
            rf"\frac{{{_bound_name(mode)}}}{{{_bound_name(Mode.LORA)}}} = {latex(expected)}"
            r"\quad (d_{\mathrm{extra}} = 0)",
            _prove(ratio, expected),
        ))
        facts.append(DerivedFact(
            f"{mode.value}_over_lora_square",
            rf"\frac{{{_bound_name(mode)}}}{{{_bound_name(Mode.LORA)}}} = {latex(1 / sympy.sqrt(2))}"
            r"\quad (\Sigma d_{\mathrm{in}} = \Sigma d_{\mathrm{out}},\ d_{\mathrm{extra}} = 0)",
            _prove(ratio.subs(square), 1 / sympy.sqrt(2)),
        ))
        doubled = seed_bound_expr(mode).subs({rank: 2 * rank, **no_extra}, simultaneous=True)
        facts.append(DerivedFact(
            f"{mode.value}_rank_doubling",
            rf"{_bound_name(mode, '2r')} = {_bound_name(Mode.LORA)}"
            r"\quad (\Sigma d_{\mathrm{in}} = \Sigma d_{\mathrm{out}},\ d_{\mathrm{extra}} = 0)",
            _prove(doubled.subs(square), seed_bound_expr(Mode.LORA).subs(no_extra).subs(square))
            and _prove(equivalent_rank_expr(mode, Mode.LORA).subs(no_extra).subs(square), 2 * rank),
        ))

    closed_form = sympy.Eq(n, 2 * sigma**2 * LN2 * bits * sympy.Symbol("d_train") / gap**2)
    facts.append(DerivedFact(
        "sample_size_closed_form",
        latex(closed_form, symbol_names={sympy.Symbol("d_train"): r"d_{\mathrm{train}}"})
        + r"\quad \text{solves } B(r; n) = \varepsilon \text{ in every mode}",
        all(
            _prove(sample_size_expr(m), 2 * sigma**2 * LN2 * bits * trainable_params_expr(m) / gap**2)
            for m in Mode
        ),
    ))
    facts.append(DerivedFact(
        "sample_size_attains_gap",
        r"B\bigl(r;\ n(\varepsilon)\bigr) = \varepsilon \text{ in every mode}",
        all(_prove(seed_bound_expr(m).subs(n, sample_size_expr(m)), gap) for m in Mode),
    ))
    return facts


# ----------------------------------------------------------------------------------- helpers
def _check_spec(spec) -> AdapterSpec | None:
    if spec is not None and not isinstance(spec, AdapterSpec):
        raise InputError(f"spec must be an AdapterSpec or None, got {type(spec).__name__}")
    return spec
