"""Who may sign requests: access keys, their secrets and the user each belongs to."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shoal.s3.policy import Policy


@dataclass(frozen=True, slots=True)
class Identity:
    access_key: str
    secret_key: str
    user_id: str  # canonical id shown as the owner of buckets and objects
    display_name: str
    is_admin: bool = False
    policy: Policy | None = None  # an identity policy limiting or extending access

    def __repr__(self) -> str:  # never print the secret
        return f"Identity({self.access_key!r}, user_id={self.user_id!r}, admin={self.is_admin})"


def canonical_id(access_key: str) -> str:
    return hashlib.sha256(f"shoal-user:{access_key}".encode()).hexdigest()


class IdentityStore:
    def __init__(self) -> None:
        self._by_key: dict[str, Identity] = {}

    def add(self, identity: Identity) -> None:
        self._by_key[identity.access_key] = identity

    def get(self, access_key: str) -> Identity | None:
        return self._by_key.get(access_key)

    def all(self) -> list[Identity]:
        return list(self._by_key.values())
