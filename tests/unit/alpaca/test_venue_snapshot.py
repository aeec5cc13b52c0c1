"""The desk holding an Alpaca venue is snapshotted by Bytewax every epoch, recovery or not."""

from __future__ import annotations

import pickle

import pytest

from venues.alpaca import AlpacaVenue, DetachedAlpacaVenue


def test_alpaca_venue_when_pickled_then_a_detached_stand_in_that_refuses_every_use(fake_alpaca):
    venue = AlpacaVenue(fake_alpaca.settings(), account="acct")
    restored = pickle.loads(pickle.dumps({"desk_venue": venue, "order_path_venue": venue}))
    assert type(restored["desk_venue"]) is DetachedAlpacaVenue
    assert restored["desk_venue"] is restored["order_path_venue"] and restored["desk_venue"].account == "acct"
    with pytest.raises(RuntimeError, match="Alpaca holds the orders; start a new run"):
        restored["desk_venue"].submit
