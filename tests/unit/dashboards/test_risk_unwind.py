"""The Risk page's cancel-all, flatten and resume buttons: nothing is sent until confirmed, and what
is sent names the account, the user and (resume) the reason."""

from __future__ import annotations

import pytest

from config.control_channel import ControlChannel
from dashboards.context import DashboardContext
from config.control_channel import ControlChannel
from dashboards.operator import OperatorDesk
from dashboards.risk import RiskPage
from schemas import ControlKind


@pytest.fixture
def page(warehouse, tmp_path, monkeypatch):
    monkeypatch.setenv("TAPEFLOW_OPERATOR", "erin")
    operator = OperatorDesk(ControlChannel(tmp_path / "control.jsonl"), "paper")
    return RiskPage(DashboardContext(warehouse, operator, run_id="none"))


def sent(tmp_path) -> list:
    return ControlChannel(tmp_path / "control.jsonl").read_from(0)[0]


@pytest.mark.parametrize(("ask", "kind"), [("_ask_cancel_all", ControlKind.CANCEL_ALL), ("_ask_flatten", ControlKind.FLATTEN)])
def test_unwind_button_when_clicked_then_sent_only_once_confirmed_for_the_pages_account(page, tmp_path, ask, kind):
    getattr(page, ask)()
    assert page.confirm_button.visible and sent(tmp_path) == []
    page._cancel()
    assert sent(tmp_path) == []
    getattr(page, ask)()
    page._confirm()
    [command] = sent(tmp_path)
    assert (command.kind, command.target, command.issued_by) == (kind, "paper", "erin")
    assert "waiting for the desk" in page.outcome.object


def test_resume_button_when_no_reason_then_asks_for_one_and_sends_nothing(page, tmp_path):
    page._ask_resume()
    assert not page.confirm_button.visible and "why" in page.outcome.object.lower() and sent(tmp_path) == []


def test_resume_button_when_confirmed_then_the_reason_travels_with_the_command(page, tmp_path):
    page.resume_reason.value = "loss checked with the PM"
    page._ask_resume()
    page._confirm()
    [command] = sent(tmp_path)
    assert (command.kind, command.detail, command.issued_by) == (ControlKind.RESUME, "loss checked with the PM", "erin")
    assert page.resume_reason.value == ""


def test_operator_resume_when_reason_blank_then_refused():
    with pytest.raises(ValueError, match="reason"):
        OperatorDesk(ControlChannel("/nonexistent/never-written.jsonl")).resume("  ", "erin")
