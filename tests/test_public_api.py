"""The public surface and the layering rules, enforced."""

from __future__ import annotations

import subprocess
import sys

import pytest

import broker_v1
from broker_v1 import errors
from broker_v1.stores import available_stores, get_store_class, register_store
from broker_v1.stores.base import DocumentStore

SPEC_NAMES = {
    "Broker", "Header", "temp", "temp_config", "ALL", "wrap_in_doct", "wrap_in_deprecated_doct",
    "DeprecatedDoct", "lookup_config", "list_configs", "describe_configs", "InvalidConfig",
}


def test_top_level_names():
    """broker_v1 exports the names spec §11.1 #7 lists, and __all__ matches what exists."""
    assert SPEC_NAMES <= set(broker_v1.__all__)
    for name in broker_v1.__all__:
        assert hasattr(broker_v1, name), name
    for name in errors.__all__:
        assert name in broker_v1.__all__, name
    from broker_v1.utils import DOCT_NAMES, DuplicateHandler  # noqa: F401


def test_error_hierarchy():
    """Every error is a BrokerError and the builtin old scripts catch."""
    assert issubclass(errors.RunNotFound, KeyError) and issubclass(errors.RunNotFound, ValueError)
    assert issubclass(errors.RunIndexError, IndexError)
    assert issubclass(errors.ReadOnlyStore, PermissionError)
    assert issubclass(errors.UnsupportedQuery, NotImplementedError)
    assert issubclass(errors.StoreUnavailable, ConnectionError)
    assert issubclass(errors.MissingDependency, ImportError)
    assert issubclass(broker_v1.InvalidConfig, errors.ConfigError)
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.BrokerError), name
    assert str(errors.RunNotFound("plain message")) == "plain message"


@pytest.mark.parametrize("module", ["broker_v1.stores.memory", "broker_v1.stores.base",
                                    "broker_v1.stores", "broker_v1",
                                    "broker_v1.stores.tiled"])
def test_stores_never_import_pandas_or_xarray(module):
    """Importing the package or any store pulls in neither pandas nor xarray."""
    code = (f"import sys, {module}; "
            "bad = [m for m in ('pandas', 'xarray') if m in sys.modules]; "
            "print(','.join(bad)); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_broker_imports_stores_only_through_the_registry():
    """broker.py names no concrete store module except MemoryStore for temp()."""
    import inspect

    from broker_v1 import broker

    source = inspect.getsource(broker)
    assert "stores.files" not in source and "stores.mongo" not in source


def test_registry_names_and_errors():
    """Built-ins are registered; unknown kinds list what exists with a did-you-mean."""
    assert {"memory", "files", "mongo"} <= set(available_stores())
    assert get_store_class("memory").backend == "memory"
    with pytest.raises(errors.UnknownStoreKind, match=r"'memroy'.*known: .*Did you mean 'memory'"):
        get_store_class("memroy")
    with pytest.raises(ValueError, match="already registered"):
        register_store("memory", "somewhere:Else")


def test_third_party_store_registration():
    """A registered third-party class is usable by name from config."""
    from broker_v1 import Broker
    from broker_v1.stores.memory import MemoryStore

    class Custom(MemoryStore):
        backend = "custom-test"

    register_store("custom-test", Custom, replace=True)
    db = Broker.from_config({"store": {"backend": "custom-test"}})
    assert type(db.store) is Custom


def test_store_declaring_writes_must_implement_them():
    """A subclass claiming supports_writes without _write_document fails at class creation."""
    with pytest.raises(TypeError, match="_write_document"):
        class Broken(DocumentStore):  # noqa: F841
            backend = "broken"
            supports_writes = True

            def _find_run_starts(self, query, *, sort, skip, limit):
                return iter(())

            def get_run_start(self, uid):
                raise KeyError(uid)

            def get_run_stop(self, run_start_uid):
                return None

            def get_descriptors(self, run_start_uid):
                return []

            def iter_event_pages(self, descriptor_uid, *, fields=None):
                return iter(())

            def get_resource(self, uid):
                raise KeyError(uid)

            def iter_datum_pages(self, resource_uid):
                return iter(())

            def get_datum(self, datum_id):
                raise KeyError(datum_id)
