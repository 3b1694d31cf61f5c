"""Supersample CMI estimators against hand counts (scipy.stats.entropy), exact constructions,
Monte-Carlo cases with analytic mutual information, and brute-force constant searches."""

import json
import math
from collections import Counter

import mpmath as mp
import numpy as np
import pytest
from scipy import optimize, stats

from infobound.cmi import (
    ESTIMATE_NOTE,
    FAST_RATE_C2_GRID,
    CMISummary,
    cmi_summary,
    ekl_cmi_bound,
    fast_rate_c1,
    fast_rate_cmi_bound,
    interpolation_estimate,
    ld_cmi_bound,
    mi_delta_loss,
    mi_loss_pair,
    plugin_mutual_information,
)
from infobound.errors import InputError

LN2 = math.log(2)
mp.mp.dps = 40


# ---------------------------------------------------------------- independent references


def entropy_mi(x, y):
    """H(X) + H(Y) − H(X, Y) from hand counts, entropies by scipy.stats.entropy (nats)."""
    hx = stats.entropy(list(Counter(x).values()))
    hy = stats.entropy(list(Counter(y).values()))
    hxy = stats.entropy(list(Counter(zip(x, y)).values()))
    return hx + hy - hxy


def mp_kl_inverse(q, c):
    q, c = mp.mpf(q), mp.mpf(c)

    def kl(p):
        t = mp.mpf(0)
        if q > 0:
            t += q * mp.log(q / p)
        if q < 1:
            t += (1 - q) * mp.log((1 - q) / (1 - p))
        return t

    lo, hi = q, mp.mpf(1)
    for _ in range(150):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if kl(mid) <= c else (lo, mid)
    return float(hi)


def balanced_masks(rng, k1, k2, n):
    """Masks with exactly k2/2 zeros for every supersample and pair."""
    base = np.arange(k2) % 2
    return np.stack([np.stack([rng.permutation(base) for _ in range(n)], axis=1) for _ in range(k1)])


def losses_from(train_loss, test_loss, masks):
    """Assemble (k1, k2, n, 2) losses: the trained slot U gets train_loss, the other test_loss."""
    slot1 = np.where(masks == 1, train_loss, test_loss)
    slot0 = np.where(masks == 1, test_loss, train_loss)
    return np.stack([slot0, slot1], axis=-1).astype(float)


# ---------------------------------------------------------------- plug-in MI


def test_plugin_mi_hand_example():
    x = [0, 0, 1, 1, 1, -1, 0, 1]
    y = [0, 1, 0, 1, 1, 0, 0, 1]
    expected = entropy_mi(x, y)
    assert expected > 0
    assert plugin_mutual_information(x, y) == pytest.approx(expected, rel=1e-12)
    # written out: p(x,y) log p(x,y)/(p(x)p(y)) over the six cells seen
    n = 8
    joint = Counter(zip(x, y))
    px, py = Counter(x), Counter(y)
    by_hand = sum(c / n * math.log(c * n / (px[a] * py[b])) for (a, b), c in joint.items())
    assert plugin_mutual_information(x, y) == pytest.approx(by_hand, rel=1e-12)
    assert plugin_mutual_information([1, 1, 1, 1], [0, 1, 0, 1]) == 0.0
    assert plugin_mutual_information([0, 1, 0, 1], [0, 1, 0, 1]) == pytest.approx(LN2, rel=1e-15)


def test_per_pair_mi_matches_hand_counts():
    rng = np.random.default_rng(1)
    k1, k2, n = 3, 7, 5
    masks = rng.integers(0, 2, (k1, k2, n))
    losses = rng.integers(0, 2, (k1, k2, n, 2)).astype(float)
    got_delta = mi_delta_loss(losses, masks)
    got_pair = mi_loss_pair(losses, masks)
    assert got_delta.shape == got_pair.shape == (k1, n)
    for j in range(k1):
        for i in range(n):
            u = masks[j, :, i].tolist()
            d = (losses[j, :, i, 1] - losses[j, :, i, 0]).tolist()
            pair = [tuple(r) for r in losses[j, :, i, :].tolist()]
            assert got_delta[j, i] == pytest.approx(entropy_mi(d, u), abs=1e-12)
            assert got_pair[j, i] == pytest.approx(entropy_mi(pair, u), abs=1e-12)
            # data processing for the empirical distribution: a function of the pair carries less
            assert got_delta[j, i] <= got_pair[j, i] + 1e-12


def test_single_slot_mi_is_below_the_pair_mi():
    rng = np.random.default_rng(2)
    masks = rng.integers(0, 2, (2, 9, 40))
    losses = rng.choice([0.0, 0.25, 1.0], size=(2, 9, 40, 2))
    pair = mi_loss_pair(losses, masks)
    for slot in (0, 1):
        single = mi_loss_pair(losses, masks, slot=slot)
        assert np.all(single <= pair + 1e-12)
        u, x = masks[1, :, 7].tolist(), losses[1, :, 7, slot].tolist()
        assert single[1, 7] == pytest.approx(entropy_mi(x, u), abs=1e-12)


# ---------------------------------------------------------------- independence: only the plug-in bias


def test_independent_masks_give_mi_near_zero_within_the_bias():
    rng = np.random.default_rng(3)
    k1, k2, n = 2, 50, 1500
    masks = rng.integers(0, 2, (k1, k2, n))
    losses = rng.integers(0, 2, (k1, k2, n, 2)).astype(float)  # independent of the masks
    bias_delta = (3 - 1) * (2 - 1) / (2 * k2)
    bias_pair = (4 - 1) * (2 - 1) / (2 * k2)
    raw_delta, raw_pair = mi_delta_loss(losses, masks).mean(), mi_loss_pair(losses, masks).mean()
    assert 0.7 * bias_delta <= raw_delta <= 1.3 * bias_delta
    assert 0.7 * bias_pair <= raw_pair <= 1.3 * bias_pair
    # Miller–Madow subtracts the bias; clipping at 0 keeps the positive part of a chi-square-like
    # fluctuation, E max(Exp(1) − 1, 0) = 1/e of the bias, so the mean lands near 0.37 · bias
    corrected = mi_delta_loss(losses, masks, correction=True).mean()
    assert 0.2 * bias_delta < corrected < 0.55 * bias_delta
    s = cmi_summary(losses, masks)
    assert s.bias_delta_loss == pytest.approx(1 / k2) and s.bias_loss_pair == pytest.approx(1.5 / k2)
    assert abs(s.gap) < 0.01
    assert s.interpolation is None  # the training error is not zero


# ---------------------------------------------------------------- fully determined by the mask


def test_memorisation_gives_ln2_per_pair_and_exact_bounds():
    rng = np.random.default_rng(4)
    k1, k2, n = 2, 10, 30
    masks = balanced_masks(rng, k1, k2, n)
    losses = losses_from(0.0, 1.0, masks)  # trained point loss 0, test point loss 1
    assert np.allclose(mi_delta_loss(losses, masks), LN2, rtol=1e-14)
    assert np.allclose(mi_loss_pair(losses, masks), LN2, rtol=1e-14)
    s = cmi_summary(losses, masks)
    assert (s.train_error, s.test_error, s.gap) == (0.0, 1.0, 1.0)
    assert s.ld_cmi == pytest.approx(math.sqrt(2 * LN2), rel=1e-14)
    # kl(0 || L/2) = -ln(1 - L/2) <= ln 2  gives  L <= 1
    assert s.ekl_cmi == pytest.approx(1.0, rel=1e-12) and s.ekl_cmi >= 1.0 - 1e-15
    # zero training error: inf over C2 < ln2/2 of ln2 / C2 -> 2
    assert 2.0 <= s.fast_rate_cmi <= 2.0 * (1 + 1e-9)
    assert s.interpolation == pytest.approx(1.0, rel=1e-14)
    assert s.gap <= s.ld_cmi and s.gap <= s.ekl_cmi + 1e-12 and s.gap <= s.fast_rate_cmi


def test_unbalanced_masks_give_the_empirical_entropy_of_u():
    masks = np.array([0, 0, 0, 1]).reshape(1, 4, 1)
    losses = losses_from(0.0, 1.0, masks)
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert mi_delta_loss(losses, masks)[0, 0] == pytest.approx(h, rel=1e-14)


# ---------------------------------------------------------------- interpolation identity


def test_interpolation_hand_example():
    # U = 0, 1, 0, 1; test losses 1, 1, 0, 0: Delta L = +1, -1, 0, 0; I = ln2 - (1/2) ln2
    masks = np.array([0, 1, 0, 1]).reshape(1, 4, 1)
    losses = losses_from(0.0, np.array([1, 1, 0, 0]).reshape(1, 4, 1), masks)
    assert entropy_mi([1, -1, 0, 0], [0, 1, 0, 1]) == pytest.approx(LN2 / 2)
    assert interpolation_estimate(losses, masks) == pytest.approx(0.5, rel=1e-14)
    assert interpolation_estimate(losses, masks, conditional=True) == pytest.approx(0.5, rel=1e-14)


def test_interpolation_monte_carlo_tracks_the_test_error():
    rng = np.random.default_rng(5)
    k1, k2, n, err = 4, 50, 400, 0.2
    masks = rng.integers(0, 2, (k1, k2, n))
    test_loss = (rng.random((k1, k2, n)) < err).astype(float)
    losses = losses_from(0.0, test_loss, masks)
    measured = test_loss.mean()
    est = interpolation_estimate(losses, masks)
    bias_bits = (3 - 1) / (2 * k1 * k2) / LN2  # pooled plug-in over k1 k2 runs
    assert abs(est - measured) < bias_bits + 0.01
    assert interpolation_estimate(losses, masks, conditional=True) >= est - 1e-12
    with pytest.raises(InputError, match="zero training error"):
        interpolation_estimate(losses_from(1.0, test_loss, masks), masks)


# ---------------------------------------------------------------- Monte Carlo against analytic MI


def analytic_delta_mi(a, b):
    """I(Delta L; U) when the test loss is Bernoulli(a), the trained loss Bernoulli(b), U uniform."""
    p0 = {1: a * (1 - b), -1: (1 - a) * b}  # given U = 0: Delta L = L_1(test) - L_0(trained)
    p0[0] = 1 - p0[1] - p0[-1]
    p1 = {1: b * (1 - a), -1: (1 - b) * a, 0: p0[0]}  # given U = 1: mirrored
    total = 0.0
    for d in (-1, 0, 1):
        m = (p0[d] + p1[d]) / 2
        for cond in (p0, p1):
            if cond[d] > 0:
                total += 0.5 * cond[d] * math.log(cond[d] / m)
    return total


def test_monte_carlo_plugin_converges_to_the_analytic_mi():
    rng = np.random.default_rng(6)
    k1, k2, n, a, b = 1, 4000, 40, 0.4, 0.1
    masks = rng.integers(0, 2, (k1, k2, n))
    train = (rng.random((k1, k2, n)) < b).astype(float)
    test = (rng.random((k1, k2, n)) < a).astype(float)
    losses = losses_from(train, test, masks)
    exact = analytic_delta_mi(a, b)
    est = mi_delta_loss(losses, masks).mean()
    assert abs(est - exact - 1 / k2) < 0.1 * exact
    ld = ld_cmi_bound(losses, masks)
    assert ld == pytest.approx(math.sqrt(2 * exact), rel=0.05)
    assert ld >= a - b  # the bound holds for the true gap
    s = cmi_summary(losses, masks)
    assert s.gap == pytest.approx(a - b, abs=0.01)
    assert s.ekl_cmi >= s.gap and s.fast_rate_cmi >= s.gap


# ---------------------------------------------------------------- e-CMI and fast-rate by hand


def test_ekl_matches_an_independent_inversion():
    rng = np.random.default_rng(7)
    k1, k2, n = 2, 12, 20
    masks = rng.integers(0, 2, (k1, k2, n))
    losses = rng.choice([0.0, 0.5, 1.0], size=(k1, k2, n, 2))
    train = np.where(masks == 1, losses[..., 1], losses[..., 0]).mean()
    rate = np.mean([entropy_mi([tuple(r) for r in losses[j, :, i, :].tolist()], masks[j, :, i].tolist())
                    for j in range(k1) for i in range(n)])
    expected = 2 * (mp_kl_inverse(train, rate) - train)
    assert ekl_cmi_bound(losses, masks) == pytest.approx(expected, rel=1e-10)


def test_fast_rate_constants_and_brute_force_minimum():
    # smallest admissible C1 against a root-finder on the constraint
    for c2 in [1e-4, 0.05, 0.2, 0.34]:
        def constraint(c1, c2=c2):
            return math.exp(2 * c2) + math.exp(-2 * c2 * (c1 + 1)) - 2

        root = optimize.brentq(constraint, 0.0, 1e6, xtol=1e-14, rtol=1e-14)
        assert float(fast_rate_c1(c2)) == pytest.approx(root, rel=1e-9, abs=1e-12)
    c1 = fast_rate_c1(FAST_RATE_C2_GRID)
    assert np.all(np.exp(2 * FAST_RATE_C2_GRID) + np.exp(-2 * FAST_RATE_C2_GRID * (c1 + 1)) <= 2 + 1e-12)

    rng = np.random.default_rng(8)
    k1, k2, n = 2, 20, 50
    masks = rng.integers(0, 2, (k1, k2, n))
    train = (rng.random((k1, k2, n)) < 0.1).astype(float)
    test = (rng.random((k1, k2, n)) < 0.3).astype(float)
    losses = losses_from(train, test, masks)
    ls = train.mean()
    rate = np.mean([entropy_mi([tuple(r) for r in losses[j, :, i, :].tolist()], masks[j, :, i].tolist())
                    for j in range(k1) for i in range(n)])
    # brute force over a fine (C1, C2) grid of admissible pairs
    best = math.inf
    for c2 in np.linspace(1e-4, LN2 / 2 - 1e-6, 20_000):
        c1_min = -math.log(2 - math.exp(2 * c2)) / (2 * c2) - 1
        best = min(best, c1_min * ls + rate / c2)
    got = fast_rate_cmi_bound(losses, masks)
    assert best * (1 - 1e-4) <= got.bound <= best * (1 + 1e-3)
    assert got.bound == pytest.approx(got.C1 * ls + rate / got.C2, rel=1e-12)
    assert math.exp(2 * got.C2) + math.exp(-2 * got.C2 * (got.C1 + 1)) <= 2 + 1e-12
    custom = fast_rate_cmi_bound(losses, masks, grid=[0.1])
    assert custom.bound == pytest.approx(float(fast_rate_c1(0.1)) * ls + rate / 0.1, rel=1e-12)


# ---------------------------------------------------------------- summary


def test_summary_fields_and_json():
    rng = np.random.default_rng(9)
    k1, k2, n = 2, 6, 8
    masks = rng.integers(0, 2, (k1, k2, n))
    losses = rng.integers(0, 2, (k1, k2, n, 2)).astype(float)
    s = cmi_summary(losses, masks)
    assert isinstance(s, CMISummary)
    assert (s.k1, s.k2, s.n) == (k1, k2, n)
    trained = np.where(masks == 1, losses[..., 1], losses[..., 0]).mean()
    tested = np.where(masks == 1, losses[..., 0], losses[..., 1]).mean()
    assert s.train_error == pytest.approx(trained) and s.test_error == pytest.approx(tested)
    assert s.gap == pytest.approx(tested - trained)
    assert s.bias_delta_loss == pytest.approx(1 / 6) and s.bias_loss_pair == pytest.approx(3 / 12)
    assert "expectation" in s.note and s.note == ESTIMATE_NOTE
    d = json.loads(json.dumps(s.to_dict()))
    assert d["k2"] == 6 and d["ld_cmi"] == s.ld_cmi
    # non-binary losses: the 0-1-only quantities are None, the kl-based ones remain
    s2 = cmi_summary(losses * 0.5, masks)
    assert s2.ld_cmi is None and s2.interpolation is None and s2.mi_delta_loss is None
    assert s2.ekl_cmi >= 0 and s2.fast_rate_cmi >= 0
    sc = cmi_summary(losses, masks, correction=True)
    assert sc.correction and sc.ld_cmi <= s.ld_cmi + 1e-12


# ---------------------------------------------------------------- bad input

RNG = np.random.default_rng(10)
GOOD_MASKS = RNG.integers(0, 2, (2, 4, 3))
GOOD_LOSSES = RNG.integers(0, 2, (2, 4, 3, 2)).astype(float)


def _with(arr, index, value):
    out = np.array(arr, dtype=float)
    out[index] = value
    return out


BAD = [
    # (parameter named in the message, losses, masks)
    ("k2", GOOD_LOSSES[:, :1], GOOD_MASKS[:, :1]),
    ("masks", GOOD_LOSSES, GOOD_MASKS[:, :, :2]),
    ("losses", GOOD_LOSSES[..., :1], GOOD_MASKS),
    ("losses", GOOD_LOSSES[0], GOOD_MASKS[0]),
    ("masks", GOOD_LOSSES, _with(GOOD_MASKS, (0, 0, 0), 2)),
    ("masks", GOOD_LOSSES, _with(GOOD_MASKS, (0, 0, 0), -1)),
    ("masks", GOOD_LOSSES, _with(GOOD_MASKS, (0, 0, 0), 0.5)),
    ("masks", GOOD_LOSSES, _with(GOOD_MASKS, (0, 0, 0), math.nan)),
    ("losses", _with(GOOD_LOSSES, (0, 0, 0, 0), math.nan), GOOD_MASKS),
    ("losses", _with(GOOD_LOSSES, (0, 0, 0, 0), math.inf), GOOD_MASKS),
    ("losses", _with(GOOD_LOSSES, (0, 0, 0, 0), -0.5), GOOD_MASKS),
    ("losses", _with(GOOD_LOSSES, (0, 0, 0, 0), 1.5), GOOD_MASKS),
    ("losses", None, GOOD_MASKS),
    ("masks", GOOD_LOSSES, None),
    ("losses", "losses", GOOD_MASKS),
    ("losses", True, GOOD_MASKS),
    ("losses", 0.5, GOOD_MASKS),
    ("losses", np.full(GOOD_LOSSES.shape, "a"), GOOD_MASKS),
    ("masks", GOOD_LOSSES, np.full(GOOD_MASKS.shape, "a")),
]
FUNCS = [mi_delta_loss, mi_loss_pair, ld_cmi_bound, ekl_cmi_bound, fast_rate_cmi_bound,
         interpolation_estimate, cmi_summary]


@pytest.mark.parametrize("func", FUNCS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("param,losses,masks", BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_bad_input_raises_input_error_naming_the_parameter(func, param, losses, masks):
    with pytest.raises(InputError) as info:
        func(losses, masks)
    assert param in str(info.value)


@pytest.mark.parametrize("func", [mi_delta_loss, ld_cmi_bound, interpolation_estimate],
                         ids=lambda f: f.__name__)
def test_zero_one_estimators_refuse_fractional_losses(func):
    with pytest.raises(InputError, match="0-1"):
        func(GOOD_LOSSES * 0.5, GOOD_MASKS)


@pytest.mark.parametrize("kwargs,param", [
    ({"grid": [0.0]}, "grid"), ({"grid": [0.4]}, "grid"), ({"grid": [math.nan]}, "grid"),
    ({"grid": []}, "grid"), ({"grid": "0.1"}, "grid"), ({"grid": True}, "grid"),
    ({"slot": 2}, "slot"), ({"slot": True}, "slot"), ({"slot": "0"}, "slot"),
    ({"correction": "yes"}, "correction"), ({"correction": None}, "correction"),
])
def test_fast_rate_options_are_checked(kwargs, param):
    with pytest.raises(InputError, match=param):
        fast_rate_cmi_bound(GOOD_LOSSES, GOOD_MASKS, **kwargs)


def test_other_options_are_checked():
    with pytest.raises(InputError, match="conditional"):
        interpolation_estimate(np.zeros_like(GOOD_LOSSES), GOOD_MASKS, conditional="no")
    with pytest.raises(InputError, match="correction"):
        ld_cmi_bound(GOOD_LOSSES, GOOD_MASKS, correction=1)
    with pytest.raises(InputError, match="C2"):
        fast_rate_c1(0.5)
    for x, y in [([1, 2], [1]), ([], []), ([math.nan, 1.0], [0, 1]), (None, [0]), ([[1, 2]], [1])]:
        with pytest.raises(InputError):
            plugin_mutual_information(x, y)
