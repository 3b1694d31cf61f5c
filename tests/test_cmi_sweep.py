"""The supersample sweep (kind "cmi") end to end, and stores of the older schema, against references.

A tiny digits CMI sweep (B-only, rank 1, n = 40 pairs, k1 = 2 supersamples × k2 = 3 masks, 8 bits)
is run through ``validate``. Checked here by hand:

* the records (6 per configuration, numbered seed = j·k2 + m) and the stored arrays: the mask is
  the run's selector, the trained points' mean loss is the training error and the others' the test
  error, and the model rebuilt from the stored grid indices (frozen factor from the run's seed)
  gives every stored per-example loss of both points of every pair;
* the supersamples: 2n distinct digits images (matched back to ``load_digits`` row by row, through
  the task's mirror transform) that the network never pretrained on;
* the cmi row's ld-CMI, recomputed by counting the joint distribution of (ΔL_i, U_i) over the
  masks of each supersample (plug-in mutual information written out here);
* a schema-1 store (the arrays table dropped): ``report`` reads it without changing a byte,
  ``report --bounds cmi``, ``validate`` and ``certificate --code-length-of`` refuse it in one line.
"""

from __future__ import annotations

import hashlib
import math
import shutil
import sqlite3
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import one_error_line, run_cli, snapshot

N, K1, K2, STEPS, BITS = 40, 2, 3, 30, 8
DIGITS_MAX_PAIRS = (1797 - 718) // 2  # target pool + test set, never pretrained on: 539 pairs
CMI_SEED_BITS = math.ceil(math.log2(10_000 * 10_000))  # a frozen factor's seed among k1 × k2 ≤ 1e4 × 1e4


pytestmark = pytest.mark.usefixtures("one_thread")


def cmi_config():
    from infobound.harness.sweep import SweepConfig

    return SweepConfig(task="digits", modes=("b_only",), ranks=(1,), ns=(N,), bits=(BITS,), steps=STEPS,
                       kind="cmi", supersamples=K1, masks=K2)


@pytest.fixture(scope="module")
def cmi_sweep(finish_sweep):
    """The finished CMI sweep: folder, validate's result, the stored records and their arrays."""
    return finish_sweep(cmi_config(), "cmi")


@pytest.fixture(scope="module")
def task():
    from infobound.harness.tasks import get_task

    return get_task("digits")


SEED_SWEEP = ["--modes", "lora", "--ranks", "1", "--n", "30", "--seeds", "2", "--bits", "8", "--steps", "20",
              "--workers", "1"]


@pytest.fixture(scope="module")
def seed_folder(tmp_path_factory):
    """A finished tiny seed sweep (schema 2), to be copied and downgraded."""
    folder = tmp_path_factory.mktemp("seeds") / "out"
    status, _, err = run_cli(["validate", "--out", str(folder), *SEED_SWEEP, "--no-progress"])
    assert status == 0, err
    return folder


# ---------------------------------------------------------------------- 1. records and arrays
def test_six_records_numbered_by_supersample_and_mask(cmi_sweep):
    records = cmi_sweep["records"]
    assert len(records) == K1 * K2 == cmi_sweep["result"]["counts"]["written"]
    got = sorted((r["supersample"], r["mask"], r["seed"]) for r in records)
    assert got == [(j, m, j * K2 + m) for j in range(K1) for m in range(K2)]
    for r in records:
        assert (r["kind"], r["task"], r["mode"], r["rank"], r["n"], r["bits"]) == ("cmi", "digits", "b_only", 1, N, BITS)
        assert r["test_n"] == N  # tested on the other point of each pair
        assert r["code_seed_bits"] == CMI_SEED_BITS == 27
    assert len({r["key"] for r in records}) == K1 * K2


def test_stored_mask_and_pair_losses_give_the_recorded_errors(cmi_sweep):
    from infobound.harness.sweep import mask_of

    masks = {}
    for r in cmi_sweep["records"]:
        a = cmi_sweep["arrays"][r["key"]]
        losses, mask = a["pair_losses"], a["mask"]
        assert losses.dtype == np.int8 and losses.shape == (N, 2)
        assert mask.dtype == np.uint8 and mask.shape == (N,)
        assert set(np.unique(losses)) <= {0, 1} and set(np.unique(mask)) <= {0, 1}
        assert np.array_equal(mask, mask_of(r["supersample"], r["mask"], N))
        rows = np.arange(N)
        trained, other = losses[rows, mask], losses[rows, 1 - mask]
        assert int(trained.sum()) / N == r["train_error"]
        assert int(other.sum()) / N == r["test_error"]
        assert r["gap"] == pytest.approx(r["test_error"] - r["train_error"], abs=1e-15)
        masks[r["supersample"], r["mask"]] = mask
    # the masks of a supersample differ (else no information about U could be measured), and the
    # supersamples do not reuse each other's masks
    assert len({m.tobytes() for m in masks.values()}) == K1 * K2


def rebuilt_pair_losses(task, record: dict, tensors: dict) -> np.ndarray:
    """Both points' 0-1 losses of every pair (n, 2) under the model rebuilt from stored indices."""
    from infobound.codelength import Grid
    from infobound.lora import inject_lora

    j, m = record["supersample"], record["mask"]
    frozen = 1_000_003 * (1_000_000 + 10_000 * j + m + 1)  # frozen_seed(MAX_SEEDS + MAX_MASKS·j + m)
    model = task.base_model()
    inject_lora(model, task.default_targets, record["rank"], mode=record["mode"], alpha=record["alpha"],
                init=record["init"], stack=1, seeds=[frozen])
    params = dict(model.named_parameters())
    assert {name for name, p in params.items() if p.requires_grad} == set(tensors)
    grid = Grid(record["bits"], record["clip"])
    with torch.no_grad():
        for name, idx in tensors.items():
            params[name].copy_(torch.from_numpy(grid.values(idx).astype(np.float32))[None])
    model.eval()
    x, y = task.supersample(record["n"], j)  # (n, 2, 64), (n, 2)
    with torch.no_grad():
        predicted = model(x.reshape(1, 2 * record["n"], 64))[0].argmax(-1).reshape(record["n"], 2)
    return (predicted != y).numpy().astype(np.int8)


def test_rebuilt_model_gives_every_stored_per_example_loss(cmi_sweep, task):
    for r in cmi_sweep["records"]:
        a = cmi_sweep["arrays"][r["key"]]
        tensors = {k[len("adapter."):]: v for k, v in a.items() if k.startswith("adapter.")}
        assert np.array_equal(rebuilt_pair_losses(task, r, tensors), a["pair_losses"]), (r["supersample"], r["mask"])
    # the seed written out above is the one the sweep's groups use
    for group in cmi_config().groups():
        assert group.frozen_seeds() == [1_000_003 * (1_000_000 + 10_000 * group.supersample + m + 1)
                                        for m in range(K2)]


def test_cmi_code_lengths_rebuild_from_the_stored_indices(cmi_sweep):
    from infobound.harness.codes import stored_code_lengths

    codes = stored_code_lengths(cmi_sweep["folder"])
    assert len(codes) == 2 * K1 * K2 and all(c.matches for c in codes)
    assert all(c.code.items["seed"] == CMI_SEED_BITS for c in codes)


# ------------------------------------------------------------------------------ 2. supersamples
@pytest.fixture(scope="module")
def digits_rows():
    """load_digits' raw pixel rows (0..16) -> dataset index, and the labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rows = {row.astype(np.int64).tobytes(): i for i, row in enumerate(digits.data)}
    assert len(rows) == len(digits.data)  # no two images alike: a row names its image
    return rows, digits.target


def dataset_indices(x: torch.Tensor, digits_rows) -> np.ndarray:
    """The load_digits index of every (mirrored, /16) image of a supersample, matched by its pixels."""
    rows, _ = digits_rows
    images = x.reshape(-1, 8, 8).numpy()[:, :, ::-1] * 16.0  # undo the target transform (mirror)
    raw = np.rint(images).astype(np.int64).reshape(-1, 64)
    assert np.array_equal(raw, images.reshape(-1, 64))  # pixels / 16 are exact in float32
    missing = [i for i, row in enumerate(raw) if row.tobytes() not in rows]
    assert not missing, f"{len(missing)} supersample images are not digits images"
    return np.array([rows[row.tobytes()] for row in raw])


@pytest.mark.parametrize("n", [N, DIGITS_MAX_PAIRS])
def test_supersample_is_2n_distinct_images_never_pretrained_on(task, digits_rows, n):
    x, y = task.supersample(n, 0)
    assert tuple(x.shape) == (n, 2, 64) and tuple(y.shape) == (n, 2)
    index = dataset_indices(x, digits_rows)
    assert len(set(index.tolist())) == 2 * n
    assert not set(index.tolist()) & set(task.pretrain_indices.tolist())
    assert np.array_equal(y.reshape(-1).numpy(), digits_rows[1][index])  # each image keeps its label


def test_supersample_is_deterministic_and_differs_between_supersamples(task, digits_rows):
    x0, y0 = task.supersample(N, 0)
    again, y_again = task.supersample(N, 0)
    assert torch.equal(x0, again) and torch.equal(y0, y_again)
    x1, _ = task.supersample(N, 1)
    assert not torch.equal(x0, x1)
    assert set(dataset_indices(x0, digits_rows).tolist()) != set(dataset_indices(x1, digits_rows).tolist())


def test_supersample_limits(task):
    from infobound.errors import InputError
    from infobound.harness.tasks import get_task

    assert task.max_pairs == DIGITS_MAX_PAIRS == 539
    with pytest.raises(InputError) as info:
        task.supersample(DIGITS_MAX_PAIRS + 1, 0)
    assert "n must" in str(info.value) and "539" in str(info.value) and "540" in str(info.value)
    with pytest.raises(InputError, match="supersample"):
        get_task("linreg").supersample(10, 0)


CMI_REFUSALS = [  # (extra validate arguments, words of the one error line)
    (["--task", "linreg"], ["cmi", "linreg"]),
    (["--n", "600"], ["539", "600"]),
    (["--masks", "1"], ["--masks", "1"]),
]


@pytest.mark.parametrize("extra, words", CMI_REFUSALS, ids=["linreg", "n-600", "masks-1"])
def test_validate_kind_cmi_refusals(tmp_path, extra, words):
    out = tmp_path / "out"
    argv = ["validate", "--out", str(out), "--kind", "cmi", "--modes", "b_only", "--ranks", "1",
            "--n", "40", "--supersamples", "2", "--masks", "3", "--bits", "8", "--steps", "5", "--no-progress"]
    line = one_error_line(*run_cli(argv + extra))  # later options win over the defaults above
    for word in words:
        assert word in line, (word, line)
    assert not out.exists()


# ---------------------------------------------------------------------------- 3. the cmi row
def plug_in_mi(xs, us) -> float:
    """Mutual information (nats) of the empirical joint distribution of the samples (x, u)."""
    m = len(xs)
    joint, px, pu = Counter(zip(xs, us)), Counter(xs), Counter(us)
    return sum(c / m * math.log((c / m) / ((px[x] / m) * (pu[u] / m))) for (x, u), c in joint.items())


def test_cmi_row_ld_cmi_is_the_plug_in_estimate_of_the_stored_losses(cmi_sweep):
    from infobound.harness.store import open_for_reading
    from infobound.harness.tightness import tightness_rows

    records = cmi_sweep["records"]
    with open_for_reading(cmi_sweep["folder"]) as store:
        arrays = store.arrays_many([r["key"] for r in records], names=("pair_losses", "mask"))
    by = {(r["supersample"], r["mask"]): arrays[r["key"]] for r in records}
    sqrt_terms, mi_delta, mi_pair = [], [], []
    for j in range(K1):
        for i in range(N):
            delta_loss = [int(by[j, m]["pair_losses"][i, 1]) - int(by[j, m]["pair_losses"][i, 0]) for m in range(K2)]
            pair = [tuple(int(v) for v in by[j, m]["pair_losses"][i]) for m in range(K2)]
            u = [int(by[j, m]["mask"][i]) for m in range(K2)]
            info = plug_in_mi(delta_loss, u)
            sqrt_terms.append(math.sqrt(2 * info))
            mi_delta.append(info)
            mi_pair.append(plug_in_mi(pair, u))
    ld_cmi = float(np.mean(sqrt_terms))
    assert ld_cmi > 0  # some pair's loss difference does reveal its mask: the check is not 0 == 0

    pair_losses = {r["key"]: (arrays[r["key"]]["pair_losses"], arrays[r["key"]]["mask"]) for r in records}
    for tight in (tightness_rows(records, pair_losses=pair_losses), cmi_sweep["result"]["tightness"]):
        (row,) = [row for row in tight.rows if row.kind == "cmi"]
        assert (row.k1, row.k2, row.runs, row.n) == (K1, K2, K1 * K2, N)
        assert row.estimates["ld_cmi"] == pytest.approx(ld_cmi, rel=1e-12)
        assert row.estimates["mi_delta_loss"] == pytest.approx(np.mean(mi_delta), rel=1e-12)
        assert row.estimates["mi_loss_pair"] == pytest.approx(np.mean(mi_pair), rel=1e-12)
        assert row.bound == min(row.estimates[k] for k in ("ld_cmi", "ekl_cmi", "fast_rate_cmi"))
        assert row.measured == pytest.approx(np.mean([r["gap"] for r in records]), abs=1e-12)
    # only the cmi row: a supersample sweep has no seed, fast or cert rows
    assert {row.kind for row in cmi_sweep["result"]["tightness"].rows} == {"cmi"}


# ------------------------------------------------------------------------- 4. schema-1 stores
def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def old_store(seed_folder, tmp_path):
    """A copy of the seed folder downgraded to schema 1 (no arrays table), its derived files removed."""
    folder = tmp_path / "old"
    shutil.copytree(seed_folder, folder)
    conn = sqlite3.connect(folder / "records.sqlite")
    try:
        conn.execute("DROP TABLE arrays")
        conn.execute("UPDATE meta SET value=1 WHERE name='schema_version'")
        conn.commit()
    finally:
        conn.close()
    for name in ("summary.md", "records.csv"):
        (folder / name).unlink()
    assert {p.name for p in folder.iterdir()} >= {"records.sqlite", "sweep.json"}
    return folder


def test_report_reads_a_schema_1_store_without_changing_it(old_store):
    before = sha256(old_store / "records.sqlite")
    status, _, err = run_cli(["report", str(old_store)])
    assert status == 0, err
    assert (old_store / "summary.md").is_file() and (old_store / "records.csv").is_file()
    assert "## Tightness" in (old_store / "summary.md").read_text(encoding="utf-8")
    assert sha256(old_store / "records.sqlite") == before


def test_report_cmi_bounds_on_a_schema_1_store_is_refused(old_store):
    before = sha256(old_store / "records.sqlite")
    line = one_error_line(*run_cli(["report", str(old_store), "--bounds", "cmi"]))
    assert "schema_version=1" in line
    assert sha256(old_store / "records.sqlite") == before
    assert not (old_store / "summary.md").exists()  # refused before anything was written


def test_validate_into_a_schema_1_store_is_refused(old_store):
    before = snapshot(old_store)
    line = one_error_line(*run_cli(["validate", "--out", str(old_store), *SEED_SWEEP, "--no-progress"]))
    assert "schema_version=1" in line and "--out" in line and "new" in line
    assert snapshot(old_store) == before


def test_code_length_of_a_schema_1_store_is_refused(old_store):
    before = sha256(old_store / "records.sqlite")
    line = one_error_line(*run_cli(["certificate", "--code-length-of", str(old_store)]))
    assert "schema_version=1" in line
    assert sha256(old_store / "records.sqlite") == before
