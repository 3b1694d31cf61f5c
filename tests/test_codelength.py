"""Code lengths of quantised adapters against references computed here by hand.

Exact round trips through the real range coder, payload against the empirical entropy
``-Σ n_s log2(n_s / N)`` (numpy), Elias-delta against its published table, the prefix-free property
(no codeword a prefix of another, Kraft sum ≤ 1, a decoder that finds the end itself), the numpy
grid against ``infobound.quantize.UniformGrid`` (torch), and bad input for every public function.
"""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from infobound.codelength import (
    MODELS,
    CodeLength,
    EncodedTensor,
    Grid,
    _BitReader,
    _BitWriter,
    adapter_code_length,
    adapter_code_length_from_values,
    choose_grid,
    decode_adapter,
    decode_tensor,
    encode_tensor,
)
from infobound.errors import InputError
from infobound.quantize import UniformGrid

# Elias-delta codewords as published (Elias 1975; the table on Wikipedia's "Elias delta coding").
ELIAS_DELTA = {1: "1", 2: "0100", 3: "0101", 4: "01100", 5: "01101", 6: "01110", 7: "01111",
               8: "00100000", 9: "00100001", 10: "00100010", 15: "00100111", 16: "001010000",
               17: "001010001"}


def delta_len(n: int) -> int:
    """Elias-delta length from its definition: floor(log2 n) + 2 floor(log2(floor(log2 n) + 1)) + 1."""
    b = math.floor(math.log2(n))
    return b + 2 * math.floor(math.log2(b + 1)) + 1


def entropy_bits(indices) -> float:
    counts = np.bincount(np.asarray(indices).ravel()).astype(float)
    counts = counts[counts > 0]
    return float(-(counts * np.log2(counts / counts.sum())).sum())


def bitstring(stream: bytes, length: int) -> str:
    return "".join(format(b, "08b") for b in stream)[:length]


def sample(kind: str, shape, levels: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "uniform":
        return rng.integers(0, levels, size=shape)
    if kind == "peaked":
        return np.clip(np.rint(rng.laplace(levels / 2, 1.5, size=shape)), 0, levels - 1).astype(np.int64)
    if kind == "gaussian":
        return np.clip(np.rint(rng.normal(levels / 3, levels / 20, size=shape)), 0, levels - 1).astype(np.int64)
    if kind == "constant":
        return np.full(shape, levels // 3, dtype=np.int64)
    if kind == "sparse":  # a few symbols far apart
        symbols = np.unique(np.clip([0, 7, levels - 9, levels - 1], 0, levels - 1))
        weights = np.arange(1, symbols.size + 1, dtype=float)
        return rng.choice(symbols, size=shape, p=weights / weights.sum())
    raise AssertionError(kind)


# --------------------------------------------------------------------------- Elias-delta


@pytest.mark.parametrize("n", sorted(ELIAS_DELTA))
def test_elias_delta_matches_published_table(n):
    w = _BitWriter()
    w.delta(n)
    assert "".join(map(str, w.bits())) == ELIAS_DELTA[n]
    assert len(ELIAS_DELTA[n]) == delta_len(n)


def test_elias_delta_reads_back_a_sequence():
    values = [1, 2, 3, 31, 32, 33, 1000, 2**40 + 5, 7]
    w = _BitWriter()
    for v in values:
        w.delta(v)
    assert w.length == sum(delta_len(v) for v in values)
    r = _BitReader(w.bits())
    assert [r.delta() for _ in values] == values
    assert r.pos == w.length


# --------------------------------------------------------------------------- round trips


SHAPES = [(), (1,), (1, 1), (7,), (64, 4), (3, 5, 2), (1000,)]
KINDS = ["uniform", "peaked", "gaussian", "constant", "sparse"]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("levels", [2, 16, 256, 2**16])
def test_decode_encode_is_exact(shape, kind, levels):
    x = sample(kind, shape, levels, seed=len(shape) + levels)
    enc = encode_tensor(x, levels)
    y = decode_tensor(enc)
    assert y.shape == x.shape and y.dtype == np.int64
    np.testing.assert_array_equal(y, x)
    assert enc.shape == x.shape and enc.levels == levels


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("kind", ["uniform", "peaked", "sparse"])
def test_every_model_round_trips(model, kind):
    x = sample(kind, (40, 9), 256, seed=3)
    enc = encode_tensor(x, 256, model=model)
    assert enc.model == model
    np.testing.assert_array_equal(decode_tensor(enc), x)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int32, np.uint32, np.int64, np.uint64])
def test_any_integer_dtype(dtype):
    x = np.array([[0, 3, 3], [5, 1, 3]], dtype=dtype)
    np.testing.assert_array_equal(decode_tensor(encode_tensor(x, 8)), x.astype(np.int64))


def test_largest_grid_round_trips():
    x = np.array([0, 2**53 - 1, 2**52, 12345], dtype=np.int64)
    enc = encode_tensor(x, 2**53)
    np.testing.assert_array_equal(decode_tensor(enc), x)
    raw = encode_tensor(x, 2**53, model="raw")
    np.testing.assert_array_equal(decode_tensor(raw), x)
    assert raw.bits["payload"] == 4 * 53 and enc.length <= raw.length


# --------------------------------------------------------------------------- lengths


@pytest.mark.parametrize("kind", ["uniform", "peaked", "gaussian", "sparse"])
@pytest.mark.parametrize("n", [50, 256, 5000])
def test_empirical_payload_is_the_entropy_plus_the_word_overhead(kind, n):
    x = sample(kind, (n,), 256, seed=n)
    h = entropy_bits(x)
    enc = encode_tensor(x, 256, model="empirical")
    assert enc.entropy_bits == pytest.approx(h, rel=1e-12, abs=1e-9)
    # The range coder spends at most two 32-bit words beyond the ideal length (plus a tiny rate loss
    # from 24-bit fixed-point probabilities), and an ideal code under the exact counts cannot beat h
    # by more than its final partial word.
    assert h - 32 <= enc.bits["payload"] <= h + 64 + 1e-3 * h
    assert enc.bits["payload"] % 32 == 0 and enc.payload.size * 32 == enc.bits["payload"]


def test_default_code_is_never_longer_than_any_single_model():
    for kind in ["uniform", "peaked", "gaussian", "sparse"]:
        x = sample(kind, (30, 20), 256, seed=11)
        best = encode_tensor(x, 256).length
        assert best == min(encode_tensor(x, 256, model=m).length for m in MODELS)


def test_peaked_codes_shorter_than_uniform():
    uniform, peaked = sample("uniform", (2000,), 256, 1), sample("peaked", (2000,), 256, 1)
    assert entropy_bits(peaked) < 0.6 * entropy_bits(uniform)
    lu, lp = encode_tensor(uniform, 256).length, encode_tensor(peaked, 256).length
    assert lp < 0.6 * lu
    assert lu >= 2000 * 8 * 0.99  # a uniform byte costs about 8 bits: no free lunch
    assert lp <= entropy_bits(peaked) + 200  # table and word overhead stay small


@pytest.mark.parametrize("shape", [(1,), (1000,), (64, 4)])
def test_constant_tensor_costs_only_shape_and_range(shape):
    x = np.full(shape, 200, dtype=np.int64)
    enc = encode_tensor(x, 256)
    assert enc.model == "constant" and enc.bits["payload"] == 0 and enc.bits["length"] == 0
    # shape: delta(ndim + 1) and delta of each dim; range: delta(zigzag(200 - 127) + 1) and delta(1)
    assert enc.bits["shape"] == delta_len(len(shape) + 1) + sum(delta_len(d) for d in shape)
    assert enc.bits["table"] == delta_len(2 * (200 - 127) + 1) + delta_len(1)
    assert enc.length < 50


def test_raw_model_length_by_hand():
    x = np.array([0, 3, 1, 2, 2, 0, 3], dtype=np.int64)  # lo 0, hi 3 on a 4-point grid
    enc = encode_tensor(x, 4, model="raw")
    zig = 1  # zigzag(lo - (levels - 1) // 2) = zigzag(0 - 1): -1 -> 1
    assert enc.bits == {"shape": delta_len(2) + delta_len(7), "table": delta_len(zig + 1) + delta_len(4) + 2,
                        "length": 0, "payload": 7 * 2}
    assert enc.length == sum(enc.bits.values())


def test_itemised_tensor_bits_sum_to_the_stream():
    x = sample("peaked", (33, 3), 256, seed=5)
    enc = encode_tensor(x, 256)
    assert sum(enc.bits.values()) == enc.length == enc.total_bits
    assert len(enc.stream) == math.ceil(enc.length / 8)
    assert set(bitstring(enc.stream, len(enc.stream) * 8)[enc.length:]) <= {"0"}  # zero padding


def test_adapter_items_sum_to_total_and_charges_by_hand():
    tensors = {"A": sample("gaussian", (8, 64), 256, 1), "B": sample("peaked", (64, 8), 256, 2)}
    code = adapter_code_length(tensors, (8, 0.1), choices={"lr": 4, "rank": 3}, seed_bits=32, grid_candidates=6)
    assert isinstance(code, CodeLength)
    assert math.isclose(code.total_bits, math.fsum(code.items.values()), rel_tol=0, abs_tol=1e-9)
    assert code.items["header"] == delta_len(2)
    assert code.items["choice.lr"] == 2.0 and code.items["choice.rank"] == pytest.approx(math.log2(3))
    assert code.items["seed"] == 32 and code.items["prefix"] == 0
    assert code.items["grid"] == pytest.approx(math.log2(6))
    written = [k for k in code.items if k.split(".")[-1] in ("shape", "table", "length", "payload")] + ["header"]
    assert code.stream_bits == sum(code.items[k] for k in written)
    charged = math.log2(4) + math.log2(3) + 32 + math.log2(6)
    assert code.total_bits == pytest.approx(code.stream_bits + charged, abs=1e-9)
    for name, x in tensors.items():
        assert code.entropy_bits[name] == pytest.approx(entropy_bits(x))
        enc = encode_tensor(x, 256)
        assert code.items[f"{name}.payload"] == enc.bits["payload"]
    assert code.total_nats == pytest.approx(code.total_bits * math.log(2))


def test_per_tensor_grids_are_charged_per_tensor():
    tensors = {"A": sample("uniform", (5,), 16, 1), "B": sample("uniform", (5,), 256, 1)}
    code = adapter_code_length(tensors, {"A": (4, 1.0), "B": (8, 1.0)}, grid_candidates=5)
    assert code.items["A.grid"] == code.items["B.grid"] == pytest.approx(math.log2(5))
    assert "grid" not in code.items
    assert code.grids["A"] == Grid(4, 1.0)


def test_table_and_dict_show_every_item():
    code = adapter_code_length({"B": sample("peaked", (64, 4), 256, 0)}, Grid(8, 4.0), seed_bits=32)
    text = code.table()
    for key in code.items:
        assert key in text
    assert "total" in text and "entropy" in text
    d = json.loads(json.dumps(code.to_dict()))
    assert d["total_bits"] == pytest.approx(code.total_bits) and d["items"]["seed"] == 32


# --------------------------------------------------------------------------- prefix-free


def all_tensors(shape, levels):
    n = math.prod(shape)
    for flat in np.ndindex(*([levels] * n)) if n else [()]:
        yield np.array(flat, dtype=np.int64).reshape(shape)


def test_tensor_codes_are_prefix_free_and_satisfy_kraft():
    words = []
    for levels in (2, 3, 4):
        for shape in [(), (1,), (2,), (3,), (1, 1), (1, 2), (2, 1), (2, 2)]:
            if levels ** math.prod(shape) > 81:
                continue
            for x in all_tensors(shape, levels):
                enc = encode_tensor(x, levels)
                np.testing.assert_array_equal(decode_tensor(enc), x)
                words.append((levels, bitstring(enc.stream, enc.length)))
    for levels in (2, 3, 4):  # one code per grid (the decoder knows levels)
        family = sorted(w for lv, w in words if lv == levels)
        assert len(set(family)) == len(family)  # injective
        for a, b in itertools.pairwise(family):
            assert not b.startswith(a), (a, b)
        assert math.fsum(2.0 ** -len(w) for w in family) <= 1.0


def test_adapter_stream_says_where_it_ends():
    rng = np.random.default_rng(9)
    tensors = {"A": sample("gaussian", (4, 32), 256, 1), "B": sample("constant", (32, 4), 256, 2),
               "C": sample("uniform", (3,), 16, 3)}
    code = adapter_code_length(tensors, {"A": (8, 1.0), "B": (8, 1.0), "C": (4, 1.0)})
    garbage = rng.integers(0, 256, 40, dtype=np.uint8).tobytes()
    decoded, used = decode_adapter(code.stream + garbage, [256, 256, 16])
    assert used == code.stream_bits
    for y, x in zip(decoded, tensors.values()):
        np.testing.assert_array_equal(y, x)


# --------------------------------------------------------------------------- the grid vs UniformGrid


def torch_samples(clip, bits, dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    step = 2 * clip / (2**bits - 1)
    x = (torch.rand(3000, generator=gen, dtype=torch.float64) * 3 - 1.5) * clip  # beyond ±clip too
    mids = -clip + (torch.arange(2**bits - 1, dtype=torch.float64) + 0.5) * step  # midpoints
    ends = torch.tensor([-clip, clip, 0.0, -0.0, 1e30, -1e30, float("inf"), float("-inf")], dtype=torch.float64)
    return torch.cat([x, mids[:2000], ends]).to(dtype)


@pytest.mark.parametrize("bits,clip", [(1, 1.0), (3, 3.5), (3, 0.875), (4, 0.3), (8, 4.0), (8, 0.05), (12, 2.0)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
def test_numpy_grid_equals_uniform_grid_quantize(bits, clip, dtype):
    x = torch_samples(clip, bits, dtype, seed=bits)
    expected = UniformGrid(bits, clip).quantize(x)
    grid = Grid(bits, clip)
    got = torch.from_numpy(grid.values(grid.indices(x.to(torch.float64).numpy()))).to(dtype)
    assert torch.equal(got, expected)  # bit for bit, dtype included


@pytest.mark.parametrize("bits,clip", [(3, 3.5), (3, 0.875), (5, 15.5)])
def test_exact_midpoints_round_half_to_even_like_torch(bits, clip):
    step = 2 * clip / (2**bits - 1)
    assert step in (1.0, 0.25)  # a power of two: the midpoints are exact ties
    mids = -clip + (np.arange(2**bits - 1) + 0.5) * step
    idx = Grid(bits, clip).indices(mids)
    lower = np.arange(2**bits - 1)
    np.testing.assert_array_equal(idx, np.where(lower % 2 == 0, lower, lower + 1))  # ties to the even index
    expected = UniformGrid(bits, clip).quantize(torch.from_numpy(mids))
    assert torch.equal(torch.from_numpy(Grid(bits, clip).values(idx)), expected)


@pytest.mark.parametrize("bits,clip", [(2, 1.0), (5, 0.7), (8, 4.0)])
def test_numpy_grid_is_the_nearest_point_of_linspace(bits, clip):
    points = np.linspace(-clip, clip, 2**bits)
    x = np.random.default_rng(bits).uniform(-1.5 * clip, 1.5 * clip, 4000)
    idx = Grid(bits, clip).indices(x)
    dist = np.abs(x[:, None] - points[None, :])
    untied = np.sort(dist, axis=1)[:, 1] - dist.min(axis=1) > 1e-9
    np.testing.assert_array_equal(idx[untied], dist.argmin(axis=1)[untied])
    np.testing.assert_allclose(Grid(bits, clip).values(np.arange(2**bits)), points, rtol=0, atol=1e-12)
    assert Grid(bits, clip).values(np.array([2**bits - 1]))[0] == clip


def test_uniform_grid_object_is_accepted_as_a_grid():
    x = {"B": np.random.default_rng(0).normal(0, 0.01, (64, 4))}
    a = adapter_code_length_from_values(x, UniformGrid(8, 4.0))
    b = adapter_code_length_from_values(x, (8, 4.0), grid_candidates=8)
    assert a.grids["B"] == Grid(8, 4.0) and a.items["grid"] == 0
    assert b.total_bits == pytest.approx(a.total_bits + 3)  # log2(8) for a grid chosen among 8
    quantised = UniformGrid(8, 4.0).quantize(torch.from_numpy(x["B"])).numpy()
    indices = np.rint((quantised + 4.0) / (8.0 / 255)).astype(np.int64)  # index of each grid value, by hand
    assert adapter_code_length({"B": indices}, (8, 4.0)).total_bits == a.total_bits


# --------------------------------------------------------------------------- grid choice


CANDIDATES = [(b, c) for b in (2, 4, 6, 8) for c in (0.02, 0.05, 0.2, 1.0, 4.0)]


def brute_errors(x, bits, clip):
    points = np.linspace(-clip, clip, 2**bits)
    return np.abs(x[:, None] - points[None, :]).min(axis=1)


@pytest.mark.parametrize("tolerance", [None, 0.02, 0.005, 0.001])
def test_choose_grid_takes_the_shortest_feasible_candidate(tolerance):
    x = np.random.default_rng(1).normal(0, 0.01, 256)
    choice = choose_grid(x, CANDIDATES, tolerance=tolerance)
    errors = [brute_errors(x, b, c).max() for b, c in CANDIDATES]  # reference: nearest point, by hand
    feasible = [i for i, e in enumerate(errors) if tolerance is None or e <= tolerance + 1e-12]
    assert choice.index in feasible
    assert choice.options[choice.index].max_error == pytest.approx(errors[choice.index], abs=1e-12)
    lengths = [encode_tensor(Grid(*CANDIDATES[i]).indices(x), 2 ** CANDIDATES[i][0]).length for i in feasible]
    assert choice.encoded.length == min(lengths)
    assert choice.choice_bits == pytest.approx(math.log2(len(CANDIDATES)))
    np.testing.assert_array_equal(decode_tensor(choice.encoded), Grid(*CANDIDATES[choice.index]).indices(x))
    assert "chosen" in choice.table()


def test_tighter_tolerance_never_codes_shorter():
    x = np.random.default_rng(2).normal(0, 0.01, (64, 4))
    lengths = [choose_grid(x, CANDIDATES, tolerance=t).encoded.length for t in (0.05, 0.01, 0.003, 0.0008)]
    assert lengths == sorted(lengths) and lengths[0] < lengths[-1]


def test_rms_metric_is_the_root_mean_square_error():
    x = np.random.default_rng(3).normal(0, 0.3, 500)
    choice = choose_grid(x, CANDIDATES, tolerance=0.01, metric="rms")
    for (b, c), option in zip(CANDIDATES, choice.options):
        rms = math.sqrt(np.mean(brute_errors(x, b, c) ** 2))
        assert option.rms_error == pytest.approx(rms, rel=1e-9, abs=1e-12)
        assert option.feasible == (rms <= 0.01)


def test_from_values_with_candidates_pays_per_tensor():
    rng = np.random.default_rng(4)
    values = {"A": rng.normal(0, 0.5, (8, 16)), "B": rng.normal(0, 0.01, (16, 8))}
    code = adapter_code_length_from_values(values, candidates=CANDIDATES, tolerance=0.02, seed_bits=32)
    for name, v in values.items():
        assert code.items[f"{name}.grid"] == pytest.approx(math.log2(len(CANDIDATES)))
        g = code.grids[name]
        assert brute_errors(v.ravel(), g.bits, g.clip).max() <= 0.02 + 1e-12
    assert code.total_bits == pytest.approx(math.fsum(code.items.values()))
    decoded, used = decode_adapter(code.stream, [code.grids[n].levels for n in values])
    assert used == code.stream_bits
    for name, y in zip(values, decoded):
        np.testing.assert_array_equal(y, code.grids[name].indices(values[name]))


# --------------------------------------------------------------------------- bad input


ARR = np.array([[1, 2], [3, 0]])
VALS = np.array([0.1, -0.2, 0.3])
ENC = encode_tensor(ARR, 4)


def bad(fn, *args, **kwargs):
    return fn, args, kwargs


BAD = {
    "indices None": (bad(encode_tensor, None, 4), "indices"),
    "indices str": (bad(encode_tensor, "0123", 4), "indices"),
    "indices float": (bad(encode_tensor, np.array([0.0, 1.0]), 4), "indices"),
    "indices bool": (bad(encode_tensor, np.array([True, False]), 4), "indices"),
    "indices empty": (bad(encode_tensor, np.zeros((0, 3), dtype=int), 4), "indices"),
    "indices negative": (bad(encode_tensor, np.array([0, -1]), 4), "indices"),
    "indices too big": (bad(encode_tensor, np.array([0, 4]), 4), "indices"),
    "levels one": (bad(encode_tensor, ARR, 1), "levels"),
    "levels str": (bad(encode_tensor, ARR, "4"), "levels"),
    "levels None": (bad(encode_tensor, ARR, None), "levels"),
    "levels huge": (bad(encode_tensor, ARR, 2**54), "levels"),
    "levels fraction": (bad(encode_tensor, ARR, 4.5), "levels"),
    "model unknown": (bad(encode_tensor, ARR, 4, model="zip"), "model"),
    "model too wide": (bad(encode_tensor, np.array([0, 2**21]), 2**22, model="gaussian"), "model"),
    "decode None": (bad(decode_tensor, None), "encoded"),
    "decode str": (bad(decode_tensor, "abc"), "encoded"),
    "tensors empty": (bad(adapter_code_length, {}, (2, 1.0)), "tensors"),
    "tensors None": (bad(adapter_code_length, None, (2, 1.0)), "tensors"),
    "tensors str": (bad(adapter_code_length, "A", (2, 1.0)), "tensors"),
    "tensors key": (bad(adapter_code_length, {1: ARR}, (2, 1.0)), "tensors"),
    "tensors out of grid": (bad(adapter_code_length, {"A": ARR}, (1, 1.0)), "tensors['A']"),
    "tensors float": (bad(adapter_code_length, {"A": VALS}, (2, 1.0)), "tensors['A']"),
    "grid None": (bad(adapter_code_length, {"A": ARR}, None), "grid"),
    "grid str": (bad(adapter_code_length, {"A": ARR}, "8bit"), "grid"),
    "grid bits 0": (bad(adapter_code_length, {"A": ARR}, (0, 1.0)), "bits"),
    "grid bits 54": (bad(adapter_code_length, {"A": ARR}, (54, 1.0)), "bits"),
    "grid clip nan": (bad(adapter_code_length, {"A": ARR}, (2, float("nan"))), "clip"),
    "grid clip negative": (bad(adapter_code_length, {"A": ARR}, (2, -1.0)), "clip"),
    "grid names": (bad(adapter_code_length, {"A": ARR}, {"B": (2, 1.0)}), "grid"),
    "choices zero": (bad(adapter_code_length, {"A": ARR}, (2, 1.0), choices={"lr": 0}), "choices['lr']"),
    "choices str count": (bad(adapter_code_length, {"A": ARR}, (2, 1.0), choices={"lr": "4"}), "choices['lr']"),
    "choices str": (bad(adapter_code_length, {"A": ARR}, (2, 1.0), choices="lr"), "choices"),
    "choices key": (bad(adapter_code_length, {"A": ARR}, (2, 1.0), choices={3: 4}), "choices"),
    "seed negative": (bad(adapter_code_length, {"A": ARR}, (2, 1.0), seed_bits=-1), "seed_bits"),
    "seed None": (bad(adapter_code_length, {"A": ARR}, (2, 1.0), seed_bits=None), "seed_bits"),
    "seed fraction": (bad(adapter_code_length, {"A": ARR}, (2, 1.0), seed_bits=1.5), "seed_bits"),
    "seed bool": (bad(adapter_code_length, {"A": ARR}, (2, 1.0), seed_bits=True), "seed_bits"),
    "grid_candidates zero": (bad(adapter_code_length, {"A": ARR}, (2, 1.0), grid_candidates=0), "grid_candidates"),
    "values NaN": (bad(adapter_code_length_from_values, {"A": np.array([0.1, np.nan])}, (2, 1.0)), "values['A']"),
    "values int": (bad(adapter_code_length_from_values, {"A": ARR}, (2, 1.0)), "values['A']"),
    "values empty dict": (bad(adapter_code_length_from_values, {}, (2, 1.0)), "values"),
    "values None": (bad(adapter_code_length_from_values, None, (2, 1.0)), "values"),
    "grid and candidates": (bad(adapter_code_length_from_values, {"A": VALS}, (2, 1.0), candidates=[(2, 1.0)]),
                            "candidates"),
    "neither grid": (bad(adapter_code_length_from_values, {"A": VALS}), "grid"),
    "tolerance with grid": (bad(adapter_code_length_from_values, {"A": VALS}, (2, 1.0), tolerance=0.1), "tolerance"),
    "from_values seed": (bad(adapter_code_length_from_values, {"A": VALS}, (2, 1.0), seed_bits=-3), "seed_bits"),
    "from_values choices": (bad(adapter_code_length_from_values, {"A": VALS}, (2, 1.0), choices={"x": -1}),
                            "choices['x']"),
    "from_values metric": (bad(adapter_code_length_from_values, {"A": VALS}, candidates=[(2, 1.0)], metric="l1"),
                           "metric"),
    "from_values grid_candidates": (bad(adapter_code_length_from_values, {"A": VALS}, candidates=[(2, 1.0)],
                                        grid_candidates=3), "grid_candidates"),
    "from_values grid_candidates 0": (bad(adapter_code_length_from_values, {"A": VALS}, (2, 1.0),
                                          grid_candidates=0), "grid_candidates"),
    "from_values infeasible": (bad(adapter_code_length_from_values, {"A": VALS}, candidates=[(1, 1.0)],
                                   tolerance=1e-6), "tolerance"),
    "choose values None": (bad(choose_grid, None, [(2, 1.0)]), "values"),
    "choose values str": (bad(choose_grid, "0.1", [(2, 1.0)]), "values"),
    "choose values NaN": (bad(choose_grid, np.array([np.nan]), [(2, 1.0)]), "values"),
    "choose values empty": (bad(choose_grid, np.array([]), [(2, 1.0)]), "values"),
    "choose candidates empty": (bad(choose_grid, VALS, []), "candidates"),
    "choose candidates None": (bad(choose_grid, VALS, None), "candidates"),
    "choose candidates str": (bad(choose_grid, VALS, "8bit"), "candidates"),
    "choose candidate bad": (bad(choose_grid, VALS, [(2, 1.0), (2, 0.0)]), "candidates[1]"),
    "choose tolerance negative": (bad(choose_grid, VALS, [(2, 1.0)], tolerance=-0.1), "tolerance"),
    "choose tolerance nan": (bad(choose_grid, VALS, [(2, 1.0)], tolerance=float("nan")), "tolerance"),
    "choose tolerance str": (bad(choose_grid, VALS, [(2, 1.0)], tolerance="0.1"), "tolerance"),
    "choose metric": (bad(choose_grid, VALS, [(2, 1.0)], metric=None), "metric"),
    "choose infeasible": (bad(choose_grid, VALS, [(1, 1.0)], tolerance=1e-6), "tolerance"),
    "Grid bits str": (bad(Grid, "8", 1.0), "bits"),
    "Grid bits None": (bad(Grid, None, 1.0), "bits"),
    "Grid clip inf": (bad(Grid, 8, float("inf")), "clip"),
    "Grid clip None": (bad(Grid, 8, None), "clip"),
    "Grid.indices NaN": (bad(Grid(2, 1.0).indices, np.array([0.0, np.nan])), "values"),
    "Grid.indices int": (bad(Grid(2, 1.0).indices, np.array([0, 1])), "values"),
    "Grid.values out of grid": (bad(Grid(2, 1.0).values, np.array([4])), "indices"),
    "Grid.values float": (bad(Grid(2, 1.0).values, np.array([1.0])), "indices"),
    "decode_adapter str": (bad(decode_adapter, "abc", 4), "stream"),
    "decode_adapter None": (bad(decode_adapter, None, 4), "stream"),
    "decode_adapter levels": (bad(decode_adapter, adapter_code_length({"A": ARR}, (2, 1.0)).stream, [4, 4]),
                              "levels"),
    "decode_adapter levels one": (bad(decode_adapter, adapter_code_length({"A": ARR}, (2, 1.0)).stream, 1),
                                  "levels"),
    "decode_adapter truncated": (bad(decode_adapter, adapter_code_length({"A": ARR}, (2, 1.0)).stream[:1], 4),
                                 "stream"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_raises_input_error_naming_the_parameter(case):
    (fn, args, kwargs), name = BAD[case]
    with pytest.raises(InputError) as info:
        fn(*args, **kwargs)
    assert isinstance(info.value, ValueError)
    assert name in str(info.value), str(info.value)


def test_every_public_function_has_a_bad_input_case():
    covered = {fn.__name__ for (fn, _, _), _ in BAD.values()}
    assert {"encode_tensor", "decode_tensor", "adapter_code_length", "adapter_code_length_from_values",
            "choose_grid", "decode_adapter", "Grid", "indices", "values"} <= covered
    assert isinstance(ENC, EncodedTensor)


def test_module_does_not_import_torch():
    code = "import sys, infobound.codelength; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_counts_are_numpys_unique():
    """codelength._counts (bincount for small spans) gives np.unique's values, counts and inverse."""
    from infobound.codelength import _counts

    rng = np.random.default_rng(5)
    for t in range(400):
        x = rng.integers(-50, 300, rng.integers(1, 500)) if t % 2 else rng.integers(0, 2**40, rng.integers(1, 50))
        x = x.astype(np.uint8) if t % 5 == 0 else x
        values, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
        got = _counts(x, inverse=True)
        assert got[0].dtype == values.dtype and np.array_equal(got[0], values)
        assert got[1].dtype == counts.dtype and np.array_equal(got[1], counts)
        assert np.array_equal(got[2], inverse.reshape(-1))


def test_entropy_bits_many_is_entropy_bits_of_each():
    """One bincount for many arrays gives each array's entropy_bits, the same doubles (mixed sizes,
    spans, dtypes and offsets, and the inputs that fall back to one call each)."""
    from infobound.codelength import entropy_bits_many

    rng = np.random.default_rng(6)
    arrays = [rng.integers(0, rng.integers(1, 300), rng.integers(1, 2000)) + int(rng.integers(0, 5))
              for _ in range(600)]
    arrays += [np.full(7, 3), np.array([2**40, 2**40 + 1])]
    def by_unique(a):  # entropy_bits as it was written before bincount: np.unique's counts
        counts = np.unique(a, return_counts=True)[1].astype(np.float64)
        return float(-(counts * np.log2(counts / counts.sum())).sum()) + 0.0

    for group in (arrays, [a.astype(np.uint16) for a in arrays[:50]], [np.array([0, 2**40])] * 3,
                  [np.array([0.5, 1.5])], [np.array([2**63, 2**63 + 5], dtype=np.uint64)]):
        got = entropy_bits_many(group)
        assert got == [by_unique(a) for a in group]
    assert entropy_bits_many([]) == []


def test_bit_writer_deltas_are_delta_codes_one_by_one():
    """_BitWriter.deltas (vectorised lengths, spelled out lazily) writes what one delta per value
    writes, bit for bit, including the values past 2**53 that take the one-by-one path."""
    from infobound.codelength import _BitWriter, _delta_len, _delta_lens

    rng = np.random.default_rng(7)
    values = np.concatenate([np.arange(1, 300), rng.integers(1, 2**52, 200), [2**53 - 1, 2**52, 2**31]])
    assert _delta_lens(values).tolist() == [_delta_len(int(v)) for v in values]
    def elias_delta(v):  # the textbook code: lw - 1 zeros, the bit length in lw bits, the low bits
        width = v.bit_length()
        return "0" * (width.bit_length() - 1) + format(width, "b") + (format(v, "b")[1:])

    for chunk in (values, np.array([2**53, 3, 2**62]), np.array([], dtype=np.int64)):
        one, many = _BitWriter(), _BitWriter()
        for writer in (one, many):
            writer.write(5, 3)
        for v in chunk.tolist():
            one.delta(v)
        many.deltas(chunk)
        for writer in (one, many):
            writer.write(1, 1)
        expected = "101" + "".join(elias_delta(v) for v in chunk.tolist()) + "1"
        for writer in (one, many):
            assert writer.length == len(expected)
            assert "".join(map(str, writer.bits().tolist())) == expected
