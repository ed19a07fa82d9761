"""BlueskyRun: one run in the v2 API (metadata, streams, documents replay)."""

from __future__ import annotations

import datetime as _dt
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .._reading import ReadContext, RunView
from ..utils import stream_name_of
from .documents import Document, wrap

if TYPE_CHECKING:
    from .stream import BlueskyEventStream

__all__ = ["BlueskyRun"]

_FILL_CHOICES = ("yes", "no", "delayed")


class BlueskyRun:
    """One run: ``run.metadata['start']``, ``run.metadata['stop']`` (``None`` without a
    stop), streams as items and attributes (``run.primary``, ``run['baseline']``) and
    ``run.documents(fill=...)``.
    """

    def __init__(self, context: ReadContext, view: RunView) -> None:
        self._context = context
        self._view = view
        self._start = view.start
        self._streams: dict[str, BlueskyEventStream] = {}

    # ------------------------------------------------------------------ metadata
    @property
    def uid(self) -> str:
        """The start uid."""
        return str(self._start["uid"])

    def _raw_stop(self) -> dict[str, Any] | None:
        return self._view.stop()

    def _raw_descriptors(self) -> list[dict[str, Any]]:
        return self._view.descriptors()

    @property
    def metadata(self) -> dict[str, Any]:
        """``{'start': Start, 'stop': Stop or None}``."""
        stop = self._raw_stop()
        return {"start": wrap("start", self._start),
                "stop": None if stop is None else wrap("stop", stop)}

    @property
    def v1(self) -> Any:
        """The v1 Header of this run."""
        return self._context.owner[self.uid]

    # ------------------------------------------------------------------ streams
    def _stream_names(self) -> list[str]:
        names: dict[str, None] = {}
        for d in self._raw_descriptors():
            names.setdefault(stream_name_of(d), None)
        return list(names)

    def __iter__(self) -> Iterator[str]:
        return iter(self._stream_names())

    def __len__(self) -> int:
        return len(self._stream_names())

    def __contains__(self, name: object) -> bool:
        return name in self._stream_names()

    def __getitem__(self, name: str) -> BlueskyEventStream:
        from .stream import BlueskyEventStream

        if name not in self._stream_names():
            raise KeyError(
                f"Run {self.uid[:8]} has no stream {name!r}; streams: "
                f"{', '.join(self._stream_names()) or 'none'}."
            )
        if name not in self._streams:
            self._streams[name] = BlueskyEventStream(self._context, self._view, name)
        return self._streams[name]

    def __getattr__(self, name: str) -> BlueskyEventStream:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(
                f"BlueskyRun has no attribute or stream {name!r}; streams: "
                f"{', '.join(self._stream_names()) or 'none'}."
            ) from None

    def __dir__(self) -> list[str]:
        names = [n for n in self._stream_names() if n.isidentifier()]
        return sorted(set(super().__dir__()) | set(names))

    def _ipython_key_completions_(self) -> list[str]:
        return self._stream_names()

    def __call__(self, **kwargs: Any) -> BlueskyRun:
        """This run (intake style: ``run()`` and ``run.get()``)."""
        return self

    get = __call__

    def read(self) -> Any:
        """Not available on a run: read a stream, e.g. ``run.primary.read()``."""
        raise NotImplementedError("Read a stream instead, e.g. run.primary.read().")

    def to_dask(self) -> Any:
        """Not available on a run: use a stream, e.g. ``run.primary.to_dask()``."""
        raise NotImplementedError("Use a stream instead, e.g. run.primary.to_dask().")

    # ------------------------------------------------------------------ documents
    def documents(self, *, fill: str, strict_order: bool = True
                  ) -> Iterator[tuple[str, Document]]:
        """Replay the run as ``(name, doc)`` with immutable document objects.

        Parameters
        ----------
        fill
            ``'yes'`` (external data loaded as numpy arrays), ``'no'`` (datum ids) or
            ``'delayed'`` (dask arrays loaded when computed).  Required, keyword-only.
        strict_order
            Events come as one ``event_page`` per event, time-ordered across streams.

        Notes
        -----
        Order: ``start``; descriptors; each resource and its datums (as ``datum_page``)
        before the first event referencing them; ``event_page`` documents; ``stop`` if the
        run has one.
        """
        if fill not in _FILL_CHOICES:
            raise ValueError(f"fill must be one of {', '.join(map(repr, _FILL_CHOICES))}, "
                             f"got {fill!r}.")
        from ..documents import event_to_page

        filler = self._context.filler(fill == "yes") if fill != "no" else None
        delayed = fill == "delayed"
        for name, doc in self._context.replay([self._view], fill=fill == "yes",
                                              filler=filler):
            if name == "event":
                if delayed:
                    doc = self._delay(doc)
                yield "event_page", wrap("event_page", event_to_page(doc))
            elif name == "datum":
                yield "datum_page", wrap("datum_page", {
                    "resource": doc["resource"], "datum_id": [doc["datum_id"]],
                    "datum_kwargs": {k: [v] for k, v in doc["datum_kwargs"].items()}})
            else:
                yield name, wrap(name, doc)

    def _delay(self, event: dict[str, Any]) -> dict[str, Any]:
        import dask.array
        from dask.delayed import delayed

        descriptor = next(d for d in self._raw_descriptors() if d["uid"] == event["descriptor"])
        out = {**event, "data": dict(event["data"]), "filled": dict(event.get("filled", {}))}
        for key, spec in descriptor["data_keys"].items():
            if not spec.get("external") or not isinstance(event["data"].get(key), str):
                continue
            datum_id = event["data"][key]
            loader = delayed(self._context.load_datum)(datum_id)
            shape = tuple(spec.get("shape") or ())
            out["data"][key] = dask.array.from_delayed(loader, shape=shape, dtype=float)
            out["filled"][key] = datum_id
        return out

    def canonical(self, *, fill: str, strict_order: bool = True
                  ) -> Iterator[tuple[str, Document]]:
        """Deprecated alias of :meth:`documents`."""
        warnings.warn("BlueskyRun.canonical is deprecated; use documents().", UserWarning,
                      stacklevel=2)
        return self.documents(fill=fill, strict_order=strict_order)

    def read_canonical(self) -> Iterator[tuple[str, Document]]:
        """Deprecated: ``documents(fill='yes')``."""
        warnings.warn("BlueskyRun.read_canonical is deprecated; use documents(fill='yes').",
                      UserWarning, stacklevel=2)
        return self.documents(fill="yes")

    # ------------------------------------------------------------------ display
    def __repr__(self) -> str:
        return f"<BlueskyRun uid={self.uid!r}>"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        stop = self._raw_stop()
        tz = self._context.zone()

        def fmt(t: Any) -> str:
            if not isinstance(t, int | float):
                return "?"
            return _dt.datetime.fromtimestamp(t, tz).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]

        lines = [
            "BlueskyRun",
            f"  uid={self.uid!r}",
            f"  exit_status={(stop or {}).get('exit_status', '?')!r}",
            f"  {fmt(self._start.get('time'))} -- {fmt((stop or {}).get('time'))}",
            "  Streams:",
        ]
        lines.extend(f"    * {name}" for name in self._stream_names())
        printer.text("\n".join(lines))
