"""Deterministic signal and order ids (DESIGN §4).

A client_order_id is derived only from (strategy, symbol, side, the signal's bar time, sequence),
never from a clock or a counter that survives restarts, so replaying the same features or retrying
a send produces the same id, and the venue (Alpaca deduplicates on client_order_id) and the
warehouse (ReplacingMergeTree on id) see one order, not two.

Ids are readable on purpose: an operator can grep ``baseline-AAPL-buy-1700000000000000000-0`` in
venue logs without a lookup table.
"""

from __future__ import annotations

import hashlib

from schemas import Side

# Alpaca's POST /v2/orders accepts a client_order_id of at most 128 characters.
CLIENT_ORDER_ID_MAX_LEN = 128
_DIGEST_CHARS = 20  # 80 bits of SHA-256: collisions are not a practical concern at order volumes


def _escape(part: str) -> str:
    # '-' separates the id's fields; escaping it (and the escape char) inside names keeps the id
    # injective: strategy "a-b" + symbol "c" can never collide with strategy "a" + symbol "b-c".
    return part.replace("%", "%25").replace("-", "%2D")


def client_order_id(strategy: str, symbol: str, side: Side | str, bar_end: int, seq: int = 0) -> str:
    """``{strategy}-{symbol}-{side}-{bar_end}-{seq}``, unique per those five fields.

    ``seq`` numbers the orders one strategy sends for one symbol and side at one bar time (0 for
    the first). Ids longer than Alpaca's limit keep a readable prefix and end in ``~`` plus a
    digest of the full id, which stays unique and deterministic.
    """
    if not strategy or not symbol:
        raise ValueError("strategy and symbol must be non-empty")
    if bar_end < 0 or seq < 0:
        raise ValueError(f"bar_end and seq must be >= 0, got {bar_end}, {seq}")
    readable = "-".join((_escape(strategy), _escape(symbol), Side(side).value, str(int(bar_end)), str(int(seq))))
    if len(readable) <= CLIENT_ORDER_ID_MAX_LEN:
        return readable
    # A readable id always ends in "-<digits>"; a digested one ends in "~<hex>" with no '-' in its
    # tail, so the two forms can never produce the same string.
    digest = hashlib.sha256(readable.encode()).hexdigest()[:_DIGEST_CHARS]
    return readable[: CLIENT_ORDER_ID_MAX_LEN - _DIGEST_CHARS - 1] + "~" + digest


def unwind_order_id(strategy: str, symbol: str, side: Side | str, command_id: str, seq: int = 0) -> str:
    """A flatten's closing order: ``{strategy}-{symbol}-{side}-u{digest of the command id}-{seq}``.

    Derived from the operator command, never from a clock: the same command applied again (a
    redelivery, a replay after a restart) yields the same ids, which risk and the venues refuse as
    duplicates, so a flatten never closes twice. The strategy and side stay where
    :func:`client_order_id` puts them, so a venue's reports are attributed the same way.
    """
    if not strategy or not symbol or not command_id:
        raise ValueError("strategy, symbol and command_id must be non-empty")
    digest = hashlib.sha256(command_id.encode()).hexdigest()[:_DIGEST_CHARS]
    readable = "-".join((_escape(strategy), _escape(symbol), Side(side).value, "u" + digest, str(int(seq))))
    if len(readable) <= CLIENT_ORDER_ID_MAX_LEN:
        return readable
    tail = hashlib.sha256(readable.encode()).hexdigest()[:_DIGEST_CHARS]
    return readable[: CLIENT_ORDER_ID_MAX_LEN - _DIGEST_CHARS - 1] + "~" + tail


def signal_id(strategy: str, symbol: str, bar_end: int) -> str:
    """One signal per strategy, symbol and bar time; a re-emitted signal replaces itself downstream."""
    return f"sig:{strategy}:{symbol}:{bar_end}"
