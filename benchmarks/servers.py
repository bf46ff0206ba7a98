"""Starting the servers under test (Shoal, moto, s3rver) and measuring their process tree: CPU seconds, RSS."""

from __future__ import annotations

import datetime
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def fresh_workdir(name: str) -> str:
    """An empty scratch directory under benchmarks/ (what a previous run left there is removed)."""
    workdir = os.path.join(HERE, name)
    shutil.rmtree(workdir, ignore_errors=True)
    os.makedirs(workdir)
    return workdir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def client_tls() -> ssl.SSLContext:
    """A client context for our own self-signed benchmark servers: no verification."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def self_signed(directory: str) -> tuple[str, str]:
    """A throwaway certificate and key for 127.0.0.1 (PEM files in ``directory``)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    paths = os.path.join(directory, "bench.crt"), os.path.join(directory, "bench.key")
    with open(paths[0], "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(paths[1], "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return paths


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(name))
    return kids


def tree(pid: int) -> list[int]:
    kids = _children()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def cpu_seconds(pids: list[int]) -> float:
    """user+system CPU of these processes (and of their reaped children)."""
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return total / TICK


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * PAGE
        except OSError:
            continue
    return total


class Monitor:
    """Samples the RSS of a process tree (the sum over its processes) every 50 ms; tracks the peak."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.pids = tree(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        n = 0
        while not self._stop.wait(0.05):
            n += 1
            if n % 20 == 0:
                self.pids = tree(self.pid)
            self.peak = max(self.peak, rss_bytes(self.pids))

    def rss(self) -> int:
        return rss_bytes(self.pids)

    def reset_peak(self) -> None:
        self.peak = self.rss()

    def cpu(self) -> float:
        return cpu_seconds(self.pids)

    def stop(self) -> None:
        self._stop.set()


class Server:
    name = "?"
    access_key = secret_key = ""
    durability = ""

    def __init__(self, workdir: str) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.data_dir = os.path.join(workdir, self.name)
        shutil.rmtree(self.data_dir, ignore_errors=True)
        os.makedirs(self.data_dir)
        self.proc: subprocess.Popen | None = None
        self.monitor: Monitor | None = None
        self.log = open(os.path.join(workdir, f"{self.name}.log"), "wb")  # noqa: SIM115 (closed in stop)

    start_timeout = 60.0  # seconds until it must answer

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        for k in list(env):
            if k.startswith("AWS_"):
                env.pop(k)
        return env

    def version(self) -> str:
        return "?"

    def start(self) -> Server:
        self.proc = subprocess.Popen(self.command(), env=self.env(), stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.time() + self.start_timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log.name}")
            try:
                urllib.request.urlopen(self.endpoint + "/", timeout=1, context=client_tls())
                break
            except urllib.error.HTTPError:
                break  # it answers (403 without credentials)
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"{self.name} did not start")
        time.sleep(0.3)  # let worker processes come up before the tree is taken
        self.monitor = Monitor(self.proc.pid)
        return self

    def stop(self) -> None:
        if self.monitor:
            self.monitor.stop()
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


class Shoal(Server):
    name = "shoal"
    access_key, secret_key = "benchadmin", "benchadmin-secret"
    durability = "durable (default): blobs fsync'd + renamed + dir fsync'd, SQLite WAL synchronous=FULL, group commit"

    def __init__(self, workdir: str, workers: int = 1, tls: bool = False) -> None:
        self.workers = workers
        self.name = f"shoal w{workers}"
        super().__init__(workdir)
        self.tls = self_signed(workdir) if tls else None
        if tls:
            self.endpoint = f"https://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        tls = ["--tls-cert", self.tls[0], "--tls-key", self.tls[1]] if self.tls else []
        return [sys.executable, "-m", "shoal", "server", self.data_dir, "--address", f"127.0.0.1:{self.port}",
                "--workers", str(self.workers), "--lifecycle-interval", "0", *tls]

    def env(self) -> dict[str, str]:
        env = super().env()
        env.update(SHOAL_ROOT_USER=self.access_key, SHOAL_ROOT_PASSWORD=self.secret_key, PYTHONPATH=REPO)
        return env

    def version(self) -> str:
        rev = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "shoal"], capture_output=True, text=True)
        return f"git {rev.stdout.strip()}{'+dirty' if dirty.stdout.strip() else ''}, workers={self.workers}"


class Moto(Server):
    name = "moto"
    access_key, secret_key = "testing", "testing"
    durability = "none available (in memory)"

    def command(self) -> list[str]:
        exe = shutil.which("moto_server") or "moto_server"
        return [exe, "-H", "127.0.0.1", "-p", str(self.port)]

    def version(self) -> str:
        from importlib.metadata import version

        return f"moto {version('moto')}"


class S3rver(Server):
    name = "s3rver"
    access_key, secret_key = "S3RVER", "S3RVER"
    durability = "none available (plain files, no fsync)"

    def command(self) -> list[str]:
        return [os.path.join(HERE, "node_modules", ".bin", "s3rver"), "-d", self.data_dir, "-p", str(self.port),
                "-a", "127.0.0.1", "--silent"]

    def version(self) -> str:
        import json

        with open(os.path.join(HERE, "node_modules", "s3rver", "package.json")) as f:
            v = json.load(f)["version"]
        node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
        return f"s3rver {v} (node {node})"


PEERS = {"shoal": Shoal, "moto": Moto, "s3rver": S3rver}
