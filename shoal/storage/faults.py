"""Fault injection for tests: make blob writes, fsyncs or reads fail with a chosen errno.

Off unless the environment variable ``SHOAL_FAULTS_FILE`` names a file, so production pays one attribute test
per call. The file holds a JSON object such as ``{"write": "ENOSPC", "fsync": "EIO", "read": "EIO"}`` and is
re-read whenever it changes, so a test can switch faults on and off while the server runs (an empty object, or
a missing file, means no faults). Points: ``write`` (each write to a new blob), ``fsync`` (making a blob
durable), ``rename`` (moving it into place), ``read`` (opening or reading a stored blob), ``meta`` (every
metadata commit).
"""

from __future__ import annotations

import errno
import json
import os

ENV = "SHOAL_FAULTS_FILE"


class FaultInjector:
    def __init__(self, path: str) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._faults: dict[str, int] = {}

    def _load(self) -> dict[str, int]:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._stamp, self._faults = None, {}
            return self._faults
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            try:
                with open(self.path) as f:
                    spec = json.load(f) or {}
            except (OSError, ValueError):
                spec = {}
            self._faults = {point: getattr(errno, name) for point, name in spec.items()}
            self._stamp = stamp
        return self._faults

    def check(self, point: str) -> None:
        code = self._load().get(point)
        if code is not None:
            raise OSError(code, f"{os.strerror(code)} (injected at {point})")


def from_environment() -> FaultInjector | None:
    path = os.environ.get(ENV)
    return FaultInjector(path) if path else None


FAULTS = from_environment()


def check(point: str) -> None:
    if FAULTS is not None:
        FAULTS.check(point)
