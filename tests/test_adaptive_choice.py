"""codes.choose_adaptive_lazily (training errors asked for only while a candidate can still win)
against codes.choose_adaptive (every candidate evaluated): the same choice on random and edge cases."""

from __future__ import annotations

import math

import numpy as np

from infobound.harness.codes import CERT_DELTA, adaptive_bits, choose_adaptive, choose_adaptive_lazily


def _argmin_of_all(errors, bits, n):  # the rule by hand: smallest Occam-kl estimate, first on ties
    from infobound.certificates import kl_inverse_upper

    return np.argmin(kl_inverse_upper(errors, (bits * math.log(2.0) + math.log(1 / CERT_DELTA)) / n), axis=0).tolist()


def test_lazy_choice_equals_evaluating_every_candidate():
    rng = np.random.default_rng(3)
    skipped = 0
    for trial in range(150):
        c, k = int(rng.integers(1, 25)), int(rng.integers(1, 13))
        n = int(rng.choice([1, 10, 100, 700, 5000]))
        bits = rng.integers(0, 3000, (c, k)).astype(np.float64)
        if trial % 5 == 0:
            bits[:] = bits[0]  # every candidate the same length: ties decided by index
        errors = rng.integers(0, n + 1, (c, k)) / n
        if trial % 7 == 0:
            errors[:] = 1.0  # every estimate 1: the first candidate
        asked = []
        chosen, seen = choose_adaptive_lazily(bits, n, lambda j: (asked.append(j), errors[j])[1])
        assert chosen == _argmin_of_all(errors, bits, n)
        assert sorted(asked) == sorted(seen) and len(set(asked)) == len(asked)
        assert all(np.array_equal(seen[j], errors[j]) for j in seen)
        skipped += c - len(asked)
    assert skipped > 0  # it does leave candidates out


def test_adaptive_bits_feed_choose_adaptive():
    rng = np.random.default_rng(4)
    indices = [[{"a": rng.integers(0, 2**b, (3, 5)), "b": rng.integers(0, 2**b, 7)} for _ in range(4)]
               for b in (2, 3, 8)]
    errors = rng.integers(0, 101, (3, 4)) / 100
    bits = adaptive_bits(indices, 5)
    assert bits.shape == (3, 4)
    assert choose_adaptive(indices, errors, 100, 5) == _argmin_of_all(errors, bits, 100)
    assert choose_adaptive_lazily(bits, 100, lambda j: errors[j])[0] == choose_adaptive(indices, errors, 100, 5)


def test_a_wrong_screen_is_corrected(monkeypatch):
    """Screening estimates far too low skip candidates that can win; the exact check evaluates them."""
    from infobound.harness import codes

    monkeypatch.setattr(codes, "kl_inverse_estimate", lambda q, c: np.zeros_like(np.asarray(q, dtype=float)))
    rng = np.random.default_rng(8)
    for _ in range(40):
        c, k, n = int(rng.integers(2, 25)), int(rng.integers(1, 13)), 700
        bits = rng.integers(0, 3000, (c, k)).astype(np.float64)
        errors = rng.integers(0, n + 1, (c, k)) / n
        assert choose_adaptive_lazily(bits, n, lambda j: errors[j])[0] == _argmin_of_all(errors, bits, n)


def test_kl_inverse_estimate_is_close_to_the_certified_value():
    from infobound.certificates import kl_inverse_estimate, kl_inverse_upper

    rng = np.random.default_rng(9)
    q = np.concatenate([rng.random(3000), [0.0, 1.0, 0.5, 0.0, 1e-9]])
    c = np.concatenate([np.exp(rng.uniform(np.log(1e-6), np.log(50.0), 3000)), [0.3, 2.0, 0.0, 0.0, 1e-3]])
    est, exact = kl_inverse_estimate(q, c), kl_inverse_upper(q, c)
    assert np.all(np.abs(est - exact) <= 1e-12 * exact + 1e-300)
    assert kl_inverse_estimate(0.2, 0.0) == 0.2 and kl_inverse_estimate(1.0, 3.0) == 1.0
