"""Record builders shared by the risk specs (test_risk.py, test_risk_breaker.py)."""

from __future__ import annotations

from trading.risk import RiskLimits, RiskState
from schemas import (
    NANOS_PER_SECOND,
    ControlCommand,
    ControlKind,
    ExecutionReport,
    Order,
    OrderState,
    PnlSnapshot,
    RiskReject,
)

ACCOUNT = "paper-1"
T0 = 1_700_000_000 * NANOS_PER_SECOND  # 2023-11-14T22:13:20Z
DAY = 86_400 * NANOS_PER_SECOND
MS = NANOS_PER_SECOND // 1000


def order(coid: str, side: str = "buy", qty: float = 100.0, symbol: str = "AAPL", ts: int = T0,
          limit: float | None = None, action: str = "new", account: str = ACCOUNT) -> Order:
    return Order(
        id=coid if action == "new" else f"{coid}:cancel", client_order_id=coid, action=action,
        account=account, strategy="baseline", symbol=symbol, side=side,
        order_type="limit" if limit is not None else "market", limit_price=limit, quantity=qty,
        ts_event=ts, ts_ingest=ts + 5, ts_tick_ingest=ts + 1,
    )


def report(coid: str, state: str, side: str = "buy", order_qty: float = 100.0, cum: float = 0.0,
           last_qty: float = 0.0, price: float = 100.0, fill_id: str = "", symbol: str = "AAPL",
           ts: int = T0) -> ExecutionReport:
    return ExecutionReport(
        id=f"{coid}:{state}:{fill_id}", ts_event=ts, ts_ingest=ts, account=ACCOUNT, venue="sim",
        client_order_id=coid, strategy="baseline", symbol=symbol, side=side, state=state,
        order_qty=order_qty, cum_qty=cum, leaves_qty=0.0 if OrderState(state).is_terminal else order_qty - cum,
        avg_price=price if cum else 0.0, fill_id=fill_id, last_qty=last_qty,
        last_price=price if last_qty else 0.0, ts_tick_ingest=ts,
    )


def fill(state: RiskState, coid: str, side: str, qty: float, price: float = 100.0, symbol: str = "AAPL",
         fill_id: str | None = None) -> None:
    state.on_execution_report(report(coid, "filled", side=side, order_qty=qty, cum=qty, last_qty=qty,
                                     price=price, fill_id=fill_id or f"f-{coid}", symbol=symbol))


def pnl(equity: float, ts: int = T0, peak: float | None = None, strategy: str = "*") -> PnlSnapshot:
    return PnlSnapshot(
        id=f"pnl:{ts}:{strategy}", ts_event=ts, ts_ingest=ts, account=ACCOUNT, strategy=strategy,
        realized_pnl=0.0, unrealized_pnl=equity - 1_000_000.0, fees=0.0, equity=equity,
        peak_equity=peak if peak is not None else max(equity, 1_000_000.0), drawdown=0.0,
        gross_exposure=0.0, net_exposure=0.0, ts_tick_ingest=ts,
    )


def control(kind: ControlKind, name: str = "", value: float = 0.0, target: str = ACCOUNT,
            issued_by: str = "operator") -> ControlCommand:
    return ControlCommand(id=f"ctl:{kind.value}:{name}:{value}", ts_event=T0, ts_ingest=T0, target=target,
                          kind=kind, name=name, value=value, issued_by=issued_by)


def new_risk(prices: dict[str, float] | None = None, **limits) -> RiskState:
    risk = RiskState(ACCOUNT, RiskLimits(**limits))
    for symbol, price in (prices or {"AAPL": 100.0}).items():
        risk.on_trade(symbol, price, T0 - NANOS_PER_SECOND)
    return risk


def reasons_of(result) -> list[str]:
    assert isinstance(result, RiskReject), f"expected a reject, got {result!r}"
    return result.reasons


def approved(result, sent: Order) -> bool:
    return result is sent
