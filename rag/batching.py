"""Micro-batching: items submitted from many threads at once are handed to one function call, from one worker thread."""
from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

IDLE_EXIT_S = 60.0  # the worker thread ends after this long without work (and starts again on the next item)
T = TypeVar("T")
R = TypeVar("R")


class _Job(Generic[T, R]):
    """One submitted item, its result or error, and the event its caller waits on."""

    __slots__ = ("item", "result", "error", "done")

    def __init__(self, item: T):
        self.item = item
        self.result: R | None = None
        self.error: BaseException | None = None
        self.done = threading.Event()


class Batcher(Generic[T, R]):
    """Calls `fn(items)` once for the items submitted while it was busy or within `wait_s` of the first (at most `max_size`).

    `fn` must return one result per item, in order. A lone caller waits `wait_s` at most; callers that arrive
    together share one call, which is what makes a batched model call pay off under load.
    """

    def __init__(self, fn: Callable[[list[T]], Sequence[R]], max_size: int = 32, wait_s: float = 0.0, name: str = "batcher"):
        self._fn, self._max_size, self._wait_s, self._name = fn, max(1, max_size), max(0.0, wait_s), name
        self._queue: queue.SimpleQueue[_Job[T, R]] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def __call__(self, item: T) -> R:
        """The result of `fn` for this item, computed in a batch with whatever else was submitted meanwhile."""
        job: _Job[T, R] = _Job(item)
        with self._start_lock:  # the worker cannot decide to end between this put and the check
            self._queue.put(job)
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name=self._name, daemon=True)
                self._worker.start()
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result  # type: ignore[return-value]

    def _collect(self) -> list[_Job[T, R]]:
        """The next batch: the first waiting job, then any that arrive within wait_s, up to max_size; [] when idle."""
        try:
            jobs = [self._queue.get(timeout=IDLE_EXIT_S)]
        except queue.Empty:
            return []
        deadline = time.monotonic() + self._wait_s
        while len(jobs) < self._max_size:
            try:
                jobs.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())) if self._wait_s else self._queue.get_nowait())
            except queue.Empty:
                break
        return jobs

    def _work(self) -> None:
        """The worker loop: one call of fn per batch; each caller gets its own result or the call's error."""
        while True:
            jobs = self._collect()
            if not jobs:
                with self._start_lock:
                    if self._queue.empty():  # nothing came meanwhile: end; the next caller starts a new worker
                        self._worker = None
                        return
                continue
            try:
                results = self._fn([job.item for job in jobs])
                if len(results) != len(jobs):
                    raise RuntimeError(f"{self._name}: {len(results)} results for {len(jobs)} items")
                for job, result in zip(jobs, results):
                    job.result = result
            except BaseException as error:  # noqa: BLE001 - handed to every caller of the batch
                for job in jobs:
                    job.error = error
            finally:
                for job in jobs:
                    job.done.set()
