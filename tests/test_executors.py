"""Executors: the same small sweep through worker processes, a dask LocalCluster and submitit's local
jobs stores the records of the in-process run; a call that fails keeps the finished groups stored and
the rerun completes the rest; bad kinds and missing extras are one clear error."""

from __future__ import annotations

import importlib.util
import os
import sys

import pytest

from cli_helpers import one_error_line, run_cli
from infobound.errors import InputError
from infobound.extras import MissingExtra
from infobound.harness.sweep import SweepConfig

pytestmark = pytest.mark.usefixtures("one_thread")

CONFIG = SweepConfig(task="digits", modes=("lora", "b_only"), ranks=(1,), ns=(40,), seeds=2, steps=5, bits=(8,))
SMALL = ["--task", "digits", "--modes", "lora,b_only", "--ranks", "1", "--n", "40", "--seeds", "2",
         "--steps", "5", "--bits", "8", "--no-progress"]


def stored(folder) -> dict[str, dict]:
    from infobound.harness.store import open_for_reading

    with open_for_reading(folder) as store:
        return {r["key"]: {k: v for k, v in r.items() if k != "wall_time"} for r in store.records()}


def run(folder, executor=None) -> dict:
    from infobound.harness.validate import validate

    return validate(CONFIG, folder, progress=False, executor=executor)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The sweep run in this process (it also fills the disk cache of pretrained weights)."""
    folder = tmp_path_factory.mktemp("in-process") / "out"
    run(folder)
    records = stored(folder)
    assert len(records) == 4
    return records


KINDS = ["processes", "dask", "submitit"]


@pytest.fixture(scope="module", params=KINDS)
def executor(request, tmp_path_factory):
    """One executor of each kind, two workers, shared by the tests of that kind (workers stay warm)."""
    from infobound.harness.executors import make_executor

    options = {}
    if request.param == "dask":
        pytest.importorskip("distributed")
    if request.param == "submitit":
        pytest.importorskip("submitit")
        import cloudpickle

        # submitit's jobs are fresh interpreters that cannot import this test module: send it by value
        cloudpickle.register_pickle_by_value(sys.modules[__name__])
        options = {"folder": tmp_path_factory.mktemp("submitit") / "jobs", "cluster": "local"}
    with make_executor(request.param, 2, **options) as made:
        yield made


class Probe:
    """``fn``, then in the worker: writes torch's threads, the cache variable and whether the task's
    weights came from the disk cache or the parent process (not pretrained again) to ``folder/MODE.json``."""

    def __init__(self, fn, folder):
        self.fn, self.folder = fn, str(folder)

    def __call__(self, group):
        import json

        import torch

        from infobound.harness.tasks import get_task
        from infobound.harness.tasks.base import pretrain_info

        threads = torch.get_num_threads()
        records = self.fn(group)
        info = pretrain_info(get_task(group.task).pretrain_key())
        # loaded from the disk cache here, or inherited from the parent (a forked worker): never trained here
        untrained_here = info.from_cache or info.pid != os.getpid()
        state = {"threads": threads, "cache": os.environ.get("INFOBOUND_CACHE"), "not_pretrained_here": untrained_here}
        with open(os.path.join(self.folder, f"{group.mode.value}.json"), "w") as f:
            json.dump(state, f)
        return records


class Wrapping:
    """An executor mapping ``wrap(fn)`` through ``inner`` (what run_sweep maps is run_group)."""

    def __init__(self, inner, wrap):
        self.inner, self.wrap = inner, wrap

    def map(self, fn, iterable):
        return self.inner.map(self.wrap(fn), iterable)

    def map_completed(self, fn, iterable):
        return self.inner.map_completed(self.wrap(fn), iterable)


class FailFor:
    """``fn`` that raises for the group of ``mode`` (a worker failing mid-sweep)."""

    def __init__(self, fn, mode: str):
        self.fn, self.mode = fn, mode

    def __call__(self, group):
        if group.mode.value == self.mode:
            raise RuntimeError(f"worker lost while training {self.mode}")
        return self.fn(group)


def test_executor_stores_the_records_of_the_in_process_run(executor, reference, tmp_path):
    import json

    probes = tmp_path / "probes"
    probes.mkdir()
    result = run(tmp_path / "out", Wrapping(executor, lambda fn: Probe(fn, probes)))
    assert result["counts"] == {"groups": 2, "skipped": 0, "written": 4}
    assert stored(tmp_path / "out") == reference
    # every group: one torch thread, this session's cache, the weights loaded from it (no pretraining)
    states = [json.loads((probes / f"{mode}.json").read_text()) for mode in ("lora", "b_only")]
    assert states == [{"threads": 1, "cache": os.environ["INFOBOUND_CACHE"], "not_pretrained_here": True}] * 2


def failed_sweep(executor, mode: str, out) -> str:
    """The WorkerFailed message of the small sweep with the group of ``mode`` failing, stored in ``out``."""
    from infobound.harness.executors import WorkerFailed
    from infobound.harness.store import RunStore
    from infobound.harness.sweep import run_sweep

    with RunStore(out) as store:
        with pytest.raises(WorkerFailed) as failed:
            run_sweep(CONFIG, store, executor=Wrapping(executor, lambda fn: FailFor(fn, mode)), progress=False)
    return str(failed.value)


def test_failed_group_keeps_the_finished_ones_and_the_rerun_completes(executor, reference, tmp_path):
    from infobound.harness.store import RunStore
    from infobound.harness.sweep import run_sweep

    out = tmp_path / "out"
    message = failed_sweep(executor, "b_only", out)
    assert message.startswith(f"group 2 of 2 (digits b_only rank 1 n 40) failed in a {executor.kind} worker: "
                              "RuntimeError: worker lost while training b_only")
    assert "rerun" in message and "\n" not in message
    assert stored(out) == {k: v for k, v in reference.items() if v["mode"] == "lora"}  # the finished group
    with RunStore(out) as store:  # the same executor still works after a failed call
        counts = run_sweep(CONFIG, store, executor=executor, progress=False)
    assert counts == {"groups": 2, "skipped": 1, "written": 2}
    assert stored(out) == reference


def test_a_failed_first_group_does_not_lose_the_groups_after_it(executor, reference, tmp_path):
    out = tmp_path / "out"
    message = failed_sweep(executor, "lora", out)
    assert message.startswith(f"group 1 of 2 (digits lora rank 1 n 40) failed in a {executor.kind} worker")
    assert "the 1 that finished were returned" in message
    assert stored(out) == {k: v for k, v in reference.items() if v["mode"] == "b_only"}  # finished after it


def test_a_plain_concurrent_futures_pool_keeps_every_finished_group(reference, tmp_path):
    from infobound.harness.executors import WorkerFailed
    from infobound.harness.store import RunStore
    from infobound.harness.sweep import completed, process_pool

    class Submitting:  # a concurrent.futures-style executor: submit only
        def __init__(self, pool):
            self.pool = pool

        def submit(self, fn, item):
            return self.pool.submit(FailFor(fn, "lora"), item)

    pool = process_pool(2)
    try:
        from infobound.harness.sweep import run_sweep

        with RunStore(tmp_path / "out") as store:
            with pytest.raises(WorkerFailed, match="group 1 of 2 .*worker lost while training lora"):
                run_sweep(CONFIG, store, executor=Submitting(pool), progress=False)
    finally:
        pool.shutdown()
    assert stored(tmp_path / "out") == {k: v for k, v in reference.items() if v["mode"] == "b_only"}
    assert list(completed(None, abs, [-1, 2])) == [(0, 1), (1, 2)]  # in this process: in order


def test_unknown_kind_and_bad_options_are_input_errors(tmp_path):
    from infobound.harness.executors import make_executor

    with pytest.raises(InputError, match=r"^executor must be one of processes, dask, submitit, got 'ray'$"):
        make_executor("ray", 2)
    with pytest.raises(InputError, match="workers"):
        make_executor("processes", 0)
    with pytest.raises(InputError, match="takes no options"):
        make_executor("processes", 1, address="tcp://x:1")
    if importlib.util.find_spec("submitit") is not None:
        with pytest.raises(InputError, match="needs folder=DIR"):
            make_executor("submitit", 1)
        with pytest.raises(InputError, match="submitit"):
            make_executor("submitit", 1, folder=tmp_path / "jobs", cluster="nowhere")
        with make_executor("submitit", 1, folder=tmp_path / "new" / "jobs", cluster="local") as made:
            assert made.workers == 1
        assert not (tmp_path / "new").exists()  # an output folder holding the jobs' folder stays new


@pytest.mark.parametrize("kind, absent", [("dask", "dask and distributed"), ("submitit", "submitit")])
def test_missing_extra_is_one_line(kind, absent, monkeypatch):
    from infobound.harness import executors

    monkeypatch.setattr(executors, "missing", lambda modules: list(modules.values()))
    with pytest.raises(MissingExtra) as raised:
        executors.make_executor(kind, 2)
    are = "are" if " and " in absent else "is"
    assert str(raised.value) == (f"the {kind} executor needs {absent}, which {are} not installed: "
                                 'pip install -c constraints.txt "infobound[cluster]"')


def test_cli_bad_executor_is_one_line(tmp_path):
    line = one_error_line(*run_cli(["validate", "--out", str(tmp_path / "out"), *SMALL, "--executor", "ray"]))
    assert "--executor" in line and "ray" in line
    assert not (tmp_path / "out").exists()


def test_cli_executor_dask_at_an_address_stores_the_in_process_records(executor, reference, tmp_path):
    if executor.kind != "dask":
        pytest.skip("the dask executor's scheduler is the address")
    status, stdout, err = run_cli(["validate", "--out", str(tmp_path / "out"), *SMALL, "--workers", "2",
                                   "--executor", "dask", "--dask-address", executor.client.scheduler.address])
    assert status == 0, err
    assert "4 records written" in stdout
    assert stored(tmp_path / "out") == reference


def test_cli_prints_a_failed_run_as_one_line(monkeypatch, tmp_path, capsys):
    from infobound.cli import main
    from infobound.harness import commands
    from infobound.harness.executors import WorkerFailed

    def fail(*args, **kwargs):
        raise WorkerFailed("group 2 of 2 (digits b_only rank 1 n 40) failed in a dask worker: RuntimeError: boom;\n"
                           "the 1 result(s) before it were returned")

    monkeypatch.setattr(commands, "_validate_one", fail)
    assert main(["validate", "--out", str(tmp_path / "o"), "--ranks", "1", "--n", "40", "--seeds", "2"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "failed in a dask worker" in err[0] and "Traceback" not in err[0]


def test_cli_several_tasks_share_one_executor(monkeypatch, tmp_path):
    from infobound.harness import executors

    made = []
    real = executors.make_executor

    def counting(kind, workers, **options):
        made.append(kind)
        return real("processes", workers)

    monkeypatch.setattr(executors, "make_executor", counting)
    status, stdout, err = run_cli(["validate", "--out", str(tmp_path / "out"), "--task", "digits,digits:flip",
                                   *SMALL[2:], "--workers", "2", "--executor", "dask"])
    assert status == 0, err
    assert made == ["dask"]  # one cluster for both tasks, not one per task
    assert (tmp_path / "out" / "digits" / "records.sqlite").exists()
    assert (tmp_path / "out" / "digits_flip" / "records.sqlite").exists()


def test_workers_fork_unless_cuda_was_initialised(monkeypatch):
    """Linux workers are forked (they inherit the imports, task and weights); a process that has
    initialised CUDA (which does not survive a fork) gets fresh ones."""
    import sys

    import torch

    from infobound.harness.sweep import process_pool, start_method

    linux = sys.platform.startswith("linux")
    assert start_method() == ("fork" if linux else "spawn")
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    assert start_method() == "spawn"
    monkeypatch.undo()
    pool = process_pool(1)
    try:
        assert pool._mp_context.get_start_method() == ("fork" if linux else "spawn")
        assert pool.submit(os.getpid).result() != os.getpid()  # a worker process, and it runs
    finally:
        pool.shutdown()
