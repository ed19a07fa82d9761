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
        ({"store": {"backend": "memory"}, "timezone": "Mars/Base"}, r"not a known IANA",
         "timezone"),
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
    assert paths.index("/etc/databroker") == 4
    assert paths[5:] == ["/home/u/.local/share/intake", paths[6]]
    assert paths[6].endswith("share/intake")
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


# ---------------------------------------------------------------------- other layouts
from pathlib import Path  # noqa: E402

from broker_v1._layouts import layout_of, translate  # noqa: E402

DATA = Path(__file__).parent / "data"

V0 = {
    "description": "CSX raw data",
    "metadatastore": {"module": "databroker.headersource.mongo", "class": "MDSRO",
                      "config": {"host": "xf23id-ca", "port": 27017,
                                 "database": "datastore", "timezone": "US/Eastern"}},
    "assets": {"module": "databroker.assets.mongo", "class": "Registry",
               "config": {"host": "xf23id-ca", "port": 27017, "database": "filestore"}},
    "handlers": {"AD_TIFF": {"module": "area_detector_handlers.handlers",
                             "class": "AreaDetectorTiffHandler"}},
    "root_map": {"/GPFS/xf23id": "/nsls2/data/csx"},
}


def test_v0_layout_becomes_a_mongo_store():
    """A databroker 0.x file becomes a mongo store with its timezone, handlers and root_map."""
    assert layout_of(V0) == "v0"
    out = translate(V0, source="/etc/databroker/csx.yml")
    assert out["store"] == {"backend": "mongo", "uri": "mongodb://xf23id-ca:27017/datastore",
                            "asset_uri": "mongodb://xf23id-ca:27017/filestore",
                            "read_only": True}
    assert out["timezone"] == "US/Eastern" and out["description"] == "CSX raw data"
    assert out["handlers"] == V0["handlers"] and out["root_map"] == V0["root_map"]


def test_v0_layout_credentials_and_uri_forms():
    """Credentials and authsource build the URI; uri with host is refused."""
    md = {"module": "databroker.headersource.mongo", "class": "MDS",
          "config": {"host": "h", "port": 1, "database": "md", "mongo_user": "u",
                     "mongo_pwd": "p@ss", "authsource": "admin"}}
    config = {**V0, "metadatastore": md}
    assert translate(config)["store"]["uri"] == "mongodb://u:p%40ss@h:1/md?authSource=admin"
    bad = {**V0, "metadatastore": {**md, "config": {"uri": "mongodb://h/md", "host": "h"}}}
    with pytest.raises(ConfigError, match="either uri or host/port"):
        translate(bad)


@pytest.mark.parametrize(
    ("module", "message"),
    [("databroker.headersource.sqlite", "SQLite metadata store.*cannot open.*backend: files"),
     ("my.custom.store", "not a metadata store broker_v1 knows")],
)
def test_v0_layout_unsupported_modules(module, message):
    """Old file-based or unknown metadata stores are refused, naming the module."""
    config = {**V0, "metadatastore": {**V0["metadatastore"], "module": module}}
    with pytest.raises(ConfigError, match=message) as info:
        Broker.from_config(config, source="/etc/databroker/csx.yml")
    assert info.value.key == "metadatastore.module"


INTAKE = {
    "sources": {
        "raw": {"driver": "bluesky-mongo-normalized-catalog",
                "args": {"metadatastore_db": "mongodb://db:27017/csx-md",
                         "asset_registry_db": "mongodb://db:27017/csx-assets",
                         "handler_registry": {"NPY_SEQ": "ophyd.sim.NumpySeqHandler"}}},
        "processed": {"driver": "bluesky-jsonl-catalog",
                      "args": {"paths": "processed/*.jsonl",
                               "root_map": {"/old": "relative/new"}}},
    }
}


def test_intake_layout_entries(tmp_path):
    """An intake file's sources translate one by one; several need a choice."""
    source = str(tmp_path / "csx.yml")
    raw = translate(INTAKE, source=source, entry="raw")
    assert raw["store"] == {"backend": "mongo", "uri": "mongodb://db:27017/csx-md",
                            "asset_uri": "mongodb://db:27017/csx-assets"}
    assert raw["handlers"] == {"NPY_SEQ": {"module": "ophyd.sim", "class": "NumpySeqHandler"}}
    processed = translate(INTAKE, source=source, entry="processed")
    assert processed["store"] == {"backend": "files", "path": str(tmp_path / "processed")}
    assert processed["root_map"] == {"/old": str(tmp_path / "relative" / "new")}
    with pytest.raises(ConfigError, match=r"several catalogs \(raw, processed\)"):
        translate(INTAKE, source=source)
    with pytest.raises(ConfigError, match="no entry 'nope'"):
        translate(INTAKE, source=source, entry="nope")


def test_intake_layout_errors():
    """Unknown drivers, URIs without a database and relative root_map without a file fail."""
    bad_driver = {"sources": {"x": {"driver": "bluesky-mongo-embedded-catalog", "args": {}}}}
    with pytest.raises(ConfigError, match="not a driver broker_v1 can serve"):
        translate(bad_driver)
    no_db = {"sources": {"x": {"driver": "bluesky-mongo-normalized-catalog",
                               "args": {"metadatastore_db": "mongodb://db:27017",
                                        "asset_registry_db": "mongodb://db:27017/a"}}}}
    with pytest.raises(ConfigError, match="forget to include a database"):
        translate(no_db)
    with pytest.raises(ConfigError, match="relative.*no file to be relative to"):
        translate({"store": {"backend": "memory"}, "root_map": {"/a": "b"}})


def test_databroker_pack_catalog_translation():
    """A databroker-pack catalog.yml opens its packed runs read-only with an anchored root_map."""
    catalog = DATA / "databroker-pack" / "msgpack_HEAD" / "simple_catalog" / "catalog.yml"
    import yaml

    out = translate(yaml.safe_load(catalog.read_text()), source=str(catalog))
    assert out["store"] == {"backend": "files", "path": str(catalog.parent / "documents"),
                            "read_only": True}
    (old, new), = out["root_map"].items()
    assert old == "f8483b80395561ac779a5425da6646ca"
    assert Path(new) == catalog.parent / "external_files" / old
    assert Path(new).is_dir()


def test_named_intake_entry(tmp_path, monkeypatch):
    """Broker.named('file.entry') opens one catalog of a multi-source intake file."""
    import yaml

    (tmp_path / "multi.yml").write_text(yaml.safe_dump({"sources": {
        "a": {"driver": "bluesky-mongo-normalized-catalog",
              "args": {"metadatastore_db": "mongodb://db/x", "asset_registry_db": "mongodb://db/y"}},
        "b": {"driver": "bluesky-msgpack-catalog", "args": {"paths": ["docs/*.msgpack"]}}}}))
    monkeypatch.setenv("BROKER_V1_CONFIG_PATH", str(tmp_path))
    with pytest.raises(ConfigError, match=r"several catalogs.*Broker.named\('NAME.a'\)"):
        Broker.named("multi")
    with pytest.raises(ConfigError, match="no entry 'c'"):
        Broker.named("multi.c")


@pytest.mark.parametrize("catalog", ["msgpack_HEAD/simple_catalog",
                                     "msgpack_HEAD/another_simple_catalog"])
def test_real_databroker_pack_catalogs_open(catalog, tmp_path):
    """The real databroker-pack catalogs open from their catalog.yml, read-only, and fill."""
    import shutil

    import numpy as np
    import yaml
    from handlers import NpySeqHandler

    source = DATA / "databroker-pack" / catalog
    copy = tmp_path / "pack"
    shutil.copytree(source, copy)  # the store keeps its index beside the runs
    path = copy / "catalog.yml"
    db = Broker.from_config(yaml.safe_load(path.read_text()), source=str(path))
    assert db.store.read_only
    uids = [h.uid for h in db()]
    assert len(uids) == 3
    image_runs = [h for h in db() if "img" in h.fields()]
    assert len(image_runs) == 1
    # ophyd (in the test extra) advertises its own NPY_SEQ handler: this one reads the same.
    db.reg.register_handler("NPY_SEQ", NpySeqHandler, overwrite=True)
    frames = list(image_runs[0].data("img"))
    assert frames and all(np.all(f == 1.0) for f in frames)
    with pytest.raises(Exception, match="read-only"):
        db.insert("start", {"uid": "x", "time": 1.0})
