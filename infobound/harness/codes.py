"""Code lengths and certificates of the trained adapters of a sweep (THEORY §4). No torch.

Every quantised run of a 0-1-loss task gets a real code: its trained tensors' grid indices are
entropy-coded by ``codelength.adapter_code_length`` under the sweep's grid (bits, clip), which was
fixed before training, so no grid choice is charged. A frozen random factor costs only its seed:
``seed_bits`` = the bits of an integer below the number of seeds the sweep allows (its draw is a
fixed function of that seed, fixed before any data is seen); LoRA and full fine-tuning code every
trained value and charge no seed. The pretrained base network is part of the prior (each task
states that it never saw the fine-tuning data).

From the code length ``|c|`` and the run's training error come two certificates on the run's
population 0-1 error, each at δ, and the best of them with δ split over both (``certificates``);
beside them the held-out test-set bound (Clopper–Pearson on the test errors, δ). Records keep the
numbers; the store keeps the grid indices (``adapter.NAME`` arrays), so ``stored_code_lengths``
rebuilds the itemised code of any stored run and checks it against the recorded length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..certificates import certificates_many, kl_inverse_estimate, kl_inverse_upper
from ..codelength import CodeLength, Grid, adapter_code_length
from ..errors import InputError
from ..spec import Mode

CERT_DELTA = 0.05
"""δ of the per-run certificates and test-set bounds written into the records."""
CERT_METHODS = ("occam_kl", "binomial")
ARRAY_PREFIX = "adapter."
"""Stored arrays named ``adapter.NAME`` hold the grid indices of trained tensor NAME."""


def seed_bits(mode: Mode | str, seed_count: int) -> int:
    """Bits of the frozen factor's seed: ``ceil(log2(seed_count))`` when a factor is frozen random."""
    if Mode.parse(mode) in (Mode.LORA, Mode.FULL):
        return 0
    return max(0, math.ceil(math.log2(seed_count)))


def index_dtype(levels: int) -> np.dtype:
    """The smallest unsigned dtype that holds indices ``0 .. levels - 1``."""
    for dtype in (np.uint8, np.uint16, np.uint32, np.uint64):
        if levels - 1 <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise InputError(f"levels must be at most 2**64, got {levels}")


def run_certificates(tensors: list[dict[str, np.ndarray]], grids: list[Grid], seed_bit_count: int,
                     train_errors: list[float], n: int, test_errors: list[float], test_n: int, *,
                     grid_candidates: int = 1, prefix: str = "", choices: dict | None = None) -> list[tuple[dict, dict]]:
    """For each run (its tensors' grid indices on its grid): the record fields (code length,
    certificates, test-set bound) and the arrays to store. The certificates of all runs are computed
    together (``certificates_many``).

    ``grid_candidates`` > 1: each run's grid was chosen among that many after training, and its code
    pays ``log2(grid_candidates)`` bits for it. ``prefix`` names the fields (``adaptive_``).
    ``choices``: settings chosen from the training data (name -> number of candidates, e.g. a tuned
    learning rate), each paid ``log2`` bits in the code (item ``choice.NAME``)."""
    codes = [adapter_code_length(t, g, seed_bits=seed_bit_count, grid_candidates=grid_candidates, choices=choices)
             for t, g in zip(tensors, grids)]
    lengths = [math.ceil(code.total_bits - 1e-9) for code in codes]
    certs = certificates_many(train_errors, n, lengths, CERT_DELTA, CERT_METHODS)
    errors = [round(e * test_n) for e in test_errors]
    held_out = certificates_many([e / test_n for e in errors], test_n, [0] * len(errors), CERT_DELTA, ("binomial",))
    out = []
    for code, cert, test, grid, indices, test_error in zip(codes, certs, held_out, grids, tensors, test_errors):
        fields = {
            "code_length_bits": float(code.total_bits),
            "code_seed_bits": int(seed_bit_count),
            "code_entropy_bits": float(sum(code.entropy_bits.values())),
            "code_choice_bits": float(sum(math.log2(c) for c in (choices or {}).values())),
            "cert_delta": CERT_DELTA,
            "cert_occam_kl": float(cert.occam_kl),
            "cert_binomial": float(cert.binomial),
            "cert_best": float(cert.best),
            "cert_method": cert.best_method,
            "test_set_bound": float(test.binomial),
        }
        if prefix:
            fields = {prefix + k: v for k, v in fields.items()}
            fields.update({f"{prefix}grid_bits": grid.bits, f"{prefix}grid_clip": grid.clip,
                           f"{prefix}grid_candidates": int(grid_candidates),
                           f"{prefix}train_error": float(cert.train_error), f"{prefix}test_error": float(test_error)})
        dtype = index_dtype(grid.levels)
        names = ADAPTIVE_PREFIX if prefix else ARRAY_PREFIX
        out.append((fields, {names + name: np.asarray(v).astype(dtype) for name, v in indices.items()}))
    return out


ADAPTIVE_BITS = (2, 3, 4, 5, 6, 8)
ADAPTIVE_CLIPS = (0.5, 1.0, 2.0, 4.0)
ADAPTIVE_PREFIX = "adaptive."
"""Stored arrays named ``adaptive.NAME`` hold the indices of tensor NAME on the run's chosen grid."""


def adaptive_grids() -> list[Grid]:
    """The grids a run's adaptive certificate chooses from, fixed before any data is seen: every
    bit width of ``ADAPTIVE_BITS`` with every clip of ``ADAPTIVE_CLIPS`` (24, so the choice costs
    log2 24 ≈ 4.6 bits)."""
    return [Grid(b, c) for b in ADAPTIVE_BITS for c in ADAPTIVE_CLIPS]


def choose_adaptive(indices: list[list[dict]], train_errors: np.ndarray, n: int, seed_bit_count: int) -> list[int]:
    """For each run, the candidate grid with the smallest estimated Occam-kl certificate.

    ``indices[c][i]``: run i's tensors on candidate grid c; ``train_errors[c, i]``: that model's
    training error. The estimate uses each tensor's empirical entropy plus 64 bits of table (the
    real code is built for the chosen grid only). Any rule may choose here: the code pays log2 of
    the number of candidates whatever the rule, so the certificate stays valid."""
    estimate = _estimates(np.asarray(train_errors, dtype=np.float64), adaptive_bits(indices, seed_bit_count), n)
    return [int(j) for j in np.argmin(estimate, axis=0)]


def adaptive_bits(indices: list[list[dict]], seed_bit_count: int) -> np.ndarray:
    """The (C, K) code lengths ``choose_adaptive`` estimates: ``ceil`` of the seed and choice bits,
    log2 C, and per tensor its empirical entropy plus 64 bits of table."""
    from ..codelength import entropy_bits_many

    extra = seed_bit_count + math.log2(len(indices))
    entropies = iter(entropy_bits_many([v for cand in indices for run in cand for v in run.values()]))
    return np.array([[math.ceil(extra + sum(next(entropies) + 64.0 for _ in run)) for run in cand]
                     for cand in indices], dtype=np.float64)  # (C, K)


def _rates(bits: np.ndarray, n: int) -> np.ndarray:
    return (bits * math.log(2.0) + math.log(1.0 / CERT_DELTA)) / n


def _estimates(errors: np.ndarray, bits: np.ndarray, n: int) -> np.ndarray:
    return kl_inverse_upper(errors, _rates(bits, n))


_DOMINATED = 1e-9
"""Relative margin by which a candidate's estimate at training error 0 must exceed a run's best
estimate before ``choose_adaptive_lazily`` leaves it unevaluated (the estimate at error q is
at least that at 0, up to an ulp or two)."""


def choose_adaptive_lazily(bits: np.ndarray, n: int, train_errors) -> tuple[list[int], dict[int, np.ndarray]]:
    """``choose_adaptive``'s choice, with ``bits = adaptive_bits(...)``, asking for a candidate's
    training errors (``train_errors(c)`` -> (K,) errors) only where some run could still choose it.

    kl⁻¹(q, c) grows with q, so a candidate whose estimate at q = 0 exceeds, for every run, that
    run's smallest estimate among the evaluated candidates is never the argmin (nor tied with it).
    Candidates are asked in order of their best estimate at q = 0 and screened with
    ``kl_inverse_estimate``; then the estimates of the evaluated ones (``kl_inverse_upper``, one
    batch) decide, and any skipped candidate they do not rule out is evaluated too, so the choice is
    exactly ``choose_adaptive``'s. Returns it per run and the errors of the evaluated candidates."""
    bits = np.asarray(bits, dtype=np.float64)
    rates = _rates(bits, n)
    lower = kl_inverse_upper(np.zeros_like(bits), rates)  # (C, K)
    guess = np.full(bits.shape[1], np.inf)
    errors: dict[int, np.ndarray] = {}
    for c in np.argsort(lower.min(axis=1), kind="stable").tolist():
        if not np.all(lower[c] > guess * (1.0 + _DOMINATED)):
            errors[c] = np.asarray(train_errors(c), dtype=np.float64)
            guess = np.minimum(guess, kl_inverse_estimate(errors[c], rates[c]))
    while True:
        estimate = np.ones_like(bits)  # 1 (the estimate at error 1) where not evaluated: never below a best
        done = sorted(errors)
        estimate[done] = kl_inverse_upper(np.stack([errors[c] for c in done]), rates[done])
        best = estimate[done].min(axis=0)
        missing = [c for c in range(len(bits)) if c not in errors and not np.all(lower[c] > best * (1.0 + _DOMINATED))]
        if not missing:
            break
        for c in missing:
            errors[c] = np.asarray(train_errors(c), dtype=np.float64)
    return [int(j) for j in np.argmin(estimate, axis=0)], errors


@dataclass(frozen=True)
class StoredCode:
    """The itemised code of one stored run, rebuilt from its stored grid indices."""

    record: dict
    code: CodeLength
    grid: str
    """``sweep`` (the sweep's grid, fixed in advance) or ``chosen`` (the run's adaptive grid)."""

    @property
    def recorded_bits(self) -> float:
        return float(self.record["code_length_bits" if self.grid == "sweep" else "adaptive_code_length_bits"])

    @property
    def matches(self) -> bool:
        """Whether the rebuilt length equals the length recorded at training time."""
        return abs(self.code.total_bits - self.recorded_bits) <= 1e-6


def _tensors(arrays: dict, prefix: str) -> dict:
    return {name[len(prefix):]: value for name, value in arrays.items() if name.startswith(prefix)}


def stored_code_lengths(folder, where: dict | None = None) -> list[StoredCode]:
    """The itemised code length of every stored adapter of ``folder`` (``where`` filters records as
    ``RunStore.records`` does): on the sweep's grid, and on the run's chosen grid where recorded.
    Raises ``InputError`` for a store that holds none."""
    from .store import open_for_reading

    with open_for_reading(folder) as store:
        records = [r for r in store.records(where)
                   if r.get("code_length_bits") is not None or r.get("adaptive_code_length_bits") is not None]
        if not records:
            raise InputError(f"DIR {str(folder)!r} holds no run with a code length (runs of a 0-1-loss "
                             f"task written by this version of infobound)")
        arrays = store.arrays_many([r["key"] for r in records])
    out = []
    for record in records:
        mine = arrays.get(record["key"], {})
        if record.get("code_length_bits") is not None:
            tensors = _tensors(mine, ARRAY_PREFIX)
            _check_stored(record, tensors, folder)
            code = adapter_code_length(tensors, Grid(int(record["bits"]), float(record["clip"])),
                                       seed_bits=int(record["code_seed_bits"]))
            out.append(StoredCode(record, code, "sweep"))
        if record.get("adaptive_code_length_bits") is not None:
            tensors = _tensors(mine, ADAPTIVE_PREFIX)
            _check_stored(record, tensors, folder)
            grid = Grid(int(record["adaptive_grid_bits"]), float(record["adaptive_grid_clip"]))
            code = adapter_code_length(tensors, grid, seed_bits=int(record["adaptive_code_seed_bits"]),
                                       grid_candidates=int(record["adaptive_grid_candidates"]))
            out.append(StoredCode(record, code, "chosen"))
    return out


def _check_stored(record: dict, tensors: dict, folder) -> None:
    if not tensors:
        raise InputError(f"run {record['key'][:12]}... of {str(folder)!r} has a code length but no stored adapter")
