"""PUT/GET throughput of one large object, unencrypted vs SSE-S3 / SSE-KMS / SSE-C (presigned URLs, raw HTTP,
so the client does not hash the payload). Usage: PYTHONPATH=. python benchmarks/sse_throughput.py [BYTES]"""

import base64
import hashlib
import http.client
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from urllib.parse import urlsplit

from conftest import ServerProcess, client, free_port

SIZE = int(sys.argv[1]) if len(sys.argv) > 1 else 256 << 20
base = tempfile.mkdtemp(prefix="shoal-bench-")
srv = ServerProcess(base + "/data", free_port()).start()
s3 = client(srv.endpoint)
s3.create_bucket(Bucket="bench")
data = os.urandom(SIZE)
key = bytes(range(32))
MODES = {
    "plain": {},
    "sse-s3": {"x-amz-server-side-encryption": "AES256"},
    "sse-kms": {"x-amz-server-side-encryption": "aws:kms"},
    "sse-c": {"x-amz-server-side-encryption-customer-algorithm": "AES256",
              "x-amz-server-side-encryption-customer-key": base64.b64encode(key).decode(),
              "x-amz-server-side-encryption-customer-key-MD5": base64.b64encode(hashlib.md5(key).digest()).decode()},
}
def presign(op, k, headers):
    params = {"Bucket": "bench", "Key": k}
    if op == "put_object" and "x-amz-server-side-encryption" in headers:
        params["ServerSideEncryption"] = headers["x-amz-server-side-encryption"]
    if "x-amz-server-side-encryption-customer-algorithm" in headers:
        params.update(SSECustomerAlgorithm="AES256", SSECustomerKey=key)
    return s3.generate_presigned_url(op, Params=params, ExpiresIn=600)

def req(method, url, headers, body=None):
    u = urlsplit(url)
    c = http.client.HTTPConnection(u.hostname, u.port)
    c.putrequest(method, u.path + "?" + u.query, skip_accept_encoding=True)
    for k, v in headers.items():
        c.putheader(k, v)
    if body is not None:
        c.putheader("Content-Length", str(len(body)))
    c.endheaders()
    if body is not None:
        mv = memoryview(body)
        for i in range(0, len(mv), 1 << 20):
            c.send(mv[i:i + (1 << 20)])
    r = c.getresponse()
    n = 0
    while True:
        chunk = r.read(1 << 20)
        if not chunk:
            break
        n += len(chunk)
    assert r.status == 200, (r.status, r.headers)
    c.close()
    return n

for mode, headers in MODES.items():
    puts, gets = [], []
    for i in range(3):
        k = f"{mode}-{i}"
        url = presign("put_object", k, headers)
        t = time.perf_counter()
        req("PUT", url, headers, data)
        puts.append(time.perf_counter() - t)
        url = presign("get_object", k, headers)
        gh = {} if mode != "sse-c" else headers
        t = time.perf_counter()
        n = req("GET", url, gh)
        gets.append(time.perf_counter() - t)
        assert n == SIZE
    mb = SIZE / 1e6
    print(f"{mode:8s} PUT {mb / min(puts):7.0f} MB/s   GET {mb / min(gets):7.0f} MB/s")
srv.stop()
shutil.rmtree(base, ignore_errors=True)
