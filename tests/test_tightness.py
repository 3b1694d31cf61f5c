"""Tightness report: every bound beside what it bounds, checked against independent hand computations.

References: the fast-rate bound by solving kl(q‖p) = c with scipy's brentq, means and intervals with
numpy and scipy, the supersample row against the cmi functions on a hand-built stack and against a
case whose value is known in closed form (the loss pair reveals the mask: Î = ln 2 per pair).
"""

import math

import numpy as np
import pytest
from scipy import optimize
from scipy import stats as sps

from infobound import cmi
from infobound.errors import InputError
from infobound.harness.figures import plot_tightness, write_plots
from infobound.harness.tightness import (
    Tightness,
    format_tightness,
    tightness_markdown,
    tightness_rows,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
N = 200
BITS = 4
TRAIN = {("lora", 2): [0.10, 0.12, 0.09, 0.11], ("b_only", 2): [0.13, 0.12, 0.14, 0.11],
         ("lora", 4): [0.05, 0.06, 0.04, 0.05], ("b_only", 4): [0.08, 0.07, 0.09, 0.08]}
GAP = {("lora", 2): [0.04, 0.05, 0.03, 0.06], ("b_only", 2): [0.02, 0.03, 0.01, 0.02],
       ("lora", 4): [0.06, 0.07, 0.05, 0.08], ("b_only", 4): [-0.01, -0.02, 0.0, -0.01]}
D_TRAIN = {"lora": 40, "b_only": 20}  # per unit of rank
CODE = {"lora": 130.0, "b_only": 95.0}  # mean code length per unit of rank, bits (varies by seed)
CERT = [0.30, 0.36, 0.29, 0.31]  # mean 0.315 ≠ median 0.305
SEED_BOUND = {("lora", 2): 0.7, ("b_only", 2): 0.5, ("lora", 4): 1.3, ("b_only", 4): 0.9}


def kl(q, p):
    return sum(a * math.log(a / b) for a, b in ((q, p), (1 - q, 1 - p)) if a > 0)


def kl_inv(q, c):
    """sup{p ≥ q: kl(q‖p) ≤ c} by brentq (independent of certificates.kl_inverse_upper)."""
    if kl(q, 1 - 1e-15) <= c:
        return 1.0
    return optimize.brentq(lambda p: kl(q, p) - c, q + 1e-300 if q > 0 else 1e-300, 1 - 1e-15,
                           xtol=1e-15, rtol=1e-15)


def seed_records(new_fields=True, task="hand"):
    out = []
    for (mode, rank), trains in TRAIN.items():
        for s, (tr, g) in enumerate(zip(trains, GAP[mode, rank])):
            r = dict(key=f"{mode}-{rank}-{s}", task=task, mode=mode, rank=rank, n=N, seed=s, bits=BITS,
                     alpha=float(rank), init="orthonormal", train_error=tr, test_error=tr + g, gap=g,
                     loss_kind="zero_one", trainable_params=D_TRAIN[mode] * rank,
                     bound=SEED_BOUND[mode, rank], bound_applicable=True, test_n=1000)
            if new_fields:
                r.update(code_length_bits=CODE[mode] * rank + 4.0 * s, cert_delta=0.05,
                         cert_occam_kl=CERT[s] + 0.02, cert_binomial=CERT[s] + 0.01,
                         cert_best=CERT[s] + (0.1 if mode == "lora" else 0.0) + 0.01 * rank,
                         cert_method="binomial", test_set_bound=tr + g + 0.03,
                         unquantised_train_error=tr - 0.01, unquantised_test_error=tr + g - 0.02)
            out.append(r)
    return out


def cmi_stack(k1, k2, n, seed=0):
    rng = np.random.default_rng(seed)
    losses = rng.integers(0, 2, size=(k1, k2, n, 2)).astype(np.int8)
    masks = rng.integers(0, 2, size=(k1, k2, n)).astype(np.uint8)
    return losses, masks


def cmi_records(losses, masks, mode="lora", rank=2, order=None):
    """Records and pair_losses of a supersample sweep from a (k1, k2, n, 2) stack."""
    recs, pairs = [], {}
    k1, k2, n = masks.shape
    for j in range(k1):
        for m in (order or range(k2)):
            key = f"cmi-{mode}-{rank}-{j}-{m}"
            mk, lo = masks[j, m], losses[j, m]
            train = float(np.where(mk == 1, lo[:, 1], lo[:, 0]).mean())
            test = float(np.where(mk == 1, lo[:, 0], lo[:, 1]).mean())
            recs.append(dict(key=key, kind="cmi", supersample=j, task="hand", mode=mode, rank=rank, n=n,
                             seed=m, bits=BITS, alpha=float(rank), init="orthonormal",
                             train_error=train, test_error=test, gap=test - train, loss_kind="zero_one",
                             trainable_params=D_TRAIN[mode] * rank, bound=0.9))
            pairs[key] = (lo, mk)
    return recs, pairs


def one(t: Tightness, **where):
    rows = t.find(**where)
    assert len(rows) == 1, rows
    return rows[0]


# ---------------------------------------------------------------- fast rate


@pytest.mark.parametrize("mode,rank", list(TRAIN))
def test_fast_row_is_the_kl_inverse_of_min_information(mode, rank):
    t = tightness_rows(seed_records(), bounds=["fast"])
    row = one(t, kind="fast", mode=mode, rank=rank)
    train = float(np.mean(TRAIN[mode, rank]))
    code = float(np.mean([CODE[mode] * rank + 4.0 * s for s in range(4)]))
    qd = BITS * D_TRAIN[mode] * rank
    info_bits = min(qd, code)
    expected = kl_inv(train, info_bits * math.log(2) / N) - train
    assert row.bound == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert row.measured == pytest.approx(np.mean(GAP[mode, rank]))
    assert ("q·d_train" in row.information) == (qd <= code)
    assert ("mean code length" in row.information) == (code < qd)
    assert row.what == "expectation bound on E gen (fast rate)"
    assert row.measured_what == "mean gap" and row.runs == 4


def test_information_choice_goes_both_ways():
    """lora at rank 2: q·d = 320 > mean code 266 (code used); b_only at rank 2: 160 < 196 (q·d used)."""
    t = tightness_rows(seed_records(), bounds="fast")
    assert "mean code length = 266 bits" in one(t, kind="fast", mode="lora", rank=2).information
    assert one(t, kind="fast", mode="b_only", rank=2).information.startswith("q·d_train = 4·40 = 160")


def test_measured_interval_is_scipy_t_interval():
    t = tightness_rows(seed_records(), bounds="seed,fast", confidence=0.9)
    gaps = GAP["lora", 2]
    low, high = sps.t.interval(0.9, len(gaps) - 1, loc=np.mean(gaps), scale=sps.sem(gaps))
    for kind in ("seed", "fast"):
        row = one(t, kind=kind, mode="lora", rank=2)
        assert (row.measured_low, row.measured_high) == (pytest.approx(low), pytest.approx(high))


# ---------------------------------------------------------------- certificates


def test_cert_row_means():
    t = tightness_rows(seed_records(), bounds=["cert"])
    for (mode, rank), trains in TRAIN.items():
        row = one(t, kind="cert", mode=mode, rank=rank)
        certs = [c + (0.1 if mode == "lora" else 0.0) + 0.01 * rank for c in CERT]
        tests = [tr + g for tr, g in zip(trains, GAP[mode, rank])]
        assert row.bound == pytest.approx(np.mean(certs))
        assert (row.bound_min, row.bound_max) == (pytest.approx(min(certs)), pytest.approx(max(certs)))
        assert row.measured == pytest.approx(np.mean(tests))
        assert row.measured_what == "mean test error"
        assert row.ratio == pytest.approx(np.mean(certs) / np.mean(tests))
        assert row.test_set_bound == pytest.approx(np.mean(tests) + 0.03)
        assert row.unquantised_test_error == pytest.approx(np.mean(tests) - 0.02)
        assert row.code_length_bits == pytest.approx(CODE[mode] * rank + 6.0)
        assert row.delta == 0.05 and "δ=0.05" in row.what and not row.vacuous


def test_b_only_against_lora_comparison_line():
    t = tightness_rows(seed_records(), bounds=["cert"])
    line = next(c for c in t.comparisons if "at rank 4" in c)
    b, lo = one(t, kind="cert", mode="b_only", rank=4), one(t, kind="cert", mode="lora", rank=4)
    assert "mean code length 386 vs 526 bits (140 saved)" in line
    assert f"certificate {b.bound:.4g} vs {lo.bound:.4g}" in line
    assert f"test error {b.measured:.4g} vs {lo.measured:.4g}" in line
    assert len(t.comparisons) == 2


# ---------------------------------------------------------------- seed rows, vacuity, ratios


def test_seed_rows_vacuity_and_ratio_against_absolute_gap():
    t = tightness_rows(seed_records(), bounds=["seed"])
    assert t.bounds == ("seed",)
    lora4, b4 = one(t, kind="seed", mode="lora", rank=4), one(t, kind="seed", mode="b_only", rank=4)
    assert lora4.vacuous and lora4.bound == 1.3
    assert not b4.vacuous
    assert b4.measured == pytest.approx(-0.01)
    assert b4.ratio == pytest.approx(0.9 / 0.01)  # the seed bound is on |E gen|
    assert "|mean gap|" in b4.note


def test_ratio_none_when_gap_not_positive():
    t = tightness_rows(seed_records(), bounds=["fast"])
    row = one(t, kind="fast", mode="b_only", rank=4)  # mean gap −0.01
    assert row.ratio is None and "gap ≤ 0" in row.note
    assert one(t, kind="fast", mode="lora", rank=4).ratio is not None


def test_vacuous_flags_of_cert_and_fast():
    recs = seed_records()
    for r in recs:
        if (r["mode"], r["rank"]) == ("lora", 2):
            r["cert_best"] = 1.0
        if (r["mode"], r["rank"]) == ("b_only", 2):
            r["code_length_bits"] = 20000.0  # min(q·d_train, code) = min(40000, 20000) bits:
            r["trainable_params"] = 10000  # I/n = 69 nats > kl(q‖1⁻) ≈ 32: E L_μ ≤ 1, vacuous
    t = tightness_rows(recs, bounds=["fast", "cert"])
    assert one(t, kind="cert", mode="lora", rank=2).vacuous
    assert not one(t, kind="cert", mode="lora", rank=4).vacuous
    fast = one(t, kind="fast", mode="b_only", rank=2)
    train = np.mean(TRAIN["b_only", 2])
    assert kl_inv(train, 20000 * math.log(2) / N) == 1.0  # the reference saturates too
    assert fast.vacuous and fast.bound == pytest.approx(1.0 - train)
    assert not one(t, kind="fast", mode="lora", rank=2).vacuous


# ---------------------------------------------------------------- supersample rows


def test_cmi_row_is_min_of_the_three_estimators():
    losses, masks = cmi_stack(3, 5, 40)
    recs, pairs = cmi_records(losses, masks)
    t = tightness_rows(recs, pair_losses=pairs)
    assert t.bounds == ("cmi",)
    row = one(t, kind="cmi")
    ests = {"ld_cmi": cmi.ld_cmi_bound(losses, masks), "ekl_cmi": cmi.ekl_cmi_bound(losses, masks),
            "fast_rate_cmi": cmi.fast_rate_cmi_bound(losses, masks).bound}
    assert row.bound == pytest.approx(min(ests.values()), rel=1e-12)
    assert row.estimator == min(ests, key=ests.get)
    assert (row.k1, row.k2, row.runs) == (3, 5, 15)
    assert row.bias_delta_loss == pytest.approx(2 / (2 * 5))
    assert row.bias_loss_pair == pytest.approx(3 / (2 * 5))
    trained = np.where(masks == 1, losses[..., 1], losses[..., 0]).mean(axis=2)
    tested = np.where(masks == 1, losses[..., 0], losses[..., 1]).mean(axis=2)
    assert row.measured == pytest.approx((tested - trained).mean())
    assert "3×5" in row.what and row.what.startswith("estimate of an expectation bound")


def test_cmi_row_when_the_loss_pair_reveals_the_mask():
    """Trained point loss 0, test point loss 1, masks balanced per pair: Î(L; U) = Î(ΔL; U) = ln 2.

    ld-CMI = √(2 ln 2) ≈ 1.177; e-CMI = 2 (kl⁻¹(0, ln 2) − 0) = 2 (1 − e^{−ln 2}) = 1; fast-rate
    > 2 (R / C2 with C2 < ln2/2). So the row is e-CMI = 1 exactly, vacuous; interpolation: E L_μ = 1.
    """
    k1, k2, n = 2, 4, 6
    masks = np.array([[[(m + i) % 2 for i in range(n)] for m in range(k2)] for _ in range(k1)],
                     dtype=np.uint8)
    losses = np.stack([masks == 1, masks == 0], axis=-1).astype(np.int8)  # slot 1−U has loss 1
    recs, pairs = cmi_records(losses, masks)
    row = one(tightness_rows(recs, pair_losses=pairs, bounds=["cmi"]), kind="cmi")
    assert row.estimator == "ekl_cmi"
    assert row.bound == pytest.approx(1.0, rel=1e-12)
    assert row.estimates["ld_cmi"] == pytest.approx(math.sqrt(2 * math.log(2)))
    assert row.measured == 1.0 and row.ratio == pytest.approx(1.0)
    assert row.vacuous
    assert "interpolation estimate of E L_μ (zero training error): 1" in row.note


def test_unequal_masks_use_the_lowest_common_k2():
    losses, masks = cmi_stack(2, 4, 30, seed=3)
    recs, pairs = cmi_records(losses, masks, order=[3, 1, 0, 2])  # record order must not matter
    recs = [r for r in recs if not (r["supersample"] == 0 and r["seed"] == 3)]  # j=0 has 3 masks
    t = tightness_rows(recs, pair_losses=pairs)
    row = one(t, kind="cmi")
    low = cmi.cmi_summary(losses[:, :3], masks[:, :3])
    other = cmi.cmi_summary(losses[:, 1:], masks[:, 1:])
    best = lambda s: min(s.ld_cmi, s.ekl_cmi, s.fast_rate_cmi)
    assert best(low) != pytest.approx(best(other))  # which masks are kept matters here
    assert row.bound == pytest.approx(best(low), rel=1e-12)
    assert (row.k1, row.k2, row.runs) == (2, 3, 6)
    assert any("unequal numbers of masks" in n and "k2 = 3" in n for n in t.notes)


def test_mask_field_numbers_the_masks_when_seeds_are_global():
    """The sweep may number runs across supersamples and record m as ``mask``: m decides, not seed."""
    losses, masks = cmi_stack(2, 4, 30, seed=3)
    recs, pairs = cmi_records(losses, masks)
    recs = [dict(r, mask=r["seed"], seed=1000 - r["supersample"] * 4 - r["seed"]) for r in recs
            if not (r["supersample"] == 1 and r["seed"] == 0)]  # j=1 keeps masks 1, 2, 3
    row = one(tightness_rows(recs, pair_losses=pairs), kind="cmi")
    expected = cmi.cmi_summary(np.stack([losses[0, :3], losses[1, 1:]]),
                               np.stack([masks[0, :3], masks[1, 1:]]))
    assert row.bound == pytest.approx(min(expected.ld_cmi, expected.ekl_cmi, expected.fast_rate_cmi))
    assert (row.k1, row.k2) == (2, 3)


def test_cmi_runs_without_pair_losses_or_with_bad_shapes():
    losses, masks = cmi_stack(1, 3, 10)
    recs, pairs = cmi_records(losses, masks)
    t = tightness_rows(recs)
    assert t.rows == [] and any("no pair_losses" in n for n in t.notes)
    with pytest.raises(InputError, match="no pair_losses were given"):
        tightness_rows(recs, bounds=["cmi"])
    bad = dict(pairs, **{recs[0]["key"]: (losses[0, 0, :5], masks[0, 0, :5])})
    with pytest.raises(InputError, match=r"pair_losses\['cmi-lora-2-0-0'\].*shape \(n, 2\) = \(10, 2\)"):
        tightness_rows(recs, pair_losses=bad)


# ---------------------------------------------------------------- what the data allows


def test_old_records_give_seed_rows_only_and_refuse_cert():
    old = seed_records(new_fields=False)
    t = tightness_rows(old)
    assert t.bounds == ("seed",) and {r.kind for r in t.rows} == {"seed"} and len(t.rows) == 4
    with pytest.raises(InputError, match=r"bounds: 'cert' needs code lengths.*older infobound"):
        tightness_rows(old, bounds=["seed", "cert"])
    with pytest.raises(InputError, match=r"bounds: 'fast' needs code lengths"):
        tightness_rows(old, bounds="fast")


def test_bounds_argument_is_checked():
    recs = seed_records()
    with pytest.raises(InputError, match=r"bounds must name bound kinds from seed, fast, cert, cmi.*'tight'"):
        tightness_rows(recs, bounds=["seed", "tight"])
    with pytest.raises(InputError, match=r"bounds: 'cmi' needs per-example losses of a supersample "
                                         r"sweep \(--kind cmi\); these records have none"):
        tightness_rows(recs, bounds=["cmi"])
    with pytest.raises(InputError, match="bounds must name at least one"):
        tightness_rows(recs, bounds=[])
    assert tightness_rows(recs).bounds == ("seed", "fast", "cert")
    assert {r.kind for r in tightness_rows(recs, bounds=("cert", "seed")).rows} == {"seed", "cert"}


def test_mse_and_unquantised_configurations_get_no_rows():
    recs = seed_records()
    mse = [dict(r, key="m" + r["key"], loss_kind="mse", task="reg", train_error=None, test_error=None,
                train_loss=0.5, test_loss=0.7, gap=0.2, bound=None, bound_applicable=False)
           for r in recs]
    raw = [dict(r, key="u" + r["key"], bits=None, bound=None, bound_applicable=False) for r in recs]
    t = tightness_rows(recs + mse + raw)
    assert {(r.task, r.bits) for r in t.rows} == {("hand", BITS)}
    assert any("have no seed row" in n and "reg" in n for n in t.notes)


# ---------------------------------------------------------------- text


def test_text_and_markdown():
    losses, masks = cmi_stack(2, 3, 20)
    crecs, pairs = cmi_records(losses, masks)
    t = tightness_rows(seed_records() + crecs, pair_losses=pairs)
    text = format_tightness(t)
    assert max(len(line) for line in text.splitlines()) <= 110
    assert sum(line.startswith("hand ") for line in text.splitlines()) == len(t.rows) == 13
    md = tightness_markdown(t)
    assert md.startswith("## Tightness: every bound beside what it bounds\n")
    for words in ("expectation bound", "certificate", "estimate", "δ = 0.05", "(2×3)", "vacuous"):
        assert words in md
    assert md.count("\n| hand |") == 13
    assert "B-only's certificate vs LoRA's at rank 2" in md


# ---------------------------------------------------------------- plot


def _positive_plotted(ax):
    ys = [y for line in ax.get_lines() for y in np.asarray(line.get_ydata(), dtype=float)
          if np.isfinite(y) and y > 0 and line.get_label() != "vacuous (1)"
          and "≤ 0" not in line.get_label()]
    return ys


def test_plot_draws_every_value_and_nonpositive_gaps_at_the_bottom(tmp_path):
    recs = seed_records()
    t = tightness_rows(recs)
    fig = plot_tightness(t)
    assert [ax.get_title().split(":")[0] for ax in fig.axes] == ["lora", "b_only"]
    b_only = fig.axes[1]
    for ax in fig.axes:
        low, high = ax.get_ylim()
        ys = _positive_plotted(ax)
        assert ys and low < min(ys) and max(ys) < high  # nothing clipped
        assert ax.get_yscale() == "log"
        assert any(line.get_label() == "vacuous (1)" for line in ax.get_lines())
    # b_only rank 4 has mean gap −0.01: drawn as a marker at the bottom, said in the title
    marks = [line for line in b_only.get_lines() if "≤ 0" in line.get_label()]
    assert len(marks) == 1 and list(marks[0].get_xdata()) == [4]
    low, high = b_only.get_ylim()
    assert low < marks[0].get_ydata()[0] < high
    assert "≤ 0 drawn at the bottom" in b_only.get_title()
    labels = {line.get_label() for line in fig.axes[0].get_lines()}
    assert {"seed bound", "fast bound", "cert bound", "mean gap", "mean test error"} <= labels
    files = write_plots(recs, tmp_path, n_boot=200, tightness=t)
    png = tmp_path / "tightness_hand_n200_q4.png"
    assert png in files and png.read_bytes()[:8] == PNG_MAGIC
    assert [p.name for p in tmp_path.glob("tightness_*")] == [png.name]
    plain = tmp_path / "plain"
    plain.mkdir()
    assert not any(p.name.startswith("tightness_") for p in write_plots(recs, plain, n_boot=200))


def test_plot_needs_one_task_n_bits():
    t = tightness_rows(seed_records() + seed_records(task="other"))
    with pytest.raises(InputError, match="exactly one \\(task, n, bits\\)"):
        plot_tightness(t)
    assert plot_tightness(t, task="other").axes[0].get_title().startswith("lora")
    with pytest.raises(InputError, match="tightness must be a Tightness"):
        plot_tightness(seed_records())
