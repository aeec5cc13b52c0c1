"""Deterministic client_order_ids and signal ids."""

from __future__ import annotations

import itertools

import pytest

from schemas import Side
from strategies.ids import CLIENT_ORDER_ID_MAX_LEN, client_order_id, signal_id
from tests.unit.strategies.fixtures import T0


def test_client_order_id_is_readable():
    assert client_order_id("baseline", "AAPL", Side.BUY, T0, 0) == f"baseline-AAPL-buy-{T0}-0"


def test_client_order_id_is_the_same_on_every_call():
    assert client_order_id("baseline", "SYN1", "sell", T0, 2) == client_order_id("baseline", "SYN1", Side.SELL, T0, 2)


def test_client_order_id_is_unique_per_strategy_symbol_side_bar_time_and_seq():
    ids = [
        client_order_id(*key)
        for key in itertools.product(("baseline", "lgbm"), ("SYN0", "SYN1"), (Side.BUY, Side.SELL), (T0, T0 + 1), (0, 1))
    ]
    assert len(set(ids)) == len(ids) == 32


def test_client_order_id_cannot_collide_when_names_contain_the_separator():
    assert client_order_id("a-b", "c", Side.BUY, T0) != client_order_id("a", "b-c", Side.BUY, T0)
    assert client_order_id("a%2Db", "c", Side.BUY, T0) != client_order_id("a-b", "c", Side.BUY, T0)


def test_client_order_id_fits_alpaca_limit_and_stays_unique_when_names_are_long():
    long_a = client_order_id("s" * 200, "BTC/USD", Side.BUY, T0)
    long_b = client_order_id("s" * 200, "ETH/USD", Side.BUY, T0)
    assert len(long_a) == len(long_b) == CLIENT_ORDER_ID_MAX_LEN == 128
    assert long_a != long_b
    assert long_a == client_order_id("s" * 200, "BTC/USD", Side.BUY, T0)


def test_client_order_id_rejects_negative_times_and_sequences():
    with pytest.raises(ValueError):
        client_order_id("baseline", "A", Side.BUY, -1)
    with pytest.raises(ValueError):
        client_order_id("baseline", "A", Side.BUY, T0, -1)


def test_signal_id_names_strategy_symbol_and_bar_time():
    assert signal_id("baseline", "SYN3", T0) == f"sig:baseline:SYN3:{T0}"
