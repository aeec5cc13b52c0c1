"""Warehouse URLs in messages, apart from :mod:`sinks.warehouse` so that printing one does not
import ClickHouse's client, Polars and Arrow (a third of a second in every stage process)."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***``: for messages and logs (a server URL carries
    the ClickHouse credentials)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = f"{parts.username}:" if parts.username else ":"
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{user}***@{host}"))
