"""Declarative bootstrap: the buckets, their settings, users' policies and seed files a configuration declares.

Applied at every start, before the server reports ready, idempotently: a declared bucket is created if missing,
and each setting it declares (versioning, bucket policy or anonymous access, CORS, lifecycle) is set to the
declared value. Settings a declaration leaves out are left as they are (so changes made through the S3 API
stick unless the configuration says otherwise). Seed files are uploaded only where the key does not exist yet.

Everything goes through the S3 layer's own functions (as the root user), so a declaration is validated exactly
like the equivalent API request.
"""

from __future__ import annotations

import asyncio
import logging
import mimetypes
import os
import time
from dataclasses import dataclass

from shoal.auth.identities import Identity
from shoal.s3 import access_settings, cors, lifecycle, objects, versioning
from shoal.s3.service import S3Service

log = logging.getLogger("shoal.bootstrap")


@dataclass
class BootstrapReport:
    created: list[str]
    configured: int = 0
    seeded: int = 0
    seed_skipped: int = 0


class FileBody:
    """A local file as a request body for :func:`objects.put_object`."""

    length: int
    trailers: dict[str, str] = {}
    wants_sha256 = False

    def __init__(self, path: str, chunk: int = 1 << 20) -> None:
        self._file = open(path, "rb")  # noqa: SIM115 (closed by close())
        self.length = os.fstat(self._file.fileno()).st_size
        self._chunk = chunk

    async def read(self) -> bytes:
        return await asyncio.get_running_loop().run_in_executor(None, self._file.read, self._chunk)

    def check_sha256(self, hexdigest: str) -> None:
        pass

    def close(self) -> None:
        self._file.close()


async def apply_buckets(svc: S3Service, root: Identity, decls: list, report: BootstrapReport) -> None:
    """Create and configure each declared bucket (a name, or a :class:`shoal.config.BucketDecl`)."""
    for decl in decls:
        if isinstance(decl, str):
            from shoal.config import BucketDecl

            decl = BucketDecl(name=decl)
        created = svc.bootstrap_bucket(root, decl.name)
        if created:
            report.created.append(decl.name)
            log.info("created bucket %s", decl.name)
            if decl.object_lock:
                await svc.storage.meta.set_bucket_config(decl.name, "object_lock", {"enabled": True})
                await svc.storage.meta.set_bucket_config(decl.name, "versioning", "Enabled")
        bucket = svc.existing_bucket(decl.name)
        if decl.versioning is True and bucket.config.get("versioning") != "Enabled":
            await versioning.set_state(svc, root, decl.name, "Enabled")
            report.configured += 1
        elif decl.versioning is False and bucket.config.get("versioning") == "Enabled":
            await versioning.set_state(svc, root, decl.name, "Suspended")
            report.configured += 1
        text = decl.policy_text()
        if text is not None:
            await access_settings.put_bucket_policy(svc, root, decl.name, text.encode())
            report.configured += 1
        elif decl.anonymous == "none" and bucket.config.get("policy"):
            await access_settings.delete_bucket_policy(svc, root, decl.name)
            report.configured += 1
        if decl.cors is not None:
            if decl.cors:
                await cors.put_rules(svc, root, decl.name, [r.rule() for r in decl.cors])
            else:
                await cors.delete_rules(svc, root, decl.name)
            report.configured += 1
        if decl.lifecycle is not None:
            if decl.lifecycle:
                body = decl.lifecycle_xml().encode()

                async def read_body(body=body) -> bytes:
                    return body

                await lifecycle.put_configuration(svc, root, decl.name, read_body, None)
            else:
                await lifecycle.delete_configuration(svc, root, decl.name)
            report.configured += 1


async def apply_seeds(svc: S3Service, root: Identity, seeds: list, report: BootstrapReport) -> None:
    """Upload each seed directory's files whose keys do not exist yet (If-None-Match: *, so never overwriting)."""
    from shoal.errors import S3Error

    for seed in seeds:
        prefix = seed.prefix
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        for dirpath, dirnames, filenames in os.walk(seed.dir):
            dirnames.sort()
            for filename in sorted(filenames):
                path = os.path.join(dirpath, filename)
                if not os.path.isfile(path):
                    continue
                rel = os.path.relpath(path, seed.dir).replace(os.sep, "/")
                key = prefix + rel
                if svc.storage.meta.get_object(seed.bucket, key) is not None:
                    report.seed_skipped += 1
                    continue
                body = FileBody(path)
                content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
                try:
                    await objects.put_object(svc, root, seed.bucket, key, body,
                                             objects.ObjectAttributes(content_type=content_type),
                                             objects.ChecksumRequest(), None, if_none_match="*")
                    report.seeded += 1
                except S3Error as exc:
                    if exc.code != "PreconditionFailed":
                        raise
                    report.seed_skipped += 1
                finally:
                    body.close()
        log.info("seeded %s into %s/%s", seed.dir, seed.bucket, prefix)


async def apply(svc: S3Service, root: Identity, buckets: list, seeds: list) -> BootstrapReport:
    started = time.monotonic()
    report = BootstrapReport(created=[])
    await apply_buckets(svc, root, buckets, report)
    await apply_seeds(svc, root, seeds, report)
    if buckets or seeds:
        log.info("bootstrap: %d buckets declared (%d created), %d settings applied, %d files seeded "
                 "(%d already there) in %.2fs", len(buckets), len(report.created), report.configured, report.seeded,
                 report.seed_skipped, time.monotonic() - started)
    return report
