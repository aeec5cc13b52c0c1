"""``tapeflow flow sink --members N``: the consumer-group sink is opt-in beside the Bytewax sink, and
every option or setting it cannot honour is refused with the reason (exit 2) before anything runs."""

from __future__ import annotations

import fcntl
import os

import pytest
from typer.testing import CliRunner

from tapeflow.cli import app
from tapeflow.cli_sink import LOCK_FILE


def flow_sink(*args: str, env: dict | None = None):
    return CliRunner().invoke(app, ["flow", "sink", "--brokers", "127.0.0.1:1", *args], env=env)


@pytest.mark.parametrize(("args", "reason"), [
    (["--workers", "2"], "scales by members"),
    (["--addresses", "127.0.0.1:1;127.0.0.1:2", "--process-id", "0"], "no Bytewax cluster"),
    (["--recovery-dir", "x"], "commits its offsets to its Kafka consumer group"),
    (["--dashboard-port", "6123"], "serves no dashboard"),
    (["--symbols", "A,B"], "does not use --symbols"),
    (["--members", "0"], "--members"),
])
def test_group_sink_when_an_option_means_nothing_to_it_then_refused_with_the_reason(args, reason, tmp_path):
    result = flow_sink("--members", "1", *args, "--warehouse", f"chdb://{tmp_path}/wh")
    assert result.exit_code == 2, result.output
    assert reason in result.output
    assert not (tmp_path / "wh").exists(), "nothing may run"


@pytest.mark.parametrize(("name", "value", "reason"), [
    ("TAPEFLOW_METRICS_PORT", "9100", "serves no Prometheus /metrics"),
    ("TAPEFLOW_ALERT_WEBHOOK_URL", "http://127.0.0.1:1/hook", "raises no alerts"),
    ("TAPEFLOW_EPOCH_INTERVAL_S", "5", "has no Bytewax epoch"),
])
def test_group_sink_when_a_setting_only_the_bytewax_sink_reads_is_set_then_refused(name, value, reason, tmp_path):
    result = flow_sink("--members", "1", "--warehouse", f"chdb://{tmp_path}/wh", env={name: value})
    assert result.exit_code == 2, result.output
    assert name in result.output and reason in result.output


def test_group_sink_when_another_process_holds_the_chdb_folder_then_refused_naming_members_and_a_server(tmp_path):
    folder = tmp_path / "wh"
    folder.mkdir()
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running sink process holds it
        result = flow_sink("--members", "2", "--warehouse", f"chdb://{folder}")
    finally:
        os.close(fd)
    assert result.exit_code == 2, result.output
    assert "another sink process holds" in result.output and "--members N" in result.output
