"""BlueskyEventStream: one stream of a run as an ``xarray.Dataset`` (the only xarray import).

``read()`` is built column-wise from event pages by the same code as ``get_table`` (one numpy
column per field, assembled once), so it is as fast.  ``to_dask()`` gives the same Dataset
with dask arrays; external data (detector frames) is read only when computed, one task per
datum.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import xarray

from .._reading import ReadContext, RunView
from ..replay import descriptors_of_stream
from ..tables import _read_descriptor
from .documents import wrap

__all__ = ["BlueskyEventStream"]

#: numpy types of a data key's JSON dtype, looked up with whatever the descriptor holds.
_DTYPES: dict[Any, Any] = {"number": np.float64, "integer": np.int64, "boolean": np.bool_}


class BlueskyEventStream:
    """One stream of a run: ``read()``, ``to_dask()``, ``metadata``, ``config``.

    Calling it with ``include=[...]`` or ``exclude=[...]`` returns the stream restricted to
    those variables (the ``time`` coordinate is always kept).  Streams come from
    ``run[name]`` / ``run.<name>``.

    Parameters
    ----------
    context
        The read context of the catalog the run came from.
    run
        The run's documents (transformed once).
    name
        The stream name.
    include, exclude
        Variables to keep or to drop (not both).
    """

    def __init__(self, context: ReadContext, run: RunView, name: str, *,
                 include: Iterable[str] | None = None,
                 exclude: Iterable[str] | None = None) -> None:
        if include is not None and exclude is not None:
            raise ValueError("Give include or exclude, not both.")
        self._context = context
        self._run = run
        self.name = name
        self._include = None if include is None else list(include)
        self._exclude = set(exclude or ())
        self._shape_metadata: dict[str, Any] = {}

    def __call__(self, *, include: Iterable[str] | None = None,
                 exclude: Iterable[str] | None = None) -> BlueskyEventStream:
        """This stream restricted to some variables."""
        return BlueskyEventStream(self._context, self._run, self.name, include=include,
                                  exclude=exclude)

    def __repr__(self) -> str:
        return f"<BlueskyEventStream {self.name!r} from Run {self._run.uid[:8]}...>"

    # ------------------------------------------------------------------ pieces
    def _descriptors(self) -> list[dict[str, Any]]:
        found = descriptors_of_stream(self._run.descriptors(), self.name)
        return sorted(found, key=lambda d: d.get("time", 0))

    def _fields(self) -> list[str]:
        names: dict[str, None] = {}
        for d in self._descriptors():
            for k in d["data_keys"]:
                names.setdefault(k, None)
        out = [k for k in names if k not in self._exclude]
        if self._include is not None:
            out = [k for k in out if k in self._include]
        return out

    def _dims(self) -> dict[str, tuple[str, ...]]:
        """Extra dimension names per field: the data key's ``dims`` or dim_0, dim_1, ..."""
        counter = 0
        dims: dict[str, tuple[str, ...]] = {}
        for descriptor in self._descriptors():
            for key, spec in descriptor["data_keys"].items():
                if key in dims:
                    continue
                shape = spec.get("shape") or []
                if spec.get("dims"):
                    dims[key] = tuple(spec["dims"])
                else:
                    dims[key] = tuple(f"dim_{counter + i}" for i in range(len(shape)))
                    counter += len(shape)
        return dims

    def _objects(self) -> dict[str, str]:
        owners: dict[str, str] = {}
        for descriptor in self._descriptors():
            for device, keys in (descriptor.get("object_keys") or {}).items():
                for key in keys:
                    owners.setdefault(key, device)
        return owners

    def _data_keys(self) -> dict[str, dict[str, Any]]:
        specs: dict[str, dict[str, Any]] = {}
        for descriptor in self._descriptors():
            for key, spec in descriptor["data_keys"].items():
                specs.setdefault(key, spec)
        return specs

    # ------------------------------------------------------------------ reading
    def _columns(self, fill: bool) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        context = self._context
        fields = set(self._fields())
        times: list[np.ndarray] = []
        parts: dict[str, list[np.ndarray]] = {k: [] for k in self._fields()}
        run = self._run.docs()
        for descriptor in self._descriptors():
            wanted = [k for k in descriptor["data_keys"] if k in fields]
            if not wanted:
                continue
            external = [k for k in wanted if descriptor["data_keys"][k].get("external")]
            filler = context.filler(True) if fill and external else None
            block = _read_descriptor(
                context.store, run, descriptor, lambda k, w=set(wanted): k in w, True,
                external if fill else False, filler,
            )
            if block is None:
                continue
            n = len(block.time)
            times.append(block.time)
            for key in parts:
                if key in block.columns:
                    parts[key].append(block.columns[key])
                else:  # a field another descriptor of the stream lacks
                    parts[key].append(np.full(n, np.nan))
        time = np.concatenate(times) if times else np.empty(0, dtype=np.float64)
        return time, {k: np.concatenate(v) if v else np.empty(0) for k, v in parts.items()}

    def _variable(self, key: str, column: np.ndarray, spec: Mapping[str, Any],
                  dims: tuple[str, ...]) -> np.ndarray:
        shape = tuple(spec.get("shape") or ())
        if len(column) == 0:
            return np.empty((0, *shape), dtype=_DTYPES.get(spec.get("dtype"), np.float64))
        if column.dtype == object and len(column) and isinstance(column[0], np.ndarray | list):
            try:
                return np.stack([np.asarray(v) for v in column])
            except ValueError:  # ragged frames stay one object per event
                return column
        return column

    def _dataset(self, time: np.ndarray, columns: Mapping[str, Any]) -> xarray.Dataset:
        dims = self._dims()
        owners = self._objects()
        specs = self._data_keys()
        variables = {}
        for key, values in columns.items():
            extra = dims.get(key, ())
            if getattr(values, "ndim", 1) - 1 != len(extra):
                extra = tuple(f"{key}_dim_{i}" for i in range(getattr(values, "ndim", 1) - 1))
            attrs = {"object": owners.get(key, key)}
            for name in ("units", "source", "precision"):
                if name in specs.get(key, {}):
                    attrs[name] = specs[key][name]
            variables[key] = xarray.Variable(("time", *extra), values, attrs=attrs)
        dataset = xarray.Dataset(variables, coords={"time": ("time", time)})
        self._shape_metadata = {
            "dims": dict(dataset.sizes),
            "data_vars": {k: list(v.dims) for k, v in dataset.data_vars.items()},
            "coords": tuple(dataset.coords),
        }
        return dataset

    def read(self) -> xarray.Dataset:
        """The stream's events, external data filled, as an ``xarray.Dataset``.

        One variable per field (descriptor order), first dimension ``time`` (float epoch
        seconds, the only coordinate), further dimensions from the data key's ``dims`` or
        ``dim_0, dim_1, ...`` (a counter shared across the stream's fields); each variable's
        ``attrs['object']`` names its device.
        """
        time, columns = self._columns(fill=True)
        specs = self._data_keys()
        dims = self._dims()
        values = {k: self._variable(k, c, specs.get(k, {}), dims.get(k, ()))
                  for k, c in columns.items()}
        return self._dataset(time, values)

    def to_dask(self) -> xarray.Dataset:
        """Like :meth:`read`, but variables are dask arrays; external data loads lazily."""
        import dask.array as da
        from dask.delayed import delayed

        context = self._context
        time, columns = self._columns(fill=False)
        specs = self._data_keys()
        dims = self._dims()
        values: dict[str, Any] = {}
        for key, column in columns.items():
            spec = specs.get(key, {})
            if spec.get("external"):
                shape = tuple(spec.get("shape") or ())
                dtype = _DTYPES.get(spec.get("dtype"), np.float64)
                load = delayed(context.load_datum, pure=True)
                chunks = [da.from_delayed(load(datum_id), shape=shape, dtype=dtype)
                          for datum_id in column]
                values[key] = (da.stack(chunks) if chunks
                               else da.zeros((0, *shape), dtype=dtype))
            else:
                values[key] = da.from_array(
                    self._variable(key, column, spec, dims.get(key, ())), chunks=-1)
        return self._dataset(time, values)

    @property
    def timestamps(self) -> xarray.Dataset:
        """Per-reading timestamps, in the same structure as :meth:`read`."""
        store = self._context.store
        fields = self._fields()
        times: list[Any] = []
        cols: dict[str, list[Any]] = {k: [] for k in fields}
        for descriptor in self._descriptors():
            for page in store.iter_event_pages(descriptor["uid"], fields=fields):
                n = len(page["time"])
                times.extend(page["time"])
                for k in fields:
                    cols[k].extend(page["timestamps"].get(k, [np.nan] * n))
        return xarray.Dataset(
            {k: ("time", np.asarray(v, dtype=np.float64)) for k, v in cols.items()},
            coords={"time": ("time", np.asarray(times, dtype=np.float64))},
        )

    # ------------------------------------------------------------------ metadata
    @property
    def metadata(self) -> dict[str, Any]:
        """``start``, ``stop`` (None without one), this stream's ``descriptors``, and, once
        read, ``dims``, ``data_vars`` and ``coords``."""
        stop = self._run.stop()
        out: dict[str, Any] = {
            "start": dict(self._run.start),
            "stop": None if stop is None else dict(stop),
            "descriptors": [wrap("descriptor", d) for d in self._descriptors()],
        }
        out.update(self._shape_metadata)
        return out

    @property
    def config(self) -> dict[str, _DeviceConfig]:
        """``{device: reader}``; ``stream.config['det'].read()`` gives its configuration."""
        devices: dict[str, None] = {}
        for descriptor in self._descriptors():
            for device in descriptor.get("configuration") or {}:
                devices.setdefault(device, None)
        return {d: _DeviceConfig(self, d, "data") for d in devices}

    @property
    def config_timestamps(self) -> dict[str, _DeviceConfig]:
        """Like :attr:`config`, with the configuration readings' timestamps."""
        return {d: _DeviceConfig(self, d, "timestamps") for d in self.config}


class _DeviceConfig:
    """One device's configuration in a stream, repeated along ``time``."""

    def __init__(self, stream: BlueskyEventStream, device: str, part: str) -> None:
        self._stream = stream
        self._device = device
        self._part = part

    def read(self) -> xarray.Dataset:
        """A Dataset of the device's configuration values, one row per event."""
        store = self._stream._context.store
        times: list[Any] = []
        cols: dict[str, list[Any]] = {}
        for descriptor in self._stream._descriptors():
            values = ((descriptor.get("configuration") or {}).get(self._device) or {}).get(
                self._part) or {}
            n = 0
            for page in store.iter_event_pages(descriptor["uid"], fields=[]):
                n += len(page["time"])
                times.extend(page["time"])
            for key, value in values.items():
                cols.setdefault(key, [np.nan] * (len(times) - n)).extend([value] * n)
            for col in cols.values():
                if len(col) < len(times):
                    col.extend([np.nan] * (len(times) - len(col)))
        return xarray.Dataset(
            {k: ("time", np.asarray(v)) for k, v in cols.items()},
            coords={"time": ("time", np.asarray(times, dtype=np.float64))},
        )

    to_dask = read
