"""External data: the handler registry (``db.reg``), ``root_map`` and filling.

Events of detectors that write files hold a datum id instead of the data.  A ``resource``
(spec, root, resource_path, resource_kwargs) and a ``datum`` (datum_kwargs) say where the frame
lives; a *handler* class registered for the spec is built once per resource with the file path
and reads frames when called with the datum's kwargs.

The registry merges, lowest precedence first: handlers advertised by installed packages in the
``databroker.handlers`` entry-point group (when ``auto_register``), the config's ``handlers:``
block, and handlers registered at run time.  A per-call ``handler_registry=`` layers on top.

Handler instances, resources and datums are cached in bounded LRU caches so that looping over
many runs does not grow memory without limit.  event-model's ``Filler`` builds handlers (its
``root_map`` and path rules); errors are translated into messages that name the spec, the
resource, the roots and the path tried.
"""

from __future__ import annotations

import collections
import importlib
import os
import threading
import types
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping, Sequence
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, cast

from .errors import ConfigError, ExternalDataError, MissingHandler

if TYPE_CHECKING:
    from event_model.documents import Resource

__all__ = ["DataFiller", "HandlerRegistry", "Images", "LRUCache", "fill_events", "import_handler"]

ENTRY_POINT_GROUP = "databroker.handlers"


class LRUCache(MutableMapping[Any, Any]):
    """A thread-safe mapping that forgets its least recently used entries beyond ``maxsize``.

    Evicted values with a ``close()`` method (open files) are closed.
    """

    def __init__(self, maxsize: int = 64) -> None:
        self.maxsize = maxsize
        self._data: collections.OrderedDict[Any, Any] = collections.OrderedDict()
        self._lock = threading.Lock()

    def __getitem__(self, key: Any) -> Any:
        with self._lock:
            value = self._data[key]
            self._data.move_to_end(key)
            return value

    def __setitem__(self, key: Any, value: Any) -> None:
        evicted = []
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                evicted.append(self._data.popitem(last=False)[1])
        for old in evicted:
            _close(old)

    def __delitem__(self, key: Any) -> None:
        with self._lock:
            value = self._data.pop(key)
        _close(value)

    def __iter__(self) -> Any:
        return iter(list(self._data))

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        """Forget every entry, closing the values that can be closed."""
        with self._lock:
            values = list(self._data.values())
            self._data.clear()
        for value in values:
            _close(value)


def _close(value: Any) -> None:
    close = getattr(value, "close", None)
    if callable(close):
        try:
            close()
        except Exception:  # a handler failing to close must not break reading
            pass


def import_handler(module: str, cls: str, *, source: str | None = None, key: str = "") -> Any:
    """Import a handler class named in a config (the config is trusted to name code)."""
    try:
        return getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError) as err:
        raise ConfigError(
            f"{source or 'config'}: {key or 'handlers'} names {module}.{cls}, which cannot be "
            f"imported ({err}). Install the package that provides it or fix the name.",
            source=source,
            key=key or None,
        ) from err


def _discovered_handlers() -> dict[str, Any]:
    found: dict[str, Any] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            found[ep.name] = ep.load()
        except Exception as err:  # one broken plugin must not stop reading
            warnings.warn(
                f"Skipping handler {ep.name!r} from entry point {ep.value!r}: {err}",
                UserWarning,
                stacklevel=3,
            )
    return found


class HandlerRegistry:
    """``db.reg``: which handler class reads each resource ``spec``, and the ``root_map``.

    Parameters
    ----------
    handlers
        ``{spec: handler class}`` from config; overrides discovered handlers.
    root_map
        ``{old_root: new_root}`` applied to resource roots before building handlers.
    auto_register
        Also use handlers advertised in the ``databroker.handlers`` entry-point group
        (discovered lazily, on first use).
    """

    def __init__(
        self,
        handlers: Mapping[str, Any] | None = None,
        root_map: Mapping[str, str] | None = None,
        *,
        auto_register: bool = True,
    ) -> None:
        self._auto = auto_register
        self._discovered: dict[str, Any] | None = None if auto_register else {}
        self._registered: dict[str, Any] = dict(handlers or {})
        self._removed: set[str] = set()
        self.root_map: dict[str, str] = dict(root_map or {})
        #: Handler instances per (resource uid, handler class); bounded.
        self.handler_cache = LRUCache(64)
        self._lock = threading.Lock()

    def _merged(self) -> dict[str, Any]:
        if self._discovered is None:
            with self._lock:
                if self._discovered is None:
                    self._discovered = _discovered_handlers()
        merged = {k: v for k, v in self._discovered.items() if k not in self._removed}
        merged.update(self._registered)
        return merged

    @property
    def handler_reg(self) -> Mapping[str, Any]:
        """Read-only view of ``{spec: handler class}``."""
        return types.MappingProxyType(self._merged())

    def register_handler(self, key: str, handler: Any, overwrite: bool = False) -> None:
        """Register ``handler`` for resources whose spec is ``key``.

        Registering the same class again is a no-op; a different class for a registered spec
        needs ``overwrite=True`` (else :class:`~broker_v1.utils.DuplicateHandler`).
        """
        current = self._merged().get(key)
        if current is handler:
            return
        if current is not None and not overwrite:
            from event_model import DuplicateHandler

            raise DuplicateHandler(
                f"A handler for spec {key!r} is already registered ({current!r}). Pass "
                "overwrite=True to replace it."
            )
        self._registered[key] = handler
        self._removed.discard(key)
        self.handler_cache.clear()  # instances of the old class must not be reused

    def deregister_handler(self, key: str) -> None:
        """Forget the handler for ``key`` (an unknown spec is a silent no-op)."""
        self._registered.pop(key, None)
        self._removed.add(key)
        self.handler_cache.clear()

    def set_root_map(self, root_map: Mapping[str, str]) -> None:
        """Replace the root_map (0.13 spelling)."""
        self.root_map.clear()
        self.root_map.update(root_map)
        self.handler_cache.clear()

    def filler(
        self, store: Any, handler_registry: Mapping[str, Any] | None = None, *,
        transform_resource: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> DataFiller:
        """A :class:`DataFiller` reading through ``store``, with a per-call registry on top.

        ``transform_resource`` (the config's ``resource`` transform) is applied to each
        resource the filler reads, once.
        """
        registry = self._merged()
        if handler_registry:
            registry = {**registry, **_resolve_classes(handler_registry)}
            cache: MutableMapping[Any, Any] = LRUCache(16)
        else:
            cache = self.handler_cache
        return DataFiller(store, registry, self.root_map, cache,
                          transform_resource=transform_resource)

    def copy_files(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover - 1.2 shim name
        """Copy a resource's files; see ``broker-v1 copy --copy-files``."""
        raise NotImplementedError("Use Broker.export(..., new_root=...) or broker-v1 copy.")


def _resolve_classes(registry: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for spec, cls in registry.items():
        if isinstance(cls, str):
            module, _, name = cls.rpartition(".")
            cls = import_handler(module, name, key=f"handler_registry.{spec}")
        out[spec] = cls
    return out


class DataFiller:
    """Loads external data for the read paths (implements the ``fill_column`` hook).

    Parameters
    ----------
    store
        Where resources and datums are looked up.
    registry
        ``{spec: handler class}``.
    root_map
        ``{old_root: new_root}``.
    handler_cache
        Where handler instances are kept (bounded).
    transform_resource
        Applied to each resource read from the store (the config's ``resource`` transform).
    """

    def __init__(self, store: Any, registry: Mapping[str, Any], root_map: Mapping[str, str],
                 handler_cache: MutableMapping[Any, Any], *,
                 transform_resource: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                 ) -> None:
        self._store = store
        self._transform_resource = transform_resource
        self._registry = dict(registry)
        self._root_map = root_map
        self._handlers = handler_cache
        self._resources = LRUCache(256)
        import event_model

        self._filler = event_model.Filler(self._registry, root_map=dict(root_map),
                                          retry_intervals=[], inplace=False)

    def _resource(self, uid: str) -> dict[str, Any]:
        try:
            return self._resources[uid]  # type: ignore[no-any-return]
        except KeyError:
            resource: dict[str, Any] = self._store.get_resource(uid)
            if self._transform_resource is not None:
                resource = self._transform_resource(resource)
            self._resources[uid] = resource
            return resource

    def _context(self, resource: Mapping[str, Any]) -> dict[str, Any]:
        root = resource.get("root", "")
        mapped = self._root_map.get(root, root)
        path = os.path.join(mapped, resource.get("resource_path", "")) if mapped else \
            resource.get("resource_path", "")
        return {"spec": resource.get("spec", "?"), "resource": resource.get("uid", "?"),
                "root": root, "mapped_root": mapped, "path": path}

    def _describe(self, ctx: Mapping[str, Any]) -> str:
        mapped = (f"mapped by root_map to {ctx['mapped_root']!r}"
                  if ctx["mapped_root"] != ctx["root"] else "not changed by root_map")
        return (f"spec {ctx['spec']!r}, resource {ctx['resource']}, root {ctx['root']!r} "
                f"({mapped}), path {ctx['path']!r}")

    def handler(self, resource: Mapping[str, Any]) -> Any:
        """The (cached) handler instance for a resource."""
        spec = resource.get("spec")
        cls = self._registry.get(spec) if isinstance(spec, str) else None
        ctx = self._context(resource)
        if cls is None:
            registered = sorted(self._registry)
            raise MissingHandler(
                f"No handler is registered for spec {ctx['spec']!r} (resource "
                f"{ctx['resource']}). Registered specs: {', '.join(registered) or 'none'}. "
                f"Register one with db.reg.register_handler({ctx['spec']!r}, HandlerClass) or "
                "in the config's handlers: block; reading with fill=False always works.",
                spec=ctx["spec"], resource=ctx["resource"], registered=registered,
            )
        key = (resource.get("uid"), cls)
        try:
            return self._handlers[key]
        except KeyError:
            pass
        from event_model import EventModelError

        try:
            handler = self._filler.get_handler(cast("Resource", dict(resource)))
        except EventModelError as err:
            cause = err.__cause__ or err
            raise ExternalDataError(
                f"Could not open external data for {self._describe(ctx)}: {cause}. Check the "
                "file exists there, or fix root_map.",
                **ctx,
            ) from cause
        except Exception as err:
            raise ExternalDataError(
                f"The {cls.__name__} handler failed to open {self._describe(ctx)}: "
                f"{type(err).__name__}: {err}",
                **ctx,
            ) from err
        self._handlers[key] = handler
        return handler

    def load(self, datum: Mapping[str, Any]) -> Any:
        """The data one datum points to, as a numpy array (or scalar)."""
        resource = self._resource(datum["resource"])
        handler = self.handler(resource)
        try:
            value = handler(**datum["datum_kwargs"])
        except Exception as err:
            ctx = self._context(resource)
            raise ExternalDataError(
                f"The {type(handler).__name__} handler failed to read datum "
                f"{datum['datum_id']} ({datum['datum_kwargs']}) of {self._describe(ctx)}: "
                f"{type(err).__name__}: {err}",
                **ctx,
            ) from err
        import numpy as np

        return np.asarray(value)

    def load_datum_id(self, datum_id: str, run_start: str | None = None) -> Any:
        """The data a datum id points to (``run_start``: as in :meth:`load_datum_ids`)."""
        (value,) = self.load_datum_ids([datum_id], run_start=run_start)
        return value

    def load_datum_ids(self, datum_ids: Sequence[Any], *,
                       run_start: str | None = None) -> list[Any]:
        """One value per datum id (non-string cells pass through), read together.

        The store reads them itself when it can (a server's array nodes, few requests);
        otherwise each is read through its resource's handler.  ``run_start``, the run whose
        events hold the ids when known, lets a store that finds datums through their run
        find them without that run having been read first.
        """
        wanted = [d for d in dict.fromkeys(datum_ids) if isinstance(d, str)]
        if not wanted:
            return list(datum_ids)
        served = self._store.read_external(wanted)
        if served is not None:
            return [served[d] if isinstance(d, str) else d for d in datum_ids]
        datums = self._store.get_datums(wanted, run_start=run_start)
        return [self.load(datums[d]) if isinstance(d, str) else d for d in datum_ids]

    def fill_column(self, descriptor: Mapping[str, Any], key: str,
                    datum_ids: Sequence[Any]) -> list[Any]:
        """Load one external column: one value per datum id (non-string cells pass through)."""
        return self.load_datum_ids(datum_ids, run_start=descriptor.get("run_start"))


def fill_events(
    filler: DataFiller, events: Iterable[dict[str, Any]],
    descriptors: Iterable[Mapping[str, Any]], fields: Any = True, inplace: bool = False,
    prepare: Callable[[str, Any], Any] | None = None,
) -> Iterator[Any]:
    """Fill the external fields of events given their descriptors (0.13's ``fill_events``)."""
    by_uid = {d["uid"]: d for d in descriptors}
    wanted = set(fields) if isinstance(fields, list | tuple | set | frozenset) else None
    for event in events:
        descriptor = by_uid[event["descriptor"]]
        keys = [k for k, v in descriptor["data_keys"].items()
                if v.get("external") and fields and (wanted is None or k in wanted)]
        target = event if inplace else {**event, "data": dict(event["data"]),
                                        "filled": dict(event.get("filled") or {})}
        for key in keys:
            value = target["data"].get(key)
            if isinstance(value, str):
                target["data"][key] = filler.load_datum_id(
                    value, run_start=descriptor.get("run_start"))
                target["filled"][key] = value
        yield target if (inplace or prepare is None) else prepare("event", target)


class Images(Sequence[Any]):
    """A lazy sequence of frames (``get_images``): shape ``(n_events, *frame_shape)``.

    Indexing with an integer reads one frame; a slice or list reads just those frames and
    stacks them.  Nothing is read until indexed (``frame_shape`` reads the first frame).
    """

    def __init__(self, datum_ids: list[Any], filler: DataFiller) -> None:
        self._ids = datum_ids
        self._filler = filler

    def __len__(self) -> int:
        return len(self._ids)

    def _frames(self, indices: Sequence[int]) -> list[Any]:
        import numpy as np

        # All at once, so a store that serves the data reads them in few requests.
        values = self._filler.load_datum_ids([self._ids[i] for i in indices])
        return [np.asarray(v) for v in values]

    def __getitem__(self, key: Any) -> Any:
        import numpy as np

        if isinstance(key, slice):
            return np.stack(self._frames(range(*key.indices(len(self)))))
        if isinstance(key, list | tuple | np.ndarray):
            return np.stack(self._frames([int(i) for i in key]))
        (frame,) = self._frames([range(len(self))[int(key)]])
        return frame

    @property
    def frame_shape(self) -> tuple[int, ...]:
        """Shape of one frame."""
        return tuple(self[0].shape) if len(self) else ()

    @property
    def pixel_type(self) -> Any:
        """dtype of the frames."""
        return self[0].dtype

    @property
    def shape(self) -> tuple[int, ...]:
        """``(n_frames, *frame_shape)``."""
        return (len(self), *self.frame_shape)

    def __array__(self, dtype: Any = None, copy: Any = None) -> Any:
        import numpy as np

        return np.asarray(self[:], dtype=dtype)

    def __repr__(self) -> str:
        return f"<Images of {len(self)} frames>"
