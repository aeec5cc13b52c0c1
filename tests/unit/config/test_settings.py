"""Settings reach the stages they configure."""

import pytest
from pydantic import ValidationError

from flows.pipeline import TradingConfig
from config.settings import Settings


def test_execution_setting_when_passive_then_the_desk_rests_limits_at_the_touch(monkeypatch):
    monkeypatch.setenv("TAPEFLOW_EXECUTION", "passive")
    assert TradingConfig.from_settings(Settings(), None).desk.portfolio.execution == "passive"
    monkeypatch.delenv("TAPEFLOW_EXECUTION")
    assert TradingConfig.from_settings(Settings(), None).desk.portfolio.execution == "market"


def test_execution_setting_when_unknown_then_refused_naming_the_choices():
    with pytest.raises(ValidationError, match="market.*passive"):
        Settings(execution="aggressive")
