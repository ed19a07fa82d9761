"""The ``broker-v1`` command, run as a real subprocess (``python -m broker_v1 ...``)."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import insert_all, make_run

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"

COMMANDS = [
    [], ["demo"], ["config"], ["config", "list"], ["config", "show"], ["config", "paths"],
    ["ls"], ["show"], ["table"], ["copy"], ["mongo"], ["mongo", "ensure-indexes"],
    ["files"], ["files", "reindex"], ["files", "repair"],
]


class CLI:
    """Runs ``python -m broker_v1`` in a sandbox: its own HOME, config path and 80 columns."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.config_dir = tmp_path / "configs"
        self.config_dir.mkdir()
        self.home = tmp_path / "home"
        self.home.mkdir()
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("BROKER_V1_", "DATABROKER_", "XDG_", "INTAKE_"))}
        self.env.update({"PYTHONPATH": str(REPO), "BROKER_V1_CONFIG_PATH": str(self.config_dir),
                         "HOME": str(self.home), "COLUMNS": "80", "PYTHONIOENCODING": "utf-8",
                         "TZ": "UTC"})

    def __call__(self, *args: str, code: int = 0, cwd: Path | None = None
                 ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([sys.executable, "-m", "broker_v1", *args], env=self.env,
                              capture_output=True, text=True, timeout=300,
                              cwd=cwd or self.tmp)
        assert proc.returncode == code, (args, proc.returncode, proc.stdout, proc.stderr)
        return proc

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "--json").stdout)

    def error(self, *args: str, code: int = 1) -> str:
        """Run a failing command; check the one-line error and return it."""
        proc = self(*args, code=code)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("broker-v1: error: "), proc.stderr
        assert "Traceback" not in proc.stderr
        return lines[0]

    def config(self, name: str, text: str) -> None:
        (self.config_dir / f"{name}.yml").write_text(text)


@pytest.fixture
def cli(tmp_path: Path) -> CLI:
    """The command in a sandbox with an empty config folder."""
    return CLI(tmp_path)


def files_store_class() -> Any:
    """FileStore, or a skip when the files store is not in this checkout yet."""
    module = pytest.importorskip("broker_v1.stores.files",
                                 reason="the files store is not available yet")
    return module.FileStore


T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    """A files store of five runs (scan_ids 1-5, newest last), one with external data."""
    FileStore = files_store_class()
    path = tmp_path / "runs"
    store = FileStore(path=path)
    insert_all(store, [
        make_run(t0=T0, scan_id=1, plan_name="count", metadata={"sample": "Si"}),
        make_run(t0=T0 + 100, scan_id=2, plan_name="scan", metadata={"sample": "Au"}),
        make_run(t0=T0 + 200, scan_id=3, plan_name="scan", external=True,
                 metadata={"sample": "Au", "num_points": 3.5}),
        make_run(t0=T0 + 300, scan_id=4, plan_name="count", with_stop=False),
        make_run(t0=T0 + 400, scan_id=5, plan_name="scan", n_events=5,
                 metadata={"sample": "Si", "purpose": None}),
    ])
    store.close()
    return path


@pytest.fixture
def named(cli: CLI, store_dir: Path) -> str:
    """A config 'local' naming the store of :func:`store_dir`."""
    cli.config("local", f"description: five test runs\nstore:\n  backend: files\n"
                        f"  path: {store_dir}\n")
    return "local"


# --------------------------------------------------------------------------- everywhere
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "main")
def test_every_command_has_help_with_an_example(cli: CLI, command: list[str]) -> None:
    """`--help` exits 0, fits 80 columns and shows an example."""
    out = cli(*command, "--help").stdout
    assert "Example" in out
    assert all(len(line) <= 80 for line in out.splitlines())


def test_errors_are_one_line_without_traceback_unless_debug(cli: CLI, store_dir: Path) -> None:
    """Errors exit non-zero with one `broker-v1: error:` line; --debug shows the traceback."""
    assert "neither a config" in cli.error("ls", "no-such-thing")
    assert "not a directory" in cli.error("ls", str(store_dir / "missing"))
    assert "not key=value" in cli.error("ls", str(store_dir), "plan_name")
    assert "No run with uid starting 'zzz'" in cli.error("show", str(store_dir), "zzz")
    assert "Missing argument 'NAME'" in cli.error("ls", code=2)
    assert "No such command" in cli.error("lsx", code=2)
    debug = cli("--debug", "show", str(store_dir), "zzz", code=1)
    assert "Traceback" in debug.stderr and "RunNotFound" in debug.stderr


def test_version(cli: CLI) -> None:
    """`--version` names the program."""
    assert cli("--version").stdout.startswith("broker-v1, version ")


# --------------------------------------------------------------------------- demo
def test_demo_records_into_the_given_store_and_continues_scan_ids(cli: CLI,
                                                                   tmp_path: Path) -> None:
    """`demo --store` records five runs, prints db[-1], a search, a table and the Python."""
    files_store_class()
    out = cli("demo", "--store", str(tmp_path / "demo")).stdout
    assert f"Recorded 63 documents (5 runs) into files store {tmp_path / 'demo'}." in out
    for part in (">>> db[-1]", "plan_name='scan' scan_id=5 exit_status='success'",
                 "[5, 3]", ">>> db.get_table(h, stream_name='primary')", "motor_setpoint",
                 "The Python lines that did this:", "db = Broker.from_config("):
        assert part in out
    cli("demo", "--store", str(tmp_path / "demo"))
    runs = cli.json("ls", str(tmp_path / "demo"), "--limit", "0")
    assert [r["scan_id"] for r in runs] == list(range(10, 0, -1))


def test_demo_default_store_is_per_user(cli: CLI) -> None:
    """Without --store the demo records into the per-user data directory."""
    files_store_class()
    out = cli("demo").stdout
    runs = cli.home / ".local" / "share" / "broker_v1" / "runs"
    assert f"into files store {runs}" in out
    assert len(list(runs.glob("*.jsonl"))) == 5


# --------------------------------------------------------------------------- config
INTAKE = """\
sources:
  raw:
    description: CSX raw data
    driver: bluesky-mongo-normalized-catalog
    args:
      metadatastore_db: mongodb://db.example:27017/csx-md
      asset_registry_db: mongodb://db.example:27017/csx-assets
  processed:
    driver: bluesky-jsonl-catalog
    args: {paths: ['/data/csx/*.jsonl']}
"""


def test_config_list_show_and_paths(cli: CLI, named: str) -> None:
    """Configs are listed (intake entries one by one), resolved, and located on the path."""
    cli.config("csx", INTAKE)
    cli.config("broken", "store: [")
    rows = cli.json("config", "list")
    assert [r["name"] for r in rows] == ["broken", "csx.raw", "csx.processed", "local"]
    assert rows[3]["description"] == "five test runs"
    assert "error" in rows[0]
    text = cli("config", "list").stdout
    assert "csx.raw" in text and "five test runs" in text
    assert all(len(line) <= 80 for line in text.splitlines())

    shown = cli("config", "show", "csx.raw").stdout
    assert shown.startswith(f"# csx.raw: {cli.config_dir / 'csx.yml'} (intake layout)")
    assert "backend: mongo" in shown and "uri: mongodb://db.example:27017/csx-md" in shown
    resolved = cli.json("config", "show", "csx.processed")
    assert resolved["config"]["store"] == {"backend": "files", "path": "/data/csx"}
    assert cli.json("config", "show", "temp")["config"]["store"] == {"backend": "memory"}
    assert "not valid YAML" in cli.error("config", "show", "broken")
    assert "No config named 'nope'" in cli.error("config", "show", "nope")

    paths = cli.json("config", "paths")
    assert paths[0] == {"path": str(cli.config_dir), "exists": True,
                        "from": "BROKER_V1_CONFIG_PATH",
                        "files": ["broken.yml", "csx.yml", "local.yml"]}
    assert str(cli.home / ".config" / "databroker") in [p["path"] for p in paths]
    text = cli("config", "paths").stdout.splitlines()
    assert text[1].startswith(" 1. ") and text[1].endswith("(BROKER_V1_CONFIG_PATH)")
    assert text[2].strip() == "broken.yml, csx.yml, local.yml"
    assert all(len(line) <= 80 for line in text)


# --------------------------------------------------------------------------- ls
def test_ls_lists_newest_first_with_summary_columns(cli: CLI, named: str) -> None:
    """`ls` prints one row per run, newest first, within 80 columns."""
    lines = cli("ls", named).stdout.splitlines()
    assert lines[0].split() == ["SCAN", "UID", "PLAN", "STARTED", "TOOK", "EXIT", "EVENTS"]
    assert [line.split()[0] for line in lines[1:]] == ["5", "4", "3", "2", "1"]
    assert all(len(line) <= 80 for line in lines)
    newest = lines[1]
    assert "2023-11-14 22:20:00" in newest and "8.0s" in newest and "success" in newest
    assert "primary 5, baseline 2" in newest
    assert lines[2].split()[-3:] == ["-", "-", "-"]  # scan 4 has no stop


def test_ls_json_query_terms_and_limits(cli: CLI, named: str, store_dir: Path) -> None:
    """`--json` is parseable; typed key=value terms, --since/--until and --limit filter."""
    runs = cli.json("ls", named)
    assert [r["scan_id"] for r in runs] == [5, 4, 3, 2, 1]
    assert runs[0]["num_events"] == {"primary": 5, "baseline": 2}
    assert runs[0]["duration"] == 8.0 and runs[1]["exit_status"] is None
    assert runs[0]["time"] == T0 + 400

    def scan_ids(*args: str) -> list[int]:
        return [r["scan_id"] for r in cli.json("ls", str(store_dir), *args)]

    assert scan_ids("plan_name=scan") == [5, 3, 2]
    assert scan_ids("scan_id=3") == [3]  # an int, not the string "3"
    assert scan_ids("num_points=3.5") == [3]
    # null is None (MongoDB's null also matches runs without the field); only 5 holds it.
    assert scan_ids("purpose=null") == [5, 4, 3, 2, 1]
    assert scan_ids('purpose={"$type": "null"}') == [5]
    assert scan_ids('scan_id={"$gte": 4}') == [5, 4]
    assert scan_ids("plan_name=scan", "sample=Au") == [3, 2]
    assert scan_ids("--since", "2023-11-14 22:15", "--until", "2023-11-14 22:18") == [3, 2]
    assert scan_ids("--limit", "2") == [5, 4]
    out = cli("ls", named, "--limit", "2").stdout
    assert out.splitlines()[-1].startswith("(newest 2 shown")
    assert cli("ls", named, "plan_name=nothing").stdout.startswith("No runs match")
    assert "use --since" in cli.error("ls", named, "since=2020")


def test_ls_does_not_import_pandas(cli: CLI, store_dir: Path) -> None:
    """`ls` never imports pandas (start-up time)."""
    code = ("import sys\nfrom broker_v1.cli import main\n"
            f"main(['ls', {str(store_dir)!r}], standalone_mode=False)\n"
            "print('pandas' in sys.modules, 'tqdm' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], env=cli.env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "False False"


def test_names_can_be_paths_uris_temp_and_bare_directories(cli: CLI, store_dir: Path) -> None:
    """NAME may be a path, ./name, a bare directory name, or temp."""
    assert len(cli.json("ls", str(store_dir))) == 5
    assert len(cli.json("ls", "./runs")) == 5
    assert len(cli.json("ls", "runs")) == 5  # no config of that name: the directory
    assert cli.json("ls", "temp") == []


# --------------------------------------------------------------------------- show / table
def test_show_prints_metadata_streams_and_stop(cli: CLI, named: str) -> None:
    """`show` gives start metadata, each stream's fields and event count, and the stop."""
    out = cli("show", named, "-1").stdout
    lines = out.splitlines()
    assert lines[0].startswith("Run ") and all(len(line) <= 80 for line in lines)
    for part in ("scan_id 5, plan scan, exit status success", "Start", "Streams",
                 "primary: 5 events", "baseline: 2 events", "motor_setpoint", "Stop",
                 "exit_status"):
        assert part in out
    external = cli("show", named, "3").stdout
    assert "external" in external and "[4, 4]" in external
    open_run = cli("show", named, "4").stdout
    assert "(none: the run is still open" in open_run and "primary: 3 events" in open_run
    doc = cli.json("show", named, "2")
    assert doc["start"]["scan_id"] == 2 and doc["stop"]["run_start"] == doc["start"]["uid"]
    assert {d["name"] for d in doc["descriptors"]} == {"primary", "baseline"}
    prefix = doc["start"]["uid"][:8]
    assert cli.json("show", named, prefix)["start"]["uid"] == doc["start"]["uid"]


def test_show_reads_digit_keys_as_scan_id_then_uid_prefix(cli: CLI, tmp_path: Path) -> None:
    """KEY digits are a scan_id first, else a uid prefix (uids from `ls` may be all digits)."""
    FileStore = files_store_class()
    path = tmp_path / "digits"
    store = FileStore(path=path)
    insert_all(store, [
        make_run(t0=T0, scan_id=7, uid="60876903-0000-4000-8000-000000000001"),
        make_run(t0=T0 + 100, scan_id=60876903, uid="abcdef00-0000-4000-8000-000000000002"),
        make_run(t0=T0 + 200, scan_id=8, uid="12345678-0000-4000-8000-000000000003"),
    ])
    store.close()
    assert cli.json("show", str(path), "60876903")["start"]["scan_id"] == 60876903
    assert cli.json("show", str(path), "12345678")["start"]["scan_id"] == 8
    assert cli.json("show", str(path), "7")["start"]["scan_id"] == 7
    message = cli.error("show", str(path), "999")
    assert "No run with scan_id 999 or uid starting '999'" in message


def test_table_prints_and_writes_csv(cli: CLI, named: str, tmp_path: Path) -> None:
    """`table` prints a stream; --csv writes every row; --fields and --stream select."""
    out = cli("table", named, "-1").stdout
    assert "motor" in out and "det" in out and all(len(x) <= 80 for x in out.splitlines())
    rows = list(csv.DictReader(io.StringIO(cli("table", named, "-1", "--csv", "-").stdout)))
    assert len(rows) == 5 and [float(r["det"]) for r in rows] == [0.0, 10.0, 20.0, 30.0, 40.0]
    assert list(rows[0]) == ["seq_num", "time", "motor", "motor_setpoint", "det"]
    target = tmp_path / "out.csv"
    cli("table", named, "5", "--fields", "det", "--csv", str(target))
    with target.open() as f:
        assert list(csv.DictReader(f))[0].keys() == {"seq_num", "time", "det"}
    baseline = cli("table", named, "5", "--stream", "baseline", "--csv", "-").stdout
    assert len(baseline.splitlines()) == 3 and "temp" in baseline
    assert "has no stream 'nope'" in cli.error("table", named, "5", "--stream", "nope")


# --------------------------------------------------------------------------- copy
def test_copy_is_idempotent_and_reports(cli: CLI, named: str, tmp_path: Path) -> None:
    """`copy` copies every run, then skips them all; the JSON report parses."""
    dst = tmp_path / "copy"
    first = cli("copy", named, str(dst)).stdout
    assert "5 copied" in first and "0 conflicts" in first
    report = cli.json("copy", named, str(dst))
    assert report["ok"] and len(report["skipped"]) == 5 and report["copied"] == []
    assert cli.json("ls", str(dst)) == cli.json("ls", named)
    for key in ("-1", "3", "4"):
        assert cli.json("show", str(dst), key) == cli.json("show", named, key)


def test_copy_by_query_and_uid(cli: CLI, named: str, tmp_path: Path) -> None:
    """Query terms and --uid select what is copied; --limit keeps the newest."""
    report = cli.json("copy", named, str(tmp_path / "a"), "plan_name=count")
    assert len(report["copied"]) == 2
    uid = cli.json("ls", named, "scan_id=2")[0]["uid"]
    assert cli.json("copy", named, str(tmp_path / "b"), "--uid", uid)["copied"] == [uid]
    newest = cli.json("copy", named, str(tmp_path / "c"), "--limit", "1")["copied"]
    assert newest == [cli.json("ls", named, "--limit", "1")[0]["uid"]]
    assert "either --uid or a query" in cli.error("copy", named, "temp", "--uid", uid,
                                                  "scan_id=2", code=2)
    assert "needs --new-root" in cli.error("copy", named, "temp", "--copy-files", code=2)


def test_copy_conflict_exits_1_and_leaves_destination(cli: CLI, named: str,
                                                      tmp_path: Path) -> None:
    """A different run with the same uid in DST is reported; DST keeps its version; exit 1."""
    FileStore = files_store_class()
    victim = cli.json("ls", named, "scan_id=2")[0]["uid"]
    src = FileStore(path=cli.json("config", "show", named)["config"]["store"]["path"],
                    read_only=True)
    impostor = {**src.get_run_start(victim), "plan_name": "impostor"}
    src.close()
    dst = FileStore(path=tmp_path / "dst")
    dst.insert("start", impostor)
    dst.close()
    proc = cli("copy", named, str(tmp_path / "dst"), code=1)
    assert f"conflict: run {victim}" in proc.stdout and "4 copied" in proc.stdout
    assert proc.stderr.strip() == ("broker-v1: error: 1 run not copied (conflicts or "
                                   "failures listed above)")
    assert cli.json("show", str(tmp_path / "dst"), victim)["start"]["plan_name"] == "impostor"


def test_copy_into_read_only_store_fails_before_writing(cli: CLI, named: str,
                                                        tmp_path: Path) -> None:
    """A destination configured read-only is refused cleanly and nothing is written."""
    target = tmp_path / "ro"
    target.mkdir()
    cli.config("archive", f"store:\n  backend: files\n  path: {target}\n  read_only: true\n")
    assert "read-only, so nothing was copied" in cli.error("copy", named, "archive")
    assert list(target.glob("*.jsonl")) == []


def test_copy_files_with_new_root(cli: CLI, tmp_path: Path) -> None:
    """--copy-files copies the file behind each resource and rewrites its root."""
    FileStore = files_store_class()
    import event_model

    old = tmp_path / "old"
    old.mkdir()
    (old / "data.h5").write_bytes(b"detector frames" * 100)
    bundle = event_model.compose_run(time=T0, metadata={"scan_id": 1, "plan_name": "count"})
    desc = bundle.compose_descriptor(
        name="primary", data_keys={"img": {"source": "c", "dtype": "array", "shape": [2],
                                           "external": "FILESTORE:"}}, time=T0 + 1)
    res = bundle.compose_resource(spec="NO_HANDLER_HERE", root=str(old),
                                  resource_path="data.h5", resource_kwargs={})
    datum = res.compose_datum(datum_kwargs={"frame": 0})
    src = FileStore(path=tmp_path / "src")
    for name, doc in [("start", bundle.start_doc), ("descriptor", desc.descriptor_doc),
                      ("resource", res.resource_doc), ("datum", datum),
                      ("event", desc.compose_event(data={"img": datum["datum_id"]},
                                                   timestamps={"img": T0 + 2}, time=T0 + 2,
                                                   filled={"img": False})),
                      ("stop", bundle.compose_stop(time=T0 + 3))]:
        src.insert(name, doc)
    src.close()
    new = tmp_path / "new"
    report = cli.json("copy", str(tmp_path / "src"), str(tmp_path / "dst"), "--copy-files",
                      "--new-root", str(new))
    assert report["ok"]
    (copied,) = report["files"]
    assert copied["destination"] == str(new / "data.h5") and copied["status"] == "copied"
    assert (new / "data.h5").read_bytes() == (old / "data.h5").read_bytes()
    dst = FileStore(path=tmp_path / "dst", read_only=True)
    assert dst.get_resource(res.resource_doc["uid"])["root"] == str(new)
    dst.close()


# --------------------------------------------------------------------------- maintenance
def test_mongo_ensure_indexes_needs_a_mongo_store(cli: CLI, store_dir: Path) -> None:
    """ensure-indexes on a files store says it applies to MongoDB only."""
    assert "applies to MongoDB stores only" in cli.error("mongo", "ensure-indexes",
                                                         str(store_dir))


def test_mongo_ensure_indexes_on_mongomock(cli: CLI) -> None:
    """ensure-indexes on a mongomock URI succeeds."""
    pytest.importorskip("broker_v1.stores.mongo", reason="the mongo store is not available yet")
    out = cli("mongo", "ensure-indexes", "mongomock://localhost/cli-test").stdout
    assert out.startswith("Indexes ensured on ")


def test_files_reindex(cli: CLI, store_dir: Path) -> None:
    """reindex rebuilds the index and says how many runs it found."""
    (store_dir / ".broker_v1_index.sqlite").unlink(missing_ok=True)
    out = cli("files", "reindex", str(store_dir)).stdout
    assert out.startswith(f"Reindexed files store {store_dir}: 5 runs")
    assert len(cli.json("ls", str(store_dir))) == 5
    assert "is not a directory" in cli.error("files", "reindex", str(store_dir / "nope"))


def test_files_repair_shows_then_truncates_torn_lines(cli: CLI, store_dir: Path) -> None:
    """repair lists what it would drop, changes nothing without --yes, truncates with it."""
    assert "Nothing to repair" in cli("files", "repair", str(store_dir)).stdout
    uid = cli.json("ls", str(store_dir), "scan_id=4")[0]["uid"]
    path = store_dir / f"{uid}.jsonl"
    good = path.read_bytes()
    path.write_bytes(good + b'["event", {"uid": "torn')
    past = time.time() - 3600
    os.utime(path, (past, past))  # older than the writer grace period
    out = cli("files", "repair", str(store_dir)).stdout
    assert f"{uid}.jsonl: drop last 23 bytes" in out and "'[\"event\", {\"uid\": \"torn'" in out
    assert "Nothing was changed" in out
    assert path.read_bytes().endswith(b"torn")
    out = cli("files", "repair", str(store_dir), "--yes").stdout
    assert f"Repaired {uid}.jsonl: removed 23 bytes." in out
    assert path.read_bytes() == good


# --------------------------------------------------------------------------- real data
def real_store(tmp_path: Path, source: Path, pattern: str) -> Path:
    """A copy of a directory of real run files (the store writes its index beside them)."""
    target = tmp_path / source.name
    target.mkdir()
    for f in source.glob(pattern):
        shutil.copy(f, target / f.name)
    return target


def test_real_tutorial_runs_ls_show_table(cli: CLI, tmp_path: Path) -> None:
    """The 17 tutorial runs (suitcase-jsonl) list, show and tabulate like their documents."""
    files_store_class()
    import realdata

    runs = realdata.runs_by_set()["tutorials"]
    store = real_store(tmp_path, DATA / "bluesky-tutorials" / "example_data", "*.jsonl")
    listed = cli.json("ls", str(store), "--limit", "0")
    newest_first = sorted(runs, key=lambda r: (r.start["time"], r.uid), reverse=True)
    assert [r["uid"] for r in listed] == [r.uid for r in newest_first]
    assert all(len(x) <= 80 for x in cli("ls", str(store)).stdout.splitlines())
    run = newest_first[0]
    shown = cli.json("show", str(store), run.uid[:8])
    assert shown["start"] == run.start and shown["stop"] == run.stop
    primary = {d["uid"] for n, d in run.documents if n == "descriptor"
               and d.get("name") == "primary"}
    n_events = sum(len(d["uid"]) if n == "event_page" else 1 for n, d in run.documents
                   if n in ("event", "event_page") and d["descriptor"] in primary)
    table = cli("table", str(store), run.uid, "--csv", "-").stdout
    assert len(table.splitlines()) == n_events + 1
    assert f"primary: {n_events} events" in cli("show", str(store), run.uid).stdout


def test_real_beamline_runs_ls_and_copy(cli: CLI, tmp_path: Path) -> None:
    """Real USAXS beamline runs (databroker-pack msgpack) list and copy to a jsonl store."""
    files_store_class()
    import realdata

    runs = realdata.runs_by_set()["usaxs-msgpack"]
    store = real_store(tmp_path, DATA / "apstools" / "resources_packs" / "usaxs_test"
                       / "documents", "*.msgpack")
    listed = cli.json("ls", str(store), "--limit", "0")
    assert sorted(r["uid"] for r in listed) == sorted(r.uid for r in runs)
    assert all(len(x) <= 80 for x in cli("ls", str(store)).stdout.splitlines())
    report = cli.json("copy", str(store), str(tmp_path / "jsonl"))
    assert report["ok"] and len(report["copied"]) == len(runs)
    flyscan = next(r for r in runs if r.start.get("plan_name") == "Flyscan")
    assert cli.json("show", str(tmp_path / "jsonl"), flyscan.uid) == cli.json(
        "show", str(store), flyscan.uid)
