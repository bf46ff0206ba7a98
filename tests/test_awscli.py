"""The AWS CLI (v1), run as a subprocess against the real server: high-level ``aws s3`` and ``aws s3api``."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
import uuid

import pytest

from conftest import ROOT

# Prefer the interpreter's own entry point over a version-manager shim (half a second per call saved).
AWS = os.path.join(os.path.dirname(sys.executable), "aws")
if not os.path.exists(AWS):
    AWS = shutil.which("aws") or "aws"

pytestmark = pytest.mark.skipif(shutil.which(AWS) is None and not os.path.exists(AWS), reason="aws CLI missing")


def aws_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "AWS_PROFILE", "AWS_SESSION_TOKEN",
                        "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_PROFILE")}
    env.update(AWS_ACCESS_KEY_ID=ROOT[0], AWS_SECRET_ACCESS_KEY=ROOT[1], AWS_DEFAULT_REGION="us-east-1",
               AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull, AWS_MAX_ATTEMPTS="1",
               AWS_RETRY_MODE="standard", AWS_PAGER="")
    return env


# One long-lived process runs CLI commands one after another through the CLI's own entry point (what the `aws`
# script calls), each with a fresh driver and session: the same code path as `aws ARGS`, without paying the
# interpreter and botocore start-up (about a second on a small machine) for every command. Tests that care about
# the executable itself run the real `aws` binary (see `run_binary`).
DRIVER = r"""
import contextlib, io, json, sys
from awscli.clidriver import create_clidriver
requests = sys.stdin
reply = sys.stdout
while True:
    line = requests.readline()
    if not line:
        break
    argv = json.loads(line)
    out, err = io.BytesIO(), io.StringIO()
    text_out = io.TextIOWrapper(out, encoding="utf-8", write_through=True)
    with contextlib.redirect_stdout(text_out), contextlib.redirect_stderr(err):
        try:
            rc = create_clidriver().main(argv)
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else 1
        except BaseException as exc:
            rc = 99
            err.write(repr(exc))
        text_out.flush()
    reply.write(json.dumps({"rc": rc, "out": out.getvalue().decode("latin-1"), "err": err.getvalue()}) + "\n")
    reply.flush()
"""


class _Driver:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", DRIVER], env=aws_env(), text=True, encoding="utf-8",
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def run(self, argv: list[str]) -> tuple[int, bytes, str]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(argv) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the CLI driver died")
        result = json.loads(line)
        return result["rc"], result["out"].encode("latin-1"), result["err"]

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="module", autouse=True)
def driver():
    global _DRIVER
    _DRIVER = _Driver()
    yield _DRIVER
    _DRIVER.close()
    _DRIVER = None


_DRIVER: _Driver | None = None


class Result(subprocess.CompletedProcess):
    @property
    def raw(self) -> bytes:
        return self._raw


def _check(server, args, result: Result, check: bool) -> Result:
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}\n"
                             f"server log:\n{server.log()}")
    return result


def run_aws(server, *args: str, check: bool = True) -> Result:
    assert _DRIVER is not None
    argv = ["--endpoint-url", server.endpoint, "--cli-read-timeout", "10", *args]
    rc, out, err = _DRIVER.run(argv)
    result = Result(argv, rc, out.decode("utf-8", "replace"), err)
    result._raw = out
    return _check(server, args, result, check)


def run_many(server, *commands: list[str], check: bool = True) -> list[Result]:
    return [run_aws(server, *cmd, check=check) for cmd in commands]


def run_binary(server, *commands: list[str], env: dict[str, str] | None = None,
               check: bool = True) -> list[Result]:
    """The real `aws` executable, one process per command, all started at once."""
    procs = [(cmd, subprocess.Popen([AWS, "--endpoint-url", server.endpoint, *cmd], env=env or aws_env(),
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)) for cmd in commands]
    results = []
    for cmd, proc in procs:
        try:
            out, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        result = Result(cmd, proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))
        result._raw = out
        results.append(_check(server, cmd, result, check))
    return results


def api_args(*args: str) -> list[str]:
    return ["s3api", *args, "--output", "json"]


def parse(proc: Result) -> dict:
    return json.loads(proc.stdout) if proc.stdout.strip() else {}


def api(server, *args: str) -> dict:
    return parse(run_aws(server, *api_args(*args)))


def api_many(server, *commands: list[str]) -> list[dict]:
    return [parse(p) for p in run_many(server, *(api_args(*c) for c in commands))]


@pytest.fixture
def cli_bucket(server) -> str:
    name = f"cli-{uuid.uuid4().hex[:16]}"
    run_aws(server, "s3", "mb", f"s3://{name}")
    return name


def sha(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_mb_ls_rb_with_the_aws_executable(server):
    name = f"cli-{uuid.uuid4().hex[:16]}"
    out = run_binary(server, ["s3", "mb", f"s3://{name}"])[0].stdout
    assert f"make_bucket: {name}" in out
    listed, bad = run_binary(server, ["s3", "ls"], ["s3", "mb", "s3://Bad_Bucket_Name"], check=False)
    assert name in listed.stdout
    assert bad.returncode != 0 and "InvalidBucketName" in bad.stderr
    run_binary(server, ["s3", "rb", f"s3://{name}"])
    gone = run_aws(server, "s3api", "head-bucket", "--bucket", name, check=False)
    assert gone.returncode != 0 and "404" in gone.stderr


def test_cp_small_and_multipart_round_trip(server, cli_bucket, tmp_path):
    small = tmp_path / "small.txt"
    small.write_bytes(b"hello from the aws cli\n")
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(9 * 1024 * 1024 + 123))  # > 8 MiB: the CLI switches to multipart
    run_many(server, ["s3", "cp", str(small), f"s3://{cli_bucket}/dir/small.txt"],
             ["s3", "cp", str(big), f"s3://{cli_bucket}/dir/big.bin"])

    down = tmp_path / "down"
    down.mkdir()
    big_head, small_head, _, _, missing = run_many(
        server,
        api_args("head-object", "--bucket", cli_bucket, "--key", "dir/big.bin"),
        api_args("head-object", "--bucket", cli_bucket, "--key", "dir/small.txt"),
        ["s3", "cp", f"s3://{cli_bucket}/dir/big.bin", str(down / "big.bin")],
        ["s3", "cp", f"s3://{cli_bucket}/dir/small.txt", "-"],
        ["s3", "cp", f"s3://{cli_bucket}/nope", str(down / "nope")],
        check=False,
    )
    head = parse(big_head)
    assert head["ContentLength"] == big.stat().st_size
    assert head["ETag"].endswith('-2"'), head["ETag"]  # 8 MiB + rest: two parts
    assert parse(small_head)["ETag"] == f'"{hashlib.md5(small.read_bytes()).hexdigest()}"'
    assert sha(down / "big.bin") == sha(big)
    assert missing.returncode != 0 and "404" in missing.stderr
    assert not (down / "nope").exists()

    # Streaming to stdout must be byte-exact.
    assert run_aws(server, "s3", "cp", f"s3://{cli_bucket}/dir/small.txt", "-").raw == small.read_bytes()


def test_sync_both_ways_and_recursive_ls_rm(server, cli_bucket, tmp_path):
    src = tmp_path / "src"
    files = {
        "a.txt": b"alpha",
        "empty": b"",
        "nested/b.bin": os.urandom(70 * 1024),  # stored as a blob, not inline
        "nested/deeper/c.txt": b"gamma" * 100,
        "with space/d é.txt": "unicode ✓".encode(),
        "plus+sign/e%25.txt": b"percent",
    }
    for rel, data in files.items():
        path = src / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    out = run_aws(server, "s3", "sync", str(src), f"s3://{cli_bucket}/tree").stdout
    assert out.count("upload:") == len(files)

    dst = tmp_path / "dst"
    again, listing, top, _ = run_many(
        server,
        ["s3", "sync", str(src), f"s3://{cli_bucket}/tree"],
        ["s3", "ls", "--recursive", f"s3://{cli_bucket}/"],
        ["s3", "ls", f"s3://{cli_bucket}/tree/"],
        ["s3", "sync", f"s3://{cli_bucket}/tree", str(dst)],
    )
    # A second sync has nothing to do: sizes and times agree.
    assert "upload:" not in again.stdout
    listed = sorted(line.split(None, 3)[3] for line in listing.stdout.splitlines() if line.strip())
    assert listed == sorted(f"tree/{rel}" for rel in files)
    assert "PRE nested/" in top.stdout and "PRE with space/" in top.stdout and "a.txt" in top.stdout
    for rel, data in files.items():
        assert (dst / rel).read_bytes() == data, rel

    # --delete removes what is no longer local.
    (src / "a.txt").unlink()
    out = run_aws(server, "s3", "sync", "--delete", str(src), f"s3://{cli_bucket}/tree").stdout
    assert f"delete: s3://{cli_bucket}/tree/a.txt" in out

    out = run_aws(server, "s3", "rm", "--recursive", f"s3://{cli_bucket}/tree/nested").stdout
    assert out.count("delete:") == 2
    left = api(server, "list-objects-v2", "--bucket", cli_bucket)
    assert sorted(o["Key"] for o in left["Contents"]) == sorted(
        f"tree/{rel}" for rel in files if rel != "a.txt" and not rel.startswith("nested/"))


def test_empty_file_then_more_on_one_connection(server, cli_bucket, tmp_path):
    """One transfer thread: the empty file's PUT (Expect: 100-continue, nothing to send) and the next PUT share a
    connection. A server that answers the first without a 100 Continue leaves botocore misreading the second."""
    config = tmp_path / "config"
    config.write_text("[default]\ns3 =\n  max_concurrent_requests = 1\n")
    src = tmp_path / "src"
    src.mkdir()
    (src / "0-empty").write_bytes(b"")
    (src / "1-data").write_bytes(b"some data")
    (src / "2-empty").write_bytes(b"")
    (src / "3-data").write_bytes(b"more data")
    env = dict(aws_env(), AWS_CONFIG_FILE=str(config))
    (synced,) = run_binary(server, ["s3", "sync", "--cli-read-timeout", "5", str(src), f"s3://{cli_bucket}/one"],
                           env=env, check=False)
    assert synced.returncode == 0, synced.stderr
    listed = api(server, "list-objects-v2", "--bucket", cli_bucket)
    assert [(o["Key"], o["Size"]) for o in listed["Contents"]] == [
        ("one/0-empty", 0), ("one/1-data", 9), ("one/2-empty", 0), ("one/3-data", 9)]


def test_presign_fetch_with_urllib(server, cli_bucket, tmp_path):
    data = os.urandom(1000)
    path = tmp_path / "presign.bin"
    path.write_bytes(data)
    run_aws(server, "s3", "cp", str(path), f"s3://{cli_bucket}/pre signed/ü.bin")
    url = run_aws(server, "s3", "presign", f"s3://{cli_bucket}/pre signed/ü.bin", "--expires-in", "300") \
        .stdout.strip()
    assert "X-Amz-Signature=" in url or "Signature=" in url
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.status == 200
        assert r.read() == data
    # The same URL with one character of the signature changed is refused.
    tampered = url[:-1] + ("0" if url[-1] != "0" else "1")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(tampered, timeout=10)
    assert e.value.code == 403
    assert b"<Code>SignatureDoesNotMatch</Code>" in e.value.read()


def test_s3api_object_calls(server, cli_bucket, tmp_path):
    body = tmp_path / "body.txt"
    body.write_bytes(b"s3api body")
    put, *_ = api_many(
        server,
        ["put-object", "--bucket", cli_bucket, "--key", "k1", "--body", str(body), "--content-type", "text/plain",
         "--metadata", "color=blue,shape=round"],
        *(["put-object", "--bucket", cli_bucket, "--key", f"p/{i}", "--body", str(body)] for i in range(3)),
    )
    assert put["ETag"] == f'"{hashlib.md5(b"s3api body").hexdigest()}"'

    out, out2 = tmp_path / "out.txt", tmp_path / "out2.txt"
    got, ranged, head, copied = api_many(
        server,
        ["get-object", "--bucket", cli_bucket, "--key", "k1", str(out)],
        ["get-object", "--bucket", cli_bucket, "--key", "k1", "--range", "bytes=2-4", str(out2)],
        ["head-object", "--bucket", cli_bucket, "--key", "k1"],
        ["copy-object", "--bucket", cli_bucket, "--key", "k2", "--copy-source", f"{cli_bucket}/k1"],
    )
    assert out.read_bytes() == b"s3api body"
    assert got["ContentType"] == "text/plain"
    assert got["Metadata"] == {"color": "blue", "shape": "round"}
    assert got["ContentLength"] == len(b"s3api body")
    assert out2.read_bytes() == b"api"
    assert ranged["ContentRange"] == "bytes 2-4/10"
    assert head["ContentLength"] == 10 and head["ETag"] == put["ETag"]
    assert copied["CopyObjectResult"]["ETag"] == put["ETag"]

    page, every, delimited = api_many(
        server,
        ["list-objects-v2", "--bucket", cli_bucket, "--prefix", "p/", "--max-keys", "2", "--no-paginate"],
        ["list-objects-v2", "--bucket", cli_bucket, "--page-size", "1"],  # the CLI's paginator follows tokens
        ["list-objects-v2", "--bucket", cli_bucket, "--delimiter", "/"],
    )
    assert [o["Key"] for o in page["Contents"]] == ["p/0", "p/1"]
    assert page["IsTruncated"] is True and page["KeyCount"] == 2
    assert [o["Key"] for o in every["Contents"]] == ["k1", "k2", "p/0", "p/1", "p/2"]
    assert delimited["CommonPrefixes"] == [{"Prefix": "p/"}]
    assert [o["Key"] for o in delimited["Contents"]] == ["k1", "k2"]

    delete = {"Objects": [{"Key": "k1"}, {"Key": "p/0"}, {"Key": "never-existed"}], "Quiet": False}
    rest, deleted = api_many(
        server,
        ["list-objects-v2", "--bucket", cli_bucket, "--prefix", "p/", "--no-paginate",
         "--continuation-token", page["NextContinuationToken"]],
        ["delete-objects", "--bucket", cli_bucket, "--delete", json.dumps(delete)],
    )
    assert [o["Key"] for o in rest["Contents"]] == ["p/2"]
    assert sorted(d["Key"] for d in deleted["Deleted"]) == ["k1", "never-existed", "p/0"]
    assert "Errors" not in deleted

    left, missing_head, missing_get = run_many(
        server,
        api_args("list-objects-v2", "--bucket", cli_bucket),
        ["s3api", "head-object", "--bucket", cli_bucket, "--key", "k1"],
        ["s3api", "get-object", "--bucket", cli_bucket, "--key", "k1", str(out)],
        check=False,
    )
    assert [o["Key"] for o in parse(left)["Contents"]] == ["k2", "p/1", "p/2"]
    assert missing_head.returncode != 0 and "404" in missing_head.stderr
    assert missing_get.returncode != 0 and "NoSuchKey" in missing_get.stderr


def test_s3api_multipart_calls(server, cli_bucket, tmp_path):
    part1 = tmp_path / "p1"
    part1.write_bytes(os.urandom(5 * 1024 * 1024))
    part2 = tmp_path / "p2"
    part2.write_bytes(b"the tail")
    upload, other = api_many(
        server,
        ["create-multipart-upload", "--bucket", cli_bucket, "--key", "mp", "--content-type", "application/x-test"],
        ["create-multipart-upload", "--bucket", cli_bucket, "--key", "aborted"],
    )
    upload_id, other_id = upload["UploadId"], other["UploadId"]
    assert upload["Key"] == "mp" and upload["Bucket"] == cli_bucket

    up1, up2, listed = api_many(
        server,
        *(["upload-part", "--bucket", cli_bucket, "--key", "mp", "--upload-id", upload_id, "--part-number", str(n),
           "--body", str(path)] for n, path in ((1, part1), (2, part2))),
        ["list-multipart-uploads", "--bucket", cli_bucket],
    )
    assert sorted((u["Key"], u["UploadId"]) for u in listed["Uploads"]) == [("aborted", other_id), ("mp", upload_id)]
    etags = [up1["ETag"], up2["ETag"]]
    assert etags == [f'"{hashlib.md5(p.read_bytes()).hexdigest()}"' for p in (part1, part2)]

    parts, _ = api_many(
        server,
        ["list-parts", "--bucket", cli_bucket, "--key", "mp", "--upload-id", upload_id],
        ["abort-multipart-upload", "--bucket", cli_bucket, "--key", "aborted", "--upload-id", other_id],
    )
    assert [(p["PartNumber"], p["Size"], p["ETag"]) for p in parts["Parts"]] == [
        (1, 5 * 1024 * 1024, etags[0]), (2, 8, etags[1])]

    doc = json.dumps({"Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]})
    done, failed = run_many(
        server,
        api_args("complete-multipart-upload", "--bucket", cli_bucket, "--key", "mp", "--upload-id", upload_id,
                 "--multipart-upload", doc),
        ["s3api", "complete-multipart-upload", "--bucket", cli_bucket, "--key", "aborted", "--upload-id", other_id,
         "--multipart-upload", doc],
        check=False,
    )
    md5s = b"".join(bytes.fromhex(e.strip('"')) for e in etags)
    assert parse(done)["ETag"] == f'"{hashlib.md5(md5s).hexdigest()}-2"'
    assert failed.returncode != 0 and "NoSuchUpload" in failed.stderr

    out, out2 = tmp_path / "out", tmp_path / "out2"
    got, part, uploads = api_many(
        server,
        ["get-object", "--bucket", cli_bucket, "--key", "mp", str(out)],
        ["get-object", "--bucket", cli_bucket, "--key", "mp", "--part-number", "2", str(out2)],
        ["list-multipart-uploads", "--bucket", cli_bucket],
    )
    assert got["ContentType"] == "application/x-test"
    assert out.read_bytes() == part1.read_bytes() + part2.read_bytes()
    assert out2.read_bytes() == b"the tail" and part["PartsCount"] == 2
    assert "Uploads" not in uploads


def test_wrong_credentials_are_refused(server, cli_bucket):
    bad_secret = dict(aws_env(), AWS_SECRET_ACCESS_KEY="not-the-secret")
    bad_key = dict(aws_env(), AWS_ACCESS_KEY_ID="NOSUCHACCESSKEY00000")
    (denied,) = run_binary(server, ["s3api", "list-objects-v2", "--bucket", cli_bucket], env=bad_secret, check=False)
    (unknown,) = run_binary(server, ["s3", "ls"], env=bad_key, check=False)
    assert denied.returncode != 0 and "SignatureDoesNotMatch" in denied.stderr
    assert unknown.returncode != 0 and "InvalidAccessKeyId" in unknown.stderr
