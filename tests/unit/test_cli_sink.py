"""``tapeflow flow``'s sink and desk options: each changes what runs where it applies, and is refused
with the reason (exit 2) where it does not."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from tapeflow.cli import app


@pytest.mark.parametrize(("args", "reason"), [
    (["sink", "--recovery-dir", "x"], "committed to its Kafka consumer group"),
    (["sink", "--workers", "2"], "scales by consumer-group members"),
    (["sink", "--symbols", "A,B"], "stores every record of every topic"),
    (["sink", "--silent-after-s", "5"], "stores every record of every topic"),
    (["sink", "--strategies", "a,b"], "--strategies applies to the trading and risk stages"),
    (["normalize", "--members", "2"], "--members applies to the sink"),
    (["signals", "--strategies", "a"], "--strategies applies to the trading and risk stages"),
])
def test_flow_option_when_it_means_nothing_to_the_stage_then_refused_with_the_reason(args, reason):
    result = CliRunner().invoke(app, ["flow", *args, "--brokers", "127.0.0.1:1", "--warehouse", "chdb://:memory:"])
    assert result.exit_code == 2, result.output
    assert reason in result.output
