"""The files store's background thread (``_background``): tasks run in order on one thread,
their values and exceptions reach whoever waits, and queued work is never cut off (close,
interpreter exit, a forked child)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from broker_v1.stores.files._background import BackgroundThread

REPO = Path(__file__).resolve().parents[2]


def test_tasks_run_in_order_on_one_named_thread_and_hand_back_values() -> None:
    background = BackgroundThread("bv1-test-bg")
    seen: list[tuple[int, str]] = []

    def work(i: int) -> int:
        time.sleep(0.01 if i == 0 else 0)  # the first is slowest: order is still kept
        seen.append((i, threading.current_thread().name))
        return i * i

    tasks = [background.soon(work, i) for i in range(5)]
    assert [task.result() for task in tasks] == [0, 1, 4, 9, 16]
    assert seen == [(i, "bv1-test-bg") for i in range(5)]
    assert tasks[2].result() == 4  # waiting again returns at once, with the same value
    background.finish()


def test_an_exception_reaches_the_waiter_and_the_thread_goes_on() -> None:
    background = BackgroundThread("bv1-test-bg")

    def fail() -> None:
        raise OSError(5, "disk says no")

    failed = background.soon(fail)
    after = background.soon(lambda: "still running")
    with pytest.raises(OSError, match="disk says no"):
        failed.result()
    assert after.result() == "still running"
    background.finish()


def test_finish_runs_what_is_queued_and_a_later_task_starts_a_new_thread() -> None:
    background = BackgroundThread("bv1-test-bg")
    done: list[int] = []
    gate = threading.Event()
    background.soon(gate.wait, 5)
    for i in range(3):
        background.soon(done.append, i)
    threading.Timer(0.05, gate.set).start()
    background.finish()  # waits for the gate, then for the three behind it
    assert done == [0, 1, 2]
    assert not [t for t in threading.enumerate() if t.name == "bv1-test-bg"]
    assert background.soon(lambda: threading.current_thread().name).result() == "bv1-test-bg"
    background.finish()
    background.finish()  # nothing running: a no-op


def test_work_queued_at_interpreter_exit_is_finished(tmp_path: Path) -> None:
    """A daemon thread would be cut off at exit; the work still queued there is done."""
    marker = tmp_path / "written"
    script = (
        "import time\n"
        "from broker_v1.stores.files._background import BackgroundThread\n"
        "background = BackgroundThread('bv1-exit')\n"
        "background.soon(time.sleep, 0.3)\n"
        f"background.soon(open({str(marker)!r}, 'w').write, 'done')\n"
    )
    subprocess.run([sys.executable, "-c", script], cwd=REPO, check=True, timeout=60)
    assert marker.read_text() == "done"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_runs_its_tasks_on_a_thread_of_its_own(tmp_path: Path) -> None:
    """The parent's thread does not exist in a forked child: queued there, a task would
    never run."""
    background = BackgroundThread("bv1-test-bg")
    background.soon(int).result()  # the parent's thread is running
    out = tmp_path / "child"
    pid = os.fork()
    if pid == 0:
        try:
            name = background.soon(lambda: threading.current_thread().name).result()
            out.write_text(name)
            background.finish()
        finally:
            os._exit(0)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and os.waitpid(pid, os.WNOHANG) == (0, 0):
        time.sleep(0.01)
    if not out.exists():  # hung (or failed): do not leave it running
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    assert out.read_text() == "bv1-test-bg"
    background.finish()
