"""The one bridge between a stage's functional core and Bytewax's stateful operator.

A stage core is a plain, picklable object (``NormalizeState``, ``BarBuilder``, ...). Bytewax keeps
one core per key; this adapter hands each batch of items to the core, flushes it at end of input
and snapshots it for recovery. It works on whole batches (``stateful_batch``) because per-item
Python calls are the largest cost at 100k ticks/s. Snapshots are pickled bytes: immutable, as
Bytewax requires, and cheap at the epoch interval.

Bytewax asks for snapshots at every epoch's end even when the flow runs without recovery, and
throws them away. Pickling a core is then a pause on the tape for nothing (normalize's trade-id
windows and the desk took 2-12 ms an epoch, on whichever bar closed at that moment), so a flow
that :func:`flows.pipeline.run_flow` runs without a recovery directory is marked
(:func:`flow_recovery`) and its cores return no snapshot. A flow run any other way keeps them.
"""

from __future__ import annotations

import pickle
from typing import Any, Callable, Iterable

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from bytewax.operators import KeyedStream, StatefulBatchLogic

OnItem = Callable[[Any, Any], Iterable[Any]]
OnEof = Callable[[Any], Iterable[Any]]
OnBatch = Callable[[Any, list], Iterable[Any]]


class FlowRecovery:
    """Whether a dataflow runs with recovery, as far as its runner has said: true until
    :func:`flows.pipeline.run_flow` runs it without a recovery directory."""

    __slots__ = ("enabled",)

    def __init__(self) -> None:
        self.enabled = True

    def __bool__(self) -> bool:
        return self.enabled


def flow_recovery(flow: Dataflow) -> FlowRecovery:
    """The one :class:`FlowRecovery` mark of ``flow`` (made on first use)."""
    mark = getattr(flow, "_tapeflow_recovery", None)
    if mark is None:
        mark = FlowRecovery()
        object.__setattr__(flow, "_tapeflow_recovery", mark)  # a frozen dataclass; Bytewax ignores the attribute
    return mark


class CoreLogic(StatefulBatchLogic):
    def __init__(self, core: Any, on_item: OnItem, on_eof: OnEof | None, on_batch: OnBatch | None = None,
                 recovery: FlowRecovery | None = None):
        self.core = core
        self._recovery = recovery
        self._on_item = on_item
        self._on_eof = on_eof
        self._on_core_batch = on_batch

    def on_batch(self, values: list) -> tuple[list, bool]:
        if self._on_core_batch is not None:  # a core that handles a whole batch at once
            return list(self._on_core_batch(self.core, values)), StatefulBatchLogic.RETAIN
        out: list = []
        extend = out.extend
        core, on_item = self.core, self._on_item
        for value in values:
            extend(on_item(core, value))
        return out, StatefulBatchLogic.RETAIN

    def on_eof(self):
        if self._on_eof is None:
            return (), StatefulBatchLogic.RETAIN
        return self._on_eof(self.core), StatefulBatchLogic.RETAIN

    def snapshot(self) -> bytes | None:
        if self._recovery is not None and not self._recovery:
            return None  # nothing will be resumed from it
        return pickle.dumps(self.core, protocol=pickle.HIGHEST_PROTOCOL)


def stateful_core(
    step_id: str,
    up: KeyedStream,
    new_core: Callable[[], Any],
    on_item: OnItem,
    on_eof: OnEof | None = None,
    on_batch: OnBatch | None = None,
) -> KeyedStream:
    """Run ``on_item(core, value)`` per keyed item (or ``on_batch(core, values)`` per batch) with one
    core per key, resumable from snapshots."""

    recovery = flow_recovery(up.flow())

    def build(resume: bytes | None) -> CoreLogic:
        core = pickle.loads(resume) if resume is not None else new_core()
        return CoreLogic(core, on_item, on_eof, on_batch, recovery)

    return op.stateful_batch(step_id, up, build)


def keyed_by(step_id: str, up: Stream, key: Callable[[Any], str]) -> KeyedStream:
    """``op.key_on`` for whole batches: one Python call per batch instead of per item."""
    return op.flat_map_batch(step_id, up, lambda batch: [(key(x), x) for x in batch])


def unkeyed(step_id: str, up: KeyedStream, keep: Callable[[Any], bool] | None = None) -> Stream:
    """``op.key_rm`` (and an optional filter) for whole batches."""
    if keep is None:
        return op.flat_map_batch(step_id, up, lambda batch: [v for _, v in batch])
    return op.flat_map_batch(step_id, up, lambda batch: [v for _, v in batch if keep(v)])
