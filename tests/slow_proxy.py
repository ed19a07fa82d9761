"""A slow reverse proxy in front of a real tiled server, to test long reads for real.

Requests larger than a limit are answered only after a delay, as a loaded server reading many
files or rows answers them: array reads (``/array/full/``) of more than ``max_rows`` rows of
the first axis and, when ``max_columns`` is given, table reads (``/table/full/``) of more than
that many columns.  The sizes of the requests seen are recorded (``sizes`` for arrays,
``table_sizes`` for tables), so tests can check how a read was split.  ``conftest.py``'s
``slow_proxy`` fixture starts them.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import socket
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["SlowProxy"]


class SlowProxy(http.server.ThreadingHTTPServer):
    """A reverse proxy to the tiled server at ``upstream`` that delays large reads."""

    daemon_threads = True

    def __init__(self, upstream: str, max_rows: int, delay: float,
                 max_columns: int | None = None) -> None:
        self.upstream = urlsplit(upstream)
        self.max_rows, self.delay, self.max_columns = max_rows, delay, max_columns
        self.sizes: list[int] = []
        self.table_sizes: list[int] = []
        self.connections: list[Any] = []
        super().__init__(("127.0.0.1", 0), _ProxyHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        self.connections.append(request)
        super().process_request(request, client_address)

    def stop(self) -> None:
        """Stop listening and drop every open connection (kept-alive ones too)."""
        self.shutdown()
        self.server_close()
        for sock in self.connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def slow(self, path: str) -> bool:
        """Record the size of a read and say whether to answer it late."""
        query = parse_qs(urlsplit(path).query)
        if "/array/full/" in path:
            lo, hi = (query.get("slice", ["0:999999"])[0].split(",")[0].split(":") + [""])[:2]
            n = int(hi or 999999) - int(lo or 0)  # rows "lo:hi[:step]" of the first axis
            self.sizes.append(n)
            return n > self.max_rows
        if "/table/full/" in path:
            n = len(query.get("column", []))
            self.table_sizes.append(n)
            return self.max_columns is not None and n > self.max_columns
        return False


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: SlowProxy

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        proxy = self.server
        if proxy.slow(self.path):
            time.sleep(proxy.delay)
        conn = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port,
                                          timeout=30)
        try:
            # The client's Host header goes through: the server builds the links it hands out
            # (e.g. to the array data) from it, so they lead back through the proxy.
            conn.request("GET", self.path, headers=dict(self.headers.items()))
            response = conn.getresponse()
            body = response.read()
            self.send_response(response.status)
            for k, v in response.getheaders():
                if k.lower() not in ("transfer-encoding", "content-length", "connection"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError, ConnectionRefusedError):
            pass  # the client gave up waiting, or the server stopped while the proxy waited
        finally:
            conn.close()
