"""A bounded window of recently seen ids (trade ids in normalize, record ids in the desk).

Its snapshot is built incrementally: stages are snapshotted every epoch and a window holds tens of
thousands of ids, of which only those since the previous snapshot are new. Rebuilding the whole
window each epoch (8 windows of 20,000 record ids in the desk: ~5-18 ms on this machine) is a pause
on the tape that lands on whichever bar closes at that moment, i.e. on the tick -> order p99.
"""

from __future__ import annotations

import zlib
from collections import deque
from itertools import chain, islice
from typing import Hashable, Iterable

__all__ = ["RecentTradeIds"]

_ID_SEPARATOR = "\x00"
# Sealed pieces kept before the oldest half of them is merged into one (decompressed, joined and
# compressed again: rare): bounds the pieces of a slow window whose span covers many epochs.
_MAX_PIECES = 32
_LEVEL = 1  # zlib's fastest: ~85 ns an id, ~7.5 times smaller; higher levels gain little for much more time


def _seal(ids: list) -> tuple[int, bytes | list]:
    """``(len(ids), payload)``: when every id is a str free of the separator, one joined string,
    compressed (it pickles as one object, not thousands; ids of one symbol or table share most of
    their text, so it is some eight times smaller: the desk's windows were 4 MB of its 7.5 MB
    snapshot, written on the stage's thread at every epoch's end), else the list itself. A piece is
    sealed once and reused by every later snapshot, so each id is compressed once."""
    if ids and type(ids[0]) is str:
        try:
            joined = _ID_SEPARATOR.join(ids)
        except TypeError:  # an int among the texts
            return len(ids), ids
        if joined.count(_ID_SEPARATOR) == len(ids) - 1:
            try:
                return len(ids), zlib.compress(joined.encode(), _LEVEL)
            except UnicodeEncodeError:  # a lone surrogate: kept as text
                return len(ids), joined
    return len(ids), ids


def _unseal(payload: bytes | str | list) -> list:
    if type(payload) is bytes:
        return zlib.decompress(payload).decode().split(_ID_SEPARATOR)
    return payload.split(_ID_SEPARATOR) if isinstance(payload, str) else payload  # str: older snapshots


def _merge(pieces: list[tuple[int, int, bytes | str | list]]) -> tuple[int, int, bytes | str | list]:
    start, count = pieces[0][0], sum(p[1] for p in pieces)
    return (start, *_seal(list(chain.from_iterable(_unseal(p[2]) for p in pieces))))


class RecentTradeIds:
    """The last ``maxlen`` accepted trade ids of one symbol, for O(1) duplicate checks.

    Bounded memory: a deque gives the eviction order, a set the membership test. A duplicate older
    than the window (more than ``maxlen`` accepted trades ago) is not detected; ClickHouse's
    ReplacingMergeTree on the trade's id still deduplicates it downstream. Only the order is
    pickled (the set is rebuilt), which halves the snapshot size; ids may be any hashable that
    pickles (normalize keeps ints for numeric trade ids).

    Snapshots are incremental: ``__getstate__`` seals only the ids added since the previous one into
    a new piece (compressed joined text, or a list) and reuses the sealed pieces still in the window, so
    its cost follows the ids added, not the window's size. The pickled form is ``(maxlen, skip,
    pieces)``: the ids of the pieces in order, the first ``skip`` of them already evicted.
    """

    __slots__ = ("_order", "_members", "_added", "_pieces")

    def __init__(self, maxlen: int, ids: Iterable[Hashable] = ()):
        self._order: deque = deque(ids, maxlen=maxlen)
        self._members: set = set(self._order)
        self._added = len(self._order)  # ids ever appended: the absolute position after the newest
        self._pieces: list[tuple[int, int, bytes | str | list]] = []  # (first position, count, payload)

    def __contains__(self, trade_id: Hashable) -> bool:
        return trade_id in self._members

    def __len__(self) -> int:
        return len(self._order)

    def add_if_new(self, trade_id: Hashable) -> bool:
        """Remember ``trade_id``; False (and no change) if it is already in the window."""
        members = self._members
        if trade_id in members:
            return False
        order = self._order
        if len(order) == order.maxlen:
            members.discard(order[0])  # the deque drops it on append below
        order.append(trade_id)
        members.add(trade_id)
        self._added += 1
        return True

    def first_known(self, trade_ids: list) -> int | None:
        """Index of the first of ``trade_ids`` that is in the window or repeats an earlier one of
        them; None if all are new and distinct, the case :meth:`extend_new` takes.

        A hit is not necessarily a duplicate (enough new ids before it may evict its twin): the
        batch path only uses it as the row from which it goes one trade at a time.
        """
        distinct = set(trade_ids)
        if len(distinct) == len(trade_ids) and distinct.isdisjoint(self._members):
            return None  # the common case, answered by two C-level set operations
        seen: set = set()
        for i, trade_id in enumerate(trade_ids):  # rare: a replay or a broken feed
            if trade_id in self._members or trade_id in seen:
                return i
            seen.add(trade_id)
        return None

    def extend_new(self, trade_ids: list) -> None:
        """``add_if_new`` for each of ``trade_ids`` in order, in bulk; the ids must be new and
        distinct (``first_known(trade_ids) is None``), so every one of them is added."""
        order, members = self._order, self._members
        maxlen = order.maxlen
        evicted = len(order) + len(trade_ids) - maxlen
        if evicted > 0:  # the oldest ids leave the set before the new ones enter it
            members.difference_update(islice(order, 0, min(evicted, len(order))))
        members.update(trade_ids[-maxlen:])  # more than maxlen new ids: only the last maxlen stay
        order.extend(trade_ids)
        self._added += len(trade_ids)

    def add_new(self, ids: list) -> list[bool] | None:
        """Remember ``ids`` in order, exactly as :meth:`add_if_new` one by one would. None when every
        one was new (the usual case: :meth:`first_known` and :meth:`extend_new`, C-level set
        operations with no loop per id); otherwise, per id, whether it was new."""
        if self.first_known(ids) is None:
            self.extend_new(ids)
            return None
        return [self.add_if_new(trade_id) for trade_id in ids]

    def __getstate__(self) -> tuple[int, int, list[bytes | str | list]]:
        order = self._order
        first = self._added - len(order)  # the position of the oldest id still in the window
        pieces = [p for p in self._pieces if p[0] + p[1] > first]
        sealed_to = pieces[-1][0] + pieces[-1][1] if pieces else first
        if sealed_to < self._added:
            # the newest ids, from the right end: islice from the left would step over the whole window
            new = list(islice(reversed(order), self._added - sealed_to))
            new.reverse()
            count, payload = _seal(new)
            pieces.append((sealed_to, count, payload))
        if len(pieces) > _MAX_PIECES:
            half = len(pieces) // 2
            pieces = [_merge(pieces[:half]), *pieces[half:]]
        skip = first - pieces[0][0] if pieces else 0
        if skip > len(order) // 4:  # evicted ids would swell the snapshot: reseal the oldest piece
            count, payload = _seal(_unseal(pieces[0][2])[skip:])
            pieces[0], skip = (first, count, payload), 0
        self._pieces = pieces
        return (order.maxlen, skip, [p[2] for p in pieces])

    def __setstate__(self, state: tuple) -> None:
        if len(state) == 3:
            maxlen, skip, payloads = state
            ids = list(chain.from_iterable(_unseal(p) for p in payloads))[skip:]
        else:  # (maxlen, ids as one joined string or a list): snapshots from before the pieces
            maxlen, ids = state
            ids = ids.split(_ID_SEPARATOR) if isinstance(ids, str) else ids
        self._order = deque(ids, maxlen=maxlen)
        self._members = set(self._order)
        self._added = len(self._order)
        self._pieces = []
