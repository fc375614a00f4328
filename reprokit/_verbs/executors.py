"""Where many replays run: a process pool here, a SLURM job array, an existing Dask cluster.

An executor is any object with a ``name`` and one method::

    def map(self, fn, items) -> Iterator[tuple[int, object]]

It runs ``fn(item)`` for every item, wherever it likes, and yields ``(index, outcome)`` as each
one finishes, in any order: ``outcome`` is what ``fn`` returned, or the exception it raised
(an ``Exception`` instance, never raised out of ``map``). ``fn`` is a module-level function and
the items are plain picklable values, so the work can cross a process or a machine boundary;
``fn`` itself catches what it can explain, so an exception here means the job itself was lost
(a worker died, the scheduler cancelled it). A Ray or Kubernetes adapter is one more class
with that method, and one more name in :func:`make_executor`; replay does not change.

The heavy libraries (submitit, dask.distributed) are imported only by the executor that uses
them: ``pip install 'reprokit-verdict[slurm]'`` or ``'reprokit-verdict[dask]'``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from reprokit._model.errors import ReprokitError

EXECUTORS = ("local", "slurm", "dask")


class Executor(Protocol):
    """Runs ``fn`` over ``items``; yields ``(index, result or exception)`` as each finishes."""

    name: str

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> Iterator[tuple[int, Any]]: ...


class LocalExecutor:
    """``jobs`` worker processes on this machine (the standard library's process pool)."""

    name = "local"

    def __init__(self, jobs: int = 1) -> None:
        if jobs < 1:
            raise ReprokitError(f"jobs must be at least 1, got {jobs}")
        self.jobs = jobs

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        if self.jobs == 1 or len(items) <= 1:
            # No pool for one at a time: the same work without a process start per worker.
            for i, item in enumerate(items):
                try:
                    yield i, fn(item)
                except Exception as exc:
                    yield i, exc
            return
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        # spawn: workers start clean (no copy of this process's threads or open handles).
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(self.jobs, len(items)), mp_context=ctx) as pool:
            futures = {pool.submit(fn, item): i for i, item in enumerate(items)}
            for fut in as_completed(futures):
                try:
                    yield futures[fut], fut.result()
                except Exception as exc:
                    yield futures[fut], exc


class SlurmExecutor:
    """One SLURM job array through submitit, one task per item.

    ``folder`` holds submitit's pickles and logs and must be on a filesystem the compute nodes
    share; results come back through it. ``cluster="local"`` runs the array with submitit's
    local executor on this machine (what the tests use where there is no SLURM).
    """

    name = "slurm"

    def __init__(
        self,
        folder: str,
        *,
        partition: str | None = None,
        time_min: int = 60,
        gpus: int = 0,
        parallel: int | None = None,
        cluster: str = "slurm",
        poll_s: float = 1.0,
    ) -> None:
        try:
            import submitit  # noqa: F401
        except ImportError:
            raise ReprokitError(
                "the slurm executor needs submitit: pip install 'reprokit-verdict[slurm]'"
            ) from None
        self.folder = os.path.abspath(folder)
        self.partition, self.time_min, self.gpus = partition, time_min, gpus
        self.parallel, self.cluster, self.poll_s = parallel, cluster, poll_s

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        import submitit

        folder = os.path.join(self.folder, "%j")
        executor = submitit.AutoExecutor(folder=folder, cluster=self.cluster)
        params: dict[str, Any] = {"timeout_min": self.time_min, "name": "reprokit-replay"}
        if self.gpus:
            params["gpus_per_node"] = self.gpus
        if self.partition:
            params["slurm_partition"] = self.partition
        if self.parallel:
            params["slurm_array_parallelism"] = self.parallel
        executor.update_parameters(**params)
        jobs = executor.map_array(fn, list(items))
        waiting = dict(enumerate(jobs))
        while waiting:
            for i, job in list(waiting.items()):
                if not job.done():
                    continue
                del waiting[i]
                try:
                    yield i, job.result()
                except Exception as exc:
                    yield i, exc
            if waiting:
                time.sleep(self.poll_s)


class DaskExecutor:
    """Tasks on an existing Dask cluster, reached at its scheduler's address."""

    name = "dask"

    def __init__(self, scheduler: str, timeout_s: float = 30.0) -> None:
        try:
            import distributed  # noqa: F401
        except ImportError:
            raise ReprokitError(
                "the dask executor needs dask.distributed: pip install 'reprokit-verdict[dask]'"
            ) from None
        if not scheduler:
            raise ReprokitError("the dask executor needs the scheduler's address")
        self.scheduler, self.timeout_s = scheduler, timeout_s

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        from distributed import Client, as_completed

        try:
            client = Client(self.scheduler, timeout=self.timeout_s)
        except OSError as exc:
            raise ReprokitError(
                f"cannot reach the Dask scheduler at {self.scheduler}: {exc}"
            ) from None
        try:
            # pure=False: two replays of one run are two tasks, not one cached result.
            futures = client.map(fn, list(items), pure=False)
            index = {f.key: i for i, f in enumerate(futures)}
            for fut in as_completed(futures):
                try:
                    yield index[fut.key], fut.result()
                except Exception as exc:
                    yield index[fut.key], exc
        finally:
            client.close()


def make_executor(
    kind: str = "local",
    *,
    jobs: int = 1,
    scheduler: str | None = None,
    folder: str | None = None,
    partition: str | None = None,
    time_min: int = 60,
    gpus: int = 0,
    cluster: str = "slurm",
) -> Executor:
    """The executor named ``kind`` ("local", "slurm" or "dask") with its options."""
    if kind == "local":
        return LocalExecutor(jobs)
    if kind == "slurm":
        return SlurmExecutor(
            folder or "reprokit-slurm",
            partition=partition,
            time_min=time_min,
            gpus=gpus,
            parallel=jobs if jobs > 1 else None,
            cluster=cluster,
        )
    if kind == "dask":
        if scheduler is None:
            raise ReprokitError("the dask executor needs scheduler (the scheduler's address)")
        return DaskExecutor(scheduler)
    raise ReprokitError(f"unknown executor {kind!r}: one of {', '.join(EXECUTORS)}")
