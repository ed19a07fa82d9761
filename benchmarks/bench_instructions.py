"""CPU cost of recording RunEngine-shaped runs, counted in instructions instead of seconds.

Run: python benchmarks/bench_instructions.py [--runs 100] [--repeat 3]
[--stores memory,strict,files]

On a shared machine the same code's docs/s moves by 15 to 30 % from one invocation to the next
(``bench_runengine.py``'s figures), so a change worth a few percent cannot be told from noise
there.  This counts the instructions the recording takes under ``valgrind --tool=callgrind``:
the same count whatever else the machine is doing.  A process builds ``runs`` runs
(``bench_runengine.workload``), records one into a store of its own (imports, compiling the
schemas), then inserts the runs one document at a time with ``store.insert`` into a fresh
store; callgrind counts that loop alone, all threads, between two marker calls
(``os.getppid()`` zeroes the counters, ``os.getpgrp()`` dumps them), divided by ``runs``.
Beside each store, the floor: the same documents copied by an ``orjson`` round trip, as
``bench_runengine.py``'s floor does.  Only user-space instructions are counted: the kernel's
part of the files store (its writes and fsyncs) and time spent waiting are not, which is why
docs/s stays the figure the targets are about.  ``PYTHONHASHSEED`` is fixed and the uids come
from a seeded generator, so every process inserts the same documents; each figure is the
median of ``--repeat`` processes, printed with their range (three processes of 100 runs,
memory store: within 0.15 %; the files store's timers fire by the clock, so its figure also
moves by ~0.3 % with the machine's load).  Counting the whole process instead, less a process that
inserts nothing, moved a figure by up to 7 %: start-up (the schemas' compilation among it)
does not cost the same twice.

Compare two versions of the code by running this script from each checkout.  No assertions:
speed is measured, not asserted.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

#: What callgrind counted since the counters were last zeroed, in a dump ("totals: N").
_TOTALS = re.compile(r"^totals: (\d+)", re.MULTILINE)
#: The stores measured, with the label each is printed under.
STORES = {"memory": "memory (compatible)", "strict": "memory (strict)", "files": "files"}
#: What a child process may record: a store, or the floor.
KINDS = (*STORES, "floor")


def record(kind: str, runs: int, folder: Path) -> None:
    """Build ``runs`` runs (and one more) and insert them into a fresh store of ``kind``
    (``floor``: copy each document by an orjson round trip instead), between the marker calls
    :func:`count` has callgrind watch for.  The extra run goes first, into a store of its own,
    so that what a first insert costs once (imports, compiling the schemas) is not counted."""
    import random
    import uuid

    from bench_runengine import insert_floor, make_store, workload

    # The same uids in every process: their hashes decide how dicts and sets probe.
    draw = random.Random(18).getrandbits
    uuid.uuid4 = lambda: uuid.UUID(int=draw(128), version=4)
    docs = workload(runs + 1)
    warm, docs = docs[:26], docs[26:]
    if kind == "floor":
        insert_floor(warm, None)
        os.getppid()
        insert_floor(docs, None)
        os.getpgrp()
        return
    store = make_store(kind, folder / "warm")
    for name, doc in warm:
        store.insert(name, doc)
    store.close()
    store = make_store(kind, folder / "timed")
    insert = store.insert
    os.getppid()
    for name, doc in docs:
        insert(name, doc)
    os.getpgrp()
    store.close()


def count(kind: str, runs: int, valgrind: str, scratch: Path) -> float:
    """Instructions per run of ``kind``: one process running :func:`record` under callgrind,
    counted between the markers."""
    folder = scratch / kind
    out = scratch / f"{kind}.callgrind"
    command = [valgrind, "--tool=callgrind", f"--callgrind-out-file={out}",
               "--zero-before=getppid", "--dump-before=getpgrp",
               sys.executable, str(Path(__file__).resolve()), "--child", kind,
               "--runs", str(runs), "--folder", str(folder)]
    done = subprocess.run(command, capture_output=True, text=True,
                          env={**os.environ, "PYTHONHASHSEED": "0"})
    marked = out.with_name(out.name + ".1")  # the dump made at getpgrp
    found = _TOTALS.search(marked.read_text()) if marked.exists() else None
    if done.returncode != 0 or found is None:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}) or dumped no count "
                         f"at the marker:\n{done.stdout}\n{done.stderr[-2000:]}")
    shutil.rmtree(folder, ignore_errors=True)
    for dump in scratch.glob(f"{out.name}*"):
        dump.unlink()
    return int(found.group(1)) / runs


def figure(kind: str, runs: int, repeat: int, valgrind: str, scratch: Path
           ) -> tuple[float, float, float]:
    """``(median, lowest, highest)`` of :func:`count` over ``repeat`` processes."""
    counts = sorted(count(kind, runs, valgrind, scratch) for _ in range(repeat))
    return statistics.median(counts), counts[0], counts[-1]


def shown(counts: tuple[float, float, float]) -> str:
    """A figure, with its range when there were several pairs."""
    median, low, high = counts
    text = f"{median:12,.0f}"
    return text if low == high else f"{text}   ({low:,.0f} to {high:,.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3,
                        help="processes per figure (the median is printed)")
    parser.add_argument("--stores", default="memory,strict,files",
                        help="comma-separated subset of memory, strict (memory store, strict "
                             "policy) and files")
    parser.add_argument("--valgrind", default="valgrind", help="the valgrind command")
    parser.add_argument("--child", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        record(args.child, args.runs, args.folder)
        return
    stores = [s for s in args.stores.split(",") if s]
    unknown = set(stores) - set(STORES)
    if unknown:
        parser.error(f"unknown stores {sorted(unknown)}; choose from memory, strict, files")
    if shutil.which(args.valgrind) is None:
        raise SystemExit(f"{args.valgrind!r} was not found: install valgrind (Debian: "
                         "apt-get install valgrind) or name it with --valgrind")
    with tempfile.TemporaryDirectory(prefix="bench-instructions-") as tmp:
        scratch = Path(tmp)
        floor = figure("floor", args.runs, args.repeat, args.valgrind, scratch)
        print(f"{args.runs:,} RunEngine-shaped runs of 26 documents, inserted one by one "
              "with store.insert, validation on; instructions per run (user space), median "
              f"of {args.repeat} process(es)")
        print(f"  {'floor (orjson copy)':22s} {shown(floor)}")
        for kind in stores:
            ours = figure(kind, args.runs, args.repeat, args.valgrind, scratch)
            print(f"  {STORES[kind]:22s} {shown(ours)}   {ours[0] / floor[0]:.1f}x the floor",
                  flush=True)


if __name__ == "__main__":
    main()
