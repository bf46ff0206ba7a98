"""HTTP side of object lock: bucket configuration, retention and legal hold."""

from __future__ import annotations

from shoal.errors import S3Error
from shoal.http import xml
from shoal.http.app import S3Request, xml_response
from shoal.http.handlers.objects import bypass_governance
from shoal.http.response import Response, StreamResponse
from shoal.s3 import object_lock, objects
from shoal.s3.service import S3Service


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise S3Error("MalformedXML") from None


async def put_configuration(svc: S3Service, req: S3Request) -> StreamResponse:
    assert req.bucket
    root = xml.parse(await req.read_body())
    if root.tag != "ObjectLockConfiguration":
        raise S3Error("MalformedXML")
    rule = None
    retention = root.find("Rule/DefaultRetention")
    if root.find("Rule") is not None:
        if retention is None:
            raise S3Error("MalformedXML")
        rule = {"mode": retention.findtext("Mode"), "days": _int(retention.findtext("Days")),
                "years": _int(retention.findtext("Years"))}
        rule = {k: v for k, v in rule.items() if v is not None}
    await object_lock.put_configuration(svc, req.identity, req.bucket, root.findtext("ObjectLockEnabled"), rule)
    return Response(status=200)


async def get_configuration(svc: S3Service, req: S3Request) -> StreamResponse:
    assert req.bucket
    config = object_lock.get_configuration(svc, req.identity, req.bucket)
    inner = xml.el("ObjectLockEnabled", "Enabled")
    rule = config.get("rule")
    if rule:
        inner += "<Rule><DefaultRetention>" + xml.el("Mode", rule["mode"])
        inner += xml.el("Days", rule["days"]) if "days" in rule else xml.el("Years", rule["years"])
        inner += "</DefaultRetention></Rule>"
    return xml_response("ObjectLockConfiguration", inner)


async def put_retention(svc: S3Service, req: S3Request) -> StreamResponse:
    assert req.bucket and req.key
    root = xml.parse(await req.read_body())
    if root.tag != "Retention":
        raise S3Error("MalformedXML")
    mode, until = root.findtext("Mode"), root.findtext("RetainUntilDate")
    retention = None
    if mode is not None or until is not None:
        if mode is None or until is None:
            raise S3Error("MalformedXML")
        try:
            object_lock.parse_date(until)
        except S3Error:
            raise S3Error("MalformedXML") from None  # a date S3 cannot read makes the document malformed
        retention = object_lock.Retention(mode, until)
    record = await object_lock.put_retention(svc, req.identity, req.bucket, req.key, req.query.get("versionId"),
                                             retention, bypass_governance(req))
    return Response(status=200, headers=objects.version_header(svc, record))


async def get_retention(svc: S3Service, req: S3Request) -> StreamResponse:
    assert req.bucket and req.key
    retention = object_lock.get_retention(svc, req.identity, req.bucket, req.key, req.query.get("versionId"))
    return xml_response("Retention", xml.el("Mode", retention.mode) + xml.el("RetainUntilDate", retention.until))


async def put_legal_hold(svc: S3Service, req: S3Request) -> StreamResponse:
    assert req.bucket and req.key
    root = xml.parse(await req.read_body())
    status = root.findtext("Status")
    if root.tag != "LegalHold" or status is None:
        raise S3Error("MalformedXML")
    record = await object_lock.put_legal_hold(svc, req.identity, req.bucket, req.key, req.query.get("versionId"),
                                              status)
    return Response(status=200, headers=objects.version_header(svc, record))


async def get_legal_hold(svc: S3Service, req: S3Request) -> StreamResponse:
    assert req.bucket and req.key
    on = object_lock.get_legal_hold(svc, req.identity, req.bucket, req.key, req.query.get("versionId"))
    return xml_response("LegalHold", xml.el("Status", "ON" if on else "OFF"))


HANDLERS = {
    "PutObjectLockConfiguration": put_configuration,
    "GetObjectLockConfiguration": get_configuration,
    "PutObjectRetention": put_retention,
    "GetObjectRetention": get_retention,
    "PutObjectLegalHold": put_legal_hold,
    "GetObjectLegalHold": get_legal_hold,
}
