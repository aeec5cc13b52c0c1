"""The Ledger: average-cost positions, realized/unrealized P&L, fees, marks, replay safety.

The property tests check the ledger against an independent reference that shares no code with it:
position = signed sum of fill quantities, and P&L = mark-to-market of the raw cash flows
(-sum(signed qty * price) - sum(fees) + sum(qty * mark)). Average-cost bookkeeping and cash-flow
bookkeeping are two different roads to the same number, so agreement tests both.
"""

from __future__ import annotations

import math
import pickle
from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trading.ledger import ACCOUNT_SCOPE, QTY_EPSILON, Ledger, book_fills
from schemas import ExecutionReport, OrderState, PnlSnapshot, PositionSnapshot, Side, content_hash

ACCOUNT = "acct-1"
T0 = 1_700_000_000_000_000_000


def fill(
    side: str,
    qty: float,
    price: float,
    *,
    fee: float = 0.0,
    fill_id: str | None = None,
    symbol: str = "AAPL",
    strategy: str = "momo",
    ts: int = T0,
    venue: str = "sim",
    account: str = ACCOUNT,
) -> ExecutionReport:
    fill.counter += 1
    fid = fill_id if fill_id is not None else f"f{fill.counter}"
    return ExecutionReport(
        id=f"rep:{fid}",
        ts_event=ts,
        ts_ingest=ts,
        account=account,
        venue=venue,
        client_order_id=f"coid:{fid}",
        strategy=strategy,
        symbol=symbol,
        side=Side(side),
        state=OrderState.FILLED,
        order_qty=qty,
        cum_qty=qty,
        leaves_qty=0.0,
        avg_price=price,
        fill_id=fid,
        last_qty=qty,
        last_price=price,
        fee=fee,
        ts_tick_ingest=ts,
    )


fill.counter = 0


def records(out, kind):
    return [r for r in out if isinstance(r, kind)]


def account_pnl(out) -> PnlSnapshot:
    (snap,) = [r for r in records(out, PnlSnapshot) if r.strategy == ACCOUNT_SCOPE]
    return snap


# --- booking -------------------------------------------------------------------------------------


def test_buy_opens_long_at_fill_price_and_emits_position_strategy_and_account_pnl():
    ledger = Ledger(ACCOUNT)
    out = ledger.on_fill(fill("buy", 100, 10.0))
    pos, strat, acct = out
    assert isinstance(pos, PositionSnapshot) and pos.quantity == 100 and pos.avg_cost == 10.0
    assert isinstance(strat, PnlSnapshot) and strat.strategy == "momo"
    assert isinstance(acct, PnlSnapshot) and acct.strategy == ACCOUNT_SCOPE
    assert ledger.position("AAPL", "momo") == 100
    assert ledger.cash() == pytest.approx(1_000_000.0 - 1_000.0)


def test_adding_to_a_long_averages_the_cost():
    ledger = Ledger(ACCOUNT)
    ledger.on_fill(fill("buy", 100, 10.0))
    ledger.on_fill(fill("buy", 300, 12.0))
    assert ledger.position("AAPL", "momo") == 400
    assert ledger.avg_cost("AAPL", "momo") == pytest.approx(11.5)


def test_partial_close_realizes_on_closed_qty_and_keeps_avg_cost():
    ledger = Ledger(ACCOUNT)
    ledger.on_fill(fill("buy", 100, 10.0))
    out = ledger.on_fill(fill("sell", 40, 12.5))
    pos = records(out, PositionSnapshot)[0]
    assert pos.quantity == 60
    assert pos.avg_cost == 10.0
    assert pos.realized_pnl == pytest.approx(40 * 2.5)


def test_full_close_goes_flat_with_zero_avg_cost():
    ledger = Ledger(ACCOUNT)
    ledger.on_fill(fill("buy", 100, 10.0))
    ledger.on_fill(fill("sell", 100, 9.0))
    assert ledger.positions() == {}
    assert ledger.avg_cost("AAPL", "momo") == 0.0
    assert ledger.pnl("momo")["realized_pnl"] == pytest.approx(-100.0)


def test_short_then_cover_realizes_with_inverted_sign():
    ledger = Ledger(ACCOUNT)
    ledger.on_fill(fill("sell", 50, 20.0))
    assert ledger.position("AAPL", "momo") == -50
    ledger.on_fill(fill("buy", 50, 18.0))
    assert ledger.pnl("momo")["realized_pnl"] == pytest.approx(100.0)


def test_flip_from_long_to_short_realizes_closing_part_and_opens_rest_at_fill_price():
    ledger = Ledger(ACCOUNT)
    ledger.on_fill(fill("buy", 100, 10.0))
    out = ledger.on_fill(fill("sell", 150, 11.0))
    pos = records(out, PositionSnapshot)[0]
    assert pos.quantity == -50
    assert pos.avg_cost == 11.0
    assert pos.realized_pnl == pytest.approx(100.0)


def test_flip_from_short_to_long_realizes_closing_part_and_opens_rest_at_fill_price():
    ledger = Ledger(ACCOUNT)
    ledger.on_fill(fill("sell", 10, 50.0))
    ledger.on_fill(fill("buy", 25, 45.0))
    assert ledger.position("AAPL", "momo") == 15
    assert ledger.avg_cost("AAPL", "momo") == 45.0
    assert ledger.pnl("momo")["realized_pnl"] == pytest.approx(50.0)


def test_fees_accumulate_apart_from_realized_and_reduce_equity_and_cash():
    ledger = Ledger(ACCOUNT, initial_capital=10_000.0)
    ledger.on_fill(fill("buy", 10, 100.0, fee=1.5))
    out = ledger.on_fill(fill("sell", 10, 100.0, fee=2.0))
    acct = account_pnl(out)
    assert acct.realized_pnl == 0.0
    assert acct.fees == pytest.approx(3.5)
    assert acct.equity == pytest.approx(10_000.0 - 3.5)
    assert ledger.cash() == pytest.approx(10_000.0 - 3.5)
    assert records(out, PositionSnapshot)[0].fees == pytest.approx(3.5)


def test_fractional_fills_summing_to_zero_leave_no_phantom_position():
    ledger = Ledger(ACCOUNT)
    ledger.on_fill(fill("buy", 0.1, 10.0))
    ledger.on_fill(fill("buy", 0.2, 10.0))
    ledger.on_fill(fill("sell", 0.3, 10.0))  # 0.1 + 0.2 - 0.3 == 5.5e-17 in floats
    assert ledger.position("AAPL", "momo") == 0.0
    assert ledger.positions() == {}


def test_strategies_keep_separate_books_for_the_same_symbol():
    ledger = Ledger(ACCOUNT)
    ledger.on_fill(fill("buy", 10, 100.0, strategy="a"))
    ledger.on_fill(fill("sell", 4, 101.0, strategy="b"))
    assert ledger.position("AAPL", "a") == 10
    assert ledger.position("AAPL", "b") == -4
    assert ledger.position("AAPL") == 6
    assert ledger.pnl("b")["realized_pnl"] == 0.0  # b opened a short; it did not close a's long


# --- fills that must not book ----------------------------------------------------------------------


def test_duplicate_fill_id_is_ignored_and_returns_nothing():
    ledger = Ledger(ACCOUNT)
    report = fill("buy", 100, 10.0, fill_id="F-1")
    assert ledger.on_fill(report)
    assert ledger.on_fill(report) == []
    assert ledger.on_fill(fill("buy", 100, 10.0, fill_id="F-1")) == []
    assert ledger.position("AAPL", "momo") == 100
    assert ledger.stats()["duplicate_fills_ignored"] == 2


def test_same_fill_id_from_another_venue_is_a_different_fill():
    ledger = Ledger(ACCOUNT)
    ledger.on_fill(fill("buy", 1, 10.0, fill_id="1", venue="sim"))
    ledger.on_fill(fill("buy", 1, 10.0, fill_id="1", venue="alpaca"))
    assert ledger.position("AAPL", "momo") == 2


def test_non_fill_report_is_ignored():
    ledger = Ledger(ACCOUNT)
    accepted = fill("buy", 10, 10.0).model_copy(
        update={"state": OrderState.ACCEPTED, "fill_id": "", "last_qty": 0.0, "cum_qty": 0.0}
    )
    assert ledger.on_fill(accepted) == []
    assert ledger.positions() == {}


def test_fill_for_another_account_is_a_routing_error():
    with pytest.raises(ValueError, match="account"):
        Ledger(ACCOUNT).on_fill(fill("buy", 1, 10.0, account="other"))


# --- marks and valuation ---------------------------------------------------------------------------


def test_unrealized_pnl_uses_the_mark_not_the_fill_price():
    ledger = Ledger(ACCOUNT)
    ledger.on_mark("AAPL", 10.0, T0, T0)
    ledger.on_fill(fill("buy", 100, 10.2))  # paid up 0.2 through the spread
    assert ledger.pnl()["unrealized_pnl"] == pytest.approx(-20.0)
    ledger.on_mark("AAPL", 11.0, T0 + 1, T0 + 1)
    assert ledger.pnl()["unrealized_pnl"] == pytest.approx(80.0)
    assert ledger.pnl()["gross_exposure"] == pytest.approx(1_100.0)


def test_unmarked_symbol_is_valued_at_avg_cost():
    ledger = Ledger(ACCOUNT)
    out = ledger.on_fill(fill("buy", 100, 10.0))
    pos = records(out, PositionSnapshot)[0]
    assert pos.mark_price == 10.0 and pos.unrealized_pnl == 0.0
    assert account_pnl(out).equity == 1_000_000.0


def test_mark_older_than_current_mark_is_ignored():
    ledger = Ledger(ACCOUNT)
    ledger.on_mark("AAPL", 10.0, T0 + 10, T0)
    ledger.on_mark("AAPL", 9.0, T0 + 5, T0)
    assert ledger.mark("AAPL") == 10.0
    assert ledger.stats()["stale_marks_ignored"] == 1


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf])
def test_mark_must_be_finite_and_positive(bad):
    with pytest.raises(ValueError):
        Ledger(ACCOUNT).on_mark("AAPL", bad, T0, T0)


def test_short_position_has_negative_net_and_positive_gross_exposure():
    ledger = Ledger(ACCOUNT)
    ledger.on_fill(fill("sell", 10, 50.0, symbol="MSFT"))
    ledger.on_fill(fill("buy", 5, 20.0, symbol="AAPL"))
    ledger.on_mark("MSFT", 50.0, T0, T0)
    ledger.on_mark("AAPL", 20.0, T0, T0)
    p = ledger.pnl()
    assert p["net_exposure"] == pytest.approx(-400.0)
    assert p["gross_exposure"] == pytest.approx(600.0)


# --- equity, peak and drawdown ---------------------------------------------------------------------


def test_account_drawdown_is_fraction_of_peak_equity():
    ledger = Ledger(ACCOUNT, initial_capital=1_000.0)
    ledger.on_fill(fill("buy", 10, 10.0))
    ledger.on_mark("AAPL", 30.0, T0 + 1, T0)
    up = account_pnl(ledger.snapshot(T0 + 1, T0))
    assert up.equity == pytest.approx(1_200.0) and up.peak_equity == pytest.approx(1_200.0)
    assert up.drawdown == 0.0
    ledger.on_mark("AAPL", 18.0, T0 + 2, T0)
    down = account_pnl(ledger.snapshot(T0 + 2, T0))
    assert down.equity == pytest.approx(1_080.0)
    assert down.peak_equity == pytest.approx(1_200.0)
    assert down.drawdown == pytest.approx(0.1)


def test_strategy_equity_is_capital_plus_its_own_pnl():
    ledger = Ledger(ACCOUNT, initial_capital=1_000.0)
    ledger.on_fill(fill("buy", 10, 10.0, strategy="a", fee=1.0))
    ledger.on_fill(fill("sell", 10, 12.0, strategy="a", fee=1.0))
    ledger.on_fill(fill("buy", 1, 10.0, strategy="b"))
    snaps = {r.strategy: r for r in records(ledger.snapshot(T0, T0), PnlSnapshot)}
    assert snaps["a"].equity == pytest.approx(1_000.0 + 20.0 - 2.0)
    assert snaps["b"].equity == pytest.approx(1_000.0)
    assert snaps[ACCOUNT_SCOPE].equity == pytest.approx(1_018.0)


# --- snapshots and ids -----------------------------------------------------------------------------


def test_snapshot_reports_open_positions_and_closed_ones_once():
    ledger = Ledger(ACCOUNT)
    ledger.on_fill(fill("buy", 10, 10.0, symbol="AAPL"))
    ledger.on_fill(fill("buy", 10, 10.0, symbol="MSFT"))
    ledger.on_fill(fill("sell", 10, 11.0, symbol="MSFT"))
    first = records(ledger.snapshot(T0 + 1, T0), PositionSnapshot)
    assert {(p.symbol, p.quantity) for p in first} == {("AAPL", 10), ("MSFT", 0)}
    second = records(ledger.snapshot(T0 + 2, T0), PositionSnapshot)
    assert {p.symbol for p in second} == {"AAPL"}


def test_snapshot_for_given_symbols_reports_only_their_positions_and_strategies():
    ledger = Ledger(ACCOUNT)
    ledger.on_fill(fill("buy", 10, 10.0, symbol="AAPL", strategy="a"))
    ledger.on_fill(fill("buy", 10, 10.0, symbol="MSFT", strategy="b"))
    out = ledger.snapshot(T0 + 1, T0, symbols={"MSFT"})
    assert [p.symbol for p in records(out, PositionSnapshot)] == ["MSFT"]
    assert [p.strategy for p in records(out, PnlSnapshot)] == ["b", ACCOUNT_SCOPE]


def test_flat_ledger_snapshot_still_samples_account_equity():
    out = Ledger(ACCOUNT).snapshot(T0, T0)
    assert len(out) == 1 and account_pnl(out).equity == 1_000_000.0


def test_snapshot_ids_are_unique_and_replay_gives_identical_ids_and_content():
    def run() -> list:
        ledger = Ledger(ACCOUNT)
        out = []
        for i, (side, qty, px) in enumerate([("buy", 5, 10.0), ("sell", 8, 11.0), ("buy", 3, 9.0)]):
            ledger.on_mark("AAPL", px, T0 + i, T0 + i)
            out += ledger.on_fill(fill(side, qty, px, fill_id=f"x{i}", ts=T0 + i))
            out += ledger.snapshot(T0 + i, T0 + i)
            out += ledger.snapshot(T0 + i, T0 + i)  # same event time twice: still distinct ids
        return out

    a, b = run(), run()
    assert len({r.id for r in a}) == len(a)
    assert [r.id for r in a] == [r.id for r in b]
    assert content_hash(a) == content_hash(b)


def test_ledger_state_survives_pickling():
    ledger = Ledger(ACCOUNT)
    ledger.on_fill(fill("buy", 10, 10.0, fill_id="p1"))
    ledger.on_mark("AAPL", 12.0, T0, T0)
    restored = pickle.loads(pickle.dumps(ledger))
    assert restored.positions() == ledger.positions()
    assert restored.account_equity() == ledger.account_equity()
    assert restored.on_fill(fill("buy", 10, 10.0, fill_id="p1")) == []  # booked ids survive too
    assert restored.snapshot(T0, T0)[0].id == ledger.snapshot(T0, T0)[0].id


# --- properties --------------------------------------------------------------------------------------

SYMBOLS = ["AAPL", "MSFT", "SPY"]
STRATEGIES = ["a", "b"]

fills_st = st.lists(
    st.tuples(
        st.sampled_from(["buy", "sell"]),
        st.one_of(st.integers(1, 500).map(float), st.floats(0.001, 500.0)),
        st.floats(0.01, 5_000.0),
        st.one_of(st.just(0.0), st.floats(0.0, 5.0)),
        st.sampled_from(STRATEGIES),
        st.sampled_from(SYMBOLS),
        # a mark to apply after the fill (or None)
        st.one_of(st.none(), st.floats(0.01, 5_000.0)),
    ),
    min_size=1,
    max_size=60,
)


def _play(ledger: Ledger, events) -> tuple[list, list[ExecutionReport]]:
    out, reports = [], []
    for i, (side, qty, px, fee, strategy, symbol, mark) in enumerate(events):
        report = fill(side, qty, px, fee=fee, strategy=strategy, symbol=symbol,
                      fill_id=f"p{i}", ts=T0 + i)
        reports.append(report)
        out += ledger.on_fill(report)
        if mark is not None:
            ledger.on_mark(symbol, mark, T0 + i, T0 + i)
    return out, reports


@settings(max_examples=300, deadline=None)
@given(fills_st)
def test_position_is_signed_sum_of_fills_and_pnl_is_mark_to_market_of_cash_flows(events):
    ledger = Ledger(ACCOUNT)
    out, _ = _play(ledger, events)

    qty = defaultdict(float)
    cash = defaultdict(float)  # per strategy: -sum(signed qty * price) - fees
    gross_notional = defaultdict(float)
    for side, q, px, fee, strategy, symbol, _ in events:
        signed = q if side == "buy" else -q
        qty[(strategy, symbol)] += signed
        cash[strategy] += -signed * px - fee
        gross_notional[strategy] += abs(q * px) + fee

    for key, expected in qty.items():
        assert ledger.position(key[1], key[0]) == pytest.approx(expected, abs=1e-6, rel=1e-9)

    for strategy in cash:
        valued = cash[strategy]
        for (strat, symbol), q in qty.items():
            if strat == strategy:
                mark = ledger.mark(symbol)
                valued += q * (mark if mark is not None else ledger.avg_cost(symbol, strat))
        p = ledger.pnl(strategy)
        got = p["realized_pnl"] + p["unrealized_pnl"] - p["fees"]
        # float error scales with the notional traded, not with the (possibly tiny) P&L
        assert got == pytest.approx(valued, rel=1e-6, abs=1e-6)

    assert ledger.check_balance()
    for record in out + ledger.snapshot(T0 + 10_000, T0):
        for value in record.model_dump().values():
            if isinstance(value, float):
                assert math.isfinite(value)
        if isinstance(record, PnlSnapshot):
            assert record.drawdown >= 0 and record.peak_equity >= record.equity


@settings(max_examples=200, deadline=None)
@given(fills_st)
def test_replaying_every_fill_again_leaves_the_ledger_unchanged(events):
    ledger = Ledger(ACCOUNT)
    _, reports = _play(ledger, events)
    before = (ledger.positions(), ledger.pnl(), ledger.cash(), ledger.stats()["seq"])
    assert book_fills(ledger, reports) == []
    assert (ledger.positions(), ledger.pnl(), ledger.cash(), ledger.stats()["seq"]) == before
    assert ledger.stats()["duplicate_fills_ignored"] == len(reports)


@settings(max_examples=200, deadline=None)
@given(
    st.floats(1.0, 1_000.0), st.floats(1.0, 1_000.0), st.floats(0.01, 1_000.0),
    st.floats(0.01, 1_000.0), st.sampled_from(["buy", "sell"]),
)
def test_a_fill_crossing_zero_realizes_only_the_closed_part_and_opens_the_rest(q_open, q_cross, p1, p2, side):
    ledger = Ledger(ACCOUNT)
    other = "sell" if side == "buy" else "buy"
    ledger.on_fill(fill(side, q_open, p1, fill_id="open"))
    ledger.on_fill(fill(other, q_open + q_cross, p2, fill_id="cross"))
    direction = 1 if side == "buy" else -1
    expected_realized = q_open * (p2 - p1) * direction
    assert ledger.pnl("momo")["realized_pnl"] == pytest.approx(expected_realized, rel=1e-9, abs=1e-9)
    if q_cross > QTY_EPSILON:
        assert ledger.position("AAPL", "momo") == pytest.approx(-direction * q_cross, rel=1e-9, abs=1e-9)
        assert ledger.avg_cost("AAPL", "momo") == p2
