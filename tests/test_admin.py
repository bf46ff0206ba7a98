"""Users, access keys and identity policies managed while the server runs: the admin API, `shoal admin`, and
what the keys it makes may do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import pytest
from botocore.exceptions import ClientError

from shoal.admin_client import AdminClient, AdminError
from shoal.auth.identities import canonical_id

from conftest import ALT, ROOT, client, error_code, status_of


def unique(prefix: str = "u") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def admin(server) -> AdminClient:
    return AdminClient(server.endpoint, *ROOT)


def cli(endpoint: str, *args: str, creds: tuple[str, str] = ROOT, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, SHOAL_ENDPOINT=endpoint, SHOAL_ROOT_USER=creds[0], SHOAL_ROOT_PASSWORD=creds[1])
    env.pop("MINIO_ROOT_USER", None)
    env.pop("MINIO_ROOT_PASSWORD", None)
    proc = subprocess.run([sys.executable, "-m", "shoal", "admin", *args], env=env, capture_output=True, text=True,
                          timeout=30)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def user_with_key(admin: AdminClient, policies: list | None = None) -> tuple[str, tuple[str, str]]:
    name = unique()
    user = admin.create_user(name, policies=policies, with_key=True)
    return name, (user["new_key"]["access_key"], user["new_key"]["secret_key"])


def denied(fn, *args, **kwargs) -> str:
    with pytest.raises(ClientError) as info:
        fn(*args, **kwargs)
    assert status_of(info.value) == 403, info.value.response
    return error_code(info.value)


@pytest.fixture
def root_bucket(s3) -> str:
    name = unique("rb")
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="existing.txt", Body=b"hello")
    return name


# -- the CLI and the API -----------------------------------------------------------------------------------


def test_cli_user_and_key_work_at_once_and_disable_is_immediate(server):
    name = unique()
    out = cli(server.endpoint, "user", "add", name, "--json").stdout
    assert json.loads(out)["name"] == name
    key = json.loads(cli(server.endpoint, "key", "add", name, "--json").stdout)
    creds = (key["access_key"], key["secret_key"])
    user_s3 = client(server.endpoint, creds)
    bucket = unique("b")
    user_s3.create_bucket(Bucket=bucket)  # at once, without a restart
    user_s3.put_object(Bucket=bucket, Key="k", Body=b"data")
    assert user_s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"data"

    table = cli(server.endpoint, "user", "list").stdout
    assert name in table and "NAME" in table.splitlines()[0]
    listed = cli(server.endpoint, "key", "list", name).stdout
    assert key["access_key"] in listed and key["secret_key"] not in listed

    cli(server.endpoint, "user", "disable", name)
    with pytest.raises(ClientError) as info:
        user_s3.list_objects_v2(Bucket=bucket)
    assert error_code(info.value) == "InvalidAccessKeyId" and status_of(info.value) == 403
    cli(server.endpoint, "user", "enable", name)
    assert user_s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 1

    cli(server.endpoint, "key", "disable", key["access_key"])
    assert denied(user_s3.list_objects_v2, Bucket=bucket) == "InvalidAccessKeyId"
    cli(server.endpoint, "key", "enable", key["access_key"])
    assert user_s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 1
    cli(server.endpoint, "key", "remove", key["access_key"])
    assert denied(user_s3.list_objects_v2, Bucket=bucket) == "InvalidAccessKeyId"

    cli(server.endpoint, "user", "remove", name)
    proc = cli(server.endpoint, "user", "info", name, check=False)
    assert proc.returncode == 1 and "NoSuchUser" in proc.stderr


def test_cli_policy_attach_from_file_and_detach(server, root_bucket, tmp_path):
    name = unique()
    created = json.loads(cli(server.endpoint, "user", "add", name, "--with-key", "--policy", "readonly",
                             "--json").stdout)
    creds = (created["new_key"]["access_key"], created["new_key"]["secret_key"])
    user_s3 = client(server.endpoint, creds)
    assert user_s3.get_object(Bucket=root_bucket, Key="existing.txt")["Body"].read() == b"hello"
    cli(server.endpoint, "policy", "detach", name, "readonly")
    denied(user_s3.get_object, Bucket=root_bucket, Key="existing.txt")
    doc = tmp_path / "put-only.json"
    doc.write_text(json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{root_bucket}/*"}]}))
    out = cli(server.endpoint, "policy", "attach", name, f"@{doc}").stdout
    assert "put-only" in out
    user_s3.put_object(Bucket=root_bucket, Key="from-user", Body=b"x")
    info = json.loads(cli(server.endpoint, "user", "info", name, "--json").stdout)
    assert info["policies"] == ["put-only"]
    assert info["policy_documents"]["put-only"]["Statement"][0]["Action"] == "s3:PutObject"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"Statement": [{"Effect": "Allow", "Action": "ec2:*", "Resource": "*"}]}))
    proc = cli(server.endpoint, "policy", "attach", name, f"@{bad}", check=False)
    assert proc.returncode == 1 and "MalformedPolicy" in proc.stderr


def test_api_users_keys_and_errors(server, admin):
    name = unique()
    user = admin.create_user(name, display_name="Data Team")
    assert user["enabled"] and not user["admin"] and user["access_keys"] == [] and user["display_name"] == "Data Team"
    key = admin.create_key(name)
    assert len(key["access_key"]) == 20 and len(key["secret_key"]) == 40
    s3u = client(server.endpoint, (key["access_key"], key["secret_key"]))
    assert s3u.list_buckets()["Buckets"] == []
    # The secret is returned once, never again.
    for view in (admin.get_user(name), admin.list_keys(name), admin.list_users()):
        assert key["secret_key"] not in json.dumps(view)
    assert [k["access_key"] for k in admin.list_keys(name)] == [key["access_key"]]
    chosen = admin.create_key(name, access_key=f"CHOSEN{uuid.uuid4().hex[:10].upper()}", secret_key="s3cr3t-value!")
    assert chosen["secret_key"] == "s3cr3t-value!"
    client(server.endpoint, (chosen["access_key"], "s3cr3t-value!")).list_buckets()

    with pytest.raises(AdminError) as info:
        admin.create_user(name)
    assert info.value.status == 409
    with pytest.raises(AdminError) as info:
        admin.create_key(name, access_key=ROOT[0])
    assert info.value.status == 409
    with pytest.raises(AdminError) as info:
        admin.get_user(unique("missing"))
    assert (info.value.status, info.value.code) == (404, "NoSuchUser")
    with pytest.raises(AdminError) as info:
        admin.delete_key("NOSUCHKEY00000000000")
    assert (info.value.status, info.value.code) == (404, "NoSuchAccessKey")
    with pytest.raises(AdminError) as info:
        admin.create_user("bad name!")
    assert info.value.status == 400
    with pytest.raises(AdminError) as info:
        admin.attach_policy(name, {"Statement": [{"Effect": "Maybe", "Action": "s3:*", "Resource": "*"}]})
    assert (info.value.status, info.value.code) == (400, "MalformedPolicy")
    with pytest.raises(AdminError) as info:
        admin.detach_policy(name, "readonly")
    assert (info.value.status, info.value.code) == (404, "NoSuchPolicy")
    with pytest.raises(AdminError) as info:
        admin.set_enabled("root", False)
    assert info.value.status == 400
    with pytest.raises(AdminError) as info:
        admin.request("PUT", "users")
    assert info.value.status == 405
    admin.delete_user(name)
    assert denied(s3u.list_buckets) == "InvalidAccessKeyId"


def test_non_admins_get_403_from_the_admin_api(server, admin):
    for creds in (ALT, user_with_key(admin, ["readwrite"])[1]):
        with pytest.raises(AdminError) as info:
            AdminClient(server.endpoint, *creds).list_users()
        assert (info.value.status, info.value.code) == (403, "AccessDenied")
    with pytest.raises(AdminError) as info:
        AdminClient(server.endpoint, ROOT[0], "wrong-secret").list_users()
    assert (info.value.status, info.value.code) == (403, "SignatureDoesNotMatch")
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as anon:
        urllib.request.urlopen(f"{server.endpoint}/_shoal/admin/v1/users", timeout=5)
    assert anon.value.code == 403 and json.loads(anon.value.read())["Code"] == "AccessDenied"
    proc = cli(server.endpoint, "user", "list", creds=ALT, check=False)
    assert proc.returncode == 1 and "AccessDenied" in proc.stderr
    # A user given the admin policy may administer.
    _, creds = user_with_key(admin, ["admin"])
    assert any(u["name"] == "root" for u in AdminClient(server.endpoint, *creds).list_users())


# -- identity policies -------------------------------------------------------------------------------------


def test_readonly_user_reads_but_cannot_write(server, admin, root_bucket):
    _, creds = user_with_key(admin, ["readonly"])
    ro = client(server.endpoint, creds)
    assert root_bucket in [b["Name"] for b in ro.list_buckets()["Buckets"]]
    assert [o["Key"] for o in ro.list_objects_v2(Bucket=root_bucket)["Contents"]] == ["existing.txt"]
    assert ro.get_object(Bucket=root_bucket, Key="existing.txt")["Body"].read() == b"hello"
    assert denied(ro.put_object, Bucket=root_bucket, Key="new", Body=b"x") == "AccessDenied"
    assert denied(ro.delete_object, Bucket=root_bucket, Key="existing.txt") == "AccessDenied"
    assert denied(ro.delete_bucket, Bucket=root_bucket) == "AccessDenied"


def test_readwrite_user_reads_and_writes(server, admin, root_bucket):
    _, creds = user_with_key(admin, ["readwrite"])
    rw = client(server.endpoint, creds)
    rw.put_object(Bucket=root_bucket, Key="new", Body=b"x")
    assert rw.get_object(Bucket=root_bucket, Key="new")["Body"].read() == b"x"
    rw.delete_object(Bucket=root_bucket, Key="new")
    assert len(rw.list_objects_v2(Bucket=root_bucket)["Contents"]) == 1


def test_writeonly_user_puts_but_cannot_read(server, admin, root_bucket):
    _, creds = user_with_key(admin, ["writeonly"])
    wo = client(server.endpoint, creds)
    wo.put_object(Bucket=root_bucket, Key="dropped", Body=b"x")
    assert denied(wo.get_object, Bucket=root_bucket, Key="existing.txt") == "AccessDenied"
    assert denied(wo.list_objects_v2, Bucket=root_bucket) == "AccessDenied"
    assert root_bucket not in [b["Name"] for b in wo.list_buckets()["Buckets"]]


def test_app_key_limited_to_writing_one_bucket(server, admin, s3, root_bucket):
    uploads = unique("uploads")
    s3.create_bucket(Bucket=uploads)
    name = unique("app")
    admin.create_user(name)
    admin.attach_policy(name, {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{uploads}/*"},
        {"Effect": "Deny", "Action": "s3:CreateBucket", "Resource": "*"},
    ]}, name="uploads-writer")
    key = admin.create_key(name)
    app = client(server.endpoint, (key["access_key"], key["secret_key"]))
    app.put_object(Bucket=uploads, Key="in/report.csv", Body=b"a,b\n")
    assert s3.get_object(Bucket=uploads, Key="in/report.csv")["Body"].read() == b"a,b\n"
    # Multipart uploads are PutObject too.
    mpu = app.create_multipart_upload(Bucket=uploads, Key="big")
    part = app.upload_part(Bucket=uploads, Key="big", UploadId=mpu["UploadId"], PartNumber=1, Body=b"z" * 1024)
    app.complete_multipart_upload(Bucket=uploads, Key="big", UploadId=mpu["UploadId"],
                                  MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    s3.put_object(Bucket=uploads, Key="in/others.csv", Body=b"private")
    denied(app.get_object, Bucket=uploads, Key="in/others.csv")
    denied(app.list_objects_v2, Bucket=uploads)
    denied(app.delete_object, Bucket=uploads, Key="in/others.csv")
    # As in S3, the writer of an object owns it (ObjectWriter ownership) and its ACL lets it read it back;
    # with ACLs disabled (BucketOwnerEnforced) the bucket owner owns everything and the key can only write.
    assert app.get_object(Bucket=uploads, Key="in/report.csv")["Body"].read() == b"a,b\n"
    s3.put_bucket_ownership_controls(Bucket=uploads, OwnershipControls={
        "Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]})
    denied(app.get_object, Bucket=uploads, Key="in/report.csv")
    app.put_object(Bucket=uploads, Key="in/second.csv", Body=b"c")
    denied(app.put_object, Bucket=root_bucket, Key="x", Body=b"x")
    denied(app.create_bucket, Bucket=unique("own"))
    assert app.list_buckets()["Buckets"] == []


def test_deny_wins_even_on_own_buckets(server, admin, root_bucket):
    name, creds = user_with_key(admin, ["readwrite"])
    admin.attach_policy(name, {"Statement": [
        {"Effect": "Deny", "Action": ["s3:DeleteObject", "s3:PutObject"], "Resource": "arn:aws:s3:::*/protected/*"},
    ]}, name="protect")
    user_s3 = client(server.endpoint, creds)
    user_s3.put_object(Bucket=root_bucket, Key="open/a", Body=b"x")
    denied(user_s3.put_object, Bucket=root_bucket, Key="protected/a", Body=b"x")
    own = unique("own")
    user_s3.create_bucket(Bucket=own)
    user_s3.put_object(Bucket=own, Key="open/a", Body=b"x")
    denied(user_s3.put_object, Bucket=own, Key="protected/a", Body=b"x")  # even as the bucket's owner
    admin.detach_policy(name, "protect")  # takes effect at once
    user_s3.put_object(Bucket=own, Key="protected/a", Body=b"x")


def test_user_without_policy_keeps_owner_semantics(server, admin, root_bucket):
    _, creds = user_with_key(admin)
    plain = client(server.endpoint, creds)
    denied(plain.get_object, Bucket=root_bucket, Key="existing.txt")
    denied(plain.put_object, Bucket=root_bucket, Key="x", Body=b"x")
    own = unique("own")
    plain.create_bucket(Bucket=own)
    plain.put_object(Bucket=own, Key="k", Body=b"mine")
    assert [b["Name"] for b in plain.list_buckets()["Buckets"]] == [own]


# -- storage, restarts and declared users ------------------------------------------------------------------


def test_secrets_are_not_stored_in_plaintext(server, admin):
    _, (access_key, secret) = user_with_key(admin)
    client(server.endpoint, (access_key, secret)).list_buckets()
    meta_dir = os.path.join(server.data_dir, ".shoal")
    blob = b""
    for name in os.listdir(meta_dir):
        if name.startswith("meta.sqlite3"):
            with open(os.path.join(meta_dir, name), "rb") as f:
                blob += f.read()
    assert access_key.encode() in blob  # the key id is stored (sanity check that we read the right files)
    for plaintext in (secret, ALT[1], ROOT[1]):
        assert plaintext.encode() not in blob
    assert secret not in server.log() and ROOT[1] not in server.log()


def test_restart_keeps_users_and_applies_declarations(make_server):
    extra = ("EXTRADECLAREDKEY0001", "extra-declared-secret-0123456789")
    srv = make_server(args=["--user", f"{extra[0]}:{extra[1]}:Extra"])
    api = AdminClient(srv.endpoint, *ROOT)
    name, creds = user_with_key(api, ["readonly"])
    api.set_enabled(name, True)
    alt = client(srv.endpoint, ALT)
    alt_bucket = unique("alt")
    alt.create_bucket(Bucket=alt_bucket)
    owner = alt.list_objects_v2(Bucket=alt_bucket, FetchOwner=True)
    assert alt.get_bucket_acl(Bucket=alt_bucket)["Owner"]["ID"] == canonical_id(ALT[0])
    assert owner["ResponseMetadata"]["HTTPStatusCode"] == 200
    client(srv.endpoint, extra).list_buckets()
    data_dir = srv.data_dir
    srv.stop()

    # Restart without the extra declaration: API-made users survive, the undeclared one is gone.
    srv2 = make_server(data_dir=data_dir)
    api2 = AdminClient(srv2.endpoint, *ROOT)
    assert api2.get_user(name)["policies"] == ["readonly"]
    user_s3 = client(srv2.endpoint, creds)
    assert alt_bucket in [b["Name"] for b in user_s3.list_buckets()["Buckets"]]
    assert denied(client(srv2.endpoint, extra).list_buckets) == "InvalidAccessKeyId"
    # Declared users still work and keep their canonical id (and so their buckets).
    alt2 = client(srv2.endpoint, ALT)
    alt2.put_object(Bucket=alt_bucket, Key="k", Body=b"x")
    assert alt2.get_bucket_acl(Bucket=alt_bucket)["Owner"]["ID"] == canonical_id(ALT[0])
    names = {u["name"]: u for u in api2.list_users()}
    assert names["root"]["admin"] and names["root"]["source"] == "root"
    assert names[ALT[0]]["source"] == "flag" and "Extra" not in names


def test_root_password_change_takes_effect_on_restart(make_server):
    srv = make_server()
    data_dir = srv.data_dir
    srv.stop()
    new_root = ("newrootuser", "new-root-password-123")
    srv2 = make_server(data_dir=data_dir, env={"SHOAL_ROOT_USER": new_root[0], "SHOAL_ROOT_PASSWORD": new_root[1]})
    assert denied(client(srv2.endpoint, ROOT).list_buckets) == "InvalidAccessKeyId"
    client(srv2.endpoint, new_root).list_buckets()
    assert AdminClient(srv2.endpoint, *new_root).get_user("root")["access_keys"][0]["access_key"] == new_root[0]


def test_changes_reach_every_worker_process(make_server):
    srv = make_server(args=["--workers", "2"])
    api = AdminClient(srv.endpoint, *ROOT)
    name, creds = user_with_key(api)
    user_s3 = client(srv.endpoint, creds)
    for _ in range(10):  # new connections land on either worker: a new key is found on a cache miss
        user_s3.list_buckets()
        user_s3 = client(srv.endpoint, creds)
    api.set_enabled(name, False)
    time.sleep(1.2)  # other workers re-read the user table at most a second later
    for _ in range(10):
        assert denied(client(srv.endpoint, creds).list_buckets) == "InvalidAccessKeyId"


def test_cli_development_defaults_match_the_server():
    import shoal.cli
    import shoal.server

    assert (shoal.cli.DEV_ROOT_USER, shoal.cli.DEV_ROOT_PASSWORD) == (shoal.server.DEV_ROOT_USER,
                                                                      shoal.server.DEV_ROOT_PASSWORD)
