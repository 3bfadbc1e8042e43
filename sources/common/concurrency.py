"""Run several page iterators concurrently and yield their pages as they arrive.

Sequential cursors are latency-bound; where an API lets us split a range (id ranges, time
windows, scan buckets) each piece is walked by its own worker thread and the pages are merged
into one stream. Memory stays flat: workers block on a bounded queue when the consumer (dlt's
extract) is slower than the network. If the consumer stops early or a worker fails, every worker
is told to stop and the first error is re-raised in the consumer's thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

_DONE = object()


class _Failure:
    def __init__(self, exc: BaseException):
        self.exc = exc


def concurrent_pages(
    tasks: Iterable[Callable[[], Iterable[T]]],
    workers: int,
    *,
    queue_pages: int | None = None,
    name: str = "cdp-sync",
) -> Iterator[T]:
    """Yield every item of every task's iterator, running up to ``workers`` tasks at once.

    Items of one task keep their order; items of different tasks interleave. With
    ``workers <= 1`` the tasks run one after another in the caller's thread (no threads at all),
    which is what a "sequential walk" means in the benchmarks."""
    task_list = list(tasks)
    if workers <= 1 or len(task_list) <= 1:
        for task in task_list:
            yield from task()
        return

    q: queue.Queue[object] = queue.Queue(maxsize=queue_pages or workers * 4)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run(task: Callable[[], Iterable[T]]) -> None:
        try:
            if stop.is_set():
                return
            it = iter(task())
            try:
                for item in it:
                    if not put(item):
                        return
            finally:
                close = getattr(it, "close", None)
                if close is not None:
                    close()
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            put(_Failure(exc))
        finally:
            put(_DONE)

    pool = ThreadPoolExecutor(max_workers=min(workers, len(task_list)), thread_name_prefix=name)
    try:
        for task in task_list:
            pool.submit(run, task)
        remaining = len(task_list)
        while remaining:
            item = q.get()
            if item is _DONE:
                remaining -= 1
            elif isinstance(item, _Failure):
                raise item.exc
            else:
                yield item  # type: ignore[misc]
    finally:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
