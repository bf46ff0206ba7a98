"""Users and access keys in the metadata database (SQL only: no crypto, no caching).

Tables live next to the bucket metadata in ``meta.sqlite3``. Secrets are stored sealed (AES-256-GCM under a key
derived from the master key, see :mod:`shoal.auth.users`); nothing here ever sees a plaintext secret.

Every change bumps the single row of ``iam_generation`` in the same transaction, so a server process can tell
with one cheap read whether its in-memory copy is still current (several workers may share one database).

Write functions take the writer thread's connection as first argument and run inside its transaction.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field

IAM_SCHEMA = """
CREATE TABLE IF NOT EXISTS iam_users (
    name         TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL,            -- canonical id: owner of the buckets and objects the user creates
    display_name TEXT NOT NULL,
    enabled      INTEGER NOT NULL DEFAULT 1,
    source       TEXT NOT NULL,            -- 'root' (the --root-user), 'flag' (--user / SHOAL_USERS), 'admin' (API)
    created      REAL NOT NULL,
    policies     TEXT NOT NULL DEFAULT '[]' -- [{"name": ..., "document": JSON text or null for a canned policy}]
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS iam_keys (
    access_key TEXT PRIMARY KEY,
    user_name  TEXT NOT NULL,
    secret     TEXT NOT NULL,              -- sealed: base64(nonce + AES-GCM ciphertext), never plaintext
    status     TEXT NOT NULL DEFAULT 'active',
    source     TEXT NOT NULL,              -- as for users: declared keys are re-applied at every start
    created    REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS iam_keys_by_user ON iam_keys(user_name);

CREATE TABLE IF NOT EXISTS iam_generation (id INTEGER PRIMARY KEY CHECK (id = 1), n INTEGER NOT NULL);
INSERT OR IGNORE INTO iam_generation (id, n) VALUES (1, 0);
"""


class IamConflict(Exception):
    """A user or access key with that name already exists."""


class IamNotFound(Exception):
    """No such user, access key or attached policy."""

    def __init__(self, kind: str, name: str) -> None:
        super().__init__(f"no such {kind}: {name}")
        self.kind = kind
        self.name = name


@dataclass(slots=True)
class KeyRow:
    access_key: str
    user_name: str
    secret: str  # sealed
    status: str
    source: str
    created: float


@dataclass(slots=True)
class UserRow:
    name: str
    user_id: str
    display_name: str
    enabled: bool
    source: str
    created: float
    policies: list[dict] = field(default_factory=list)
    keys: list[KeyRow] = field(default_factory=list)


@dataclass(slots=True)
class DeclaredKey:
    """A user given by flags: applied at every start."""

    user_name: str
    user_id: str
    display_name: str
    access_key: str
    sealed_secret: str


def ensure_schema(conn: sqlite3.Connection) -> None:
    conn.executescript(IAM_SCHEMA)


def generation(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT n FROM iam_generation WHERE id=1").fetchone()
    return row[0] if row else 0


def _bump(conn: sqlite3.Connection) -> None:
    conn.execute("UPDATE iam_generation SET n=n+1 WHERE id=1")


def load_all(conn: sqlite3.Connection) -> tuple[int, list[UserRow]]:
    """(generation, every user with its keys). The generation is read first: a change committed while the rest
    is read makes the data newer than the generation says, so the next check reads it again (never the other
    way round, which would miss the change). No explicit transaction, so this is safe on any read connection."""
    gen = generation(conn)
    users = {r[0]: _user(r) for r in conn.execute(
        "SELECT name, user_id, display_name, enabled, source, created, policies FROM iam_users ORDER BY name")}
    for r in conn.execute(
            "SELECT access_key, user_name, secret, status, source, created FROM iam_keys ORDER BY created"):
        user = users.get(r[1])
        if user is not None:
            user.keys.append(KeyRow(*r))
    return gen, list(users.values())


def _user(r: tuple) -> UserRow:
    return UserRow(r[0], r[1], r[2], bool(r[3]), r[4], r[5], json.loads(r[6]))


def get_user(conn: sqlite3.Connection, name: str) -> UserRow | None:
    r = conn.execute("SELECT name, user_id, display_name, enabled, source, created, policies FROM iam_users "
                     "WHERE name=?", (name,)).fetchone()
    if r is None:
        return None
    user = _user(r)
    user.keys = [KeyRow(*k) for k in conn.execute(
        "SELECT access_key, user_name, secret, status, source, created FROM iam_keys WHERE user_name=? "
        "ORDER BY created", (name,))]
    return user


def get_key(conn: sqlite3.Connection, access_key: str) -> KeyRow | None:
    r = conn.execute("SELECT access_key, user_name, secret, status, source, created FROM iam_keys "
                     "WHERE access_key=?", (access_key,)).fetchone()
    return None if r is None else KeyRow(*r)


# -- writes (on the writer thread) --------------------------------------------------------------------------


def create_user(conn: sqlite3.Connection, user: UserRow, key: KeyRow | None) -> None:
    if conn.execute("SELECT 1 FROM iam_users WHERE name=?", (user.name,)).fetchone():
        raise IamConflict(f"user {user.name} already exists")
    conn.execute("INSERT INTO iam_users (name, user_id, display_name, enabled, source, created, policies) "
                 "VALUES (?, ?, ?, ?, ?, ?, ?)", (user.name, user.user_id, user.display_name, int(user.enabled),
                                                  user.source, user.created, json.dumps(user.policies)))
    if key is not None:
        add_key(conn, key)
    _bump(conn)


def update_user(conn: sqlite3.Connection, name: str, enabled: bool | None = None,
                policies: list[dict] | None = None, display_name: str | None = None) -> None:
    if not conn.execute("SELECT 1 FROM iam_users WHERE name=?", (name,)).fetchone():
        raise IamNotFound("user", name)
    if enabled is not None:
        conn.execute("UPDATE iam_users SET enabled=? WHERE name=?", (int(enabled), name))
    if policies is not None:
        conn.execute("UPDATE iam_users SET policies=? WHERE name=?", (json.dumps(policies), name))
    if display_name is not None:
        conn.execute("UPDATE iam_users SET display_name=? WHERE name=?", (display_name, name))
    _bump(conn)


def delete_user(conn: sqlite3.Connection, name: str) -> None:
    if conn.execute("DELETE FROM iam_users WHERE name=?", (name,)).rowcount == 0:
        raise IamNotFound("user", name)
    conn.execute("DELETE FROM iam_keys WHERE user_name=?", (name,))
    _bump(conn)


def add_key(conn: sqlite3.Connection, key: KeyRow) -> None:
    if not conn.execute("SELECT 1 FROM iam_users WHERE name=?", (key.user_name,)).fetchone():
        raise IamNotFound("user", key.user_name)
    if conn.execute("SELECT 1 FROM iam_keys WHERE access_key=?", (key.access_key,)).fetchone():
        raise IamConflict(f"access key {key.access_key} already exists")
    conn.execute("INSERT INTO iam_keys (access_key, user_name, secret, status, source, created) "
                 "VALUES (?, ?, ?, ?, ?, ?)",
                 (key.access_key, key.user_name, key.secret, key.status, key.source, key.created))
    _bump(conn)


def set_key_status(conn: sqlite3.Connection, access_key: str, status: str) -> None:
    if conn.execute("UPDATE iam_keys SET status=? WHERE access_key=?", (status, access_key)).rowcount == 0:
        raise IamNotFound("key", access_key)
    _bump(conn)


def delete_key(conn: sqlite3.Connection, access_key: str) -> None:
    if conn.execute("DELETE FROM iam_keys WHERE access_key=?", (access_key,)).rowcount == 0:
        raise IamNotFound("key", access_key)
    _bump(conn)


def apply_declared(conn: sqlite3.Connection, root: DeclaredKey, declared: list[DeclaredKey]) -> None:
    """Make the database agree with the root credentials and the ``--user`` flags, idempotently.

    The root user (named ``root``) has exactly the current root key. Each declared key exists, belongs to its
    user and has the declared secret; its status and the user's enabled flag and policies, which an admin may
    have changed, are kept. Users and keys declared at an earlier start but not any more are removed; users and
    keys made through the admin API are left alone (except a key taken over by a declaration).
    """
    now = time.time()
    wanted_users: dict[str, DeclaredKey] = {}
    for d in declared:
        wanted_users[d.user_name] = d
    wanted_keys = {d.access_key for d in declared} | {root.access_key}
    # Forget what earlier starts declared and this one does not.
    for (access_key,) in conn.execute("SELECT access_key FROM iam_keys WHERE source IN ('flag', 'root')").fetchall():
        if access_key not in wanted_keys:
            conn.execute("DELETE FROM iam_keys WHERE access_key=?", (access_key,))
    for (name,) in conn.execute("SELECT name FROM iam_users WHERE source='flag'").fetchall():
        if name not in wanted_users:
            conn.execute("DELETE FROM iam_users WHERE name=?", (name,))
            conn.execute("DELETE FROM iam_keys WHERE user_name=?", (name,))
    # The root last: its key wins over a declaration of the same access key.
    for source, d in [("flag", d) for d in declared] + [("root", root)]:
        row = conn.execute("SELECT source FROM iam_users WHERE name=?", (d.user_name,)).fetchone()
        if row is None:
            conn.execute("INSERT INTO iam_users (name, user_id, display_name, enabled, source, created, policies) "
                         "VALUES (?, ?, ?, 1, ?, ?, '[]')", (d.user_name, d.user_id, d.display_name, source, now))
        else:
            conn.execute("UPDATE iam_users SET user_id=?, display_name=?, source=? WHERE name=?",
                         (d.user_id, d.display_name, source, d.user_name))
        if source == "root":
            conn.execute("UPDATE iam_users SET enabled=1 WHERE name=?", (d.user_name,))
        key = conn.execute("SELECT user_name FROM iam_keys WHERE access_key=?", (d.access_key,)).fetchone()
        if key is None:
            conn.execute("INSERT INTO iam_keys (access_key, user_name, secret, status, source, created) "
                         "VALUES (?, ?, ?, 'active', ?, ?)", (d.access_key, d.user_name, d.sealed_secret, source, now))
        else:
            conn.execute("UPDATE iam_keys SET user_name=?, secret=?, source=? WHERE access_key=?",
                         (d.user_name, d.sealed_secret, source, d.access_key))
        if source == "root":
            conn.execute("UPDATE iam_keys SET status='active' WHERE access_key=?", (d.access_key,))
    _bump(conn)


def attach_policy(conn: sqlite3.Connection, name: str, entry: dict) -> None:
    """Attach (or replace, by name) one policy entry; atomic against concurrent attaches."""
    row = conn.execute("SELECT policies FROM iam_users WHERE name=?", (name,)).fetchone()
    if row is None:
        raise IamNotFound("user", name)
    policies = [p for p in json.loads(row[0]) if p["name"] != entry["name"]] + [entry]
    conn.execute("UPDATE iam_users SET policies=? WHERE name=?", (json.dumps(policies), name))
    _bump(conn)


def detach_policy(conn: sqlite3.Connection, name: str, policy_name: str) -> None:
    row = conn.execute("SELECT policies FROM iam_users WHERE name=?", (name,)).fetchone()
    if row is None:
        raise IamNotFound("user", name)
    policies = json.loads(row[0])
    kept = [p for p in policies if p["name"] != policy_name]
    if len(kept) == len(policies):
        raise IamNotFound("policy", policy_name)
    conn.execute("UPDATE iam_users SET policies=? WHERE name=?", (json.dumps(kept), name))
    _bump(conn)
