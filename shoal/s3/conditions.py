"""Conditional requests (If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since), with S3's
precedence: a true If-Match overrides a false If-Unmodified-Since, and a false If-None-Match (a match)
overrides If-Modified-Since."""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import parsedate_to_datetime


@dataclass(slots=True)
class Conditions:
    if_match: str | None = None
    if_none_match: str | None = None
    if_modified_since: float | None = None
    if_unmodified_since: float | None = None

    @property
    def any(self) -> bool:
        return (self.if_match is not None or self.if_none_match is not None or self.if_modified_since is not None
                or self.if_unmodified_since is not None)


def parse_http_date(value: str | None) -> float | None:
    """An HTTP date as epoch seconds; None when absent or unparseable (S3 ignores bad dates)."""
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def etag_matches(header: str, etag: str) -> bool:
    """etag is unquoted; the header holds one or more, quoted or not, or '*'."""
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.strip('"') == etag:
            return True
    return False


def evaluate(c: Conditions, etag: str, last_modified: float) -> int | None:
    """None when the request should proceed, else 412 (PreconditionFailed) or 304 (NotModified)."""
    mtime = int(last_modified)  # HTTP dates have whole seconds
    if c.if_match is not None:
        if not etag_matches(c.if_match, etag):
            return 412
    elif c.if_unmodified_since is not None and mtime > c.if_unmodified_since:
        return 412
    if c.if_none_match is not None:
        if etag_matches(c.if_none_match, etag):
            return 304
    elif c.if_modified_since is not None and mtime <= c.if_modified_since:
        return 304
    return None


def failed_condition(c: Conditions, outcome: int) -> str:
    """The header that decided ``outcome`` (from :func:`evaluate`), as S3 names it in <Condition>."""
    if outcome == 412:
        return "If-Match" if c.if_match is not None else "If-Unmodified-Since"
    return "If-None-Match" if c.if_none_match is not None else "If-Modified-Since"
