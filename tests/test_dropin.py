"""A drop-in for MinIO in one command: declarative bootstrap, typed configuration, metrics, TLS, the Docker
image's command, compose examples, and mirror / import / export."""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import json
import os
import re
import shlex
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest
import yaml
from botocore.exceptions import ClientError

from conftest import ALT, ROOT, ServerProcess, client, error_code, free_port
from rawhttp import request_bytes
from s3util import metric, scrape

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
READER = ("READERUSERACCESSKEY1", "reader-user-secret-key-0123456789abcdef")


def shoal(*args: str, env: dict | None = None, check: bool = False, timeout: float = 60) -> subprocess.CompletedProcess:
    full = dict(os.environ, PYTHONPATH=REPO)
    full.update(env or {})
    proc = subprocess.run([sys.executable, "-m", "shoal", *args], env=full, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"shoal {' '.join(args)} exited {proc.returncode}: {proc.stdout}{proc.stderr}")
    return proc


def anonymous_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


# -- declarative bootstrap ---------------------------------------------------------------------------------


BOOTSTRAP_TOML = """
[[users]]
access_key = "{reader_ak}"
secret_key = "{reader_sk}"
name = "reader"
policies = ["readonly"]

[[buckets]]
name = "site"
anonymous = "public-read"

[[buckets]]
name = "docs"
versioning = true
policy = {{ Version = "2012-10-17", Statement = [
  {{ Effect = "Allow", Principal = "*", Action = "s3:GetObject", Resource = "arn:aws:s3:::docs/public/*" }} ] }}

[[buckets.cors]]
allowed_origins = ["https://app.example"]
allowed_methods = ["GET", "PUT"]
allowed_headers = ["*"]
max_age_seconds = 600

[[buckets.lifecycle]]
id = "tmp"
prefix = "tmp/"
expiration_days = 3
"""


def test_bootstrap_applied_and_idempotent_across_restarts(make_server, tmp_path):
    seed = tmp_path / "seed"
    (seed / "css").mkdir(parents=True)
    (seed / "index.html").write_bytes(b"<h1>hi</h1>")
    (seed / "css" / "app.css").write_bytes(b"body{}")
    config = tmp_path / "shoal.toml"
    config.write_text(BOOTSTRAP_TOML.format(reader_ak=READER[0], reader_sk=READER[1]))
    env = {"SHOAL_CONFIG": str(config), "SHOAL_BUCKETS": "envbucket:versioned,site:versioned"}
    args = ["--bucket", "flagbucket", "--seed", f"{seed}=site/static"]
    srv = make_server(args=args, env=env)
    s3 = client(srv.endpoint)

    names = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert {"site", "docs", "envbucket", "flagbucket"} <= names
    assert s3.get_bucket_versioning(Bucket="docs")["Status"] == "Enabled"
    assert s3.get_bucket_versioning(Bucket="envbucket")["Status"] == "Enabled"
    # "site" is declared in the file (public-read) and in the environment (versioned): both apply.
    assert s3.get_bucket_versioning(Bucket="site")["Status"] == "Enabled"
    assert "flagbucket" in names and "Status" not in s3.get_bucket_versioning(Bucket="flagbucket")
    # Seed files, with content types, readable anonymously through the public-read policy.
    status, body = anonymous_get(f"{srv.endpoint}/site/static/index.html")
    assert (status, body) == (200, b"<h1>hi</h1>")
    assert s3.head_object(Bucket="site", Key="static/index.html")["ContentType"] == "text/html"
    assert s3.get_object(Bucket="site", Key="static/css/app.css")["Body"].read() == b"body{}"
    # docs: a policy (anonymous read under public/ only), CORS and lifecycle.
    s3.put_object(Bucket="docs", Key="public/a.txt", Body=b"open")
    s3.put_object(Bucket="docs", Key="private/b.txt", Body=b"closed")
    assert anonymous_get(f"{srv.endpoint}/docs/public/a.txt") == (200, b"open")
    assert anonymous_get(f"{srv.endpoint}/docs/private/b.txt")[0] == 403
    rule = s3.get_bucket_cors(Bucket="docs")["CORSRules"][0]
    assert rule["AllowedOrigins"] == ["https://app.example"] and rule["MaxAgeSeconds"] == 600
    lc = s3.get_bucket_lifecycle_configuration(Bucket="docs")["Rules"][0]
    assert lc["ID"] == "tmp" and lc["Expiration"]["Days"] == 3
    # The declared user and its readonly policy.
    reader = client(srv.endpoint, READER)
    assert reader.list_objects_v2(Bucket="docs")["KeyCount"] == 2
    with pytest.raises(ClientError) as e:
        reader.put_object(Bucket="docs", Key="x", Body=b"x")
    assert error_code(e.value) == "AccessDenied"

    # Changes made through the API: the declared settings come back at the next start, the rest stays.
    s3.delete_bucket_cors(Bucket="docs")
    s3.put_object(Bucket="site", Key="static/index.html", Body=b"edited")
    s3.put_object(Bucket="flagbucket", Key="keep", Body=b"me")
    srv.stop()
    srv2 = make_server(args=args, env=env, data_dir=srv.data_dir)
    s3 = client(srv2.endpoint)
    assert {b["Name"] for b in s3.list_buckets()["Buckets"]} == names
    assert s3.get_bucket_cors(Bucket="docs")["CORSRules"][0]["AllowedOrigins"] == ["https://app.example"]
    assert s3.get_bucket_versioning(Bucket="docs")["Status"] == "Enabled"
    assert s3.get_object(Bucket="site", Key="static/index.html")["Body"].read() == b"edited"  # never overwritten
    assert s3.get_object(Bucket="flagbucket", Key="keep")["Body"].read() == b"me"
    assert anonymous_get(f"{srv2.endpoint}/docs/public/a.txt") == (200, b"open")
    assert len(s3.list_object_versions(Bucket="site", Prefix="static/index.html")["Versions"]) == 2
    assert "bootstrap: 4 buckets declared (0 created)" in srv2.log()


# -- MinIO compatibility: environment names, health paths ------------------------------------------------------


def test_minio_env_names_and_health_paths(make_server):
    # conftest sets SHOAL_ROOT_USER; an empty value counts as unset, so MinIO's names apply.
    srv = make_server(env={"SHOAL_ROOT_USER": "", "SHOAL_ROOT_PASSWORD": "", "MINIO_ROOT_USER": "minio-admin",
                           "MINIO_ROOT_PASSWORD": "minio-admin-secret", "SHOAL_BUCKETS": "one,two:versioned",
                           "MINIO_REGION": "eu-west-1"})
    s3 = client(srv.endpoint, ("minio-admin", "minio-admin-secret"))
    assert {"one", "two"} <= {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert s3.get_bucket_location(Bucket="one").get("LocationConstraint") == "eu-west-1"
    for path in ("/minio/health/live", "/minio/health/ready", "/minio/health/cluster", "/minio/health/cluster/read"):
        assert anonymous_get(srv.endpoint + path)[0] == 200, path
    with pytest.raises(ClientError):
        client(srv.endpoint, ROOT).list_buckets()  # the conftest root is not configured here


def test_readiness_reflects_storage(tmp_path):
    from shoal.server import Readiness
    from shoal.storage.engine import Storage

    storage = Storage.open_local(str(tmp_path))
    try:
        readiness = Readiness(storage, str(tmp_path), interval=0)
        assert not readiness.ready()  # start-up not finished
        readiness.started = True
        assert readiness.ready()
        assert not readiness.ready(draining=True)
        os.mkdir(readiness.probe)  # the data directory cannot be written (the probe file cannot be created)
        assert not readiness.ready() and "storage check failed" in readiness.reason
        os.rmdir(readiness.probe)
        assert readiness.ready()
    finally:
        storage.close()


# -- configuration: errors, show, help -----------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "env", "file_text", "names"), [
    (["--workers", "0"], {}, None, "--workers"),
    ([], {"SHOAL_WORKERS": "many"}, None, "SHOAL_WORKERS"),
    (["--address", "nowhere"], {}, None, "--address"),
    (["--bucket", "ok", "--bucket", "Bad_Name"], {}, None, "--bucket"),
    (["--bucket", "bbb:sparkly"], {}, None, "--bucket"),
    (["--user", "justakey"], {}, None, "--user"),
    ([], {"SHOAL_ROOT_USER": "x", "SHOAL_ROOT_PASSWORD": ""}, None, "root_password"),
    ([], {}, "log_level = 'loud'\n", "shoal.toml: log_level"),
    ([], {}, "colour = 'blue'\n", "unknown setting 'colour'"),
    ([], {}, "workers = [\n", "cannot parse"),
    ([], {}, "[[buckets]]\nname = 'bbb'\n[[buckets.cors]]\nallowed_origins = ['*']\nallowed_methods = ['FETCH']\n",
     "shoal.toml: buckets[0]"),
    ([], {}, "[[buckets]]\nname = 'bbb'\npolicy = '{not json'\n", "MalformedPolicy"),
    (["--master-key", "c2hvcnQ="], {}, None, "--master-key"),
    (["--tls-cert", "/nonexistent.pem", "--tls-key", "/nonexistent.key"], {}, None, "--tls-cert"),
])
def test_bad_configuration_is_one_line_and_exit_2(tmp_path, args, env, file_text, names):
    env = {"SHOAL_ROOT_USER": "", "SHOAL_ROOT_PASSWORD": "", **env}
    if file_text is not None:
        (tmp_path / "shoal.toml").write_text(file_text)
        args = [*args, "--config", str(tmp_path / "shoal.toml")]
    proc = shoal("config", "show", *args, env=env)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and names in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_server_refuses_bad_configuration_before_starting(tmp_path):
    proc = shoal("server", str(tmp_path / "d"), "--address", f"127.0.0.1:{free_port()}",
                 env={"SHOAL_LIFECYCLE_INTERVAL": "-1"})
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "SHOAL_LIFECYCLE_INTERVAL" in proc.stderr


def test_config_show_masks_secrets_and_reports_origins(tmp_path):
    (tmp_path / "shoal.yaml").write_text("region: eu-central-1\nworkers: 3\nbuckets: [aaa, 'bbb:versioned']\n"
                                         "users:\n  - access_key: filekey\n    secret_key: file-secret-value\n")
    master = "A" * 43 + "="
    proc = shoal("config", "show", "--config", str(tmp_path / "shoal.yaml"), "--workers", "2",
                 "--user", "flagkey:flag-secret-value", env={"SHOAL_ROOT_USER": "boss",
                                                             "SHOAL_ROOT_PASSWORD": "boss-secret-value",
                                                             "SHOAL_MASTER_KEY": master}, check=True)
    out = proc.stdout
    for secret in ("boss-secret-value", "file-secret-value", "flag-secret-value", master):
        assert secret not in out
    assert "********" in out
    assert re.search(r"workers\s+= 2\s+\[--workers\]", out)
    assert re.search(r"region\s+= eu-central-1\s+\[shoal.yaml: region\]", out)
    assert re.search(r"root_user\s+= boss\s+\[SHOAL_ROOT_USER\]", out)
    data = json.loads(shoal("config", "show", "--json", "--config", str(tmp_path / "shoal.yaml"),
                            env={"SHOAL_ROOT_USER": "", "SHOAL_ROOT_PASSWORD": ""}, check=True).stdout)
    assert [b["name"] for b in data["buckets"]] == ["aaa", "bbb"] and data["buckets"][1]["versioning"] is True
    assert data["users"][0]["secret_key"] == "********" and data["workers"] == 3


def test_help_and_readme_document_every_setting():
    from shoal.config import reference_markdown, settings_info

    text = " ".join(shoal("server", "--help", env={"COLUMNS": "200"}, check=True).stdout.split())
    for name, meta in settings_info().items():
        if meta["flag"]:
            assert meta["flag"] in text, name
        for env in meta["env"]:
            assert env in text, env
    with open(os.path.join(REPO, "README.md")) as f:
        readme = f.read()
    assert reference_markdown() in readme, "README's configuration reference is stale: paste `shoal config reference`"
    assert shoal("config", "reference", check=True).stdout.strip() == reference_markdown()


# -- metrics and logs ------------------------------------------------------------------------------------------


def test_metrics_and_json_access_log(make_server):
    srv = make_server(args=["--log-format", "json", "--access-log"])
    s3 = client(srv.endpoint)
    s3.create_bucket(Bucket="measured")
    for i in range(3):
        s3.put_object(Bucket="measured", Key=f"k{i}", Body=b"x" * 1000)
    first = scrape(srv.endpoint)
    assert metric(first, "shoal_requests_total", operation="PutObject", status="200") == 3
    assert metric(first, "shoal_received_bytes_total", operation="PutObject") >= 3000
    assert metric(first, "shoal_bucket_objects", bucket="measured") == 3
    assert metric(first, "shoal_bucket_bytes", bucket="measured") == 3000
    assert metric(first, "shoal_disk_free_bytes") > 0
    assert metric(first, "shoal_request_duration_seconds_count", operation="PutObject") == 3
    # Tallied per request, added to the histogram in batches: buckets are cumulative, the sum is the real one.
    assert metric(first, "shoal_request_duration_seconds_bucket", operation="PutObject", le="+Inf") == 3
    assert metric(first, "shoal_request_duration_seconds_bucket", operation="PutObject", le="60.0") == 3
    assert 0 < metric(first, "shoal_request_duration_seconds_sum", operation="PutObject") < 30
    s3.get_object(Bucket="measured", Key="k0")["Body"].read()
    with pytest.raises(ClientError):
        s3.get_object(Bucket="measured", Key="missing")
    second = scrape(srv.endpoint, "/minio/v2/metrics/cluster")
    assert metric(second, "shoal_requests_total", operation="GetObject", status="200") == 1
    assert metric(second, "shoal_requests_total", operation="GetObject", status="404") == 1
    assert metric(second, "shoal_sent_bytes_total", operation="GetObject") >= 1000
    assert metric(second, "shoal_requests_total", operation="Metrics", status="200") == 1
    assert ("shoal_gc_blobs_freed_total", ()) in second and ("shoal_lifecycle_passes_total", ()) in second
    # A bucket named "metrics" is still a bucket for S3 requests.
    s3.create_bucket(Bucket="metrics")
    s3.put_object(Bucket="metrics", Key="m", Body=b"1")
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="metrics")["Contents"]] == ["m"]
    lines = [json.loads(line) for line in srv.log().splitlines() if line.startswith("{")]
    puts = [line for line in lines if line.get("operation") == "PutObject"]
    assert puts and puts[0]["status"] == 200 and puts[0]["bytes_in"] >= 1000 and puts[0]["logger"] == "shoal.access"


def test_metrics_are_server_wide_with_workers(make_server):
    srv = make_server(args=["--workers", "2"])
    s3 = client(srv.endpoint)
    s3.create_bucket(Bucket="many")
    for i in range(20):
        s3.put_object(Bucket="many", Key=f"k{i}", Body=b"y")
    # Whichever worker answers, the counts are the sum over both: the other worker's requests show up within a
    # second (each worker adds its tallies to the shared files in batches).
    time.sleep(1.2)
    for _ in range(4):
        samples = scrape(srv.endpoint)
        assert metric(samples, "shoal_requests_total", operation="PutObject", status="200") == 20
        assert metric(samples, "shoal_bucket_objects", bucket="many") == 20


# -- TLS ------------------------------------------------------------------------------------------------------


def self_signed(directory) -> tuple[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = os.path.join(directory, "public.crt"), os.path.join(directory, "private.key")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return cert_path, key_path


class TlsServer(ServerProcess):
    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self.port}"


@pytest.mark.parametrize("how", ["flags", "certs-dir"])
def test_tls_round_trip(tmp_path, monkeypatch, how):
    certs = tmp_path / "certs"
    certs.mkdir()
    cert, key = self_signed(str(certs))
    monkeypatch.setenv("SSL_CERT_FILE", cert)  # the fixture's readiness poll trusts our certificate
    args = ["--tls-cert", cert, "--tls-key", key] if how == "flags" else ["--certs-dir", str(certs)]
    srv = TlsServer(str(tmp_path / "data"), free_port(), args).start()
    try:
        s3 = boto3.client("s3", endpoint_url=srv.endpoint, aws_access_key_id=ROOT[0], aws_secret_access_key=ROOT[1],
                          region_name="us-east-1", verify=cert)
        s3.create_bucket(Bucket="secure")
        data = os.urandom(200_000)
        s3.put_object(Bucket="secure", Key="blob", Body=data)
        assert s3.get_object(Bucket="secure", Key="blob")["Body"].read() == data
        # Larger, several at once: read in shares of the read budget, every byte still in place.
        large = os.urandom(3 * 1024 * 1024 + 7)
        s3.put_object(Bucket="secure", Key="large", Body=large)
        with ThreadPoolExecutor(6) as pool:
            got = list(pool.map(lambda _: s3.get_object(Bucket="secure", Key="large")["Body"].read(), range(6)))
        assert got == [large] * 6
        with pytest.raises((OSError, http.client.HTTPException)):  # plain HTTP is not served on the TLS port
            urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/minio/health/live", timeout=3).read()
        health = shoal("healthcheck", env={"SHOAL_ADDRESS": f"127.0.0.1:{srv.port}",
                                           "SHOAL_CERTS_DIR": str(certs)}, check=True)
        assert health.stdout.startswith("ok: https://")
    finally:
        srv.stop()


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def test_closed_tls_connections_are_freed_at_once(tmp_path, monkeypatch):
    """Uploads, each on a TLS connection of its own: a connection's SSL state and buffers (~0.5 MiB) go when it
    closes. Had they been left in a reference cycle, only the cyclic GC's rare full collections would free them
    (streaming large bodies allocates few objects), and the server's memory would grow with every connection."""
    certs = tmp_path / "certs"
    certs.mkdir()
    cert, key = self_signed(str(certs))
    monkeypatch.setenv("SSL_CERT_FILE", cert)
    srv = TlsServer(str(tmp_path / "data"), free_port(), ["--tls-cert", cert, "--tls-key", key]).start()
    try:
        s3 = boto3.client("s3", endpoint_url=srv.endpoint, aws_access_key_id=ROOT[0], aws_secret_access_key=ROOT[1],
                          region_name="us-east-1", verify=cert)
        s3.create_bucket(Bucket="conns")
        body = os.urandom(1 << 20)  # received straight into the server's buffers (its direct receive)
        context = ssl.create_default_context(cafile=cert)

        def upload(i: int) -> None:
            url = s3.generate_presigned_url("put_object", Params={"Bucket": "conns", "Key": f"k{i % 8}"})
            target = url[len(srv.endpoint):]
            with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as plain, \
                    context.wrap_socket(plain, server_hostname="127.0.0.1") as tls:
                tls.sendall(request_bytes("PUT", target, {"Host": f"127.0.0.1:{srv.port}",
                                                          "Content-Length": str(len(body))}, body))
                answer = b""
                while b"\r\n\r\n" not in answer:  # the head of an answer with no body; then the client closes
                    chunk = tls.recv(65536)
                    assert chunk, answer
                    answer += chunk
            assert answer.startswith(b"HTTP/1.1 200 "), answer[:300]

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(upload, range(16)))  # warm-up: caches, buffers, the allocator's arenas
            time.sleep(0.5)
            before = _rss(srv.proc.pid)
            list(pool.map(upload, range(96)))
            time.sleep(0.5)
            grown = _rss(srv.proc.pid) - before
        # Left to the GC, they kept ~20 MiB here (0-1 MiB freed at once).
        assert grown < 8 * (1 << 20), f"RSS grew by {grown >> 20} MiB over 96 closed TLS connections"
    finally:
        srv.stop()


# -- the Docker image's command, the compose examples ------------------------------------------------------------


def dockerfile() -> dict:
    out: dict = {"ENV": {}}
    with open(os.path.join(REPO, "Dockerfile")) as f:
        text = f.read().replace("\\\n", " ")
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word == "ENV":
            out["ENV"].update(dict(p.split("=", 1) for p in shlex.split(rest)))
        else:
            out.setdefault(word, []).append(rest.strip())
    return out


def test_dockerfile_entrypoint_starts_a_server(tmp_path):
    d = dockerfile()
    assert d["FROM"] == ["python:3.11-slim"]
    assert d["USER"] and d["USER"][-1] not in ("root", "0")
    assert d["VOLUME"] == ["/data"] and d["EXPOSE"] == ["9000"]
    entry, cmd = json.loads(d["ENTRYPOINT"][-1]), json.loads(d["CMD"][-1])
    assert entry == ["shoal"] and cmd == ["server", "/data"]
    health = d["HEALTHCHECK"][-1]
    health_cmd = json.loads(health[health.index("CMD") + 3:].strip())
    assert "curl" not in health and "wget" not in health
    port = free_port()
    env = {**os.environ, **d["ENV"], "PYTHONPATH": REPO, "SHOAL_ADDRESS": f"127.0.0.1:{port}",
           "MINIO_ROOT_USER": "docker-admin", "MINIO_ROOT_PASSWORD": "docker-admin-secret", "SHOAL_BUCKETS": "from-env"}
    env.pop("SHOAL_ROOT_USER", None)
    env.pop("SHOAL_ROOT_PASSWORD", None)
    command = [sys.executable, "-m", *entry, *(str(tmp_path / "data") if a == "/data" else a for a in cmd)]
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        endpoint = f"http://127.0.0.1:{port}"
        deadline = time.time() + 20
        while time.time() < deadline and anonymous_get_safe(endpoint + "/minio/health/ready") != 200:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            time.sleep(0.05)
        s3 = client(endpoint, ("docker-admin", "docker-admin-secret"))
        assert "from-env" in {b["Name"] for b in s3.list_buckets()["Buckets"]}
        assert health_cmd[0] == "shoal"
        check = subprocess.run([sys.executable, "-m", *health_cmd], env=env, capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0
        log.close()


def anonymous_get_safe(url: str) -> int:
    try:
        return anonymous_get(url)[0]
    except OSError:
        return 0


def compose_files() -> list[str]:
    base = os.path.join(REPO, "examples")
    return sorted(os.path.join(base, d, "compose.yaml") for d in os.listdir(base)
                  if os.path.isfile(os.path.join(base, d, "compose.yaml")))


def test_compose_examples_use_real_settings(tmp_path):
    from shoal.cli_serve import server
    from shoal.config import CONFIG_ENV, ENV_NAMES, load

    files = compose_files()
    assert len(files) >= 2
    for path in files:
        with open(path) as f:
            doc = yaml.safe_load(f)
        services = doc["services"]
        assert not any("minio" in str(s.get("image", "")) for s in services.values()), "no MinIO/mc containers"
        shoals = {n: s for n, s in services.items() if s.get("build") == "../.." or "shoal" in str(s.get("image"))}
        assert shoals, path
        for name, svc in shoals.items():
            env = svc.get("environment", {})
            env = dict(e.split("=", 1) for e in env) if isinstance(env, list) else {k: str(v) for k, v in env.items()}
            for var in env:
                if var.startswith(("SHOAL_", "MINIO_")):
                    assert var in ENV_NAMES or var == CONFIG_ENV, f"{path}: {name}: {var} is not a Shoal setting"
            command = svc.get("command", ["server", "/data"])
            command = shlex.split(command) if isinstance(command, str) else command
            assert command[0] == "server", path
            server.make_context("server", list(command[1:]))  # the flags parse
            # Map the service's volumes onto this checkout, then load its whole configuration.
            mounts = {}
            for volume in svc.get("volumes", []):
                src, dst = volume.split(":")[:2]
                if src.startswith("."):
                    mounts[dst] = os.path.normpath(os.path.join(os.path.dirname(path), src))
            if CONFIG_ENV in env:
                with open(mounts[env[CONFIG_ENV]]) as f:
                    text = f.read()
                for dst, src in mounts.items():
                    text = text.replace(f'"{dst}', f'"{src}')
                local = tmp_path / os.path.basename(env[CONFIG_ENV])
                local.write_text(text)
                env[CONFIG_ENV] = str(local)
            load({}, env=env)  # raises ConfigError on anything wrong


# -- mirror, import, export ------------------------------------------------------------------------------------------


def snapshot(s3, bucket: str) -> dict:
    """Everything a mirror must carry over: versions in order with bodies, metadata, content types and tags."""
    out = {}
    versions = s3.list_object_versions(Bucket=bucket)
    entries = [(v, False) for v in versions.get("Versions", [])] + [(m, True) for m in versions.get("DeleteMarkers",
                                                                                                     [])]
    entries.sort(key=lambda e: (e[0]["Key"], e[0]["LastModified"], e[0]["IsLatest"]))
    for entry, marker in entries:
        key = entry["Key"]
        if marker:
            out.setdefault(key, []).append("delete-marker")
            continue
        extra = {"VersionId": entry["VersionId"]} if entry["VersionId"] != "null" else {}
        got = s3.get_object(Bucket=bucket, Key=key, **extra)
        tags = s3.get_object_tagging(Bucket=bucket, Key=key, **extra)["TagSet"]
        out.setdefault(key, []).append((got["Body"].read(), got["ETag"], got.get("ContentType"),
                                        got.get("Metadata"), got.get("CacheControl"), sorted((t["Key"], t["Value"])
                                                                                             for t in tags)))
    return out


def test_mirror_between_servers_resumable_and_exact(make_server):
    src_srv, dst_srv = make_server(), make_server()
    src, dst = client(src_srv.endpoint), client(dst_srv.endpoint)
    src.create_bucket(Bucket="plain")
    src.put_object(Bucket="plain", Key="a/readme.txt", Body=b"hello", ContentType="text/plain",
                   Metadata={"owner": "alice"}, CacheControl="max-age=60", Tagging="team=data&tier=gold")
    src.put_object(Bucket="plain", Key="empty", Body=b"")
    big = os.urandom(11 * 1024 * 1024 + 5)
    mpu = src.create_multipart_upload(Bucket="plain", Key="big.bin", ContentType="application/x-big",
                                      Metadata={"parts": "3"})
    parts = []
    for n, start in enumerate(range(0, len(big), 5 * 1024 * 1024), 1):
        r = src.upload_part(Bucket="plain", Key="big.bin", UploadId=mpu["UploadId"], PartNumber=n,
                            Body=big[start:start + 5 * 1024 * 1024])
        parts.append({"PartNumber": n, "ETag": r["ETag"]})
    src.complete_multipart_upload(Bucket="plain", Key="big.bin", UploadId=mpu["UploadId"],
                                  MultipartUpload={"Parts": parts})
    src.create_bucket(Bucket="history")
    src.put_bucket_versioning(Bucket="history", VersioningConfiguration={"Status": "Enabled"})
    for body in (b"v1", b"v2", b"v3"):
        src.put_object(Bucket="history", Key="doc", Body=body, Metadata={"body": body.decode()})
    src.delete_object(Bucket="history", Key="gone-soon")  # a lone delete marker
    src.put_object(Bucket="history", Key="deleted", Body=b"was here")
    src.delete_object(Bucket="history", Key="deleted")

    source_url = f"s3://{ROOT[0]}:{ROOT[1]}@127.0.0.1:{src_srv.port}"
    proc = shoal("mirror", source_url, dst_srv.endpoint, "--quiet",
                 env={"SHOAL_DEST_ACCESS_KEY": ROOT[0], "SHOAL_DEST_SECRET_KEY": ROOT[1]})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "mirror: 2 buckets; 7 objects copied" in proc.stdout and "2 delete markers" in proc.stdout, proc.stdout
    for bucket in ("plain", "history"):
        assert snapshot(dst, bucket) == snapshot(src, bucket), bucket
    assert dst.get_bucket_versioning(Bucket="history")["Status"] == "Enabled"
    assert dst.head_object(Bucket="plain", Key="big.bin")["ETag"] == src.head_object(Bucket="plain",
                                                                                      Key="big.bin")["ETag"]

    # Resume: one object lost at the destination, new data at the source; only those are copied.
    dst.delete_object(Bucket="plain", Key="empty")
    src.put_object(Bucket="plain", Key="new", Body=b"new")
    src.put_object(Bucket="history", Key="doc", Body=b"v4")
    dest_url = f"http://{ALT[0]}:{ALT[1]}@127.0.0.1:{dst_srv.port}"  # wrong user: its buckets are not ALT's
    proc = shoal("mirror", source_url, dest_url, "--quiet")
    assert proc.returncode == 2 and proc.stderr.startswith("error: destination bucket") and "403" in proc.stderr
    proc = shoal("mirror", source_url, f"s3://{ROOT[0]}:{ROOT[1]}@127.0.0.1:{dst_srv.port}", "-j", "4")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 objects copied" in proc.stdout and "0 failed" in proc.stdout, proc.stdout
    assert "up to date" in proc.stdout
    for bucket in ("plain", "history"):
        assert snapshot(dst, bucket) == snapshot(src, bucket), bucket
    # A third run copies nothing.
    proc = shoal("mirror", f"{source_url}/plain", f"s3://{ROOT[0]}:{ROOT[1]}@127.0.0.1:{dst_srv.port}/plain",
                 check=True)
    assert "0 objects copied" in proc.stdout and "4 up to date" in proc.stdout, proc.stdout


def test_import_export_round_trip(server, tmp_path):
    source = tmp_path / "in"
    (source / "nested" / "deeper").mkdir(parents=True)
    files = {"a.txt": b"alpha", "nested/b.json": b'{"b": 1}', "nested/deeper/c.bin": os.urandom(300_000),
             "nested/ünïcode name.txt": b"u", "empty": b""}
    for rel, data in files.items():
        (source / rel).write_bytes(data)
    env = {"SHOAL_ENDPOINT": server.endpoint, "AWS_ACCESS_KEY_ID": ROOT[0], "AWS_SECRET_ACCESS_KEY": ROOT[1]}
    bucket = f"imp-{os.urandom(4).hex()}"
    proc = shoal("import", str(source), f"{bucket}/pre", env=env, check=True)
    assert "5 objects copied" in proc.stdout, proc.stdout
    s3 = client(server.endpoint)
    assert s3.head_object(Bucket=bucket, Key="pre/nested/b.json")["ContentType"] == "application/json"
    again = shoal("import", str(source), f"{bucket}/pre", env=env, check=True)
    assert "0 objects copied" in again.stdout and "5 up to date" in again.stdout
    (source / "a.txt").write_bytes(b"alpha, changed")
    assert "1 objects copied" in shoal("import", str(source), f"{bucket}/pre", env=env, check=True).stdout
    s3.put_object(Bucket=bucket, Key="pre/../escape", Body=b"no")  # cannot be a local path: reported, skipped
    out = tmp_path / "out"
    proc = shoal("export", f"{bucket}/pre", str(out), env=env)
    assert proc.returncode == 1 and "not a safe local path" in proc.stderr
    files["a.txt"] = b"alpha, changed"
    got = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert got == files
    assert not (tmp_path / "escape").exists()
    s3.delete_object(Bucket=bucket, Key="pre/../escape")
    assert "5 up to date" in shoal("export", f"{bucket}/pre", str(out), env=env, check=True).stdout
