"""The admin API: users, access keys and identity policies, managed while the server runs.

Served under ``/_shoal/admin/v1/`` (a path no bucket can have: bucket names cannot start with ``_``), signed
with AWS Signature V4 (or V2) like any S3 request, by an administrator: the root user, or a user with the
``admin`` policy attached. JSON in, JSON out; errors are JSON ``{"Code", "Message", "RequestId"}`` with the
HTTP status S3 would use (403 AccessDenied for non-admins, 404 NoSuchUser, 409 AlreadyExists, 400 ...).

    GET    /users                         list users
    POST   /users                         {"name", "display_name"?, "policies"?: [policy or {"policy", "name"}],
                                           "with_key"?: bool,
                                           "access_key"?, "secret_key"?}  -> 201 user (+ "new_key" with secret)
    GET    /users/NAME                    one user, its keys (never secrets) and policies
    PATCH  /users/NAME                    {"enabled"?: bool, "display_name"?: str}
    DELETE /users/NAME                    remove the user and its keys (its buckets stay)
    GET    /users/NAME/keys               list its access keys
    POST   /users/NAME/keys               {"access_key"?, "secret_key"?} -> 201 key with "secret_key" (only time)
    GET    /users/NAME/policies           attached policies with their documents
    POST   /users/NAME/policies           {"policy": "readonly"|"readwrite"|"writeonly"|"admin"|{document},
                                           "name"?: str}  attach (or replace by name)
    DELETE /users/NAME/policies/POLICY    detach
    GET    /keys/AK                       one access key
    PATCH  /keys/AK                       {"status": "active"|"inactive"}
    DELETE /keys/AK                       remove the key
"""

from __future__ import annotations

import hashlib
import json
import logging
from urllib.parse import unquote

from shoal.auth.users import UserDirectory
from shoal.errors import S3Error
from shoal.http.app import new_request_id
from shoal.http.request import Request
from shoal.http.response import Response, StreamResponse

log = logging.getLogger("shoal.admin")

PREFIX = "/_shoal/admin/v1/"
MAX_BODY = 64 * 1024


def json_response(value, status: int = 200) -> Response:
    return Response(status=status, body=json.dumps(value, indent=1).encode(),
                        content_type="application/json")


def error_response(exc: S3Error, request_id: str) -> Response:
    body = {"Code": exc.code, "Message": exc.message, "RequestId": request_id}
    return Response(status=exc.status, body=json.dumps(body).encode(), content_type="application/json")


async def _read_json(body) -> dict:
    chunks: list[bytes] = []
    total = 0
    digest = hashlib.sha256() if body.wants_sha256 else None
    while chunk := await body.read():
        total += len(chunk)
        if total > MAX_BODY:
            raise S3Error("InvalidRequest", "The request body is too large.", status=400)
        if digest is not None:
            digest.update(chunk)
        chunks.append(chunk)
    if digest is not None:
        body.check_sha256(digest.hexdigest())
    data = b"".join(chunks)
    if not data.strip():
        return {}
    try:
        value = json.loads(data)
    except ValueError:
        raise S3Error("InvalidRequest", "The request body is not valid JSON.", status=400) from None
    if not isinstance(value, dict):
        raise S3Error("InvalidRequest", "The request body must be a JSON object.", status=400)
    return value


def _not_allowed(method: str) -> S3Error:
    return S3Error("MethodNotAllowed", f"{method} is not allowed on this resource.", status=405)


async def handle(app, request: Request, raw_path: str, raw_query: str, cont) -> StreamResponse:
    request_id = new_request_id()
    try:
        identity, body = await app.authenticate_plain(request, raw_path, raw_query, cont)
        if identity is None or not identity.is_admin:
            raise S3Error("AccessDenied", "The admin API needs an administrator's credentials.")
        directory = app.service.identities
        if not isinstance(directory, UserDirectory):
            raise S3Error("NotImplemented", "This server keeps no user database.", status=501)
        data = await _read_json(body) if request.method in ("POST", "PATCH", "PUT") else {}
        parts = [unquote(p) for p in raw_path[len(PREFIX):].split("/")]
        if parts and parts[-1] == "":
            parts.pop()
        response = await _dispatch(directory, request.method, parts, data)
        log.info("admin %s %s by %s: %d", request.method, raw_path, identity.access_key, response.status)
        return response
    except S3Error as exc:
        return error_response(exc, request_id)


def _field(data: dict, name: str, kind: type, required: bool = False):
    value = data.get(name)
    if value is None:
        if required:
            raise S3Error("InvalidRequest", f"Missing field {name!r}.", status=400)
        return None
    if not isinstance(value, kind):
        raise S3Error("InvalidRequest", f"Field {name!r} has the wrong type.", status=400)
    return value


async def _dispatch(d: UserDirectory, method: str, parts: list[str], data: dict) -> Response:
    n = len(parts)
    if n >= 1 and parts[0] == "users":
        if n == 1:
            if method == "GET":
                return json_response({"users": d.list_users()})
            if method == "POST":
                policies = _field(data, "policies", list) or []
                user = await d.create_user(
                    _field(data, "name", str, required=True), _field(data, "display_name", str), policies,
                    bool(data.get("with_key")), _field(data, "access_key", str), _field(data, "secret_key", str))
                return json_response(user, status=201)
            raise _not_allowed(method)
        name = parts[1]
        if n == 2:
            if method == "GET":
                return json_response(d.get_user(name))
            if method == "PATCH":
                updated = None  # not "user": that one (POST's) is never None
                if "display_name" in data:
                    updated = await d.set_display_name(name, _field(data, "display_name", str, required=True))
                if "enabled" in data:
                    updated = await d.set_enabled(name, _field(data, "enabled", bool, required=True))
                return json_response(updated or d.get_user(name))
            if method == "DELETE":
                await d.delete_user(name)
                return Response(status=204)
            raise _not_allowed(method)
        if parts[2] == "keys" and n == 3:
            if method == "GET":
                return json_response({"access_keys": d.list_keys(name)})
            if method == "POST":
                key = await d.create_key(name, _field(data, "access_key", str), _field(data, "secret_key", str))
                return json_response(key, status=201)
            raise _not_allowed(method)
        if parts[2] == "policies" and n == 3:
            if method == "GET":
                user = d.get_user(name)
                return json_response({"policies": user["policies"], "documents": user["policy_documents"]})
            if method == "POST":
                spec = data.get("policy")
                if spec is None:
                    raise S3Error("InvalidRequest", "Missing field 'policy'.", status=400)
                return json_response(await d.attach_policy(name, spec, _field(data, "name", str)))
            raise _not_allowed(method)
        if parts[2] == "policies" and n == 4:
            if method == "DELETE":
                return json_response(await d.detach_policy(name, parts[3]))
            raise _not_allowed(method)
    if n == 2 and parts[0] == "keys":
        if method == "GET":
            return json_response(d.get_key(parts[1]))
        if method == "PATCH":
            return json_response(await d.set_key_status(parts[1], _field(data, "status", str, required=True)))
        if method == "DELETE":
            await d.delete_key(parts[1])
            return Response(status=204)
        raise _not_allowed(method)
    raise S3Error("NotFound", "No such admin resource.", status=404)
