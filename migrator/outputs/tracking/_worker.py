"""One background thread that runs queued tasks in order and stops at the first failure.

It knows nothing of MLflow: :class:`~migrator.outputs.tracking.MlflowTracker` queues its
MLflow calls here so that they overlap the search instead of adding to it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

__all__ = ["Worker"]

Task = Callable[[], None]


class Worker:
    """Runs queued tasks on one daemon thread, in the order they were queued.

    Once a task raises, the worker runs none of the tasks after it (they would build on
    what failed) and calls ``on_failure(what, exc)`` at once, from its thread, with the
    description the failed task was queued under; keeping the failure is the caller's job.

    Args:
        name: the thread's name.
        on_failure: called from the worker thread with the first failure.
    """

    def __init__(self, name: str, on_failure: Callable[[str, Exception], None]) -> None:
        self.name = name
        self.on_failure = on_failure
        self._tasks: queue.SimpleQueue[tuple[str, Task] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._first_done = threading.Event()

    @property
    def running(self) -> bool:
        """Started and not yet closed."""
        return self._thread is not None

    def start(self) -> None:
        """Start the thread; tasks submitted from now on are run."""
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def submit(self, what: str, task: Task) -> None:
        """Queue ``task``, described by ``what`` in a failure; ignored unless running."""
        if self._thread is not None:
            self._tasks.put((what, task))

    def wait_for_first_task(self) -> None:
        """Block until the first queued task has run (or failed); returns at once unless running."""
        if self._thread is not None:
            self._first_done.wait()

    def close(self) -> None:
        """Run every task queued so far, then stop the thread."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._tasks.put(None)
        thread.join()

    def _run(self) -> None:
        failed = False
        try:
            while (item := self._tasks.get()) is not None:
                what, task = item
                if not failed:
                    failed = not self._attempt(what, task)
                self._first_done.set()
        finally:
            # a thread that died must not leave a waiter blocked
            self._first_done.set()

    def _attempt(self, what: str, task: Task) -> bool:
        """Run one task; whether it succeeded (if not, ``on_failure`` has been told)."""
        try:
            task()
        except Exception as exc:
            self.on_failure(what, exc)
            return False
        return True
