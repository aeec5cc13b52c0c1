"""The external strategy example's core without a broker: its rule, the cross-sections it numbers for
the desk, and the end of a finite tape (released only once every partition of features has ended)."""

from __future__ import annotations

import pytest

from examples.quix_strategy import ExternalSignalStage, VolScaledTrend
from schemas import DeadLetter, Signal
from strategies.signals import CrossSectionAssembler
from tests.unit.strategies.fixtures import SECOND, T0, vector
from topics.end_of_tape import EndOfTape

SYMBOLS = ("AAA", "BBB", "CCC")


def bar(t: int, moves: dict[str, float]):
    return [vector(s, t, ret_5=m, rv_20=0.01) for s, m in moves.items()]


def marker(partition: int, partitions: int = 2) -> EndOfTape:
    return EndOfTape("tape-1", "market", "features", partition, partitions, ("features",),
                     ("market", "trading", "sink"))


def test_rule_when_trend_beyond_threshold_in_vol_units_then_long_or_short_gross_over_n_else_flat():
    rule = VolScaledTrend("q", threshold=0.5, gross=0.9)
    scores = rule.score([vector("AAA", ret_5=0.006, rv_20=0.01), vector("BBB", ret_5=-0.005, rv_20=0.01),
                         vector("CCC", ret_5=0.004, rv_20=0.01), vector("DDD", ret_5=0.01, rv_20=0.0),
                         vector("EEE", ret_5=0.01)])  # no rv_20 at all
    assert scores == pytest.approx({"AAA": 0.6, "BBB": -0.5, "CCC": 0.4, "DDD": 0.0, "EEE": 0.0})
    assert rule.target_weights(scores) == pytest.approx({"AAA": 0.18, "BBB": -0.18, "CCC": 0.0, "DDD": 0.0, "EEE": 0.0})


def test_stage_when_every_symbol_reached_a_bar_then_its_signals_go_out_numbered_for_the_desk():
    stage = ExternalSignalStage(VolScaledTrend("q"), "paper", SYMBOLS)
    out = []
    for t in (T0, T0 + SECOND):
        for v in bar(t, {"AAA": 0.01, "BBB": -0.01, "CCC": 0.0}):
            out += stage.on_value(v)
    assert [(s.symbol, s.bar_end, s.section_seq, s.section_size) for s in out] == [
        (sym, t, seq, 3) for seq, t in ((1, T0), (2, T0 + SECOND)) for sym in SYMBOLS]
    assert [s.id for s in out[:3]] == [f"sig:q:{s}:{T0}" for s in SYMBOLS]
    assert all(s.strategy == "q" and s.account == "paper" for s in out)
    assert out[0].target_weight > 0 > out[1].target_weight and out[2].target_weight == 0.0
    desk = CrossSectionAssembler()  # the trading stage's reassembly, from signals in any partition order
    sections = [c for s in reversed(out) for c in desk.on_signal(s)]
    assert [(c.bar_end, [s.symbol for s in c.signals]) for c in sections] == [
        (T0, list(SYMBOLS)), (T0 + SECOND, list(SYMBOLS))]


def test_stage_when_the_last_partition_of_features_ends_then_held_bars_flush_and_it_has_ended():
    stage = ExternalSignalStage(VolScaledTrend("q"), "paper", SYMBOLS)
    held = [r for v in bar(T0, {"AAA": 0.01, "BBB": 0.0}) for r in stage.on_value(v)]
    assert held == [] and stage.on_value(marker(0)) == [] and not stage.ended
    flushed = stage.on_value(marker(1))
    assert stage.ended and stage.tape_end.tape == "tape-1"
    assert [(type(r), r.symbol, r.section_seq, r.section_size) for r in flushed] == [
        (Signal, "AAA", 1, 2), (Signal, "BBB", 1, 2)]
    assert stage.on_value(marker(1)) == [], "a redelivered marker ends nothing twice"


def test_stage_when_the_same_features_are_replayed_then_the_same_signals():
    def signals():
        stage = ExternalSignalStage(VolScaledTrend("q"), "paper", SYMBOLS)
        out = [r for t in range(5) for v in bar(T0 + t * SECOND, {"AAA": 0.01 * t, "BBB": -0.003, "CCC": 0.006})
               for r in stage.on_value(v)]
        return [r.model_dump(exclude={"ts_ingest"}) for r in out + stage.on_value(marker(0, 1))]

    first = signals()
    assert len(first) == 15 and first == signals()


def test_stage_when_features_of_a_released_bar_arrive_then_a_late_dead_letter():
    stage = ExternalSignalStage(VolScaledTrend("q"), "paper", ("AAA", "BBB"))
    stage.on_value(vector("AAA", T0))
    released = stage.on_value(vector("BBB", T0 + SECOND))  # BBB has passed T0: T0 goes out without it
    assert [(s.symbol, s.bar_end) for s in released] == [("AAA", T0)]
    [late] = stage.on_value(vector("BBB", T0))
    assert type(late) is DeadLetter and late.reason == "late" and late.source_topic == "features"
