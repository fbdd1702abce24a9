"""A real HTTP server on loopback serving a folder, with one path whose body breaks off."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

TRUNCATED_PATH = "/truncated.ckpt"


class _Handler(http.server.SimpleHTTPRequestHandler):
    """The standard library's file server (Last-Modified, If-Modified-Since -> 304) that records statuses."""

    def do_GET(self) -> None:
        if self.path == TRUNCATED_PATH:  # promises 100 kB, sends 100 bytes, hangs up
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b"x" * 100)
            self.close_connection = True
            return
        super().do_GET()

    def log_request(self, code="-", size="-") -> None:
        self.server.statuses.append(int(code) if str(code).isdigit() else code)

    def log_message(self, format: str, *args) -> None:
        pass


@dataclass
class FileServer:
    """Files under ``folder`` served at ``url``; ``statuses`` lists the HTTP status of each answer."""

    folder: Path
    url: str
    statuses: list
    _server: http.server.ThreadingHTTPServer = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    def stop(self) -> None:
        """Shut the server down: its port no longer answers."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()


@pytest.fixture
def file_server(tmp_path) -> Iterator[FileServer]:
    """http.server on 127.0.0.1 serving tmp_path/served for one test."""
    folder = tmp_path / "served"
    folder.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(folder)))
    server.statuses = []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    served = FileServer(folder, f"http://127.0.0.1:{server.server_port}", server.statuses, server, thread)
    try:
        yield served
    finally:
        served.stop()
