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
