"""HTTP side of ACLs, bucket policies, ownership controls and public access blocks."""

from __future__ import annotations

from shoal.errors import S3Error
from shoal.http import xml
from shoal.http.app import S3Request, xml_response
from shoal.http.response import Response, StreamResponse
from shoal.s3 import access_settings, acl, objects
from shoal.s3.service import S3Service

XSI = "http://www.w3.org/2001/XMLSchema-instance"


def acl_headers(req: S3Request) -> dict[str, str]:
    return {h: req.headers[h] for h in ("x-amz-acl", *acl.GRANT_HEADERS) if h in req.headers}


def _render_acl(svc: S3Service, owner: str, grants: list[acl.Grant]) -> str:
    name = access_settings.display_name(svc, owner)
    inner = "<Owner>" + xml.el("ID", owner) + xml.el("DisplayName", name) + "</Owner><AccessControlList>"
    # Group grants first, then users: the order S3-compatible servers return and clients' tests expect.
    for kind, value, permission in sorted(grants, key=lambda g: g[0] != "uri"):
        if kind == "id":
            grantee = (f'<Grantee xmlns:xsi="{XSI}" xsi:type="CanonicalUser">' + xml.el("ID", value)
                       + xml.el("DisplayName", access_settings.display_name(svc, value)) + "</Grantee>")
        elif kind == "uri":
            grantee = f'<Grantee xmlns:xsi="{XSI}" xsi:type="Group">' + xml.el("URI", value) + "</Grantee>"
        else:
            grantee = (f'<Grantee xmlns:xsi="{XSI}" xsi:type="AmazonCustomerByEmail">'
                       + xml.el("EmailAddress", value) + "</Grantee>")
        inner += "<Grant>" + grantee + xml.el("Permission", permission) + "</Grant>"
    return inner + "</AccessControlList>"


async def _acl_document(svc: S3Service, req: S3Request):
    body = await req.read_body()
    if not body.strip():
        return None
    return access_settings.parse_policy_document(xml.parse(body), svc)


async def get_bucket_acl(svc: S3Service, req: S3Request) -> StreamResponse:
    assert req.bucket
    owner, grants = access_settings.get_bucket_acl(svc, req.identity, req.bucket)
    return xml_response("AccessControlPolicy", _render_acl(svc, owner, grants))


async def put_bucket_acl(svc: S3Service, req: S3Request) -> StreamResponse:
    assert req.bucket
    document = await _acl_document(svc, req)
    await access_settings.put_bucket_acl(svc, req.identity, req.bucket, acl_headers(req), document)
    return Response(status=200)


async def get_object_acl(svc: S3Service, req: S3Request) -> StreamResponse:
    assert req.bucket and req.key
    record, owner, grants = access_settings.get_object_acl(svc, req.identity, req.bucket, req.key,
                                                           req.query.get("versionId"))
    return xml_response("AccessControlPolicy", _render_acl(svc, owner, grants),
                        headers=objects.version_header(svc, record))


async def put_object_acl(svc: S3Service, req: S3Request) -> StreamResponse:
    assert req.bucket and req.key
    document = await _acl_document(svc, req)
    record = await access_settings.put_object_acl(svc, req.identity, req.bucket, req.key,
                                                  req.query.get("versionId"), acl_headers(req), document)
    return Response(status=200, headers=objects.version_header(svc, record))


async def put_bucket_policy(svc: S3Service, req: S3Request) -> StreamResponse:
    assert req.bucket
    try:
        text = await req.read_body(64 * 1024)
    except S3Error as exc:
        if exc.code != "MalformedXML":  # read_body's "too large" is worded for XML; a policy is JSON
            raise
        raise S3Error("MalformedPolicy", "Policies must be no more than 20 KB") from None
    await access_settings.put_bucket_policy(svc, req.identity, req.bucket, text)
    return Response(status=204)


async def get_bucket_policy(svc: S3Service, req: S3Request) -> StreamResponse:
    assert req.bucket
    text = access_settings.get_bucket_policy(svc, req.identity, req.bucket)
    return Response(body=text.encode(), content_type="application/json")


async def delete_bucket_policy(svc: S3Service, req: S3Request) -> StreamResponse:
    assert req.bucket
    await access_settings.delete_bucket_policy(svc, req.identity, req.bucket)
    return Response(status=204)


async def get_bucket_policy_status(svc: S3Service, req: S3Request) -> StreamResponse:
    assert req.bucket
    public = access_settings.bucket_policy_is_public(svc, req.identity, req.bucket)
    return xml_response("PolicyStatus", xml.el("IsPublic", "true" if public else "false"))


async def put_ownership(svc: S3Service, req: S3Request) -> StreamResponse:
    assert req.bucket
    root = xml.parse(await req.read_body())
    value = root.findtext("Rule/ObjectOwnership")
    if root.tag != "OwnershipControls" or value is None:
        raise S3Error("MalformedXML")
    await access_settings.put_ownership(svc, req.identity, req.bucket, value)
    return Response(status=200)


async def get_ownership(svc: S3Service, req: S3Request) -> StreamResponse:
    assert req.bucket
    value = access_settings.get_ownership(svc, req.identity, req.bucket)
    return xml_response("OwnershipControls", "<Rule>" + xml.el("ObjectOwnership", value) + "</Rule>")


async def delete_ownership(svc: S3Service, req: S3Request) -> StreamResponse:
    assert req.bucket
    await access_settings.delete_ownership(svc, req.identity, req.bucket)
    return Response(status=204)


async def put_public_access_block(svc: S3Service, req: S3Request) -> StreamResponse:
    assert req.bucket
    root = xml.parse(await req.read_body())
    if root.tag != "PublicAccessBlockConfiguration":
        raise S3Error("MalformedXML")
    settings = {f: (root.findtext(f) or "").strip().lower() == "true" for f in access_settings.PAB_FIELDS}
    await access_settings.put_public_access_block(svc, req.identity, req.bucket, settings)
    return Response(status=200)


async def get_public_access_block(svc: S3Service, req: S3Request) -> StreamResponse:
    assert req.bucket
    settings = access_settings.get_public_access_block(svc, req.identity, req.bucket)
    inner = "".join(xml.el(f, "true" if settings.get(f) else "false") for f in access_settings.PAB_FIELDS)
    return xml_response("PublicAccessBlockConfiguration", inner)


async def delete_public_access_block(svc: S3Service, req: S3Request) -> StreamResponse:
    assert req.bucket
    await access_settings.delete_public_access_block(svc, req.identity, req.bucket)
    return Response(status=204)


HANDLERS = {
    "GetBucketAcl": get_bucket_acl,
    "PutBucketAcl": put_bucket_acl,
    "GetObjectAcl": get_object_acl,
    "PutObjectAcl": put_object_acl,
    "PutBucketPolicy": put_bucket_policy,
    "GetBucketPolicy": get_bucket_policy,
    "DeleteBucketPolicy": delete_bucket_policy,
    "GetBucketPolicyStatus": get_bucket_policy_status,
    "PutBucketOwnershipControls": put_ownership,
    "GetBucketOwnershipControls": get_ownership,
    "DeleteBucketOwnershipControls": delete_ownership,
    "PutPublicAccessBlock": put_public_access_block,
    "GetPublicAccessBlock": get_public_access_block,
    "DeletePublicAccessBlock": delete_public_access_block,
}
