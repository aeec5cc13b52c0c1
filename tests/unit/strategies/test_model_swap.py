"""Hot reload: swaps land between bars, refusals keep the old model, every decision is recorded."""

from __future__ import annotations

import pickle

import pytest

from strategies.signals import CrossSection, SignalState
from schemas import ControlKind
from strategies.lightgbm_strategy import LightGBMStrategy
from strategies.model_swap import ModelSlot, SwapPolicy
from strategies.portfolio import PortfolioConstructor
from strategies.registry import GatePolicy
from config.control_channel import make_command
from tests.unit.strategies.fixtures import EIGHT, SECOND, T0
from tests.unit.strategies.lgbm_models import random_cross_section, registry_with, tiny_booster


@pytest.fixture(scope="module")
def boosters():
    # v2 agrees with v1 (same planted sign), v3 predicts the opposite, v4 fails the IC floor
    return tiny_booster(seed=1), tiny_booster(seed=2), tiny_booster(seed=3, sign=-1.0), tiny_booster(seed=4)


@pytest.fixture
def registry(tmp_path, boosters):
    return registry_with(tmp_path, *boosters, ics=[0.08, 0.08, 0.08, 0.001])


def signals_stage(registry, policy=SwapPolicy()):
    slot = ModelSlot(registry.load("lightgbm", "v1").serving_model(), registry, policy=policy)
    state = SignalState(LightGBMStrategy(slot), PortfolioConstructor(), "paper", symbols=EIGHT, emit_orders=False)
    return state, slot


def feed_bars(state, first: int, last: int) -> list[CrossSection]:
    out = []
    for i in range(first, last):
        for vector in random_cross_section(T0 + i * SECOND, seed=i):
            out.extend(item for item in state.on_features(vector) if type(item) is CrossSection)
    return out


def test_activate_when_accepted_between_bars_then_earlier_signals_carry_v1_later_v2_and_no_bar_skipped_or_repeated(registry):
    state, slot = signals_stage(registry)
    before = feed_bars(state, 0, 30)
    record = slot.activate("v2", issued_by="ops")
    assert record.kind == ControlKind.ACTIVATE_MODEL and record.name == "v2" and record.issued_by == "ops"
    assert slot.active.version == "v1"  # staged, not yet serving: the bar in flight stays on v1
    after = feed_bars(state, 30, 60) + [c for c in state.flush() if type(c) is CrossSection]
    sections = before + after
    assert [c.bar_end for c in sections] == [T0 + i * SECOND for i in range(60)]
    versions = [{s.model_version for s in c.signals} for c in sections]
    first_v2 = next(i for i, v in enumerate(versions) if v == {"v2"})
    assert all(v == {"v1"} for v in versions[:first_v2]) and all(v == {"v2"} for v in versions[first_v2:])
    assert slot.swaps[0].previous == "v1" and slot.swaps[0].bar_end == sections[first_v2].bar_end
    assert first_v2 == len(before)  # the first cross-section scored after the activation
    kinds = [(r.kind, r.name) for r in slot.take_records()]
    assert kinds == [(ControlKind.ACTIVATE_MODEL, "v2"), (ControlKind.ALERT, "v2")] and slot.take_records() == []


@pytest.mark.parametrize(
    "version, reason",
    [("v4", "ic_below_floor"), ("v9", "no version 'v9'"), ("v1", "already active"), ("v3", "shadow check")],
)
def test_activate_when_refused_then_old_model_keeps_serving_and_an_alert_names_the_reason(registry, version, reason):
    state, slot = signals_stage(registry)
    feed_bars(state, 0, 30)
    record = slot.activate(version, issued_by="ops")
    assert record.kind == ControlKind.ALERT and record.name == version and reason in record.detail
    after = feed_bars(state, 30, 40)
    assert {s.model_version for c in after for s in c.signals} == {"v1"} and slot.swaps == []


def test_activate_when_the_model_file_was_tampered_with_then_refused_as_checksum_failure(registry, tmp_path):
    state, slot = signals_stage(registry)
    path = tmp_path / "models" / "lightgbm" / "v2" / "model.txt"
    path.write_text(path.read_text() + "\n")
    assert "fails its checksum" in slot.activate("v2").detail and slot.staged is None


def test_activate_when_too_few_cross_sections_seen_then_shadow_check_skipped_and_said_so(registry):
    _, slot = signals_stage(registry)
    record = slot.activate("v3")
    assert record.kind == ControlKind.ACTIVATE_MODEL and "shadow check skipped" in record.detail


def test_activate_when_gate_floor_raised_then_refused_by_the_gate(registry):
    state, slot = signals_stage(registry, SwapPolicy(gate=GatePolicy(ic_floor=0.5)))
    assert "ic_below_floor" in slot.activate("v2").detail


def test_on_control_when_activate_model_command_then_activation_runs_and_other_kinds_ignored(registry):
    state, slot = signals_stage(registry)
    assert slot.on_control(make_command(ControlKind.KILL_SWITCH, value=1.0, issued_by="ops")) == []
    (record,) = slot.on_control(make_command(ControlKind.ACTIVATE_MODEL, name="v2", issued_by="ops"))
    assert record.kind == ControlKind.ACTIVATE_MODEL and slot.staged.version == "v2"


def test_signals_state_when_pickled_with_a_staged_swap_then_restored_state_swaps_at_the_same_bar(registry):
    state, slot = signals_stage(registry)
    feed_bars(state, 0, 20)
    slot.activate("v2")
    restored = pickle.loads(pickle.dumps(state))
    a = feed_bars(state, 20, 30)
    b = feed_bars(restored, 20, 30)
    assert [(c.bar_end, [(s.model_version, s.score, s.target_weight) for s in c.signals]) for c in a] == \
           [(c.bar_end, [(s.model_version, s.score, s.target_weight) for s in c.signals]) for c in b]
    assert restored.strategy.slot.swaps[0].bar_end == slot.swaps[0].bar_end


def test_on_control_when_the_slots_own_accepted_record_comes_back_then_not_applied_again(registry):
    # Split topology: the signals stage's records go out on the control topic it reads itself.
    from strategies.model_swap import is_slot_record

    state, slot = signals_stage(registry)
    feed_bars(state, 0, 30)
    command = make_command(ControlKind.ACTIVATE_MODEL, name="v2", issued_by="ops")
    (accepted,) = slot.on_control(command)
    assert is_slot_record(accepted) and not is_slot_record(command)
    slot.take_records()
    assert slot.on_control(accepted) == [] and slot.records == []
    feed_bars(state, 30, 32)
    assert slot.active.version == "v2" and len(slot.swaps) == 1
