"""When a feed hands its tape over as batches, and the watermark each batch carries.

A feed cuts its tape into :class:`Handover` row ranges with :func:`handovers` and turns each range
into a :class:`schemas.columns.RawTickBatch`; this module decides the ranges and their watermarks
(``schemas.columns.WATERMARK``: a lower bound on the ``ts_event`` of every later tick).

Unpaced, a range is the next ``max_rows`` rows of the current segment. The watermark is the
range's last event time, + 1 when the tape is strictly increasing (the synthetic tape; a replay
file may hold ties, so the next row may carry the same stamp).

Paced (``Pacer.speed > 0``), the schedule stays the Pacer's absolute one (anchored at the first
row); a range holds every row due by the wall clock, capped at ``max_rows``, and the watermark is the
event time the schedule has reached + 1 (every row up to it has been handed over), never above the
next row's stamp. After a handover the feed sleeps until the next row is due or ``HEARTBEAT_NS``
(10 ms) has passed, whichever comes first, but at least ``HANDOVER_NS`` (1 ms): a dense tape goes
out in bursts of a millisecond, as ``ticks()`` paces it (one wake-up per batch, not per tick). A
backlog (the range was capped: the consumer fell behind) goes out at once. When nothing is due for
``HEARTBEAT_NS`` of wall time the feed hands over an empty range, a heartbeat carrying the reached
event time, so a quiet stretch (a lull, the night between two sessions) still advances the
watermark and a bar closes within ~10 ms of wall time after its end at any speed. Why 10 ms: far
below the finest bar (1 s), under the source's own hand-over bound (20 ms,
``flows.source.BATCH_MAX_SECONDS``), and a quiet tape costs at most a hundred empty batches a second.

A range never spans two segments (the synthetic feed's simulator blocks, 16 event seconds each),
so a block's last batch may be short. Watermarks never decrease along the stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Iterable, Iterator, TypeVar

import numpy as np

from feeds.pacing import Pacer
from schemas.columns import RawTickBatch

HANDOVER_NS = 1_000_000
HEARTBEAT_NS = 10_000_000

T = TypeVar("T")


@dataclass(frozen=True)
class Handover(Generic[T]):
    """Rows ``[lo, hi)`` of ``segment`` (None and an empty range for a heartbeat), and the watermark."""

    segment: T | None
    lo: int
    hi: int
    watermark: int


def handovers(
    segments: Iterable[tuple[np.ndarray, T]],
    pacer: Pacer,
    max_rows: int,
    *,
    strictly_increasing: bool,
    heartbeat_ns: int = HEARTBEAT_NS,
    handover_ns: int = HANDOVER_NS,
) -> Iterator[Handover[T]]:
    """The handovers of a tape given as ``(ts_event array, segment)`` pairs in event-time order.

    Each array is non-decreasing and so is their concatenation (strictly increasing when
    ``strictly_increasing``). Paced, the generator sleeps through ``pacer`` between handovers.
    """
    if max_rows < 1:
        raise ValueError(f"max_rows must be >= 1, got {max_rows}")
    gap = 1 if strictly_increasing else 0
    paced = pacer.paced
    remaining = (pair for pair in segments if len(pair[0]))
    ts, segment = next(remaining, (None, None))
    if ts is None:
        return
    pos = 0
    if paced:
        pacer.anchor(int(ts[0]))
    last_handover = pacer.now() if paced else 0
    while True:
        if pos == len(ts):
            ts, segment = next(remaining, (None, None))
            if ts is None:
                return
            pos = 0
        if not paced:
            hi = min(len(ts), pos + max_rows)
            yield Handover(segment, pos, hi, int(ts[hi - 1]) + gap)
            pos = hi
            continue
        now = pacer.now()
        reached = pacer.reached(now)
        due_end = pos + int(np.searchsorted(ts[pos:], reached, side="right"))
        hi = min(due_end, pos + max_rows)
        if hi > pos:
            lo, pos = pos, hi
            if pos < len(ts):
                watermark = min(reached + 1, int(ts[pos]))
            else:  # the next segment is not known yet: what the range itself proves
                watermark = int(ts[hi - 1]) + gap
            yield Handover(segment, lo, hi, watermark)
            last_handover = now
            if pos == len(ts) or ts[pos] <= reached:
                continue  # a backlog, or the next segment may be due already: no wait
        elif now - last_handover >= heartbeat_ns:
            yield Handover(None, 0, 0, reached + 1)  # nothing due: ts[pos] > reached
            last_handover = now
        wake = min(pacer.due_at(int(ts[pos])), last_handover + heartbeat_ns)
        pacer.sleep_until(max(wake, last_handover + handover_ns, now + 1))  # now + 1: always progress


def empty_batch(source: str, symbols: tuple[str, ...], watermark: int | None) -> RawTickBatch:
    """A RawTickBatch with no rows: a heartbeat carrying ``watermark``."""
    f, i = np.empty(0), np.empty(0, np.int64)
    return RawTickBatch(
        source=source, symbols=symbols, symbol=np.empty(0, np.int32), kind=np.empty(0, np.int8), seq=i,
        ts_event=i, ts_ingest=i, price=f, size=f, side=np.empty(0, np.int8), trade_id=np.empty(0, dtype=object),
        bid=f, ask=f, bid_size=f, ask_size=f, watermark=watermark,
    )
