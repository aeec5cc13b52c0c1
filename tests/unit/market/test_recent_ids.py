"""RecentTradeIds.add_new: many ids with set operations, exactly as add_if_new one by one."""

from __future__ import annotations

import pickle

from hypothesis import given, settings
from hypothesis import strategies as st

from market.normalize import RecentTradeIds


@settings(max_examples=200, deadline=None)
@given(maxlen=st.integers(1, 12),
       batches=st.lists(st.lists(st.integers(0, 30).map(str), max_size=20), max_size=12))
def test_add_new_when_given_batches_of_ids_then_the_same_answers_and_window_as_one_by_one(maxlen, batches):
    many, one = RecentTradeIds(maxlen), RecentTradeIds(maxlen)
    for ids in batches:
        expected = [one.add_if_new(trade_id) for trade_id in ids]
        got = many.add_new(ids)
        assert (got if got is not None else [True] * len(ids)) == expected
        assert pickle.dumps(many) == pickle.dumps(one)  # the same ids, in the same order
        assert all((trade_id in many) == (trade_id in one) for trade_id in map(str, range(31)))


_ids = st.one_of(st.integers(0, 40).map(str), st.integers(0, 40), st.just("a\x00b"))


@settings(max_examples=300, deadline=None)
@given(maxlen=st.integers(1, 8),
       steps=st.lists(st.tuples(st.sampled_from(["one", "bulk", "snapshot", "restore"]),
                                st.lists(_ids, max_size=12)), max_size=60))
def test_snapshot_when_taken_between_any_adds_then_restores_exactly_the_window(maxlen, steps):
    """Incremental snapshots (pieces reused across snapshots, merged past 32) always restore the
    window as it is: same ids, same order, same maxlen, whatever the history of snapshots."""
    window, reference = RecentTradeIds(maxlen), RecentTradeIds(maxlen)
    for action, ids in steps:
        if action == "one":
            assert [window.add_if_new(i) for i in ids] == [reference.add_if_new(i) for i in ids]
        elif action == "bulk":
            ids = list(dict.fromkeys(i for i in ids if i not in window))
            window.extend_new(ids)
            reference.extend_new(ids)
        else:
            copy = pickle.loads(pickle.dumps(window))
            assert list(copy._order) == list(reference._order) and copy._order.maxlen == maxlen
            assert copy._members == reference._members
            if action == "restore":  # go on from the restored copy, as after a recovery
                window = copy
    assert list(pickle.loads(pickle.dumps(window))._order) == list(reference._order)


def test_snapshot_when_many_epochs_then_pieces_stay_bounded_and_old_format_still_restores():
    window = RecentTradeIds(1_000)
    for epoch in range(200):  # a slow symbol: 3 ids an epoch, the window spans 333 epochs
        window.extend_new([f"t{epoch}-{k}" for k in range(3)])
        maxlen, skip, pieces = window.__getstate__()
        assert len(pieces) <= 33
    assert list(pickle.loads(pickle.dumps(window))._order) == list(window._order)
    old = RecentTradeIds.__new__(RecentTradeIds)
    old.__setstate__((3, "a\x00b\x00c"))  # the form written before snapshots came in pieces
    assert list(old._order) == ["a", "b", "c"] and old.add_if_new("d") and "a" not in old


def test_snapshot_when_ids_are_text_then_compressed_and_pieces_of_text_from_older_snapshots_restore():
    window = RecentTradeIds(20_000)
    window.extend_new([f"synthetic:7:SYN0:q:{n}" for n in range(100_000, 120_000)])
    size = len(pickle.dumps(window))
    assert size < 20_000 * len("synthetic:7:SYN0:q:100000") / 4, size
    assert list(pickle.loads(pickle.dumps(window))._order) == list(window._order)
    older = RecentTradeIds.__new__(RecentTradeIds)
    older.__setstate__((4, 1, ["a\x00b", "c\x00d"]))  # pieces as plain text, the form before compression
    assert list(older._order) == ["b", "c", "d"]
