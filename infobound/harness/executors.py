"""Executors for sweeps: worker processes on this machine, a dask cluster, or submitit (SLURM).

``make_executor(kind, workers, **options)`` returns an object with ``map(fn, iterable)``, yielding
``fn(item)`` for every item in the items' order, and ``shutdown()`` (it is also a context manager);
``run_sweep`` and ``validate`` take it as ``executor=``::

    with make_executor("dask", 4) as executor:
        validate(config, "out", executor=executor)

Kinds (``KINDS``):

``processes``
    ``sweep.process_pool(workers)``: fresh processes on this machine (what ``workers=`` does).
``dask``
    a ``distributed.LocalCluster`` of ``workers`` processes with one thread each, or, with
    ``address="tcp://host:8786"``, the scheduler of an existing cluster (its workers must have
    infobound installed); further options go to ``LocalCluster``. Needs the ``cluster`` extra.
``submitit``
    one job per item through ``submitit.AutoExecutor(folder=...)``: SLURM where it is available,
    ``cluster="local"`` for subprocesses of this machine. At most ``workers`` jobs run at once; every
    other option goes to ``update_parameters`` (``timeout_min``, ``slurm_partition``, ...; the
    timeout defaults to ``DEFAULT_TIMEOUT_MIN``). ``folder`` must be visible to the jobs (on a
    cluster: a shared file system). Needs the ``cluster`` extra.

Every call runs with one torch thread and with this process's disk cache of pretrained weights
(``$INFOBOUND_CACHE``, resolved here and passed to the worker), so a worker loads weights that are
already cached instead of pretraining again, also on a machine whose environment differs.

``map_completed(fn, iterable)`` yields ``(index, fn(item))`` as the calls finish, which ``run_sweep``
uses so that every group is stored as soon as it is done. A call that raises does not stop the
others: every other item still runs and is yielded, and then ``WorkerFailed`` names the first failed
item, the worker's error (chained as its cause) and how many failed. Rerunning the sweep runs only
the groups still missing. (``map`` keeps the items' order; a call that raises stops it: the results
before it have been yielded and the work not yet started is cancelled.)
"""

from __future__ import annotations

import collections
import os
import shutil
import time
from abc import ABC, abstractmethod
from pathlib import Path

from ..errors import InputError, RunFailed
from ..extras import MissingExtra, missing
from ..validation import check_int, describe

KINDS = ("processes", "dask", "submitit")
CLUSTER = {"dask": "dask", "distributed": "distributed", "submitit": "submitit"}
"""Import name -> distribution name, for the ``cluster`` extra."""
NEEDS = {"processes": {}, "dask": {"dask": "dask", "distributed": "distributed"}, "submitit": {"submitit": "submitit"}}
INSTALL_CLUSTER = 'pip install -c constraints.txt "infobound[cluster]"'
DEFAULT_TIMEOUT_MIN = 24 * 60
"""submitit's time limit of one job, in minutes, unless ``timeout_min`` is given."""
MAX_WORKERS = 4096
POLL_S = 0.1  # how often the submitit executor looks at its running jobs


class WorkerFailed(RunFailed):
    """A mapped call raised in a worker; the message names the item, the cause is the worker's error."""


def make_executor(kind: str, workers: int, **options):
    """An executor of ``kind`` (``KINDS``) with ``workers`` parallel workers; see the module docstring."""
    if not isinstance(kind, str) or kind.strip().lower() not in KINDS:
        raise InputError(f"executor must be one of {', '.join(KINDS)}, got {describe(kind)}")
    kind = kind.strip().lower()
    workers = check_int("workers", workers, 1, MAX_WORKERS)
    from ..extras import require

    require(f"the {kind} executor")  # torch, for the workers' runs
    absent = missing(NEEDS[kind])
    if absent:
        raise MissingExtra(f"the {kind} executor needs {' and '.join(absent)}, which "
                           f"{'is' if len(absent) == 1 else 'are'} not installed: {INSTALL_CLUSTER}")
    if kind == "processes":
        if options:
            raise InputError(f"the processes executor takes no options, got {', '.join(sorted(options))}")
        return ProcessesExecutor(workers)
    if kind == "dask":
        return DaskExecutor(workers, **options)
    return SubmititExecutor(workers, **options)


def worker_environment() -> dict[str, str]:
    """What every call sets in its worker's environment: the disk cache of pretrained weights that
    this process uses (``INFOBOUND_CACHE``, ``off`` when it has none)."""
    from .tasks.base import CACHE_ENV, pretrain_cache_dir

    folder = pretrain_cache_dir()
    return {CACHE_ENV: "off" if folder is None else str(folder.parent.resolve())}


class InWorker:
    """``fn`` wrapped for a worker: sets ``env`` and one torch thread, then calls ``fn(item)``."""

    def __init__(self, fn, env: dict[str, str]):
        self.fn, self.env = fn, dict(env)

    def __call__(self, item):
        import torch

        os.environ.update(self.env)
        torch.set_num_threads(1)
        return self.fn(item)


def describe_item(item, index: int, total: int) -> str:
    """``group 2 of 5 (digits b_only rank 1 n 40)`` for a ``GroupConfig``, else ``item 2 of 5``."""
    if all(hasattr(item, a) for a in ("task", "mode", "rank", "n")):
        what = f"{item.task} {item.mode} rank {item.rank} n {item.n}"
        if getattr(item, "supersample", None) is not None:
            what += f" supersample {item.supersample}"
        return f"group {index + 1} of {total} ({what})"
    return f"item {index + 1} of {total}"


def _first_line(exc: BaseException) -> str:
    """``RuntimeError: its first line``: a worker's error in one line."""
    text = str(exc).strip().splitlines()
    return type(exc).__name__ + (f": {text[0]}" if text else "")


def _failed(kind: str, item, index: int, total: int, exc: BaseException, reason: str | None = None) -> WorkerFailed:
    if reason is None:
        reason = _first_line(exc)
    return WorkerFailed(f"{describe_item(item, index, total)} failed in a {kind} worker: {reason}; "
                        f"the {index} result(s) before it were returned (a sweep keeps those groups "
                        "stored: rerun it to run the rest)")


def _failed_after_all(kind: str, items: list, failures: list[tuple[int, BaseException, str | None]]) -> WorkerFailed:
    """The error ``map_completed`` raises once every other item has finished."""
    index, exc, reason = min(failures, key=lambda f: f[0])
    if reason is None:
        reason = _first_line(exc)
    others = f"{len(failures) - 1} other(s) failed too; " if len(failures) > 1 else ""
    error = WorkerFailed(f"{describe_item(items[index], index, len(items))} failed in a {kind} worker: {reason}; "
                         f"{others}the {len(items) - len(failures)} that finished were returned (a sweep keeps "
                         "them stored: rerun it to run the rest)")
    error.__cause__ = exc
    return error


def completed_futures(kind: str, items: list, futures: list, as_completed):
    """``(index, result)`` of ``futures`` (one per item) in the order they finish (``as_completed``);
    after all, ``WorkerFailed`` for those that raised."""
    index = {id(f): i for i, f in enumerate(futures)}
    failures = []
    for future in as_completed(futures):
        i = index[id(future)]
        try:
            result = future.result()
        except Exception as exc:  # noqa: BLE001 -- any worker error: kept, reported after the rest
            failures.append((i, exc, None))
            continue
        yield i, result
    if failures:
        raise _failed_after_all(kind, items, failures)


class Executor(ABC):
    """The shared part: ``kind``, ``workers``, the context manager; each kind gives ``map`` and ``shutdown``."""

    kind = ""

    def __init__(self, workers: int):
        self.workers = workers
        self.env = worker_environment()

    @abstractmethod
    def map(self, fn, iterable):
        """``fn`` of every item, yielded in the items' order."""

    @abstractmethod
    def map_completed(self, fn, iterable):
        """``(index, fn(item))`` as calls finish; ``WorkerFailed`` after all when some raised."""

    @abstractmethod
    def shutdown(self, failed: bool = False) -> None:
        """Release the workers (``failed``: after an error or Ctrl-C, stop them without waiting)."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.shutdown(failed=exc_type is not None)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.kind}, {self.workers} workers>"


class ProcessesExecutor(Executor):
    """``sweep.process_pool``: worker processes of this machine (forked on Linux), one torch thread each."""

    kind = "processes"

    def __init__(self, workers: int):
        from .sweep import process_pool

        super().__init__(workers)
        self.pool = process_pool(workers)

    def map(self, fn, iterable):
        items = list(iterable)
        results = self.pool.map(InWorker(fn, self.env), items)
        for i, item in enumerate(items):
            try:
                result = next(results)
            except Exception as exc:
                results.close()  # cancels the calls not started
                raise _failed(self.kind, item, i, len(items), exc) from exc
            yield result

    def map_completed(self, fn, iterable):
        from concurrent.futures import as_completed

        items = list(iterable)
        call = InWorker(fn, self.env)
        futures = [self.pool.submit(call, item) for item in items]
        try:
            yield from completed_futures(self.kind, items, futures, as_completed)
        finally:
            for future in futures:
                future.cancel()  # only those not started; a no-op once all are done

    def shutdown(self, failed: bool = False) -> None:
        from .sweep import stop_workers

        if failed:  # Ctrl-C or an error: do not wait for the running calls
            stop_workers(self.pool)
        else:
            self.pool.shutdown()


class DaskExecutor(Executor):
    """A ``distributed.Client`` of a new ``LocalCluster`` or of the scheduler at ``address``."""

    kind = "dask"

    def __init__(self, workers: int, address: str | None = None, timeout: str | float = "10s", **cluster_options):
        import logging

        from distributed import Client, LocalCluster

        super().__init__(workers)
        self.cluster = None
        if address is not None:
            if not isinstance(address, str) or not address.strip():
                raise InputError(f"dask address must be a scheduler address such as tcp://host:8786, "
                                 f"got {describe(address)}")
            if cluster_options:
                raise InputError(f"dask options {', '.join(sorted(cluster_options))} apply to a new local "
                                 "cluster, not to one given by its address")
            try:
                self.client = Client(address.strip(), timeout=timeout)
            except (OSError, TimeoutError) as exc:
                raise InputError(f"no dask scheduler answered at {address.strip()!r}: {exc}") from None
        else:
            options = {"n_workers": workers, "threads_per_worker": 1, "processes": True,
                       "dashboard_address": None, "silence_logs": logging.ERROR, **cluster_options}
            self.cluster = LocalCluster(**options)
            self.client = Client(self.cluster)

    def map(self, fn, iterable):
        items = list(iterable)
        futures = self.client.map(InWorker(fn, self.env), items, pure=False)
        try:
            for i, (item, future) in enumerate(zip(items, futures)):
                try:
                    result = future.result()
                except Exception as exc:
                    raise _failed(self.kind, item, i, len(items), exc) from exc
                future.release()
                yield result
        finally:
            left = [f for f in futures if f.status == "pending"]
            if left:
                self.client.cancel(left)

    def map_completed(self, fn, iterable):
        from distributed import as_completed

        items = list(iterable)
        futures = self.client.map(InWorker(fn, self.env), items, pure=False)
        try:
            for i, result in completed_futures(self.kind, items, futures, as_completed):
                futures[i].release()
                yield i, result
        finally:
            left = [f for f in futures if f.status == "pending"]
            if left:
                self.client.cancel(left)

    def shutdown(self, failed: bool = False) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


class SubmititExecutor(Executor):
    """One submitit job per item, at most ``workers`` unfinished at once, results read in order."""

    kind = "submitit"

    def __init__(self, workers: int, folder=None, cluster: str | None = None, **parameters):
        import submitit

        super().__init__(workers)
        if folder is None or not str(folder).strip():
            raise InputError("the submitit executor needs folder=DIR for its jobs' files and logs "
                             "(on a cluster, one the jobs can read)")
        folder = Path(folder).expanduser().absolute()
        created = next((p for p in reversed((folder, *folder.parents)) if not p.exists()), None)
        try:
            try:
                self.executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
            except (ValueError, AssertionError, RuntimeError) as exc:
                raise InputError(f"submitit: {exc}") from None
            parameters.setdefault("timeout_min", DEFAULT_TIMEOUT_MIN)
            try:
                self.executor.update_parameters(**parameters)
            except (ValueError, NameError, TypeError, AssertionError) as exc:
                raise InputError(f"submitit parameters: {exc}") from None
        finally:
            # Folders made by the check are removed again (the first job makes them), so that an output
            # folder holding the job folder is still new when the sweep looks at it.
            if created is not None and created.is_dir() and all(p.is_dir() for p in created.rglob("*")):
                shutil.rmtree(created, ignore_errors=True)
        self.jobs: list = []

    def map(self, fn, iterable):
        items = list(iterable)
        call = InWorker(fn, self.env)
        submitted: collections.deque = collections.deque()  # (index, job) in order, not yet returned
        queued = collections.deque(enumerate(items))
        try:
            while submitted or queued:
                while queued and sum(not job.done() for _, job in submitted) < self.workers:
                    i, item = queued.popleft()
                    job = self.executor.submit(call, item)
                    self.jobs.append(job)
                    submitted.append((i, job))
                i, job = submitted[0]
                if not job.done():
                    time.sleep(POLL_S)
                    continue
                submitted.popleft()
                try:
                    result = job.result()
                except Exception as exc:
                    raise _failed(self.kind, items[i], i, len(items), exc, _job_reason(job, exc)) from exc
                yield result
        finally:
            for _, job in submitted:
                if not job.done():
                    job.cancel(check=False)

    def map_completed(self, fn, iterable):
        items = list(iterable)
        call = InWorker(fn, self.env)
        running: list = []  # (index, job) submitted, not yet returned
        queued = collections.deque(enumerate(items))
        failures = []
        try:
            while running or queued:
                while queued and len(running) < self.workers:
                    i, item = queued.popleft()
                    job = self.executor.submit(call, item)
                    self.jobs.append(job)
                    running.append((i, job))
                done = [(i, job) for i, job in running if job.done()]
                if not done:
                    time.sleep(POLL_S)
                    continue
                for i, job in done:
                    running.remove((i, job))
                    try:
                        result = job.result()
                    except Exception as exc:  # noqa: BLE001 -- reported after the rest
                        failures.append((i, exc, _job_reason(job, exc)))
                        continue
                    yield i, result
        finally:
            for _, job in running:
                if not job.done():
                    job.cancel(check=False)
        if failures:
            raise _failed_after_all(self.kind, items, failures)

    def shutdown(self, failed: bool = False) -> None:
        for job in self.jobs:
            if not job.done():
                job.cancel(check=False)
        self.jobs = []


def _job_reason(job, exc: BaseException) -> str:
    """The worker's exception from a submitit ``FailedJobError`` (its message holds the job's
    traceback), with the job's log; another error as its type and first line."""
    text = str(exc)
    parts = text.split("-" * 22)
    if type(exc).__name__ != "FailedJobError" or len(parts) < 3:
        lines = text.strip().splitlines()
        return type(exc).__name__ + (f": {lines[0]}" if lines else "")
    trace = [line for line in parts[1].strip().splitlines() if line.strip()]
    frames = [i for i, line in enumerate(trace) if line.startswith(" ")]
    tail = trace[frames[-1] + 1:] if frames else trace[-1:]
    reason = tail[0].strip() if tail else "the job failed"
    try:
        log = f" (log: {job.paths.stderr})"
    except Exception:  # noqa: BLE001 - a path is a courtesy
        log = ""
    return reason + log
