"""The store's background thread: work the recording thread hands off and does not wait
for (a new run file's directory fsync, spare run files, columnar caches).

A ``concurrent.futures`` executor did this before.  Its bookkeeping runs in Python on both
threads (a ``Future`` with a condition variable per task, a work item, an idle semaphore),
and while the background thread holds the GIL for it, the recording thread waits to get the
GIL back after each system call it makes: 10-30 µs per run on this two-core machine.
Here a task goes through a C queue and reports completion with one C lock, so the
background thread holds the GIL only for the work itself.
"""

from __future__ import annotations

import atexit
import os
import queue
import threading
import weakref
from collections.abc import Callable
from typing import Any, Protocol


class Pending(Protocol):
    """Work started elsewhere that can be waited for."""

    def result(self) -> Any:
        """Wait until the work is done; its value, or raise what it raised."""


class BackgroundTask:
    """One piece of work queued on a :class:`BackgroundThread`."""

    __slots__ = ("_fn", "_args", "_finished", "_value", "_error")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self._fn = fn
        self._args = args
        self._value: Any = None
        self._error: BaseException | None = None
        # Held until the work has run: waiting for the task is acquiring it.
        self._finished = threading.Lock()
        self._finished.acquire()

    def run(self) -> None:
        """Do the work (on the background thread), keeping its value or its exception."""
        try:
            self._value = self._fn(*self._args)
        except BaseException as err:  # handed to whoever waits for the task
            self._error = err
        finally:
            self._fn = self._args = None  # type: ignore[assignment]
            self._finished.release()

    def result(self) -> Any:
        """Wait until the work has run; its value, or raise what it raised."""
        with self._finished:
            pass
        if self._error is not None:
            raise self._error
        return self._value


class BackgroundThread:
    """One daemon thread running queued tasks in order.

    Started by the first :meth:`soon` (in a forked child, anew: the parent's thread and
    queue are not the child's); :meth:`finish` runs what is queued and stops it, and every
    one still running is finished at interpreter exit, so queued work is never cut off.

    Parameters
    ----------
    name
        The thread's name.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[BackgroundTask | None] | None = None
        self._thread: threading.Thread | None = None
        self._pid = 0

    def soon(self, fn: Callable[..., Any], *args: Any) -> BackgroundTask:
        """Queue ``fn(*args)``; the task, to wait for it."""
        task = BackgroundTask(fn, args)
        with self._lock:
            if self._queue is None or self._pid != os.getpid():
                self._queue = queue.SimpleQueue()
                self._thread = threading.Thread(
                    target=_serve, args=(self._queue,), name=self.name, daemon=True
                )
                self._pid = os.getpid()
                self._thread.start()
                _RUNNING.add(self)
            self._queue.put(task)
        return task

    def finish(self) -> None:
        """Run every task queued so far and stop the thread (a later :meth:`soon` starts
        another); nothing in a forked child that has not started its own."""
        with self._lock:
            work, thread = self._queue, self._thread
            self._queue = self._thread = None
            if work is None or thread is None or self._pid != os.getpid():
                return
            work.put(None)
        thread.join()


def _serve(work: queue.SimpleQueue[BackgroundTask | None]) -> None:
    while True:
        task = work.get()
        if task is None:
            return
        task.run()


#: The threads to finish at interpreter exit (daemon threads would be cut off there).
_RUNNING: weakref.WeakSet[BackgroundThread] = weakref.WeakSet()


@atexit.register
def _finish_all() -> None:
    for background in list(_RUNNING):
        background.finish()
