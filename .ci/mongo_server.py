#!/usr/bin/env python3
"""Start and stop the MongoDB wire-protocol test server used by the Mongo store tests.

The server is SecantusDB (``secantusdb==0.7.0b3``, command ``secantusd-py``), a GPL-2.0 tool
used only as a separate test process and never shipped with broker_v1.  This script installs
nothing: it is given a virtual environment that already holds the server.

Usage::

    python .ci/mongo_server.py start --venv .ci/secantus-venv   # prints mongodb://127.0.0.1:PORT
    python .ci/mongo_server.py stop --venv .ci/secantus-venv

``start`` picks a free loopback port, launches the server with in-memory storage in its own
process group, waits until it answers ``ping`` and writes its pid (and its log) next to the
venv, so ``stop`` can end exactly that process.  Standard library only, so it runs before any
project dependency is installed.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

SERVER_COMMAND = "secantusd-py"


# ---------------------------------------------------------------------- a minimal ping client
def _bson_ping() -> bytes:
    # {"ping": 1, "$db": "admin"}: an int32 element and a string element.
    def cstring(s: str) -> bytes:
        return s.encode() + b"\x00"

    db = b"admin\x00"
    body = (
        b"\x10" + cstring("ping") + struct.pack("<i", 1)
        + b"\x02" + cstring("$db") + struct.pack("<i", len(db)) + db
    )
    return struct.pack("<i", len(body) + 5) + body + b"\x00"


def _op_msg(request_id: int, document: bytes) -> bytes:
    # OP_MSG (opcode 2013), flags 0, one section of kind 0 (the command body).
    payload = struct.pack("<I", 0) + b"\x00" + document
    header = struct.pack("<iiii", 16 + len(payload), request_id, 0, 2013)
    return header + payload


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks = []
    while n:
        chunk = sock.recv(n)
        if not chunk:
            raise ConnectionError("server closed the connection")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


_FIXED_SIZES = {0x01: 8, 0x07: 12, 0x08: 1, 0x09: 8, 0x0A: 0, 0x10: 4, 0x11: 8, 0x12: 8,
                0x13: 16, 0x7F: 0, 0xFF: 0}


def _reply_ok(document: bytes) -> bool:
    """Whether a BSON reply's top-level ``ok`` field is 1 (other fields are skipped)."""
    pos, end = 4, len(document) - 1
    while pos < end:
        kind = document[pos]
        name_end = document.index(b"\x00", pos + 1)
        name = document[pos + 1:name_end].decode()
        pos = name_end + 1
        if name == "ok":
            if kind == 0x01:
                return struct.unpack_from("<d", document, pos)[0] == 1.0
            if kind == 0x10:
                return struct.unpack_from("<i", document, pos)[0] == 1
            if kind == 0x12:
                return struct.unpack_from("<q", document, pos)[0] == 1
            return False
        if kind in _FIXED_SIZES:
            pos += _FIXED_SIZES[kind]
        elif kind in (0x02, 0x0D, 0x0E):  # string, javascript, symbol
            pos += 4 + struct.unpack_from("<i", document, pos)[0]
        elif kind in (0x03, 0x04):  # embedded document, array
            pos += struct.unpack_from("<i", document, pos)[0]
        elif kind == 0x05:  # binary: length, subtype, bytes
            pos += 5 + struct.unpack_from("<i", document, pos)[0]
        else:
            return False
    return False


def ping(host: str, port: int, timeout: float = 2.0) -> bool:
    """True when a MongoDB wire-protocol server at host:port answers ``ping`` with ok: 1."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(_op_msg(1, _bson_ping()))
            length, _, _, opcode = struct.unpack("<iiii", _recv_exact(sock, 16))
            payload = _recv_exact(sock, length - 16)
    except (OSError, ValueError):
        return False
    if opcode != 2013 or len(payload) < 10 or payload[4] != 0:
        return False
    return _reply_ok(payload[5:])


# ---------------------------------------------------------------------- start / stop
def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _state_files(args: argparse.Namespace) -> tuple[Path, Path]:
    venv = Path(args.venv)
    pidfile = Path(args.pidfile) if args.pidfile else venv / "secantusd.pid"
    logfile = Path(args.logfile) if args.logfile else venv / "secantusd.log"
    return pidfile, logfile


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by init) counts as gone.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def start(args: argparse.Namespace) -> int:
    server = Path(args.venv) / "bin" / SERVER_COMMAND
    if not server.exists():
        print(
            f"{server} not found. Install the test server first:\n"
            f"  python3 -m venv {args.venv} && {args.venv}/bin/pip install secantusdb==0.7.0b3",
            file=sys.stderr,
        )
        return 2
    pidfile, logfile = _state_files(args)
    if pidfile.exists():
        old = int(pidfile.read_text().split()[0] or 0)
        if old and _alive(old):
            print(f"A test server is already running (pid {old}, {pidfile}); stop it first.",
                  file=sys.stderr)
            return 1
    # The port is chosen before the server binds it; if another process takes it meanwhile
    # the server exits at once and we try again with a new port.
    for _attempt in range(3):
        port = free_port()
        with open(logfile, "ab") as log:
            proc = subprocess.Popen(
                [str(server), "--host", "127.0.0.1", "--port", str(port),
                 "--storage-path", ":memory:", "--log-level", "WARNING"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so stop ends it and only it
            )
        pidfile.write_text(f"{proc.pid} {port}\n")
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            if ping("127.0.0.1", port):
                print(f"mongodb://127.0.0.1:{port}")
                return 0
            time.sleep(0.2)
        if proc.poll() is None:
            _terminate(proc.pid)
            print(f"{SERVER_COMMAND} did not answer ping on port {port} within "
                  f"{args.timeout} s; log: {logfile}", file=sys.stderr)
            pidfile.unlink(missing_ok=True)
            return 1
        pidfile.unlink(missing_ok=True)
    tail = logfile.read_text(errors="replace")[-2000:] if logfile.exists() else ""
    print(f"{SERVER_COMMAND} exited before answering ping (3 attempts). Log tail:\n{tail}",
          file=sys.stderr)
    return 1


def _terminate(pid: int, grace: float = 10.0) -> None:
    # The server leads its own process group (start_new_session), so signal the group.
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not _alive(pid):
                return
            time.sleep(0.1)


def stop(args: argparse.Namespace) -> int:
    pidfile, _ = _state_files(args)
    if not pidfile.exists():
        print(f"No pid file at {pidfile}; nothing to stop.", file=sys.stderr)
        return 0
    pid = int(pidfile.read_text().split()[0])
    if _alive(pid):
        _terminate(pid)
    pidfile.unlink(missing_ok=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("start", "stop"):
        p = sub.add_parser(name)
        p.add_argument("--venv", required=True,
                       help="virtual environment holding secantusdb (its bin/secantusd-py)")
        p.add_argument("--pidfile", help="default: <venv>/secantusd.pid")
        p.add_argument("--logfile", help="default: <venv>/secantusd.log")
        p.add_argument("--timeout", type=float, default=30.0,
                       help="seconds to wait for ping (start only)")
    args = parser.parse_args(argv)
    return start(args) if args.command == "start" else stop(args)


if __name__ == "__main__":
    sys.exit(main())
