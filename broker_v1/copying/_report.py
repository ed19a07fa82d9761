"""What a copy reports: per-run results, files copied, :class:`CopyReport` and its summary;
:class:`CopyInterrupted` for Ctrl-C; the progress bar's figures."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any


# --------------------------------------------------------------------------- report types
@dataclass
class RunResult:
    """What happened to one run.

    Attributes
    ----------
    uid
        The run's start uid.
    status
        ``"copied"`` (new in the destination), ``"completed"`` (an incomplete earlier copy was
        finished), ``"skipped"`` (already there, identical), ``"conflict"`` (a different
        document with the same uid is in the destination; nothing of it was overwritten) or
        ``"failed"`` (an error, or the verification found different counts).
    documents
        Documents read from the source for this run (event and datum pages counted by rows).
    message
        Why, for conflicts and failures.
    """

    uid: str
    status: str
    documents: int = 0
    message: str = ""


@dataclass
class FileCopy:
    """One external file copied (or found already present) for ``copy_files``."""

    resource: str
    source: str
    destination: str
    size: int
    sha256: str
    status: str  # "copied" or "present"


@dataclass
class FileProblem:
    """A resource whose files could not be copied, or could not be listed."""

    resource: str
    spec: str
    path: str
    message: str
    #: True when the files could not even be listed (no handler): the resource was copied
    #: unchanged; False when listed files failed to copy: the run was not completed.
    unlisted: bool = False


@dataclass
class CopyProgress:
    """A snapshot handed to a ``progress`` callable after each run."""

    runs_done: int
    runs_total: int | None
    documents: int
    bytes: int
    elapsed: float
    last: RunResult


@dataclass
class CopyReport:
    """The outcome of :func:`copy_runs`.

    ``ok`` is False when any run conflicted or failed or any listed file failed to copy.
    """

    source: str
    destination: str
    runs: list[RunResult] = field(default_factory=list)
    files: list[FileCopy] = field(default_factory=list)
    file_problems: list[FileProblem] = field(default_factory=list)
    documents: int = 0
    bytes: int = 0
    file_bytes: int = 0
    elapsed: float = 0.0
    interrupted: bool = False
    #: ``{(run uid, field): values}`` of external values with no datum in the source (e.g.
    #: the placeholders of tiled's SQL layout) copied as they are: the copy cannot fill them.
    unresolved: dict[tuple[str, str], int] = field(default_factory=dict)
    #: Whether files were copied (``copy_files``): says what to do about :attr:`unresolved`.
    copy_files: bool = False

    def _with(self, status: str) -> list[RunResult]:
        return [r for r in self.runs if r.status == status]

    @property
    def copied(self) -> list[str]:
        """Uids of runs copied anew."""
        return [r.uid for r in self._with("copied")]

    @property
    def completed(self) -> list[str]:
        """Uids of runs whose earlier, incomplete copy was finished."""
        return [r.uid for r in self._with("completed")]

    @property
    def skipped(self) -> list[str]:
        """Uids of runs already identical in the destination."""
        return [r.uid for r in self._with("skipped")]

    @property
    def conflicts(self) -> list[RunResult]:
        """Runs that differ in the destination (never overwritten)."""
        return self._with("conflict")

    @property
    def failed(self) -> list[RunResult]:
        """Runs that could not be copied or did not verify."""
        return self._with("failed")

    @property
    def ok(self) -> bool:
        """No conflict, no failure, no file that failed to copy."""
        return not (self.conflicts or self.failed
                    or any(not p.unlisted for p in self.file_problems))

    def file_pairs(self) -> list[tuple[str, str]]:
        """``(old_path, new_path)`` of every external file, as databroker's ``export`` returns."""
        return [(f.source, f.destination) for f in self.files]

    def summary(self) -> str:
        """A few human-readable lines: counts, rate, then each conflict and failure."""
        rate = self.documents / self.elapsed if self.elapsed > 0 else 0.0
        parts = [
            f"{len(self.copied)} copied",
            f"{len(self.completed)} completed",
            f"{len(self.skipped)} already present",
            f"{len(self.conflicts)} conflicts",
            f"{len(self.failed)} failed",
        ]
        lines = [
            f"{'Interrupted after' if self.interrupted else 'Copied'} "
            f"{_plural(len(self.runs), 'run')} from {self.source} to {self.destination}: "
            + ", ".join(parts) + ".",
            f"{self.documents:,} documents, {_human_bytes(self.bytes)} in {self.elapsed:.1f} s "
            f"({rate:,.0f} documents/s).",
        ]
        if self.files or self.file_problems:
            present = sum(1 for f in self.files if f.status == "present")
            lines.append(
                f"External files: {len(self.files) - present} copied "
                f"({_human_bytes(self.file_bytes)}), {present} already present, "
                f"{len(self.file_problems)} problems."
            )
        if self.unresolved:
            lines.append(self._unresolved_note())
        for r in self.conflicts + self.failed:
            lines.append(f"  {r.status}: run {r.uid}: {r.message}")
        for p in self.file_problems[:20]:
            lines.append(f"  files of resource {p.resource} ({p.spec}): {p.message}")
        if len(self.file_problems) > 20:
            lines.append(f"  ... and {len(self.file_problems) - 20} more file problems.")
        if self.interrupted:
            lines.append("Run the same copy again to resume; nothing will be duplicated.")
        return "\n".join(lines)

    def _unresolved_note(self) -> str:
        fields = sorted({f for _, f in self.unresolved})
        runs = len({r for r, _ in self.unresolved})
        note = (f"External data not copied: {sum(self.unresolved.values()):,} values of "
                f"{'field' if len(fields) == 1 else 'fields'} {', '.join(fields)} in "
                f"{_plural(runs, 'run')} have no resource or datum document in the source (its "
                "own placeholder ids, as tiled's SQL layout gives), so they were copied as they "
                "are and the copy cannot fill them.")
        if self.copy_files:
            return note + " The source could not read them either."
        return note + (" Copy into a new destination with --copy-files (copy_files=True) to "
                       "write the data into files with resources and datums, or read it from "
                       "the source with fill=True.")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable form (the CLI's ``--json``)."""
        return {
            "source": self.source,
            "destination": self.destination,
            "ok": self.ok,
            "interrupted": self.interrupted,
            "copied": self.copied,
            "completed": self.completed,
            "skipped": self.skipped,
            "conflicts": [{"uid": r.uid, "message": r.message} for r in self.conflicts],
            "failed": [{"uid": r.uid, "message": r.message} for r in self.failed],
            "documents": self.documents,
            "bytes": self.bytes,
            "elapsed": self.elapsed,
            "files": [f.__dict__ for f in self.files],
            "file_problems": [p.__dict__ for p in self.file_problems],
            "unresolved": [{"uid": r, "field": f, "values": n}
                           for (r, f), n in self.unresolved.items()],
        }


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover



class CopyInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`copy_runs`; ``.report`` holds what was done until then."""

    def __init__(self, report: CopyReport) -> None:
        super().__init__("copy interrupted")
        self.report = report


def _rates(report: CopyReport) -> str:
    if report.elapsed <= 0:
        return ""
    return (f"{report.documents / report.elapsed:,.0f} docs/s, "
            f"{_human_bytes(report.bytes / report.elapsed)}/s")


def _open_bar(total: int | None, *, always: bool) -> Any:
    from tqdm import tqdm

    # disable=None: tqdm shows the bar only when stderr is a terminal.
    return tqdm(total=total, unit="run", file=sys.stderr, disable=False if always else None,
                mininterval=0.5, dynamic_ncols=True, leave=True)
