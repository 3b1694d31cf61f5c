"""Report: claims and verdicts on synthetic records of known means, checked against scipy by hand."""

import csv
import math

import numpy as np
import pytest
from scipy import stats as sps

from infobound.errors import InputError
from infobound.harness.figures import plot_gap_vs_n, plot_gap_vs_rank, plot_test_error, write_plots
from infobound.harness.report import RECORD_KEYS, format_verdict_table, summarize, write_csv, write_markdown

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SEEDS = range(8)
RANKS = (2, 4, 8)
NS = (100, 400, 1600)
TEST_MEAN = {"lora": 0.20, "b_only": 0.20, "a_only": 0.30}  # b_only ≈ lora, a_only +0.1
GAP_SHIFT = {"lora": 0.0, "b_only": -0.01, "a_only": 0.0}  # b_only gap below lora's


def bound_of(mode, rank, n):
    """A stand-in seed bound that grows like √(r/n); vacuous (≥ 1) for lora at small n."""
    return 6.0 * math.sqrt(rank / n) * (1.0 if mode == "lora" else math.sqrt(0.5))


def make_records(seed=0, task="synth", ns=NS, ranks=RANKS, modes=tuple(TEST_MEAN), bits=8,
                 seeds=SEEDS, test_mean=TEST_MEAN):
    """Per seed: a shared 'training subset' effect on test error (all modes), small run noise.

    The gap is 0.4·√(r/n) times log-normal noise (+ a mode shift): slope −1/2 in n, +1/2 in r.
    alpha follows the rank (α = r), as the sweep records by default.
    """
    rng = np.random.default_rng(seed)
    subset = {(n, s): rng.normal(0.0, 0.02) for n in ns for s in seeds}
    records = []
    for mode in modes:
        for rank in ranks:
            for n in ns:
                for s in seeds:
                    test = test_mean[mode] + subset[n, s] + rng.normal(0.0, 0.002)
                    gap = 0.4 * math.sqrt(rank / n) * math.exp(rng.normal(0.0, 0.05)) + GAP_SHIFT[mode]
                    records.append(dict(
                        key=f"{mode}-{rank}-{n}-{s}", task=task, mode=mode, rank=rank, n=n, seed=s,
                        bits=bits, alpha=float(rank), init="orthonormal", train_error=test - gap,
                        test_error=test, train_loss=0.5, test_loss=0.6, gap=gap, loss_kind="zero_one",
                        trainable_params=10 * rank, bound=None if bits is None else bound_of(mode, rank, n),
                        bound_applicable=bits is not None, test_n=500, wall_time=0.1, versions="x",
                    ))
    return records


@pytest.fixture(scope="module")
def records():
    return make_records()


@pytest.fixture(scope="module")
def summary(records):
    return summarize(records, n_boot=500)


def values(records, key, **where):
    """{seed: value} of the records matching ``where``."""
    return {r["seed"]: r[key] for r in records if all(r[k] == v for k, v in where.items())}


def hand_paired(x: dict, y: dict):
    seeds = sorted(set(x) & set(y))
    ref = sps.ttest_rel([x[s] for s in seeds], [y[s] for s in seeds]).confidence_interval(0.95)
    return np.mean([x[s] - y[s] for s in seeds]), ref.low, ref.high


def test_claims_come_out_as_constructed(records, summary):
    by = {}
    for c in summary.claims:
        by.setdefault(c.claim, []).append(c)
    # one row per (n, rank) for i-iii; iv pairs lora r with b_only 2r: (2, 4) and (4, 8)
    assert {k: len(v) for k, v in by.items()} == {"i": 9, "ii": 9, "iii": 9, "iv-test": 6, "iv-gap": 6}
    assert all(c.supported == "yes" for c in by["i"] + by["ii"] + by["iii"])
    # large clear effects: the interval alone and the Holm-adjusted decision agree
    assert all(c.supported_unadjusted == "yes" and c.p_yes_holm < 0.025 and c.p_no_holm > 0.5
               for c in by["i"] + by["ii"] + by["iii"])
    assert all(abs(c.effect - 0.1) < 0.01 and c.low > 0.05 for c in by["ii"])
    assert all(c.seeds == 8 and c.method.startswith("paired t") for c in summary.claims)
    for c in by["iv-test"] + by["iv-gap"]:
        r_lora, r_b = (int(v) for v in c.rank.split(" vs ")[::-1])
        assert r_b == 2 * r_lora
        # side by side: b_only at 2r and lora at r have the same bound (square layers)
        assert c.bound_x == pytest.approx(bound_of("b_only", r_b, c.n))
        assert c.bound_y == pytest.approx(bound_of("lora", r_lora, c.n))
        assert c.bound_x == pytest.approx(c.bound_y)


def test_claim_intervals_match_scipy_by_hand(records, summary):
    for c in summary.claims:
        if c.claim == "ii":
            x = values(records, "test_error", mode="a_only", rank=int(c.rank), n=c.n)
            y = values(records, "test_error", mode="b_only", rank=int(c.rank), n=c.n)
        elif c.claim == "iii":
            x = values(records, "gap", mode="b_only", rank=int(c.rank), n=c.n)
            y = values(records, "gap", mode="lora", rank=int(c.rank), n=c.n)
        elif c.claim == "iv-gap":
            rb, rl = (int(v) for v in c.rank.split(" vs "))
            x = values(records, "gap", mode="b_only", rank=rb, n=c.n)
            y = values(records, "gap", mode="lora", rank=rl, n=c.n)
        else:
            continue
        mean, low, high = hand_paired(x, y)
        assert (c.effect, c.low, c.high) == (pytest.approx(mean), pytest.approx(low), pytest.approx(high))


def claim_values(records, c):
    """{seed: value} of x and y for claim row ``c``, picked from the records by hand."""
    key = "gap" if c.metric == "gap" else "test_error"
    if c.claim in ("iv-test", "iv-gap"):
        rb, rl = (int(v) for v in c.rank.split(" vs "))
        return (values(records, key, mode="b_only", rank=rb, n=c.n),
                values(records, key, mode="lora", rank=rl, n=c.n))
    x_mode, y_mode = {"i": ("b_only", "lora"), "ii": ("a_only", "b_only"), "iii": ("b_only", "lora")}[c.claim]
    return (values(records, key, mode=x_mode, rank=int(c.rank), n=c.n),
            values(records, key, mode=y_mode, rank=int(c.rank), n=c.n))


def scipy_pvalues(test, d, m):
    """(p_yes, p_no) of the paired differences ``d`` from scipy's one-sample t-tests."""
    one = lambda mu, alt: sps.ttest_1samp(d, mu, alternative=alt).pvalue  # noqa: E731
    if test == "greater":
        return one(0.0, "greater"), one(0.0, "less")
    if test == "at_most":
        return one(m, "less"), one(m, "greater")
    return max(one(-m, "greater"), one(m, "less")), min(1.0, 2 * min(one(m, "greater"), one(-m, "less")))


def hand_holm(pvalues):
    """Holm by hand: sorted p-values, the i-th smallest (0-based) times (k − i), running max, cap 1."""
    ranked = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    out, running = [0.0] * len(pvalues), 0.0
    for step, i in enumerate(ranked):
        running = max(running, (len(pvalues) - step) * pvalues[i])
        out[i] = min(1.0, running)
    return out


def test_claim_pvalues_holm_and_decisions_by_hand(records, summary):
    tests = {"i": "equal", "ii": "greater", "iii": "at_most", "iv-test": "equal", "iv-gap": "equal"}
    for c in summary.claims:
        x, y = claim_values(records, c)
        d = [x[s] - y[s] for s in sorted(x)]
        assert c.test == tests[c.claim]
        ref_yes, ref_no = scipy_pvalues(c.test, d, 0.02)
        assert (c.p_yes, c.p_no) == (pytest.approx(ref_yes, rel=1e-9), pytest.approx(ref_no, rel=1e-9))
        if c.test == "greater":  # the same as the paired test of x against y
            assert c.p_yes == pytest.approx(sps.ttest_rel([x[s] for s in sorted(x)], [y[s] for s in sorted(x)],
                                                          alternative="greater").pvalue)
    # the family is every claim row; p (yes) and p (no) are adjusted separately, each tested at α/2
    holm_yes = hand_holm([c.p_yes for c in summary.claims])
    holm_no = hand_holm([c.p_no for c in summary.claims])
    for c, hy, hn in zip(summary.claims, holm_yes, holm_no):
        assert (c.p_yes_holm, c.p_no_holm) == (pytest.approx(hy), pytest.approx(hn))
        assert c.supported == ("yes" if hy < 0.025 else "no" if hn < 0.025 else "unclear")
    # multiplicity bites: a row whose interval alone says yes can be unclear after Holm
    assert any(c.supported_unadjusted == "yes" and c.supported == "unclear" for c in summary.claims)
    assert all(c.supported == c.supported_unadjusted or c.supported == "unclear" for c in summary.claims)


def test_no_effect_with_many_seeds_is_unclear_and_a_reversal_is_no():
    same = {"lora": 0.2, "b_only": 0.2, "a_only": 0.2}  # claim (ii) false: no effect at all
    recs = make_records(seed=3, ns=(100, 400), ranks=(2, 4), seeds=range(40), test_mean=same)
    rows = [c for c in summarize(recs, n_boot=200).claims if c.claim == "ii"]
    assert len(rows) == 4 and all(c.seeds == 40 and c.supported == "unclear" for c in rows)
    reversed_ = dict(same, a_only=0.1)  # A-only clearly better: the claim is contradicted
    recs = make_records(seed=3, ns=(100, 400), ranks=(2, 4), seeds=range(40), test_mean=reversed_)
    rows = [c for c in summarize(recs, n_boot=200).claims if c.claim == "ii"]
    assert len(rows) == 4 and all(c.supported == "no" and c.p_no_holm < 1e-6 for c in rows)


def test_gap_claims_show_train_errors_and_flag_underfitting(records, summary):
    for c in summary.claims:
        if c.claim != "iii":
            continue
        for mode, got in (("b_only", c.train_x), ("lora", c.train_y)):
            hand = np.mean(list(values(records, "train_error", mode=mode, rank=int(c.rank), n=c.n).values()))
            assert got == pytest.approx(hand)
        assert c.note == ""  # b_only trains 0.01 worse, within the margin: no flag
    # b_only's test and train errors both 0.05 higher: its gap is still the smaller one, for the
    # wrong reason
    worse = [dict(r, test_error=r["test_error"] + 0.05, train_error=r["train_error"] + 0.05)
             if r["mode"] == "b_only" else r for r in records]
    rows = [c for c in summarize(worse, n_boot=200).claims if c.claim == "iii"]
    assert rows and all(c.train_x - c.train_y > 0.05 for c in rows)
    assert all(c.note.startswith("smaller gap with higher train error: underfitting") for c in rows)
    assert all("b_only" in c.note for c in rows)


def test_test_set_standard_error_beside_the_seed_interval(records, summary):
    for c in summary.claims:
        assert c.test_n == 500
        if c.metric == "gap":
            assert math.isnan(c.test_se_x) and math.isnan(c.test_se_y)
            continue
        x, y = claim_values(records, c)
        for got, vals in ((c.test_se_x, x), (c.test_se_y, y)):
            p = np.mean(list(vals.values()))
            assert got == pytest.approx(math.sqrt(p * (1 - p) / 500))
        assert c.half_width == pytest.approx((c.high - c.low) / 2)
    # here the test set's error (≈ 0.018) is far larger than the seed interval (≈ ±0.003)
    assert all(c.test_se_x > c.half_width for c in summary.claims if c.claim == "i")


def test_claims_detect_a_difference_and_use_the_margin(records):
    shifted = [dict(r, test_error=r["test_error"] + 0.05) if r["mode"] == "b_only" else r
               for r in records]
    rows = [c for c in summarize(shifted, n_boot=200).claims if c.claim == "i"]
    assert rows and all(c.supported == "no" and c.low > 0.02 for c in rows)
    # a margin narrower than the run noise's interval cannot support "≈"
    tight = [c for c in summarize(records, margin=1e-5, n_boot=200).claims if c.claim == "i"]
    assert all(c.supported == "unclear" for c in tight)
    with pytest.raises(InputError, match="margin"):
        summarize(records, margin=-0.1)


def test_welch_when_seeds_are_not_shared(records):
    part = [r for r in records if r["n"] == 100 and r["rank"] == 2 and r["mode"] != "a_only"]
    part = [dict(r, seed=r["seed"] + 100) if r["mode"] == "lora" else r for r in part]
    row = next(c for c in summarize(part, n_boot=200).claims if c.claim == "i")
    x = values(part, "test_error", mode="b_only")
    y = values(part, "test_error", mode="lora")
    ref = sps.ttest_ind(list(x.values()), list(y.values()), equal_var=False).confidence_interval(0.95)
    assert row.method.startswith("Welch") and row.seeds == 16
    assert (row.low, row.high) == (pytest.approx(ref.low), pytest.approx(ref.high))
    xs, ys, m = list(x.values()), list(y.values()), 0.02  # TOST with Welch's t and df
    tost = max(sps.ttest_ind(np.add(xs, m), ys, equal_var=False, alternative="greater").pvalue,
               sps.ttest_ind(np.subtract(xs, m), ys, equal_var=False, alternative="less").pvalue)
    assert row.p_yes == pytest.approx(tost, rel=1e-9)


def test_config_verdicts_and_intervals(records, summary):
    assert len(summary.configs) == 3 * len(RANKS) * len(NS)
    for c in summary.configs:
        gaps = list(values(records, "gap", mode=c.mode, rank=c.rank, n=c.n).values())
        lo, hi = sps.t.interval(0.95, len(gaps) - 1, loc=np.mean(gaps), scale=sps.sem(gaps))
        assert (c.gap.low, c.gap.high) == (pytest.approx(lo), pytest.approx(hi)) and c.seeds == 8
        bound = bound_of(c.mode, c.rank, c.n)
        expected = "vacuous" if bound >= 1 else "holds" if -bound < lo and hi < bound else None
        assert c.verdict.value == expected  # the bounds were chosen far from the gaps
    assert {c.verdict.value for c in summary.configs} == {"vacuous", "holds"}
    (row,) = summary.find(mode="lora", rank=8, n=100)
    assert row.verdict.value == "vacuous" and row.bound == pytest.approx(bound_of("lora", 8, 100))
    tiny = [dict(r, bound=0.001) for r in records if r["n"] == 100]
    assert {c.verdict.value for c in summarize(tiny, n_boot=200).configs} == {"violated"}


def test_rates_recover_the_constructed_slopes(records, summary):
    for r in summary.rates:
        if r.against == "n":
            xs = list(NS)
            means = [np.mean(list(values(records, "gap", mode=r.mode, rank=r.fixed, n=n).values()))
                     for n in xs]
        else:
            xs = list(RANKS)
            means = [np.mean(list(values(records, "gap", mode=r.mode, rank=k, n=r.fixed).values()))
                     for k in xs]
        assert r.slope.slope == pytest.approx(np.polyfit(np.log(xs), np.log(means), 1)[0])
        # the rule: yes only when the CI holds the theory's value and excludes the alternative
        lo, hi = r.slope.low, r.slope.high
        assert r.slope.points == 3
        if r.against == "n":  # theory −1/2, alternative: no decay (slope ≥ 0)
            expected = "no" if not lo <= -0.5 <= hi else ("yes" if hi < 0 else "unclear")
        else:  # theory ≤ +1/2, alternative: a slope above +1/2
            expected = "yes" if hi <= 0.5 else ("no" if lo > 0.5 else "unclear")
        assert r.agrees == expected
        if r.mode == "b_only":  # 0.4·√(r/n) − 0.01: steeper than the theory in both directions
            assert r.agrees != "yes" and abs(r.slope.slope) > 0.55
        else:  # pure √(r/n): both slopes ±1/2
            assert abs(r.slope.slope - r.theory) < 0.05
    pure_n = [r.agrees for r in summary.rates if r.mode != "b_only" and r.against == "n"]
    pure_rank = [r.agrees for r in summary.rates if r.mode != "b_only" and r.against == "rank"]
    assert len(pure_n) == len(pure_rank) == 6
    assert pure_n.count("yes") >= 5  # 95 % intervals around −1/2, well below 0
    assert pure_rank.count("no") <= 1  # a slope of exactly +1/2 is at the ceiling: mostly unclear
    assert {(r.mode, r.against) for r in summary.rates} == {
        (m, a) for m in TEST_MEAN for a in ("n", "rank")}


def test_markdown_and_terminal_table(tmp_path, records, summary):
    unquantised = summarize(make_records(ns=(100,), bits=None), n_boot=200)
    assert {c.verdict.value for c in unquantised.configs} == {"not applicable"}
    regression = [dict(r, loss_kind="mse", test_error=None, train_error=None, bound=None,
                       bound_applicable=False) for r in records if r["n"] == 100]
    mse = summarize(regression, n_boot=200)
    path = write_markdown(summary, tmp_path / "report.md", {"delta": 0.05, "title": "Synthetic"})
    text = path.read_text()
    for needle in ("# Synthetic", "mean gap (95% CI, K seeds)", "seed bound (expectation, q bits)",
                   "| holds |", "| vacuous |", "δ (failure probability): 0.05", "±0.02",
                   "## Claims", "## Rates", "## Legend", "**violated**", "**inconclusive**"):
        assert needle in text, needle
    claims = text.split("## Claims")[1].split("## Rates")[0]
    for needle in ("95% CI (unadjusted)", "| p (yes) | p (no) | Holm p (yes) | Holm p (no) | decision |",
                   "mean train x, y", "test-set SE x, y", "family is all 39 claim row(s) of this report",
                   "Holm–Bonferroni", "α/2 = 0.025", "at most α = 0.05", "test_n = 500 examples",
                   "do not include the test set's own sampling error", "(test_n=500)",
                   "over seeds (each seed redraws the training subset from the task's pool and the frozen factor)"):
        assert needle in claims, needle
    assert "decision **yes / no / unclear**" in text.split("## Legend")[1]
    verdicts = text.split("## Claims")[0]
    assert verdicts.count("| synth | lora |") == len(RANKS) * len(NS)
    bare = [{k: v for k, v in r.items() if k != "test_n"} for r in make_records(seeds=range(1), ns=(100,))]
    text = write_markdown(summarize(bare, n_boot=200), tmp_path / "b.md", {}).read_text()
    assert "the records carry no test_n" in text  # and one seed: no interval, nothing to test
    assert "The family is empty" in text and "(13 row(s) without an interval are unclear" in text
    assert all(c.supported == "unclear" and math.isnan(c.p_yes) for c in summarize(bare, n_boot=200).claims)
    text = write_markdown(unquantised, tmp_path / "u.md", {}).read_text()
    assert "bound not applicable: parameters not quantised" in text
    text = write_markdown(mse, tmp_path / "m.md", {}).read_text()
    assert "unbounded" in text and "| not applicable |" in text
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]

    table = format_verdict_table(summary)
    lines = table.splitlines()
    assert len(lines) == 1 + len(summary.configs) and max(map(len, lines)) <= 100
    assert "holds" in table and "vacuous" in table


def _container(ax, prefix):
    return next(c for c in ax.containers if c.get_label().startswith(prefix))


def test_plots_show_the_hand_computed_means(records):
    at_n = [r for r in records if r["n"] == 400]
    fig = plot_test_error(at_n)
    ax = fig.axes[0]
    for mode in TEST_MEAN:
        y = _container(ax, mode).lines[0].get_ydata()
        hand = [np.mean(list(values(at_n, "test_error", mode=mode, rank=k).values())) for k in RANKS]
        assert np.allclose(y, hand)

    fig = plot_gap_vs_rank(at_n)
    assert [a.get_title() for a in fig.axes] == list(TEST_MEAN)
    for ax in fig.axes:
        mode = ax.get_title()
        hand = [np.mean(list(values(at_n, "gap", mode=mode, rank=k).values())) for k in RANKS]
        assert np.allclose(_container(ax, "mean gap").lines[0].get_ydata(), hand)
        bound = next(line for line in ax.lines if line.get_label().startswith("seed bound"))
        assert np.allclose(bound.get_ydata(), [min(bound_of(mode, k, 400), 1.0) for k in RANKS])

    at_rank = [r for r in records if r["rank"] == 4]
    ax = plot_gap_vs_n(at_rank, n_boot=200).axes[0]
    hand = [np.mean(list(values(at_rank, "gap", mode="a_only", n=n).values())) for n in NS]
    assert np.allclose(_container(ax, "a_only").lines[0].get_ydata(), hand)
    assert any("slope" in line.get_label() for line in ax.lines)
    with pytest.raises(InputError, match="n"):
        plot_gap_vs_rank(records)  # several n: the caller must pick one


def test_write_plots_files_and_skips(tmp_path):
    recs = make_records(ns=(100,), ranks=(2, 4)) + make_records(task="one", ns=(100, 400), ranks=(2,))
    files = write_plots(recs, tmp_path / "plots", n_boot=200)
    names = sorted(p.name for p in files)
    assert names == ["gap_vs_n_one_r2_q8.png", "gap_vs_rank_synth_n100_q8.png",
                     "test_error_one_n100_q8.png", "test_error_one_n400_q8.png",
                     "test_error_synth_n100_q8.png"]
    for p in files:
        assert p.read_bytes()[:8] == PNG_MAGIC
    skipped = " ".join(files.skipped)
    assert "gap vs n for synth_r2" in skipped and "gap vs rank for one_n100" in skipped
    assert not [p for p in (tmp_path / "plots").iterdir() if not p.name.endswith(".png")]
    text = write_markdown(summarize(recs, n_boot=200), tmp_path / "r.md", {"plots": files}).read_text()
    assert "](plots/gap_vs_n_one_r2_q8.png)" in text


def test_csv_round_trip(tmp_path, records):
    recs = [dict(r, extra_metric=i * 0.5) if i % 2 else dict(r) for i, r in enumerate(records[:6])]
    recs[0]["bits"] = None
    path = write_csv(recs, tmp_path / "runs.csv")
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == RECORD_KEYS + ("extra_metric",)
        rows = list(reader)
    assert len(rows) == len(recs)
    for row, rec in zip(rows, recs):
        assert float(row["gap"]) == rec["gap"] and float(row["test_error"]) == rec["test_error"]
        assert int(row["rank"]) == rec["rank"] and row["mode"] == rec["mode"]
        assert row["extra_metric"] == ("" if "extra_metric" not in rec else str(rec["extra_metric"]))
    assert rows[0]["bits"] == "" and rows[1]["bits"] == "8"


def test_bad_records_raise_input_error():
    with pytest.raises(InputError, match="seed"):
        summarize([dict(task="t", mode="lora", rank=1, n=10, gap=0.1)])
    with pytest.raises(InputError, match="mode must be one of"):
        summarize([dict(task="t", mode="c_only", rank=1, n=10, seed=0, gap=0.1)])
    with pytest.raises(InputError, match="at least one"):
        summarize([])
