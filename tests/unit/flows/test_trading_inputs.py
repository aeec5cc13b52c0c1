"""What the split desk stages take from the signals topic: with an external strategy, its signals
only; another strategy's signal would break the app's cross-section numbering, so it is dead-lettered."""

from __future__ import annotations

from flows.split import _TradingInputs
from schemas import Signal
from strategies.signals import CrossSection
from tests.unit.strategies.fixtures import T0


class Desk:
    def __init__(self):
        self.items = []

    def on_batch(self, items):
        self.items += items
        return []


def signal(strategy: str, symbol: str) -> Signal:
    return Signal(id=f"sig:{strategy}:{symbol}:{T0}", ts_event=T0, ts_ingest=1, account="paper", strategy=strategy,
                  strategy_version="1", symbol=symbol, bar_end=T0, score=1.0, target_weight=0.5, ts_tick_ingest=1,
                  section_size=2, section_seq=1)


def test_trading_inputs_when_external_strategy_then_its_signals_traded_and_another_strategy_dead_lettered():
    inputs = _TradingInputs(Desk(), frozenset({"quix_example"}))
    out = inputs.on_batch([signal("quix_example", "AAA"), signal("baseline", "AAA"), signal("quix_example", "BBB")])
    [(topic, dead)] = out
    assert topic == "dlq" and dead.reason == "unknown_strategy" and dead.source_topic == "signals"
    assert "'baseline'" in dead.detail and "quix_example" in dead.detail and dead.symbol == "AAA"
    [section] = inputs.desk.items
    assert type(section) is CrossSection and [s.symbol for s in section.signals] == ["AAA", "BBB"]


def test_trading_inputs_when_no_external_strategy_then_every_signal_goes_to_the_desk():
    inputs = _TradingInputs(Desk())
    assert inputs.on_batch([signal("a", "AAA"), signal("b", "AAA")]) == []
    [section] = inputs.desk.items
    assert [s.strategy for s in section.signals] == ["a", "b"]
