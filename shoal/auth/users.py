"""Users and access keys kept in the metadata database, managed while the server runs.

:class:`UserDirectory` is the server's :class:`IdentityStore`: lookups by access key are served from an in-memory
map, rebuilt from the database when its generation counter moves. A process's own changes take effect at once;
another worker process's changes are seen within ``refresh_seconds`` (the counter is read at most that often,
and also whenever an access key is not found).

Secrets are sealed with AES-256-GCM under a key derived from the master key (the access key id is bound as
associated data) and are decrypted only into this map; the API returns a secret once, when its key is created.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import string
import time
from datetime import UTC, datetime
from functools import lru_cache
from typing import Protocol

from shoal.auth.identities import Identity, IdentityStore, canonical_id
from shoal.crypto.keys import KeyService, UnwrapError
from shoal.errors import S3Error
from shoal.s3 import policy as policy_lang
from shoal.storage import iam
from shoal.tokens import cli_safe_token

log = logging.getLogger(__name__)

ROOT_USER_NAME = "root"
ADMIN_POLICY = "admin"  # attached by name: the user is an administrator (everything, and the admin API)
CANNED_NAMES = (*policy_lang.CANNED, ADMIN_POLICY)
USER_NAME = re.compile(r"[A-Za-z0-9+=,.@_-]{1,64}")
POLICY_NAME = re.compile(r"[A-Za-z0-9+=,.@_-]{1,128}")
ACCESS_KEY = re.compile(r"[A-Za-z0-9+=,.@_~-]{3,128}")
SECRET_KEY = re.compile(r"[\x21-\x7e]{8,128}")
_KEY_ALPHABET = string.ascii_uppercase + string.digits


def new_access_key() -> str:
    return "".join(secrets.choice(_KEY_ALPHABET) for _ in range(20))


def new_secret_key() -> str:
    return cli_safe_token(30)  # 40 characters, ~240 bits


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@lru_cache(maxsize=512)
def _parsed(text: str) -> policy_lang.Policy:
    return policy_lang.parse(text, require_principal=False)


def canned_text(name: str) -> str:
    return json.dumps(policy_lang.CANNED[name])


def combined_policy(entries: list[dict]) -> policy_lang.Policy | None:
    """One policy made of every statement of the attached policies (Deny in any of them wins)."""
    statements: list[policy_lang.Statement] = []
    for entry in entries:
        if entry.get("document") is not None:
            statements += _parsed(entry["document"]).statements
        elif entry["name"] in policy_lang.CANNED:
            statements += _parsed(canned_text(entry["name"])).statements
    if not statements:
        return None
    return policy_lang.Policy(statements, json.dumps(entries))


class UserSpecLike(Protocol):
    """What the directory needs of a declared user. A Protocol: callers pass their own class
    (``shoal.server.UserSpec``), which a dataclass of this name only resembled."""

    @property
    def access_key(self) -> str: ...
    @property
    def secret_key(self) -> str: ...
    @property
    def name(self) -> str | None: ...
    @property
    def user_id(self) -> str | None: ...


def _not_found(exc: iam.IamNotFound) -> S3Error:
    code = {"user": "NoSuchUser", "key": "NoSuchAccessKey", "policy": "NoSuchPolicy"}[exc.kind]
    return S3Error(code, f"The {exc.kind} {exc.name!r} does not exist.", status=404)


def _conflict(exc: iam.IamConflict) -> S3Error:
    return S3Error("AlreadyExists", str(exc), status=409)


def _invalid(message: str) -> S3Error:
    return S3Error("InvalidRequest", message, status=400)


class UserDirectory(IdentityStore):
    def __init__(self, meta, keys: KeyService, refresh_seconds: float = 1.0) -> None:
        super().__init__()
        self._meta = meta
        self._keys = keys
        self.refresh_seconds = refresh_seconds
        iam.ensure_schema(meta.reader())
        self._users: list[Identity] = []
        self._generation = -1
        self._checked = 0.0
        self._undecryptable: set[str] = set()
        self._reload()

    # -- IdentityStore ------------------------------------------------------------------------------------

    def add(self, identity: Identity) -> None:
        raise TypeError("users are stored in the database: use the admin API")

    def get(self, access_key: str) -> Identity | None:
        now = time.monotonic()
        if now - self._checked >= self.refresh_seconds:
            self._check(now)
            return self._by_key.get(access_key)
        identity = self._by_key.get(access_key)
        if identity is None:  # perhaps created by another worker process a moment ago
            self._check(now)
            identity = self._by_key.get(access_key)
        return identity

    def all(self) -> list[Identity]:
        """One identity per user, enabled or not (for owner display names and grantee checks)."""
        now = time.monotonic()
        if now - self._checked >= self.refresh_seconds:
            self._check(now)
        return list(self._users)

    def invalidate(self) -> None:
        """Re-read on the next lookup (after a change made by this process)."""
        self._checked = 0.0
        self._generation = -1

    def _check(self, now: float) -> None:
        self._checked = now
        if iam.generation(self._meta.reader()) != self._generation:
            self._reload()

    def _reload(self) -> None:
        gen, users = iam.load_all(self._meta.reader())
        by_key: dict[str, Identity] = {}
        everyone: list[Identity] = []
        for user in users:
            try:
                doc = combined_policy(user.policies)
            except S3Error:
                log.warning("user %s: an attached policy no longer parses; ignoring the user's policies", user.name)
                doc = None
            is_admin = user.source == "root" or any(
                p["name"] == ADMIN_POLICY and p.get("document") is None for p in user.policies)
            first = None
            for key in user.keys:
                if key.status != "active" or not user.enabled:
                    continue
                try:
                    secret = self._keys.open_secret(key.access_key, key.secret)
                except UnwrapError:
                    if key.access_key not in self._undecryptable:
                        self._undecryptable.add(key.access_key)
                        log.warning("access key %s of user %s cannot be decrypted (was the master key changed?); "
                                    "it will not work", key.access_key, user.name)
                    continue
                identity = Identity(key.access_key, secret, user.user_id, user.display_name, is_admin=is_admin,
                                    policy=doc)
                by_key[key.access_key] = identity
                first = first or identity
            everyone.append(first or Identity(user.keys[0].access_key if user.keys else "", "", user.user_id,
                                              user.display_name, is_admin=is_admin, policy=doc))
        self._by_key = by_key
        self._users = everyone
        self._generation = gen

    # -- start-up -----------------------------------------------------------------------------------------

    def apply_declared(self, root: UserSpecLike, users: list[UserSpecLike]) -> None:
        """Store the root user and the ``--user`` declarations (idempotent; run once before serving)."""
        declared = []
        for spec in users:
            name = spec.name or spec.access_key
            if name == ROOT_USER_NAME:
                name = spec.access_key if spec.access_key != ROOT_USER_NAME else "root-user"
            declared.append(iam.DeclaredKey(name, spec.user_id or canonical_id(spec.access_key),
                                            spec.name or spec.access_key, spec.access_key,
                                            self._keys.seal_secret(spec.access_key, spec.secret_key)))
        root_key = iam.DeclaredKey(ROOT_USER_NAME, root.user_id or canonical_id(root.access_key), "root",
                                   root.access_key, self._keys.seal_secret(root.access_key, root.secret_key))
        self._meta.write_sync(iam.apply_declared, root_key, declared)
        self.invalidate()

    # -- administration (the admin API) ------------------------------------------------------------------

    async def _write(self, fn, *args) -> None:
        try:
            await self._meta.write(fn, *args)
        except iam.IamNotFound as exc:
            raise _not_found(exc) from None
        except iam.IamConflict as exc:
            raise _conflict(exc) from None
        finally:
            self.invalidate()

    def _user_row(self, name: str) -> iam.UserRow:
        row = iam.get_user(self._meta.reader(), name)
        if row is None:
            raise _not_found(iam.IamNotFound("user", name))
        return row

    def _not_root(self, row: iam.UserRow, what: str) -> None:
        if row.source == "root":
            raise _invalid(f"The root user cannot be {what} here: it is set by --root-user/--root-password.")

    @staticmethod
    def key_view(key: iam.KeyRow) -> dict:
        return {"access_key": key.access_key, "user": key.user_name, "status": key.status,
                "created": _iso(key.created), "source": key.source}

    @staticmethod
    def user_view(row: iam.UserRow, detail: bool = True) -> dict:
        view = {
            "name": row.name, "user_id": row.user_id, "display_name": row.display_name, "enabled": row.enabled,
            "admin": row.source == "root" or any(
                p["name"] == ADMIN_POLICY and p.get("document") is None for p in row.policies),
            "source": row.source, "created": _iso(row.created),
            "policies": [p["name"] for p in row.policies],
            "access_keys": [UserDirectory.key_view(k) for k in row.keys] if detail else len(row.keys),
        }
        if detail:
            view["policy_documents"] = {
                p["name"]: json.loads(p["document"]) if p.get("document") is not None
                else (policy_lang.CANNED.get(p["name"]) or "(administrator)") for p in row.policies}
        return view

    def list_users(self) -> list[dict]:
        _, users = iam.load_all(self._meta.reader())
        return [self.user_view(u, detail=False) for u in users]

    def get_user(self, name: str) -> dict:
        return self.user_view(self._user_row(name))

    async def create_user(self, name: str, display_name: str | None = None, policies: list | None = None,
                          with_key: bool = False, access_key: str | None = None,
                          secret_key: str | None = None) -> dict:
        if not isinstance(name, str) or not USER_NAME.fullmatch(name):
            raise _invalid("A user name is 1 to 64 characters of letters, digits and +=,.@_-")
        if display_name is not None and (not isinstance(display_name, str) or not 0 < len(display_name) <= 128):
            raise _invalid("display_name must be a string of 1 to 128 characters")
        entries = [self._policy_entry(p["policy"], p.get("name")) if isinstance(p, dict) and "policy" in p
                   else self._policy_entry(p) for p in (policies or [])]
        now = time.time()
        row = iam.UserRow(name, secrets.token_hex(32), display_name or name, True, "admin", now, entries)
        key, secret = (self._new_key(name, access_key, secret_key, now)
                       if with_key or access_key or secret_key else (None, None))
        await self._write(iam.create_user, row, key)
        view = self.get_user(name)
        if key is not None:
            view["new_key"] = self.key_view(key) | {"secret_key": secret}
        return view

    async def set_enabled(self, name: str, enabled: bool) -> dict:
        self._not_root(self._user_row(name), "disabled" if not enabled else "changed")
        await self._write(iam.update_user, name, enabled)
        return self.get_user(name)

    async def set_display_name(self, name: str, display_name: str) -> dict:
        if not isinstance(display_name, str) or not 0 < len(display_name) <= 128:
            raise _invalid("display_name must be a string of 1 to 128 characters")
        self._not_root(self._user_row(name), "renamed")
        await self._write(iam.update_user, name, None, None, display_name)
        return self.get_user(name)

    async def delete_user(self, name: str) -> None:
        self._not_root(self._user_row(name), "removed")
        await self._write(iam.delete_user, name)

    def _new_key(self, user: str, access_key: str | None, secret_key: str | None,
                 now: float) -> tuple[iam.KeyRow, str]:
        if access_key is not None and (not isinstance(access_key, str) or not ACCESS_KEY.fullmatch(access_key)):
            raise _invalid("An access key is 3 to 128 characters of letters, digits and +=,.@_~-")
        if secret_key is not None and (not isinstance(secret_key, str) or not SECRET_KEY.fullmatch(secret_key)):
            raise _invalid("A secret key is 8 to 128 printable ASCII characters without spaces")
        access_key = access_key or new_access_key()
        secret_key = secret_key or new_secret_key()
        sealed = self._keys.seal_secret(access_key, secret_key)
        return iam.KeyRow(access_key, user, sealed, "active", "admin", now), secret_key

    async def create_key(self, user: str, access_key: str | None = None, secret_key: str | None = None) -> dict:
        self._not_root(self._user_row(user), "given keys")
        key, secret = self._new_key(user, access_key, secret_key, time.time())
        await self._write(iam.add_key, key)
        return self.key_view(key) | {"secret_key": secret}

    def list_keys(self, user: str) -> list[dict]:
        return [self.key_view(k) for k in self._user_row(user).keys]

    def _key_row(self, access_key: str) -> iam.KeyRow:
        row = iam.get_key(self._meta.reader(), access_key)
        if row is None:
            raise _not_found(iam.IamNotFound("key", access_key))
        if row.source == "root":
            raise _invalid("The root access key is set by --root-user/--root-password.")
        return row

    def get_key(self, access_key: str) -> dict:
        return self.key_view(self._key_row(access_key))

    async def set_key_status(self, access_key: str, status: str) -> dict:
        if status not in ("active", "inactive"):
            raise _invalid("status must be 'active' or 'inactive'")
        self._key_row(access_key)
        await self._write(iam.set_key_status, access_key, status)
        return self.get_key(access_key)

    async def delete_key(self, access_key: str) -> None:
        self._key_row(access_key)
        await self._write(iam.delete_key, access_key)

    def _policy_entry(self, spec, name: str | None = None) -> dict:
        """A canned policy name, or a policy document (JSON text or object) with an optional name."""
        if name is not None and (not isinstance(name, str) or not POLICY_NAME.fullmatch(name)):
            raise _invalid("A policy name is 1 to 128 characters of letters, digits and +=,.@_-")
        if isinstance(spec, str) and spec in CANNED_NAMES:
            if name is not None and name != spec:
                raise _invalid("A canned policy is attached under its own name")
            return {"name": spec, "document": None}
        if isinstance(spec, dict):
            text = json.dumps(spec)
        elif isinstance(spec, str) and spec.lstrip().startswith("{"):
            text = spec
        else:
            raise _invalid(f"Unknown policy {spec!r}: give one of {', '.join(CANNED_NAMES)} or a JSON document")
        policy_lang.parse(text.encode(), require_principal=False)  # MalformedPolicy (400) if invalid
        if name in CANNED_NAMES:
            raise _invalid(f"{name} is the name of a canned policy")
        import hashlib

        return {"name": name or "policy-" + hashlib.sha256(text.encode()).hexdigest()[:10], "document": text}

    async def attach_policy(self, user: str, spec, name: str | None = None) -> dict:
        self._not_root(self._user_row(user), "given policies")
        await self._write(iam.attach_policy, user, self._policy_entry(spec, name))
        return self.get_user(user)

    async def detach_policy(self, user: str, name: str) -> dict:
        self._not_root(self._user_row(user), "given policies")
        await self._write(iam.detach_policy, user, name)
        return self.get_user(user)
