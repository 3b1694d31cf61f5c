"""Trained least-squares adapters beside the closed forms of THEORY §2 (task ``linreg``).

For every replica of a stacked single-layer model this gives, in the task's loss units (squared error
averaged over the d_out outputs, i.e. THEORY's L / d_out):

- ``population_loss``: the exact population loss of the trained (and possibly quantised) adapter;
- ``optimal_loss``: the smallest population loss any adapter of that mode reaches *with this run's
  frozen factor* — Lemma 4.1 (A frozen, B optimal) for ``b_only``, Lemma 4.2 (B frozen, A optimal) for
  ``a_only``, and for ``lora`` the best rank-r update in the Σ-weighted norm (Eckart–Young on Δ Σ^{1/2});
- ``expected_loss``: the expectation over a Haar-random frozen factor where a closed form exists
  (``a_only``: d_out s² + (1 − r/d_out) Tr[Δ Σ Δᵀ]; ``lora``: equal to ``optimal_loss``); else None.

Only the row space of a frozen A (column space of a frozen B) matters to the optimum, so a frozen
factor from any init is orthonormalised (QR) before the lemmas are applied.
"""

from __future__ import annotations

import numpy as np

from .. import linreg
from ..spec import Mode


def linreg_losses(task, model, mode: Mode) -> dict[str, list]:
    """Per-replica ``population_loss``, ``optimal_loss``, ``expected_loss`` for a stacked linreg model."""
    from ..lora import lora_layers

    (_, layer), = lora_layers(model)  # linreg has a single adapted layer
    delta, cov, s2, scale = task.delta, task.cov, task.noise_var, task.loss_scale
    d_out, d_in = delta.shape
    r = layer.rank
    if mode is Mode.FULL:
        w = layer.lora_delta.detach().double().numpy()  # (K, d_out, d_in)
        # full-rank update W: L = Tr[(Δ − W) Σ (Δ − W)ᵀ] + d_out s², minimised at W = Δ
        pops = [float(np.trace((delta - wk) @ cov @ (delta - wk).T)) + d_out * s2 for wk in w]
        optimal = [d_out * s2] * len(pops)
        expected = optimal
    else:
        a = layer.lora_A.detach().double().numpy()  # (K, r, d_in)
        b = layer.scaling * layer.lora_B.detach().double().numpy()  # (K, d_out, r)
        pops = [linreg.population_loss(ak, bk, delta, cov, s2) for ak, bk in zip(a, b)]
        if mode is Mode.B_ONLY:
            optimal = [linreg.loss_a_frozen(_orthonormal_rows(ak), delta, cov, s2) for ak in a]
            expected = [None] * len(pops)  # no closed form for an anisotropic Σ
        elif mode is Mode.A_ONLY:
            optimal = [linreg.loss_b_frozen(_orthonormal_rows(bk.T).T, delta, cov, s2) for bk in b]
            expected = [linreg.expected_loss_b_frozen(delta, cov, s2, r)] * len(pops)
        else:
            best = best_rank_r_loss(delta, cov, s2, r)
            optimal = expected = [best] * len(pops)
    return {
        "population_loss": [p * scale for p in pops],
        "optimal_loss": [o * scale for o in optimal],
        "expected_loss": [None if e is None else e * scale for e in expected],
    }


def best_rank_r_loss(delta: np.ndarray, cov: np.ndarray, noise_var: float, r: int) -> float:
    """min over rank-r M of Tr[(Δ − M) Σ (Δ − M)ᵀ] + d_out s² = d_out s² + Σ_{i>r} σ_i(Δ Σ^{1/2})²."""
    eig, vec = np.linalg.eigh(cov)
    root = (vec * np.sqrt(np.clip(eig, 0.0, None))) @ vec.T  # Σ^{1/2}, symmetric
    singular = np.linalg.svd(delta @ root, compute_uv=False)
    return float(delta.shape[0] * noise_var + np.sum(singular[r:] ** 2))


def _orthonormal_rows(m: np.ndarray) -> np.ndarray:
    """Rows spanning the same space as ``m``'s rows, orthonormal: (r, d)."""
    q, _ = np.linalg.qr(m.T)  # (d, r)
    return q.T


def linreg_table(records) -> str:
    """Markdown: trained adapters' population loss beside the closed forms, per configuration."""
    groups: dict[tuple, list[dict]] = {}
    for rec in records:
        if rec.get("optimal_loss") is None:
            continue
        key = (rec["mode"], rec["rank"], rec["n"], "none" if rec["bits"] is None else rec["bits"])
        groups.setdefault(key, []).append(rec)
    if not groups:
        return ""
    lines = [
        "## Least squares: trained adapters against the closed forms (THEORY §2)",
        "",
        "Losses are squared error averaged over outputs (THEORY's L / d_out). *Optimum given the frozen "
        "factor*: Lemma 4.1 (b_only), Lemma 4.2 (a_only), best rank-r update (lora), Δ itself (full). "
        "*Haar expectation*: its mean over a uniformly random frozen factor, where a closed form exists. "
        "Means over K seeds; each seed redraws the training set and the frozen factor.",
        "",
        "| mode | rank | n | bits | K | trained: population loss | optimum given frozen factor "
        "| excess (trained − optimum) | Haar expectation of the optimum | test loss (estimate) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (mode, rank, n, bits), recs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2], str(kv[0][3]))):
        pop = np.mean([r["population_loss"] for r in recs])
        opt = np.mean([r["optimal_loss"] for r in recs])
        exp = recs[0]["expected_loss"]
        test = np.mean([r["test_loss"] for r in recs])
        lines.append(f"| {mode} | {rank or '-'} | {n} | {bits} | {len(recs)} | {pop:.5g} | {opt:.5g} "
                     f"| {pop - opt:+.3g} | {'—' if exp is None else f'{exp:.5g}'} | {test:.5g} |")
    return "\n".join(lines) + "\n"
