"""A real S3 API on loopback for tests: moto's server in a subprocess, open or enforcing credentials."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import pytest
from gcs_fixtures import free_port

START_TIMEOUT = 30.0
TEST_KEY = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
REGION = "us-east-1"
# A private server answers this many requests without credentials: the set-up of its one user and bucket
PRIVATE_SETUP_REQUESTS = 3


@dataclass
class S3Server:
    """A running moto S3 server and helpers to fill it through boto3."""

    endpoint: str
    credentials: dict = field(default_factory=lambda: dict(TEST_KEY))
    _names: Iterator[int] = field(default_factory=itertools.count)

    def client(self):
        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION, **self.credentials)

    def bucket(
        self, files: dict[str, bytes | str | Path] | None = None, name: str | None = None, public: bool = False
    ) -> str:
        """Create a fresh bucket holding ``files`` (key -> content or local file), readable by anyone if
        ``public``; return its name."""
        name = name or f"test-bucket-{os.getpid()}-{next(self._names)}"
        self.client().create_bucket(Bucket=name, **({"ACL": "public-read"} if public else {}))
        for key, content in (files or {}).items():
            self.upload(name, key, content, public)
        return name

    def upload(self, bucket: str, key: str, content: bytes | str | Path, public: bool = False) -> str:
        """Put ``content`` at ``s3://bucket/key`` and return the object's ETag."""
        body = content.read_bytes() if isinstance(content, Path) else content
        body = body.encode() if isinstance(body, str) else body
        acl = {"ACL": "public-read"} if public else {}
        return self.client().put_object(Bucket=bucket, Key=key, Body=body, **acl)["ETag"]

    def read(self, bucket: str, key: str) -> bytes:
        return self.client().get_object(Bucket=bucket, Key=key)["Body"].read()

    def environment(self) -> dict[str, str]:
        """What a process needs to use this server with its credentials (boto3 reads these)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.credentials["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": self.credentials["aws_secret_access_key"],
            "AWS_DEFAULT_REGION": REGION,
        }


def _start(log: Path, extra_env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, **extra_env}
    with open(log, "w") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=env,
        )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/data.json", timeout=1).close()
            return process, endpoint
        except OSError:
            if process.poll() is not None:
                break
            time.sleep(0.1)
    process.kill()
    pytest.fail(f"moto's S3 server did not start: {log.read_text()[-2000:]}")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> Iterator[S3Server]:
    """An S3 server that accepts any credentials."""
    process, endpoint = _start(tmp_path_factory.mktemp("moto") / "open.log", {})
    yield S3Server(endpoint)
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture
def s3(s3_server, monkeypatch) -> S3Server:
    """The open server, with this process's environment pointing boto3 at it."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in s3_server.environment().items():
        monkeypatch.setenv(name, value)
    return s3_server


@pytest.fixture(scope="session")
def private_s3(tmp_path_factory) -> Iterator[tuple[S3Server, str]]:
    """An S3 server that checks credentials, with one user allowed everything and a private bucket holding
    ``model-1.ckpt``; yields the server (with that user's key) and the bucket."""
    extra = {"INITIAL_NO_AUTH_ACTION_COUNT": str(PRIVATE_SETUP_REQUESTS)}
    process, endpoint = _start(tmp_path_factory.mktemp("moto") / "private.log", extra)
    iam = boto3.client("iam", endpoint_url=endpoint, region_name=REGION, **TEST_KEY)
    iam.create_user(UserName="trainer")
    key = iam.create_access_key(UserName="trainer")["AccessKey"]
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
    iam.put_user_policy(UserName="trainer", PolicyName="all-s3", PolicyDocument=json.dumps(policy))
    server = S3Server(
        endpoint, {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}
    )
    bucket = server.bucket({"model-1.ckpt": b"weights"}, name="private-bucket")
    yield server, bucket
    process.terminate()
    process.wait(timeout=30)
