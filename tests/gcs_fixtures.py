"""Real GCS endpoints on loopback for tests: the gcp-storage-emulator server, and stub servers that fail."""

from __future__ import annotations

import http.server
import itertools
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

EMULATOR_START_TIMEOUT = 20.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class GcsEmulator:
    """A running gcp-storage-emulator (in-memory) and helpers to fill it through the real client."""

    host: str
    _names: Iterator[int] = field(default_factory=itertools.count)

    def client(self) -> storage.Client:
        """A client of the emulator itself, whatever STORAGE_EMULATOR_HOST says at the moment."""
        options = {"api_endpoint": self.host}
        return storage.Client(project="test-project", credentials=AnonymousCredentials(), client_options=options)

    def bucket(self, files: dict[str, bytes | str | Path] | None = None, name: str | None = None) -> str:
        """Create a fresh bucket holding ``files`` (object name -> content or local file); return its name."""
        name = name or f"test-bucket-{os.getpid()}-{next(self._names)}"
        with self.client() as client:
            client.create_bucket(name)
        for object_name, content in (files or {}).items():
            self.upload(name, object_name, content)
        return name

    def upload(self, bucket: str, name: str, content: bytes | str | Path) -> int:
        """Upload ``content`` as ``gs://bucket/name`` and return the new object's generation."""
        with self.client() as client:
            blob = client.bucket(bucket).blob(name)
            if isinstance(content, Path):
                blob.upload_from_filename(str(content))
            else:
                blob.upload_from_string(content)
            return blob.generation

    def delete(self, bucket: str, name: str) -> None:
        """Delete the object ``gs://bucket/name``."""
        with self.client() as client:
            client.bucket(bucket).blob(name).delete()


def _wait_until_up(url: str, process: subprocess.Popen, log: Path) -> None:
    """Poll the emulator's health check until it answers OK; fail with its log if it exits or stays silent."""
    deadline = time.monotonic() + EMULATOR_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gcp-storage-emulator exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url + "/", timeout=1) as response:
                if response.read() == b"OK":
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(
        f"gcp-storage-emulator did not answer on {url} in {EMULATOR_START_TIMEOUT} s:\n{log.read_text()}"
    )


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory) -> Iterator[GcsEmulator]:
    """The real gcp-storage-emulator as a subprocess on 127.0.0.1, named by STORAGE_EMULATOR_HOST for the session.

    A separate process, so it serves this process and any subprocess (edflow) alike.
    """
    port = free_port()
    host = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("gcs-emulator") / "emulator.log"
    command = [sys.executable, "-m", "gcp_storage_emulator", "start"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--in-memory", "--quiet"]
    with open(log, "wb") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        _wait_until_up(host, process, log)
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("STORAGE_EMULATOR_HOST", host)
            yield GcsEmulator(host=host)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _stub_handler(respond: Callable[[http.server.BaseHTTPRequestHandler], None]) -> type:
    """A request handler class that answers every method with ``respond(handler)``."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def _any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            respond(self)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _any

        def log_message(self, format: str, *args) -> None:
            pass

    return Handler


@dataclass
class StubGcs:
    """A stub GCS endpoint on loopback: its URL and the paths of the requests it answered."""

    host: str
    paths: list[str]


@contextmanager
def _serve(respond: Callable[[http.server.BaseHTTPRequestHandler], None]) -> Iterator[StubGcs]:
    """Run a threaded HTTP server on 127.0.0.1 that answers every request with ``respond``."""
    paths: list[str] = []

    def record_and_respond(handler: http.server.BaseHTTPRequestHandler) -> None:
        paths.append(handler.path)
        respond(handler)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _stub_handler(record_and_respond))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield StubGcs(host=f"http://127.0.0.1:{server.server_port}", paths=paths)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _send_json(handler: http.server.BaseHTTPRequestHandler, status: int, body: dict) -> None:
    """Answer with a JSON body, as the GCS JSON API does."""
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json; charset=UTF-8")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def _answer_unauthorized(handler: http.server.BaseHTTPRequestHandler) -> None:
    """GCS's answer to an anonymous caller on a private bucket."""
    message = "Anonymous caller does not have storage.objects.get access to the Google Cloud Storage object."
    error = {"message": message, "domain": "global", "reason": "required", "locationType": "header"}
    _send_json(handler, 401, {"error": {"code": 401, "message": message, "errors": [error]}})


def _answer_truncated(handler: http.server.BaseHTTPRequestHandler) -> None:
    """Object metadata as GCS gives it, but every media download breaks off after a few bytes."""
    path = urllib.parse.urlparse(handler.path).path
    if path.startswith("/download/"):
        handler.send_response(200)
        handler.send_header("Content-Type", "application/octet-stream")
        handler.send_header("Content-Length", str(TRUNCATED_SIZE))
        handler.end_headers()
        handler.wfile.write(b"x" * 100)
        handler.close_connection = True
        return
    bucket, _, name = path.removeprefix("/storage/v1/b/").partition("/o/")
    name = urllib.parse.unquote(name)
    host = "http://{}:{}".format(*handler.server.server_address[:2])
    media = f"{host}/download/storage/v1/b/{bucket}/o/{urllib.parse.quote(name, safe='')}?generation=7&alt=media"
    meta = {"kind": "storage#object", "bucket": bucket, "name": name, "generation": "7", "metageneration": "1"}
    _send_json(handler, 200, {**meta, "size": str(TRUNCATED_SIZE), "mediaLink": media})


TRUNCATED_SIZE = 100_000


@pytest.fixture
def unauthorized_gcs(monkeypatch) -> Iterator[StubGcs]:
    """STORAGE_EMULATOR_HOST pointed, for one test, at a server that answers everything with HTTP 401."""
    with _serve(_answer_unauthorized) as stub:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", stub.host)
        yield stub


@pytest.fixture
def truncating_gcs(monkeypatch) -> Iterator[StubGcs]:
    """STORAGE_EMULATOR_HOST pointed, for one test, at a server whose downloads break off mid-file."""
    with _serve(_answer_truncated) as stub:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", stub.host)
        yield stub
