"""Running tasks: a local process pool, or Ray Data (one recognizer per actor). Both call the same
``Worker.run`` and hand results back in completion order with their task's index."""

from __future__ import annotations

import json
import logging
import signal
import warnings
from collections.abc import Generator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict
from multiprocessing import get_context
from typing import Any

import cv2

from fer_ensemble.batch.plan import Task
from fer_ensemble.batch.work import BatchSettings, TaskResult, Worker, failure
from fer_ensemble.errors import UserError

_worker: Worker | None = None  # one per pool process
_setup_error: UserError | None = None  # or why it could not be built (an ensemble without a prior for --prior)


def _set_up_process(settings: BatchSettings) -> None:
    """A worker process's own settings, made where the process starts (the pool's initializer, the
    Ray actor's constructor), not by the library it then runs: OpenCV's threads."""
    cv2.setNumThreads(settings.threads)


def _start_worker(settings: dict) -> None:
    global _worker, _setup_error
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the driver stops us
    built = BatchSettings(**settings)
    _set_up_process(built)
    try:
        _worker = Worker(built)
    except UserError as error:  # raised by each task, so the driver says it in one line (not a broken pool)
        _setup_error = error


def _run_task(task: dict) -> dict:
    if _setup_error is not None:
        raise _setup_error
    assert _worker is not None  # the pool's initializer, _start_worker, made it
    return asdict(_worker.run(task))


WORKER_DIED = ("the worker process reading it died (a crash in a native library such as the video codec, "
               "or the system out of memory)")
"""The error of a task whose worker process ended abruptly (``run_local``, ``run_ray``)."""


def run_local(tasks: list[Task], settings: BatchSettings, workers: int) -> Generator[tuple[int, TaskResult], None, None]:
    """A pool of ``workers`` processes (spawned: no state shared with this one). A worker that dies
    (a segfault in a codec, the out-of-memory killer) breaks the pool: the unfinished tasks run again
    in a fresh pool of one process, in order, so the task that kills it again is known and becomes a
    failure (``WORKER_DIED``); the rest then go on in a full pool."""
    yield from _isolating_crashes(tasks, lambda indices, serial: _pool(tasks, indices, settings,
                                                                      1 if serial else workers))


def _isolating_crashes(tasks: list[Task], run_pass) -> Generator[tuple[int, TaskResult], None, None]:
    """Every task's result from ``run_pass(indices, serial)`` (an engine's pass over those tasks,
    yielding ``(index, result)``; with ``serial`` on one worker, one task at a time, in order), which
    stops early when a worker dies. The unfinished tasks then run again serially, so the first of them
    killed the worker if it dies again and becomes a failure (``WORKER_DIED``); the rest then go on in
    a full pass."""
    remaining = list(range(len(tasks)))
    serial = False
    while remaining:
        finished: set[int] = set()
        for index, result in run_pass(remaining, serial):
            finished.add(index)
            yield index, result
        remaining = [i for i in remaining if i not in finished]
        if remaining and serial:  # one worker, tasks in order: the first unfinished one killed it
            culprit = remaining.pop(0)
            yield culprit, failure(tasks[culprit].source, WORKER_DIED)
        serial = bool(remaining) and not serial


def _pool(tasks: list[Task], indices: list[int], settings: BatchSettings,
          workers: int) -> Generator[tuple[int, TaskResult], None, None]:
    """``tasks[i]`` for each of ``indices`` on a pool of ``workers`` processes, in completion order;
    it stops early, without raising, when a worker process dies (the pool is then broken). A worker
    that cannot be built (a UserError: ``--prior`` for an ensemble that records no prior) is raised.
    Ctrl-C (or closing the generator) cancels the queued tasks and ends the worker processes at once
    (``_stop``); the workers ignore SIGINT, so only this process answers it."""
    pool = ProcessPoolExecutor(max(1, min(workers, len(indices))), mp_context=get_context("spawn"),
                               initializer=_start_worker, initargs=(asdict(settings),))
    stopped = False
    try:
        futures = {pool.submit(_run_task, tasks[i].to_dict()): i for i in indices}
        for future in as_completed(futures):
            try:
                result = TaskResult(**future.result())
            except BrokenProcessPool:
                return
            except UserError:  # the worker could not be built: the same for every task
                pool.shutdown(wait=False, cancel_futures=True)
                raise
            yield futures[future], result
    except BaseException:  # Ctrl-C, or the caller stopped early: no queued task runs, none running goes on
        stopped = True
        _stop(pool)
        raise
    finally:
        if not stopped:  # done, or a broken pool: shut down as ``with`` did
            pool.shutdown(wait=True)


def _stop(pool: ProcessPoolExecutor) -> None:
    """Cancel ``pool``'s queued tasks and end its processes now (a task they are running is dropped),
    so that neither this process nor its exit waits for work nobody will collect."""
    processes = list((pool._processes or {}).values())  # the executor offers no way to end running tasks
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(timeout=5)


class RayWorker:
    """A Ray Data actor: the recognizers load once, then one task per batch of one. ``settings`` is
    a class attribute (see ``run_ray``): the class travels pickled, with no constructor arguments
    in the object store."""

    settings: dict = {}

    def __init__(self):
        settings = BatchSettings(**self.settings)
        _set_up_process(settings)
        self.worker: Worker | None = None
        self.setup_error: str | None = None
        try:
            self.worker = Worker(settings)
        except UserError as error:  # answered for each task, so the driver says it in one line (as run_local)
            self.setup_error = str(error)

    def __call__(self, batch: dict) -> dict:
        results = []
        for i in range(len(batch["index"])):
            task = {key: _plain(batch[key][i]) for key in ("source", "kind", "start", "stop")}
            task["stop"] = None if task["stop"] == -1 else task["stop"]  # Arrow columns hold no None ints here
            answer = {"setup_error": self.setup_error} if self.worker is None else asdict(self.worker.run(task))
            results.append(json.dumps(answer))
        return {"index": batch["index"], "result": results}


def _plain(value):
    """A NumPy scalar from a Ray batch as a Python value."""
    return value.item() if hasattr(value, "item") else value


def run_ray(tasks: list[Task], settings: BatchSettings, workers: int, address: str | None,
            verbose: bool = False) -> Generator[tuple[int, TaskResult], None, None]:
    """Ray Data: ``ray.init()`` here when no address (``auto`` or ``ray://host:10001`` for a cluster),
    ``workers`` actors of ``settings.threads`` CPUs each. Ray's own logging stays quiet unless
    ``verbose``. An actor that dies (a segfault in a codec, the out-of-memory killer) ends Ray Data's
    run: as with ``run_local`` (``_isolating_crashes``), the unfinished tasks then run again on one
    plain Ray actor, one at a time and in order, so the task that kills it again is known and becomes
    a failure (``WORKER_DIED``); the rest then go on with every actor. UserError when the workers cannot be built."""
    if not tasks:
        return
    import ray

    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=verbose,
                 logging_level=logging.INFO if verbose else logging.ERROR)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # ours counts sources and tasks
    if not verbose:
        logging.getLogger("ray.data").setLevel(logging.CRITICAL)  # a dead actor's traceback: our row says it

    def run_pass(indices: list[int], serial: bool) -> Generator[tuple[int, TaskResult], None, None]:
        try:
            yield from (_ray_serial(tasks, indices, settings) if serial else _ray_pass(tasks, indices, settings, workers))
        except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError,
                ray.exceptions.OutOfMemoryError):  # an actor died (Ray Data raises ActorDiedError): the pass ends
            return

    yield from _isolating_crashes(tasks, run_pass)


def _ray_item(tasks: list[Task], index: int) -> dict:
    """Task ``index`` as a Ray row (Arrow columns hold no None ints: a stop of None is -1)."""
    return {"index": index, **tasks[index].to_dict(), "stop": -1 if tasks[index].stop is None else tasks[index].stop}


def _ray_result(data: dict) -> TaskResult:
    """A ``RayWorker``'s answer for one task; UserError when its worker could not be built."""
    if "setup_error" in data:
        raise UserError(data["setup_error"])
    return TaskResult(**data)


def _ray_serial(tasks: list[Task], indices: list[int],
                settings: BatchSettings) -> Generator[tuple[int, TaskResult], None, None]:
    """``tasks[i]`` for each of ``indices`` on one actor, one at a time, in order: Ray's error when
    the actor dies, after every task before the one that killed it."""
    import ray

    actor: Any = ray.remote(num_cpus=settings.threads, max_restarts=0)(
        type("RayWorker", (RayWorker,), {"settings": asdict(settings)})).remote()
    try:
        for index in indices:
            batch = {key: [value] for key, value in _ray_item(tasks, index).items()}
            answer: dict = ray.get(actor.__call__.remote(batch))
            yield index, _ray_result(json.loads(answer["result"][0]))
    finally:
        ray.kill(actor)


def _ray_pass(tasks: list[Task], indices: list[int], settings: BatchSettings,
              workers: int) -> Generator[tuple[int, TaskResult], None, None]:
    """``tasks[i]`` for each of ``indices`` on ``workers`` Ray Data actors, as they finish; Ray's
    error when an actor dies (never restarted: its task would only crash it again)."""
    import ray

    items = [_ray_item(tasks, i) for i in indices]
    dataset = ray.data.from_items(items, override_num_blocks=max(1, len(items)))
    actor = type("RayWorker", (RayWorker,), {"settings": asdict(settings)})
    with warnings.catch_warnings():
        # max_restarts=0: a failed actor is not restarted (its task's error is a row, as with the local
        # pool), which also spares Ray's core a warning on every actor (ray-project/ray#53727). Ray's
        # own ActorPoolMapOperator names this very call as the way to turn restarts off, while
        # deprecating extra remote arguments in general: that warning is not the user's business.
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
        results = dataset.map_batches(actor, batch_size=1, concurrency=max(1, min(workers, len(items))),
                                      num_cpus=settings.threads, max_restarts=0)
    for row in results.iter_rows():
        yield int(row["index"]), _ray_result(json.loads(row["result"]))
