"""``shoal fsck``: reconcile the metadata with the files, and repair what can be repaired.

Checks (always):

1. ``PRAGMA integrity_check`` of the SQLite database (structural damage cannot be repaired here: restore it).
2. Every blob a version or a multipart part refers to is registered in the ``blobs`` table, is not in the
   ``garbage`` table (it would be deleted!), and has its file, of the recorded size.
3. Every registered blob is referred to (else it leaks space), every part belongs to an upload, and every key
   with versions has exactly one latest version.
4. Cleanup items: temp files of interrupted writes, garbage whose files are still to be deleted, and orphaned
   blob files no metadata knows (all normal after a crash: server start-up removes them as well).

With ``--repair`` (the server must be stopped: fsck takes the data directory's lock), in this order:

- a blob file whose size differs from the recorded one is quarantined (``.shoal/quarantine/``);
- referenced blobs are taken out of ``garbage`` and registered in ``blobs`` if they were not (checksum unknown);
- versions whose data is gone (a blob file missing or quarantined) are deleted, after their rows (all but inline
  bytes) are written to ``.shoal/lost+found/fsck-<time>.json``; where such a version was the latest, the next
  newest version of the key becomes the latest; parts whose blob is gone, and parts of no upload, are deleted;
- keys with zero or several latest versions get their newest version as the only latest;
- registered blobs nothing refers to become garbage; garbage files are deleted and forgotten; temp files and
  orphaned blob files are deleted.

Exit status: 0 when nothing is wrong (cleanup items alone are not wrong) or everything was repaired, 1 when
problems remain, 2 when fsck could not run (the server holds the lock, no store there).
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import time
from dataclasses import dataclass, field

from shoal.storage.local_blobs import LocalBlobStore

LOCK_NAME = "lock"


class StoreBusy(Exception):
    pass


def lock_path(data_dir: str) -> str:
    return os.path.join(data_dir, ".shoal", LOCK_NAME)


def hold_shared_lock(data_dir: str) -> int:
    """Taken by every server process for its lifetime: ``fsck --repair`` needs the store to itself."""
    fd = os.open(lock_path(data_dir), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_SH)
    return fd


def exclusive_lock(data_dir: str) -> int:
    fd = os.open(lock_path(data_dir), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreBusy("a server is running on this data directory; stop it first") from None
    return fd


@dataclass
class FsckReport:
    integrity: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # referenced blobs with no file
    size_mismatch: list[str] = field(default_factory=list)
    unregistered: list[str] = field(default_factory=list)  # referenced, not in the blobs table
    referenced_garbage: list[str] = field(default_factory=list)
    leaked: list[str] = field(default_factory=list)  # registered, referred to by nothing
    lost_versions: list[list[str]] = field(default_factory=list)  # [bucket, key, version id]
    lost_parts: list[list] = field(default_factory=list)  # [upload id, part number]
    stray_parts: list[list] = field(default_factory=list)  # parts of no upload
    bad_latest: list[list[str]] = field(default_factory=list)  # [bucket, key]
    tmp_files: int = 0
    garbage_pending: int = 0
    orphan_files: list[str] = field(default_factory=list)
    quarantined: int = 0
    repaired: list[str] = field(default_factory=list)

    def problems(self) -> int:
        return (len(self.integrity) + len(self.missing) + len(self.size_mismatch) + len(self.unregistered)
                + len(self.referenced_garbage) + len(self.leaked) + len(self.stray_parts) + len(self.bad_latest))

    def lines(self) -> list[str]:
        out = [f"database integrity: {'ok' if not self.integrity else '; '.join(self.integrity[:5])}"]
        for label, items in (
            ("blobs missing (data lost)", self.missing), ("blobs of the wrong size", self.size_mismatch),
            ("referenced blobs not registered", self.unregistered),
            ("referenced blobs marked as garbage", self.referenced_garbage),
            ("registered blobs nothing refers to", self.leaked), ("versions whose data is gone", self.lost_versions),
            ("parts whose data is gone", self.lost_parts), ("parts of no upload", self.stray_parts),
            ("keys without exactly one latest version", self.bad_latest),
            ("orphaned blob files", self.orphan_files),
        ):
            line = f"{label}: {len(items)}"
            if items:
                line += " (" + ", ".join("/".join(map(str, i)) if isinstance(i, list) else i for i in items[:5])
                line += ", ...)" if len(items) > 5 else ")"
            out.append(line)
        out.append(f"temp files: {self.tmp_files}; garbage files pending: {self.garbage_pending}; "
                   f"quarantined blobs: {self.quarantined}")
        out += [f"repaired: {r}" for r in self.repaired]
        return out


def fsck(data_dir: str, repair: bool = False) -> FsckReport:
    meta_dir = os.path.join(data_dir, ".shoal")
    db_path = os.path.join(meta_dir, "meta.sqlite3")
    if not os.path.exists(db_path):
        raise FileNotFoundError(f"no Shoal store in {data_dir}")
    lock = exclusive_lock(data_dir) if repair else None
    try:
        blobs = LocalBlobStore(meta_dir)
        conn = sqlite3.connect(db_path, isolation_level=None, timeout=30)
        conn.execute("PRAGMA busy_timeout=30000")
        try:
            report = _check(conn, blobs)
            if repair and not report.integrity:
                _repair(conn, blobs, report, meta_dir)
        finally:
            conn.close()
    finally:
        if lock is not None:
            os.close(lock)
    return report


def _referenced(conn: sqlite3.Connection) -> tuple[dict[str, list], dict[str, list]]:
    """blob id -> versions ([bucket, key, version id]) and blob id -> parts ([upload id, number])."""
    by_version: dict[str, list] = {}
    for bucket, key, version_id, segments in conn.execute("SELECT bucket, key, version_id, segments FROM versions"):
        for blob_id, _ in json.loads(segments):
            by_version.setdefault(blob_id, []).append([bucket, key, version_id])
    by_part: dict[str, list] = {}
    for upload_id, number, blob_id in conn.execute("SELECT upload_id, part_number, blob_id FROM parts"):
        by_part.setdefault(blob_id, []).append([upload_id, number])
    return by_version, by_part


def _files(blobs: LocalBlobStore) -> dict[str, int]:
    found = {}
    for blob_id in blobs.iter_blob_ids(time.time() + 3600):
        try:
            found[blob_id] = os.stat(blobs.path(blob_id)).st_size
        except (FileNotFoundError, ValueError):
            pass
    return found


def _check(conn: sqlite3.Connection, blobs: LocalBlobStore) -> FsckReport:
    report = FsckReport()
    result = [r[0] for r in conn.execute("PRAGMA integrity_check")]
    if result != ["ok"]:
        report.integrity = result
        return report  # nothing else can be trusted
    by_version, by_part = _referenced(conn)
    referenced = set(by_version) | set(by_part)
    registered = {r[0]: r[1] for r in conn.execute("SELECT id, size FROM blobs")}
    garbage = {r[0] for r in conn.execute("SELECT id FROM garbage")}
    files = _files(blobs)
    report.missing = sorted(b for b in referenced if b not in files)
    report.size_mismatch = sorted(b for b in referenced if b in files and registered.get(b) is not None
                                  and files[b] != registered[b])
    report.unregistered = sorted(referenced - set(registered))
    report.referenced_garbage = sorted(referenced & garbage)
    report.leaked = sorted(set(registered) - referenced)
    lost = set(report.missing)
    report.lost_versions = sorted({tuple(v) for b in lost for v in by_version.get(b, [])})  # type: ignore[misc]
    report.lost_versions = [list(v) for v in report.lost_versions]
    report.lost_parts = sorted(p for b in lost for p in by_part.get(b, []))
    report.stray_parts = [list(r) for r in conn.execute(
        "SELECT upload_id, part_number FROM parts WHERE upload_id NOT IN (SELECT upload_id FROM uploads)")]
    report.bad_latest = [list(r) for r in conn.execute(
        "SELECT bucket, key FROM versions GROUP BY bucket, key HAVING sum(is_latest) != 1")]
    report.tmp_files = len(os.listdir(blobs.tmp_dir))
    report.garbage_pending = len(garbage)
    report.orphan_files = sorted(set(files) - set(registered) - garbage)
    report.quarantined = len(blobs.quarantined())
    return report


def _release(conn: sqlite3.Connection, blob_ids) -> None:
    for blob_id in blob_ids:
        conn.execute("DELETE FROM blobs WHERE id=?", (blob_id,))
        conn.execute("INSERT OR IGNORE INTO garbage(id) VALUES (?)", (blob_id,))


def _repair(conn: sqlite3.Connection, blobs: LocalBlobStore, report: FsckReport, meta_dir: str) -> None:
    for blob_id in report.size_mismatch:
        if blobs.quarantine(blob_id, {"reason": "size differs from the recorded size", "detected_by": "fsck"}):
            report.repaired.append(f"quarantined blob {blob_id} (wrong size)")
    by_version, by_part = _referenced(conn)
    files = _files(blobs)
    gone = {b for b in set(by_version) | set(by_part) if b not in files}
    conn.execute("BEGIN IMMEDIATE")
    try:
        referenced = set(by_version) | set(by_part)
        for blob_id in sorted(referenced - gone):
            if conn.execute("DELETE FROM garbage WHERE id=?", (blob_id,)).rowcount:
                report.repaired.append(f"blob {blob_id} taken out of garbage (still referenced)")
            if conn.execute("INSERT OR IGNORE INTO blobs(id) VALUES (?)", (blob_id,)).rowcount:
                report.repaired.append(f"blob {blob_id} registered (checksum unknown)")
        lost_rows = []
        keys = set()
        for blob_id in sorted(gone):
            for bucket, key, version_id in by_version.get(blob_id, []):
                row = conn.execute(
                    "SELECT bucket, key, version_id, seq, is_latest, size, etag, mtime, meta, segments FROM versions "
                    "WHERE bucket=? AND key=? AND version_id=?", (bucket, key, version_id)).fetchone()
                if row is None:
                    continue  # already removed (it used several lost blobs)
                names = ["bucket", "key", "version_id", "seq", "is_latest", "size", "etag", "mtime", "meta",
                         "segments"]
                lost_rows.append(dict(zip(names, row, strict=True)))
                conn.execute("DELETE FROM versions WHERE bucket=? AND key=? AND version_id=?",
                             (bucket, key, version_id))
                _release(conn, [b for b, _ in json.loads(row[9]) if b not in gone])
                keys.add((bucket, key))
                report.repaired.append(f"deleted version {bucket}/{key} {version_id} (data gone)")
            for upload_id, number in by_part.get(blob_id, []):
                conn.execute("DELETE FROM parts WHERE upload_id=? AND part_number=?", (upload_id, number))
                report.repaired.append(f"deleted part {number} of upload {upload_id} (data gone)")
            conn.execute("DELETE FROM blobs WHERE id=?", (blob_id,))
            conn.execute("DELETE FROM garbage WHERE id=?", (blob_id,))
        for upload_id, number in report.stray_parts:
            row = conn.execute("SELECT blob_id FROM parts WHERE upload_id=? AND part_number=?",
                               (upload_id, number)).fetchone()
            if row is not None:
                conn.execute("DELETE FROM parts WHERE upload_id=? AND part_number=?", (upload_id, number))
                _release(conn, [row[0]])
                report.repaired.append(f"deleted part {number} of missing upload {upload_id}")
        keys |= {(b, k) for b, k in report.bad_latest}
        for bucket, key in sorted(keys):
            conn.execute("UPDATE versions SET is_latest=0 WHERE bucket=? AND key=? AND is_latest=1", (bucket, key))
            conn.execute("UPDATE versions SET is_latest=1 WHERE rowid=(SELECT rowid FROM versions WHERE bucket=? "
                         "AND key=? ORDER BY seq DESC LIMIT 1)", (bucket, key))
        if report.bad_latest:
            report.repaired.append(f"latest version set again on {len(report.bad_latest)} keys")
        by_version, by_part = _referenced(conn)
        referenced = set(by_version) | set(by_part)
        leaked = [r[0] for r in conn.execute("SELECT id FROM blobs") if r[0] not in referenced]
        _release(conn, leaked)
        if leaked:
            report.repaired.append(f"{len(leaked)} unreferenced registered blobs made garbage")
        if lost_rows:
            found = os.path.join(meta_dir, "lost+found")
            os.makedirs(found, exist_ok=True)
            path = os.path.join(found, f"fsck-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.json")
            with open(path, "w") as f:
                json.dump(lost_rows, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            report.repaired.append(f"rows of deleted versions saved in {path}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    garbage = [r[0] for r in conn.execute("SELECT id FROM garbage")]
    for blob_id in garbage:
        blobs.delete(blob_id)
    conn.executemany("DELETE FROM garbage WHERE id=?", [(b,) for b in garbage])
    if garbage:
        report.repaired.append(f"{len(garbage)} garbage blob files deleted")
    swept = blobs.sweep_temporary()
    if swept:
        report.repaired.append(f"{swept} temp files deleted")
    known = {r[0] for r in conn.execute("SELECT id FROM blobs")}
    orphans = [b for b in _files(blobs) if b not in known]
    for blob_id in orphans:
        blobs.delete(blob_id)
    if orphans:
        report.repaired.append(f"{len(orphans)} orphaned blob files deleted")
