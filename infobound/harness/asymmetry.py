"""Predicting the B/A asymmetry from the model itself (THEORY §2 on real activations).

At each adapted layer: Σ, the second moment E[x xᵀ] of the layer's input on the target data (taken
through the *pretrained* network, which every adapter starts from), and Δ, the update that LoRA
actually learned (scaling · B A of each stored LoRA run). With them, the Lemma 4.1 / 4.2 quantities:

- ``b_only``: the fraction of Tr[Δ Σ Δᵀ] a trained B captures behind a random frozen A
  (1 − L(Q, B*) / Tr[Δ Σ Δᵀ], Lemma 4.1; mean over draws of the paper's orthonormal A);
- ``a_only``: the same for a trained A behind a random frozen B (Lemma 4.2; its expectation over
  Haar draws is r / d_out for every Σ);
- ``best``: the fraction the best rank-r update captures (the top r eigenvalues of Δ Σ Δᵀ), what
  LoRA can reach;
- ``effective rank`` of Σ, (Tr Σ)² / Tr Σ², against r: how much a random r-dimensional projection sees.

``best − b_only`` predicts where B-only falls short of LoRA: set beside the measured difference in
test error. This is a diagnosis, not a bound. The torch side (activations) is ``layer_moments``; the
algebra is numpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..linreg import loss_a_frozen, loss_b_frozen, paper_frozen_a

DRAWS = 16
"""Frozen-factor draws per layer for the b_only and a_only fractions."""
RUNS = 4
"""LoRA runs (the lowest seeds) per configuration whose learned updates are analysed."""
SAMPLES = 2000
"""Target inputs used for each layer's second moment (at most)."""


def effective_rank(cov: np.ndarray) -> float:
    """(Tr Σ)² / Tr Σ²: the number of directions Σ spreads over (d for isotropic, 1 for rank one)."""
    tr = float(np.trace(cov))
    tr2 = float(np.sum(cov * cov))
    return tr * tr / tr2 if tr2 > 0 else 0.0


def captured_fractions(delta: np.ndarray, cov: np.ndarray, rank: int, draws: int = DRAWS,
                       seed: int = 0) -> dict:
    """Fractions of Tr[Δ Σ Δᵀ] captured at rank r: behind a random frozen A (``b_only``), a random
    frozen B (``a_only``), and by the best rank-r update (``best``); means and sds over draws."""
    d_out, d_in = delta.shape
    total = float(np.trace(delta @ cov @ delta.T))
    if total <= 0:
        return {"total": total, "b_only": math.nan, "b_only_sd": math.nan, "a_only": math.nan,
                "a_only_sd": math.nan, "best": math.nan}
    rng = np.random.default_rng([seed, rank, d_in, d_out])
    b, a = [], []
    for _ in range(draws):
        q = paper_frozen_a(d_out, d_in, rank, rng)  # (r, d_in), orthonormal rows
        b.append(1.0 - loss_a_frozen(q, delta, cov, 0.0) / total)
        u = paper_frozen_a(d_in, d_out, rank, rng).T  # (d_out, r), orthonormal columns
        a.append(1.0 - loss_b_frozen(u, delta, cov, 0.0) / total)
    eig = np.linalg.eigvalsh(delta @ cov @ delta.T)[::-1]
    best = float(np.sum(np.clip(eig[:rank], 0.0, None))) / total
    return {"total": total, "b_only": float(np.mean(b)), "b_only_sd": float(np.std(b, ddof=1)),
            "a_only": float(np.mean(a)), "a_only_sd": float(np.std(a, ddof=1)), "best": best}


@dataclass(frozen=True)
class AsymmetryRow:
    """One adapted layer of one LoRA configuration: Σ's spread and the fractions a rank-r adapter captures."""

    task: str
    rank: int
    n: int
    bits: int | None
    layer: str
    d_in: int
    d_out: int
    effective_rank: float
    """Of Σ = E[x xᵀ] (what the Lemmas use; a non-zero mean makes it small)."""
    centred_effective_rank: float
    """Of the covariance Σ − μ μᵀ."""
    b_only: float
    b_only_sd: float
    a_only: float
    best: float
    runs: int
    measured_b_minus_lora: float | None
    """Mean test error of B-only minus LoRA's, same rank, n, bits (None without B-only runs)."""


def layer_moments(task, layers: list[str], samples: int = SAMPLES) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(E[x xᵀ], E[x]) of each named ``nn.Linear``'s input on the task's target training pool,
    through the pretrained network (float64). A layer that reads tokens (inputs ``(batch, tokens, d)``,
    a transformer's) counts every token as one sample of its input."""
    import torch

    model = task.base_model()
    modules = dict(model.named_modules())
    x, _ = task.train_set(min(samples, task.max_n), seed=0)
    seen: dict[str, torch.Tensor] = {}
    hooks = [modules[name].register_forward_pre_hook(lambda m, args, name=name: seen.__setitem__(name, args[0]))
             for name in layers]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    out = {}
    for name in layers:
        h = seen[name].double().reshape(-1, seen[name].shape[-1])  # (samples, d_in)
        out[name] = ((h.T @ h / h.shape[0]).numpy(), h.mean(dim=0).numpy())
    return out


def asymmetry_rows(records: list[dict], arrays: dict, task) -> list[AsymmetryRow]:
    """A row per (LoRA configuration, adapted layer) with stored adapters: Δ from each run's stored
    indices, Σ from the task's target data; fractions averaged over the runs."""
    from ..codelength import Grid

    lora = [r for r in records if r.get("mode") == "lora" and r.get("bits") is not None
            and r.get("kind", "seeds") == "seeds" and any(k.startswith("adapter.") for k in arrays.get(r["key"], {}))]
    if not lora:
        return []
    names = sorted({k[len("adapter."):].rsplit(".", 1)[0] for r in lora for k in arrays[r["key"]]
                    if k.startswith("adapter.")})
    moments = layer_moments(task, names)
    test_of = {}
    for r in records:
        if r.get("kind", "seeds") == "seeds" and r.get("test_error") is not None:
            test_of.setdefault((r["mode"], r["rank"], r["n"], r["bits"]), []).append(r["test_error"])
    groups: dict = {}
    for r in sorted(lora, key=lambda r: r["seed"]):
        mine = groups.setdefault((r["task"], r["rank"], r["n"], r["bits"]), [])
        if len(mine) < RUNS:
            mine.append(r)
    rows = []
    for (task_name, rank, n, bits), runs in sorted(groups.items(), key=lambda kv: str(kv[0])):
        b_test, l_test = test_of.get(("b_only", rank, n, bits)), test_of.get(("lora", rank, n, bits))
        measured = float(np.mean(b_test) - np.mean(l_test)) if b_test and l_test else None
        for layer in names:
            fr = []
            for r in runs:
                grid = Grid(int(r["bits"]), float(r["clip"]))
                a = grid.values(arrays[r["key"]][f"adapter.{layer}.lora_A"])  # (r, d_in)
                b = grid.values(arrays[r["key"]][f"adapter.{layer}.lora_B"])  # (d_out, r)
                delta = (float(r["alpha"]) / rank) * (b @ a)
                fr.append(captured_fractions(delta, moments[layer][0], rank, seed=int(r["seed"])))
            d_out, d_in = b.shape[0], a.shape[1]
            mean = lambda k: float(np.nanmean([f[k] for f in fr]))  # noqa: E731
            second, mu = moments[layer]
            rows.append(AsymmetryRow(task_name, rank, n, bits, layer, d_in, d_out, effective_rank(second),
                                     effective_rank(second - np.outer(mu, mu)), mean("b_only"), mean("b_only_sd"),
                                     mean("a_only"), mean("best"), len(runs), measured))
    return rows


def asymmetry_markdown(rows: list[AsymmetryRow]) -> str:
    """The Markdown section "## Predicting the asymmetry from the model"."""
    lines = ["## Predicting the asymmetry from the model", "",
             "Per adapted layer (THEORY §2 on real activations): Σ = E[x xᵀ] of the layer's input on the "
             "target data through the pretrained network; Δ = the update each LoRA run learned. The columns "
             "give the fraction of Tr[Δ Σ Δᵀ] captured at rank r: behind a random frozen A with B trained "
             "(Lemma 4.1, mean over draws of the paper's orthonormal A), behind a random frozen B with A "
             "trained (Lemma 4.2; r/d_out in expectation), and by the best rank-r update (what LoRA can "
             "reach). best − B-only predicts B-only's shortfall; beside it, the measured B-only − LoRA "
             f"test error (over all seeds). Updates of the first {RUNS} LoRA runs per configuration, "
             f"{DRAWS} frozen draws each. A diagnosis, not a bound.", "",
             "| task | rank | n | bits | layer | d_in → d_out | effective rank of E[xxᵀ] (of Cov x) | "
             "B-only (random A) | A-only (random B) | best rank-r | best − B-only | measured B-only − LoRA "
             "test error | runs |",
             "|" + "---|" * 13]
    for r in rows:
        measured = "—" if r.measured_b_minus_lora is None else f"{r.measured_b_minus_lora:+.4f}"
        lines.append(f"| {r.task} | {r.rank} | {r.n} | {r.bits} | {r.layer} | {r.d_in} → {r.d_out} | "
                     f"{r.effective_rank:.1f} ({r.centred_effective_rank:.1f}) | {r.b_only:.3f} ± {r.b_only_sd:.3f} | {r.a_only:.3f} | "
                     f"{r.best:.3f} | {r.best - r.b_only:+.3f} | {measured} | {r.runs} |")
    return "\n".join(lines)
