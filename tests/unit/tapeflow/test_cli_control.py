"""Where operator commands go (the spool or the control topic) and what they carry; no broker needed:
building a Kafka producer does not connect (tests/integration/kafka/test_control_through_kafka.py
sends through a real broker)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from config.control_channel import ControlChannel
from schemas import ControlKind
from tapeflow.cli import app
from tapeflow.cli_control import BROKERS_ENV, ControlRouteError, build_command, control_sender
from topics.catalog import spec
from topics.control_sender import KafkaControlSender
from topics.serde import decode, encode


@pytest.fixture(autouse=True)
def no_kafka_env(monkeypatch):
    monkeypatch.delenv(BROKERS_ENV, raising=False)


def test_control_sender_when_no_brokers_then_the_embedded_spool(tmp_path):
    sender = control_sender(str(tmp_path / "c.jsonl"))
    assert type(sender) is ControlChannel and sender.where == f"spool {tmp_path / 'c.jsonl'}"


def test_control_sender_when_brokers_and_prefix_then_the_prefixed_control_topic(tmp_path):
    sender = control_sender(str(tmp_path / "c.jsonl"), "127.0.0.1:1", "run7.")
    assert type(sender) is KafkaControlSender and sender.topic == "run7.control"
    assert sender.where == "kafka 127.0.0.1:1 topic run7.control"


def test_control_sender_when_only_the_bootstrap_env_then_the_control_topic(tmp_path, monkeypatch):
    monkeypatch.setenv(BROKERS_ENV, "127.0.0.1:2")
    sender = control_sender(str(tmp_path / "c.jsonl"))
    assert type(sender) is KafkaControlSender and sender.brokers == "127.0.0.1:2" and sender.topic == "control"


def test_control_sender_when_prefix_without_brokers_then_refused_naming_brokers(tmp_path):
    with pytest.raises(ControlRouteError, match="needs --brokers"):
        control_sender(str(tmp_path / "c.jsonl"), None, "run7.")


def test_control_sender_when_prefix_makes_an_illegal_topic_then_refused(tmp_path):
    with pytest.raises(ValueError, match="not a legal Kafka topic name"):
        control_sender(str(tmp_path / "c.jsonl"), "127.0.0.1:1", "bad prefix/")


def test_build_command_when_operator_env_set_then_issued_by_names_them_and_key_names_the_state(monkeypatch):
    monkeypatch.setenv("TAPEFLOW_OPERATOR", "alice")
    command = build_command(ControlKind.SET_LIMIT, name="max_order_notional", value=5e4, target="paper")
    assert (command.kind, command.name, command.value, command.target, command.issued_by) == (
        ControlKind.SET_LIMIT, "max_order_notional", 5e4, "paper", "alice")
    assert command.id.startswith("ctl:") and command.ts_event > 0
    message = encode("control", command)
    assert message.key == b"paper:set_limit:max_order_notional"  # what compaction keeps one value of
    assert decode("control", message.value) == command and spec("control").compacted


def test_kill_switch_cli_when_no_brokers_then_spool_line_with_issuer(tmp_path, monkeypatch):
    monkeypatch.setenv("TAPEFLOW_CONTROL_PATH", str(tmp_path / "c.jsonl"))
    monkeypatch.setenv("TAPEFLOW_OPERATOR", "bob")
    done = CliRunner().invoke(app, ["control", "kill-switch", "on", "--account", "paper"])
    assert done.exit_code == 0, done.output
    (command,), bad, _ = ControlChannel(tmp_path / "c.jsonl").read_from(0)
    assert bad == [] and (command.kind, command.value, command.target, command.issued_by) == (
        ControlKind.KILL_SWITCH, 1.0, "paper", "bob")
    assert f"via spool {tmp_path / 'c.jsonl'}" in done.output


def test_limit_cli_when_prefix_without_brokers_then_exit_2_and_nothing_sent(tmp_path, monkeypatch):
    monkeypatch.setenv("TAPEFLOW_CONTROL_PATH", str(tmp_path / "c.jsonl"))
    done = CliRunner().invoke(app, ["control", "limit", "max_order_notional", "1000", "--prefix", "run7."])
    assert done.exit_code == 2 and "needs --brokers" in done.output
    assert not (tmp_path / "c.jsonl").exists()


def test_models_activate_when_prefix_without_brokers_then_refused_before_the_registry_changes(tmp_path):
    from strategies.registry import ModelRegistry
    from tests.unit.strategies.lgbm_models import registry_with, tiny_booster

    registry = registry_with(tmp_path, tiny_booster(seed=1), tiny_booster(seed=2))
    registry.activate("lightgbm", "v1")
    done = CliRunner().invoke(app, ["models", "activate", "v2", "--registry", str(registry.root), "--prefix", "p."])
    assert done.exit_code == 2 and "needs --brokers" in done.output
    assert ModelRegistry(registry.root).active("lightgbm") == "v1"


def test_models_activate_when_brokers_given_with_no_notify_then_refused(tmp_path):
    done = CliRunner().invoke(app, ["models", "activate", "v2", "--registry", str(tmp_path), "--no-notify",
                                    "--brokers", "127.0.0.1:1"])
    assert done.exit_code == 2 and "--no-notify sends nothing" in done.output


@pytest.mark.parametrize("stage", ["market", "features", "execution", "sink"])
def test_flow_when_strategy_given_to_a_stage_without_one_then_refused(stage):
    done = CliRunner().invoke(app, ["flow", stage, "--brokers", "127.0.0.1:1", "--strategy", "lightgbm"])
    assert done.exit_code == 2 and f"the {stage} stage does not use --strategy" in done.output


def test_flow_signals_when_lightgbm_without_an_active_model_then_refused_with_the_way_out(tmp_path):
    done = CliRunner().invoke(app, ["flow", "signals", "--brokers", "127.0.0.1:1", "--strategy", "lightgbm",
                                    "--registry", str(tmp_path / "models")])
    assert done.exit_code == 2 and "no active version" in done.output and "tapeflow train" in done.output


def test_dashboard_context_when_brokers_then_its_operator_sends_to_the_prefixed_control_topic(tmp_path):
    from config.settings import Settings
    from tapeflow.cli_dashboard import _context

    split = _context(None, Settings(), str(tmp_path / "c.jsonl"), "127.0.0.1:1", 1000, None, "run7.")
    assert type(split.operator.sender) is KafkaControlSender and split.operator.sender.topic == "run7.control"
    embedded = _context(None, Settings(), str(tmp_path / "c.jsonl"), None, 1000, None)
    assert type(embedded.operator.sender) is ControlChannel


def test_dashboard_cli_when_prefix_without_brokers_then_exit_2():
    done = CliRunner().invoke(app, ["dashboard", "--prefix", "run7."])
    assert done.exit_code == 2 and "needs --brokers" in done.output


def test_control_sender_when_brokers_empty_with_the_env_set_then_the_spool(tmp_path, monkeypatch):
    monkeypatch.setenv(BROKERS_ENV, "127.0.0.1:2")  # a shell set up for split runs, talking to an embedded one
    assert type(control_sender(str(tmp_path / "c.jsonl"), "")) is ControlChannel
