"""HTTP side of CORS: Put/Get/DeleteBucketCors and preflight (OPTIONS) requests."""

from __future__ import annotations

from shoal.errors import S3Error
from shoal.http import xml
from shoal.http.app import S3Request, xml_response
from shoal.http.response import Response, StreamResponse
from shoal.s3 import cors
from shoal.s3.service import S3Service


async def put_bucket_cors(svc: S3Service, req: S3Request) -> StreamResponse:
    assert req.bucket
    root = xml.parse(await req.read_body(64 * 1024))
    if root.tag != "CORSConfiguration":
        raise S3Error("MalformedXML")
    rules = []
    for node in root.findall("CORSRule"):
        max_age = node.findtext("MaxAgeSeconds")
        try:
            age = int(max_age) if max_age is not None else None
        except ValueError:
            raise S3Error("MalformedXML") from None
        rules.append(cors.Rule(
            origins=[e.text or "" for e in node.findall("AllowedOrigin")],
            methods=[e.text or "" for e in node.findall("AllowedMethod")],
            allowed_headers=[e.text or "" for e in node.findall("AllowedHeader")],
            expose_headers=[e.text or "" for e in node.findall("ExposeHeader")],
            max_age=age,
            rule_id=node.findtext("ID"),
        ))
    await cors.put_rules(svc, req.identity, req.bucket, rules)
    return Response(status=200)


async def get_bucket_cors(svc: S3Service, req: S3Request) -> StreamResponse:
    assert req.bucket
    inner = ""
    for rule in cors.get_rules(svc, req.identity, req.bucket):
        inner += "<CORSRule>" + (xml.el("ID", rule.rule_id) if rule.rule_id else "")
        inner += "".join(xml.el("AllowedHeader", h) for h in rule.allowed_headers)
        inner += "".join(xml.el("AllowedMethod", m) for m in rule.methods)
        inner += "".join(xml.el("AllowedOrigin", o) for o in rule.origins)
        inner += "".join(xml.el("ExposeHeader", h) for h in rule.expose_headers)
        inner += (xml.el("MaxAgeSeconds", rule.max_age) if rule.max_age is not None else "") + "</CORSRule>"
    return xml_response("CORSConfiguration", inner)


async def delete_bucket_cors(svc: S3Service, req: S3Request) -> StreamResponse:
    assert req.bucket
    await cors.delete_rules(svc, req.identity, req.bucket)
    return Response(status=204)


async def preflight(svc: S3Service, req: S3Request) -> StreamResponse:
    bucket = svc.storage.meta.get_bucket(req.bucket) if req.bucket else None
    headers = cors.preflight(cors.rules_of(bucket, svc.default_cors), req.headers.get("Origin"),
                             req.headers.get("Access-Control-Request-Method"),
                             req.headers.get("Access-Control-Request-Headers"))
    return Response(status=200, headers=headers)


HANDLERS = {
    "PutBucketCors": put_bucket_cors,
    "GetBucketCors": get_bucket_cors,
    "DeleteBucketCors": delete_bucket_cors,
    "PreflightRequest": preflight,
}
