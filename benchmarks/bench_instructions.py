"""CPU cost of recording RunEngine-shaped runs, counted in instructions instead of seconds.

Run: python benchmarks/bench_instructions.py [--runs 200] [--stores memory,strict,files]

On a shared machine the same code's docs/s moves by 15 to 30 % from one invocation to the next
(``bench_runengine.py``'s figures), so a change worth a few percent cannot be told from noise
there.  This counts the instructions the recording takes under ``valgrind --tool=callgrind``:
the same count whatever else the machine is doing.  Each figure is the difference of two
processes that build the same ``runs`` runs (``bench_runengine.workload``) and insert all of
them or none with ``store.insert``, divided by ``runs``: interpreter start-up, imports and
building the documents cancel out.  Beside each store, the floor: the same documents copied
by an ``orjson`` round trip, as ``bench_runengine.py``'s floor does.  Only user-space
instructions are counted: the kernel's part of the files store (its writes and fsyncs) and
time spent waiting are not, which is why docs/s stays the figure the targets are about.
``PYTHONHASHSEED`` is fixed; the random uids move a figure by about 0.2 % (two invocations
of 100 runs: 3,821,929 and 3,829,543 for the memory store).

Compare two versions of the code by running this script from each checkout.  No assertions:
speed is measured, not asserted.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

#: What a process counted, from callgrind's summary on stderr ("==PID== Collected : N").
_COLLECTED = re.compile(r"^==\d+== Collected : (\d+)", re.MULTILINE)
#: The stores measured, with the label each is printed under.
STORES = {"memory": "memory (compatible)", "strict": "memory (strict)", "files": "files"}
#: What a child process may record: a store, or the floor.
KINDS = (*STORES, "floor")


def record(kind: str, runs: int, inserted: int, folder: Path) -> None:
    """Build ``runs`` runs and insert the first ``inserted`` of them into a fresh store of
    ``kind`` (``floor``: copy each document by an orjson round trip instead).  One more run
    goes first into a store of its own either way, so that what a first insert costs once
    (imports, compiling the schemas) is not counted."""
    from bench_runengine import insert_floor, make_store, workload

    docs = workload(runs + 1)
    warm, docs = docs[:26], docs[26:][: inserted * 26]
    if kind == "floor":
        insert_floor(warm, None)
        insert_floor(docs, None)
        return
    for part, where in ((warm, folder / "warm"), (docs, folder / "timed")):
        store = make_store(kind, where)
        insert = store.insert
        for name, doc in part:
            insert(name, doc)
        store.close()


def count(kind: str, runs: int, inserted: int, valgrind: str, scratch: Path) -> int:
    """Instructions of one process running :func:`record` under callgrind."""
    folder = scratch / f"{kind}-{inserted}"
    command = [valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null",
               sys.executable, str(Path(__file__).resolve()), "--child", kind,
               "--runs", str(runs), "--inserted", str(inserted), "--folder", str(folder)]
    done = subprocess.run(command, capture_output=True, text=True,
                          env={**os.environ, "PYTHONHASHSEED": "0"})
    found = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n"
                         f"{done.stdout}\n{done.stderr[-2000:]}")
    shutil.rmtree(folder, ignore_errors=True)
    return int(found.group(1))


def per_run(kind: str, runs: int, valgrind: str, scratch: Path) -> float:
    """Instructions per run of ``kind``: all runs inserted, less none inserted."""
    return (count(kind, runs, runs, valgrind, scratch)
            - count(kind, runs, 0, valgrind, scratch)) / runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--stores", default="memory,strict,files",
                        help="comma-separated subset of memory, strict (memory store, strict "
                             "policy) and files")
    parser.add_argument("--valgrind", default="valgrind", help="the valgrind command")
    parser.add_argument("--child", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--inserted", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        record(args.child, args.runs, args.inserted, args.folder)
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
        floor = per_run("floor", args.runs, args.valgrind, scratch)
        print(f"{args.runs:,} RunEngine-shaped runs of 26 documents, inserted one by one "
              "with store.insert, validation on; instructions per run (user space)")
        print(f"  {'floor (orjson copy)':22s} {floor:12,.0f}")
        for kind in stores:
            ours = per_run(kind, args.runs, args.valgrind, scratch)
            print(f"  {STORES[kind]:22s} {ours:12,.0f}   {ours / floor:5.1f}x the floor",
                  flush=True)


if __name__ == "__main__":
    main()
