"""Risk, execution and pnl as separate stages, wired through in-memory queues the way Kafka topics
wire them: they lock-step through watermarks and give the fused desk's orders, fills and P&L."""

from __future__ import annotations

import pickle

import pytest

from trading.desk import (
    T_APPROVED,
    T_INTENT,
    T_PNL,
    T_POSITIONS,
    T_REJECTED,
    T_REPORTS,
    DeskConfig,
    TradingDesk,
    default_portfolio,
)
from strategies.signals import CrossSection
from trading.stages import ExecutionStage, PnlStage, RiskStage
from config.control_channel import make_command
from schemas import ControlCommand, ControlKind, ExecutionReport, Order, OrderAction, OrderType, Quote, StageWatermark, Trade, content_hash
from schemas.columns import TickBatch
from tests.unit.trading.test_desk import SYMBOLS, by_table, desk_inputs

MONEY = (T_INTENT, T_APPROVED, T_REJECTED, T_REPORTS, T_POSITIONS, T_PNL)


class Topics:
    """Three stages and the topics between them; each stage drains its inbox in batches."""

    def __init__(self, config: DeskConfig, batch: int):
        self.stages = {"risk": RiskStage(config), "execution": ExecutionStage(config), "pnl": PnlStage(config)}
        self.inbox: dict[str, list] = {name: [] for name in self.stages}
        self.out: list = []
        self.batch = batch

    def publish(self, item) -> None:
        kind = type(item)
        if kind is Trade or kind is Quote or kind is TickBatch:
            for name in self.inbox:
                self.inbox[name].append(item)
        elif kind is CrossSection or kind is ControlCommand:  # the control topic: risk reads it
            self.inbox["risk"].append(item)

    def route(self, stage: str, pairs: list) -> None:
        for table, record in pairs:
            if table == T_APPROVED:  # orders and risk's watermarks
                self.inbox["execution"].append(record)
            elif table == T_REPORTS:
                self.inbox["risk"].append(record)
                self.inbox["pnl"].append(record)
            if type(record) is not StageWatermark:
                self.out.append((table, record))

    def step(self) -> bool:
        moved = False
        for name, stage in self.stages.items():
            items, self.inbox[name] = self.inbox[name][:self.batch], self.inbox[name][self.batch:]
            if items:
                moved = True
                self.route(name, stage.on_batch(items))
        return moved

    def run(self, arrivals: list, chunk: int) -> list:
        for start in range(0, len(arrivals), chunk):
            for item in arrivals[start:start + chunk]:
                self.publish(item)
            self.step()
        while self.step():
            pass
        return self.out


def released_before(out: list, cutoff: int) -> dict[str, str]:
    return {table: content_hash(sorted((r for r in by_table(out, table) if r.ts_event < cutoff), key=lambda r: r.id))
            for table in MONEY}


@pytest.fixture(scope="module")
def arrivals():
    return desk_inputs(chunk=97)


@pytest.fixture(scope="module")
def fused(arrivals):
    desk = TradingDesk(DeskConfig(universe=SYMBOLS))
    return desk.on_batch(arrivals)  # no flush: the separate stages do not flush either


@pytest.mark.parametrize("chunk,batch", [(1, 1), (500, 64), (5_000, 10_000)])
def test_separate_stages_when_wired_through_topics_then_same_orders_fills_positions_and_pnl_as_the_fused_desk(
        arrivals, fused, chunk, batch):
    topics = Topics(DeskConfig(universe=SYMBOLS), batch)
    out = topics.run(arrivals, chunk)
    cutoff = min(stage.sequencer.released[0] for stage in topics.stages.values())
    assert len([r for r in by_table(out, T_REPORTS) if r.is_fill and r.ts_event < cutoff]) > 50
    assert released_before(out, cutoff) == released_before(fused, cutoff)
    # the lock-step got as far as the tape allows: within a few bars of the fused desk
    assert cutoff > max(r.ts_event for r in by_table(fused, T_REPORTS)) - 5_000_000_000


def as_tick_batches(arrivals: list, rows: int) -> list:
    """The market records as TickBatches of up to ``rows`` (no watermark: Kafka promises none),
    cross-sections where they arrived."""
    out, ticks = [], []
    for item in arrivals:
        if type(item) is CrossSection or len(ticks) == rows:
            if ticks:
                out.append(TickBatch.from_records(ticks))
            ticks = []
        if type(item) is CrossSection:
            out.append(item)
        else:
            ticks.append(item)
    return out + ([TickBatch.from_records(ticks)] if ticks else [])


@pytest.mark.parametrize("rows,batch", [(7, 16), (400, 4)])
def test_separate_stages_when_the_tape_comes_as_tick_batches_then_same_as_the_fused_desk(arrivals, fused, rows, batch):
    topics = Topics(DeskConfig(universe=SYMBOLS), batch)
    out = topics.run(as_tick_batches(arrivals, rows), 50)
    cutoff = min(stage.sequencer.released[0] for stage in topics.stages.values())
    assert len([r for r in by_table(out, T_REPORTS) if r.is_fill and r.ts_event < cutoff]) > 50
    assert released_before(out, cutoff) == released_before(fused, cutoff)


def test_separate_stages_when_executing_passively_then_same_limits_cancels_and_fills_as_the_fused_desk(arrivals):
    config = DeskConfig(universe=SYMBOLS, portfolio=default_portfolio().model_copy(update={"execution": "passive"}))
    desk = TradingDesk(config)
    fused = desk.on_batch(arrivals)
    topics = Topics(config, 256)
    out = topics.run(arrivals, 500)
    # neither flushes: compare what both have released (the fused desk waits for the next cross-section)
    cutoff = min(desk.sequencer.released[0], *(stage.sequencer.released[0] for stage in topics.stages.values()))
    orders = [o for o in by_table(out, T_APPROVED) if o.ts_event < cutoff]
    assert any(o.action is OrderAction.CANCEL for o in orders) and any(o.order_type is OrderType.LIMIT for o in orders)
    assert len([r for r in by_table(out, T_REPORTS) if r.is_fill]) > 20
    assert released_before(out, cutoff) == released_before(fused, cutoff)


def test_execution_stage_when_risk_has_promised_nothing_then_steps_no_venue_time():
    execution = ExecutionStage(DeskConfig(universe=SYMBOLS))
    market = [item for item in desk_inputs(chunk=97, ticks=3_000) if type(item) in (Trade, Quote)]
    assert execution.on_batch(market) == []  # no watermark from risk yet: not a single report, not one
    assert len(execution.sequencer.queue) > 0


def test_stages_when_restarted_from_a_snapshot_and_inputs_redelivered_then_nothing_doubles(arrivals, fused):
    topics = Topics(DeskConfig(universe=SYMBOLS), 256)
    half = len(arrivals) // 2
    topics.run(arrivals[:half], 500)
    saved = {name: pickle.dumps(stage) for name, stage in topics.stages.items()}
    redelivered = [r for _, r in topics.out if type(r) in (Order, ExecutionReport)][-40:]
    topics.run(arrivals[half:half + 3_000], 500)
    # every stage crashes and comes back from its snapshot; its inputs since then come again
    topics.stages = {name: pickle.loads(blob) for name, blob in saved.items()}
    for record in redelivered:  # an at-least-once sink repeats what it sent before the snapshot
        topics.inbox["execution" if type(record) is Order else "risk"].append(record)
    out = topics.run(arrivals[half:], 500)
    cutoff = min(stage.sequencer.released[0] for stage in topics.stages.values())
    latest = {}
    for table, record in out:  # the warehouse keeps one row per id
        latest[(table, record.id)] = (table, record)
    assert released_before(list(latest.values()), cutoff) == released_before(fused, cutoff)
    fill_ids = [r.fill_id for _, r in latest.values() if type(r) is ExecutionReport and r.is_fill]
    assert len(fill_ids) == len(set(fill_ids)) > 50
    assert topics.stages["risk"].counts["duplicates"] + topics.stages["execution"].counts["duplicates"] >= 40


def kill_switch_mid_tape(arrivals: list, run) -> tuple[int, list]:
    """Approved orders when the kill switch arrives after the tape's 10th cross-section, and the
    whole output; ``run(items)`` hands items to the desk (or the risk stage) and returns its output."""
    cut = [i for i, item in enumerate(arrivals) if type(item) is CrossSection][10]
    out = run(arrivals[:cut])
    approved_before = len(by_table(out, T_APPROVED))
    out += run([make_command(ControlKind.KILL_SWITCH, value=1.0, issued_by="carol")])
    return approved_before, out + run(arrivals[cut:])


def fused_desk_run():
    desk = TradingDesk(DeskConfig(universe=SYMBOLS))
    return desk.on_batch


def risk_stage_run():
    topics = Topics(DeskConfig(universe=SYMBOLS), batch=64)

    def run(items: list) -> list:
        seen = len(topics.out)
        return topics.run(items, chunk=97)[seen:]

    return run


@pytest.mark.parametrize("make_run", [fused_desk_run, risk_stage_run], ids=["fused_desk", "risk_stage"])
def test_kill_switch_when_it_arrives_mid_tape_then_every_order_released_after_it_denied_and_earlier_ones_stand(
        arrivals, make_run):
    # The split trading and risk stages apply a command from the control topic where the embedded
    # desk applies one from its spool: on arrival, to every cross-section released after it.
    approved_before, out = kill_switch_mid_tape(arrivals, make_run())
    approved = by_table(out, T_APPROVED)
    rejected = [r for r in by_table(out, T_REJECTED)]
    assert approved_before > 0 and len([o for o in approved if type(o) is Order]) == approved_before
    assert rejected and all("kill_switch" in r.reasons for r in rejected)
    assert [c.issued_by for t, c in out if type(c) is ControlCommand] == ["carol"]
