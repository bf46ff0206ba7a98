"""Test fixtures: a real ``shoal server`` subprocess on a free port, driven by real clients."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import boto3
import pytest
from botocore.config import Config

ROOT = ("shoaltestroot", "shoaltestroot-secret-key")
ALT = ("ALTUSERACCESSKEY0001", "alt-user-secret-key-0123456789abcdefghij")
OTHER = ("OTHERUSERACCESSKEY02", "other-user-secret-key-0123456789abcdefgh")

# Clients must talk plain HTTP to our server whatever the machine's AWS settings are.
for name in ("AWS_CA_BUNDLE", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
             "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
    os.environ.pop(name, None)
os.environ["AWS_CONFIG_FILE"] = os.devnull
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServerProcess:
    data_dir: str
    port: int
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    log_path: str = ""

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> ServerProcess:
        env = dict(os.environ)
        env.update(self.env)
        env.setdefault("SHOAL_ROOT_USER", ROOT[0])
        env.setdefault("SHOAL_ROOT_PASSWORD", ROOT[1])
        cmd = [sys.executable, "-m", "shoal", "server", self.data_dir, "--address", f"127.0.0.1:{self.port}",
               "--user", f"{ALT[0]}:{ALT[1]}", "--user", f"{OTHER[0]}:{OTHER[1]}", *self.args]
        self.log_path = os.path.join(os.path.dirname(self.data_dir.rstrip("/")), f"server-{self.port}.log")
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log()}")
            try:
                with urllib.request.urlopen(f"{self.endpoint}/minio/health/ready", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"server did not become ready: {self.log()}")

    def stop(self, sig: str = "TERM", timeout: float = 30.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            if sig == "KILL":
                self.proc.kill()
            else:
                self.proc.terminate()
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.proc = None
        return code

    def log(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-4000:].decode(errors="replace")
        except OSError:
            return ""


def client(endpoint: str, creds: tuple[str, str] = ROOT, **config) -> boto3.client:
    """A boto3 client in its current default configuration (CRC checksums, aws-chunked trailers)."""
    return boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=creds[0], aws_secret_access_key=creds[1],
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, **config),
    )


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> Iterator[ServerProcess]:
    base = tmp_path_factory.mktemp("shoal")
    srv = ServerProcess(str(base / "data"), free_port()).start()
    yield srv
    srv.stop()


@pytest.fixture
def make_server() -> Iterator:
    """Start extra servers (own data dir) for tests that restart, kill or reconfigure them."""
    started: list[ServerProcess] = []
    base = tempfile.mkdtemp(prefix="shoal-test-")

    def make(args: list[str] | None = None, env: dict[str, str] | None = None, data_dir: str | None = None,
             port: int | None = None) -> ServerProcess:
        srv = ServerProcess(data_dir or os.path.join(base, f"data-{len(started)}"), port or free_port(),
                            args or [], env or {})
        started.append(srv)
        return srv.start()

    yield make
    for srv in started:
        srv.stop(sig="KILL")
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def s3(server):
    return client(server.endpoint)


@pytest.fixture(scope="session")
def alt_s3(server):
    return client(server.endpoint, ALT)


@pytest.fixture(scope="module")
def raw(server):
    """Raw HTTP against the shared server (tests/rawhttp.py)."""
    from rawhttp import Raw  # not at the top: rawhttp imports this module

    return Raw(server.port)


@pytest.fixture
def rb(raw) -> str:
    """A fresh bucket, created with a raw signed request."""
    name = f"raw-{uuid.uuid4().hex[:20]}"
    assert raw.signed("PUT", f"/{name}").status == 200
    return name


@pytest.fixture
def bucket(s3) -> str:
    name = f"test-{uuid.uuid4().hex[:20]}"
    s3.create_bucket(Bucket=name)
    return name


def error_code(exc) -> str:
    return exc.response["Error"]["Code"]


def status_of(exc) -> int:
    return exc.response["ResponseMetadata"]["HTTPStatusCode"]


# -- slow tests: skipped unless asked for ----------------------------------------------------------------------


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False,
                     help="also run tests marked slow (multi-GiB transfers); or set SHOAL_SLOW=1")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow") or os.environ.get("SHOAL_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: pass --runslow or set SHOAL_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


# -- two ordinary (non-admin) users and an anonymous caller, for access-control suites --------------------------


@pytest.fixture(scope="module")
def alt(server):
    """ALT: owns the buckets under test in the access-control suites."""
    return client(server.endpoint, ALT)


@pytest.fixture(scope="module")
def other(server):
    """OTHER: the caller without rights of its own."""
    return client(server.endpoint, OTHER)


@pytest.fixture(scope="module")
def anon(server):
    from access_helpers import anonymous_client

    return anonymous_client(server.endpoint)


@pytest.fixture(scope="module")
def alt_id(alt) -> str:
    from access_helpers import canonical_id

    return canonical_id(alt)


@pytest.fixture(scope="module")
def other_id(other) -> str:
    from access_helpers import canonical_id

    return canonical_id(other)
