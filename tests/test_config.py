"""Config validation and discovery for broker_v1's own layout."""

from __future__ import annotations

import pytest

from broker_v1 import Broker, ConfigError, UnknownStoreKind, list_configs, lookup_config
from broker_v1.config import config_search_path, describe_configs


@pytest.mark.parametrize(
    ("config", "message", "key"),
    [
        ({"store": {"backend": "memory"}, "stroe": 1}, r"unknown key 'stroe'", "stroe"),
        ({"description": "x"}, r"'store' section is missing", "store"),
        ({"store": {"backend": "memroy"}}, r"Did you mean 'memory'", "store.backend"),
        ({"store": {"backend": "memory", "pth": "/x"}}, r"store.pth is not an option", "store.pth"),
        ({"store": {"backend": "memory", "read_only": "yes"}}, r"read_only must be true or false",
         "store.read_only"),
        ({"store": {}}, r"store.backend is missing", "store.backend"),
        ({"store": "memory"}, r"'store' must be a mapping", "store"),
        ({"store": {"backend": "memory"}, "timezone": "Mars/Base"}, r"not a known IANA", "timezone"),
        ({"store": {"backend": "memory"}, "root_map": ["a"]}, r"root_map must be a mapping",
         "root_map"),
        ({"store": {"backend": "memory"}, "handlers": {"NPY": "x"}}, r"handlers.NPY must be",
         "handlers.NPY"),
        ({"store": {"backend": "memory"}, "transforms": {"event": "a.b"}}, r"transforms.event",
         "transforms.event"),
        ({"store": {"backend": "memory"}, "api_version": 7}, r"api_version must be", "api_version"),
        ({"store": {"backend": "memory"}, "transforms": {"start": "no.such.func"}},
         r"cannot be imported", "transforms.start"),
    ],
)
def test_bad_configs_name_the_key(config, message, key):
    """Every bad config raises ConfigError naming the key and what is allowed."""
    with pytest.raises(ConfigError, match=message) as info:
        Broker.from_config(config, source="/etc/databroker/x.yml")
    assert info.value.key == key
    assert "/etc/databroker/x.yml" in str(info.value)


def test_unknown_backend_is_unknown_store_kind():
    """An unknown backend raises UnknownStoreKind (a ConfigError)."""
    with pytest.raises(UnknownStoreKind, match="known: "):
        Broker.from_config({"store": {"backend": "sqlite"}})


def test_search_path_order(tmp_path):
    """BROKER_V1_CONFIG_PATH folders come first, then user, environment and system folders."""
    env = {"BROKER_V1_CONFIG_PATH": f"{tmp_path}/a:{tmp_path}/b", "HOME": "/home/u"}
    paths = [str(p) for p in config_search_path(env, platform="linux")]
    assert paths[:2] == [f"{tmp_path}/a", f"{tmp_path}/b"]
    assert paths[2] == "/home/u/.config/databroker"
    assert paths[-1] == "/etc/databroker"
    win = [str(p) for p in config_search_path({"APPDATA": r"C:\Users\u\AppData\Roaming",
                                              "BROKER_V1_CONFIG_PATH": r"D:\cfg;E:\cfg"},
                                             platform="win32")]
    assert win[:3] == [r"D:\cfg", r"E:\cfg", r"C:\Users\u\AppData\Roaming\databroker"]


def test_named_lookup_and_errors(tmp_path, monkeypatch):
    """Broker.named finds YAML on the path; a missing name lists every place searched."""
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    (first / "csx.yml").write_text("description: CSX raw\nstore:\n  backend: memory\n")
    (second / "csx.yml").write_text("description: shadowed\nstore:\n  backend: memory\n")
    (second / "broken.yml").write_text("store:\n  backend: [memory\n")
    monkeypatch.setenv("BROKER_V1_CONFIG_PATH", f"{first}:{second}")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert lookup_config("csx")["description"] == "CSX raw"
    db = Broker.named("csx")
    assert db.name == "csx" and db.get_config()["description"] == "CSX raw"
    assert {"csx", "broken"} <= set(list_configs())
    assert describe_configs()["csx"] == "CSX raw"
    with pytest.raises(FileNotFoundError, match=r"No config named 'nope'") as info:
        Broker.named("nope")
    assert str(first / "nope.yml") in str(info.value)
    assert str(second / "nope.yml") in str(info.value)
    with pytest.raises(ConfigError, match=r"broken.yml: line 3.*not valid YAML"):
        Broker.named("broken")
