"""Alert rules over landed records, and the webhook against a real local HTTP receiver."""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from schemas import ControlCommand, ControlKind, DeadLetter
from sinks.alerts import Alert, AlertMonitor, AlertRules
from sinks.webhook import WebhookNotifier, webhook_host

T0 = 1_700_000_000_000_000_000
SECRET = "T000/B000/XXXXsecretTOKEN"


def command(kind, name="", value=0.0, issued_by="alice", target="paper", n=0, detail=""):
    return ControlCommand(id=f"c{n}", ts_event=T0 + n, ts_ingest=T0 + n, kind=kind, name=name, value=value,
                          issued_by=issued_by, target=target, detail=detail)


def letter(n, reason="late"):
    return DeadLetter(id=f"d{n}", ts_event=T0 + n, ts_ingest=T0 + n, source_topic="md.raw", stage="normalize",
                      reason=reason, payload="{}")


def test_a_breaker_trip_by_risk_is_an_alert_and_an_echo_or_an_operator_state_change_is_not_a_trip():
    rules = AlertRules()
    (halted,) = rules.observe([command(ControlKind.TRADING_STATE, "halted", issued_by="risk", detail="loss limit")])
    assert (halted.code, halted.severity, halted.target) == ("breaker_tripped", "critical", "paper")
    assert "HALTED" in halted.text and "loss limit" in halted.text
    (reducing,) = rules.observe([command(ControlKind.TRADING_STATE, "reducing", issued_by="risk", n=1)])
    assert reducing.severity == "warning"
    assert rules.observe([command(ControlKind.TRADING_STATE, "active", issued_by="alice", n=2)]) == []
    assert rules.observe([command(ControlKind.SET_LIMIT, "max_order_qty", 5.0, n=3)]) == []


def test_the_kill_switch_and_a_stages_own_alert_are_passed_on_but_an_alerts_own_record_is_not():
    rules = AlertRules()
    on, off = rules.observe([command(ControlKind.KILL_SWITCH, value=1.0, target="global"),
                             command(ControlKind.KILL_SWITCH, value=0.0, target="global", n=1)])
    assert (on.severity, off.severity) == ("critical", "info")
    assert "ON for global by alice" in on.text
    (stage,) = rules.observe([command(ControlKind.ALERT, "invalid_set_limit", issued_by="risk", detail="no such limit")])
    assert stage.code == "invalid_set_limit" and "no such limit" in stage.text
    assert AlertMonitor("r").observe([command(ControlKind.ALERT, "x", issued_by="risk")]) == []  # landed already
    assert rules.observe([Alert("kill_switch", "critical", "x").to_record()]) == []


def test_dead_letters_over_the_rate_alert_once_per_minute_naming_the_top_reasons():
    now = [0.0]
    rules = AlertRules(dead_letters_per_minute=3, clock=lambda: now[0])
    assert rules.observe([letter(i) for i in range(3)]) == []
    (burst,) = rules.observe([letter(3, "crossed_quote"), letter(4)])
    assert burst.code == "dead_letters" and "normalize/late 3" in burst.text and "crossed_quote 1" in burst.text
    assert rules.observe([letter(i) for i in range(5, 20)]) == []  # once in a window
    now[0] = 61.0
    assert rules.observe([letter(i) for i in range(20, 23)]) == []
    assert len(rules.observe([letter(23)])) == 1


def test_an_alert_about_a_record_has_the_same_id_on_replay():
    records = [command(ControlKind.KILL_SWITCH, value=1.0)]
    first = AlertMonitor("r", AlertRules()).observe(records)
    again = AlertMonitor("r", AlertRules()).observe(records)
    assert [r.id for r in first] == [r.id for r in again]
    assert first[0].kind is ControlKind.ALERT and first[0].issued_by == "alerts"


def test_alerts_raised_outside_the_tape_land_with_the_next_records_or_when_drained():
    monitor = AlertMonitor("r")
    monitor.raise_alert(Alert("alpaca_stream", "warning", "alpaca:iex: reconnected"))
    (landed,) = monitor.pending()
    assert landed.name == "alpaca_stream" and "[warning] alpaca:iex: reconnected" == landed.detail
    assert monitor.pending() == []
    monitor.raise_alert(Alert("stage_lag", "warning", "signals lag grew for 30 s"))
    assert [r.name for r in monitor.observe([])] == ["stage_lag"]


class Receiver:
    """A local HTTP server standing for Slack: records bodies, answers with scripted statuses."""

    def __init__(self, statuses: list[int] | None = None):
        self.bodies: list[dict] = []
        self.statuses = list(statuses or [])
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                if status == 200:
                    receiver.bodies.append(body)
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/{SECRET}"

    def wait_for(self, n: int, timeout_s: float = 10.0) -> list[dict]:
        deadline = time.monotonic() + timeout_s
        while len(self.bodies) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.bodies

    def close(self):
        self.server.shutdown()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def test_alerts_reach_the_webhook_as_slack_json(receiver):
    notifier = WebhookNotifier(receiver.url)
    monitor = AlertMonitor("run-7", notifier=notifier)
    monitor.observe([command(ControlKind.KILL_SWITCH, value=1.0)])
    (body,) = receiver.wait_for(1)
    assert body == {"text": "tapeflow CRITICAL kill_switch (run run-7, paper): kill switch ON for paper by alice"}
    notifier.close()
    assert notifier.stats.delivered == 1


def test_a_failing_receiver_is_retried_with_backoff_and_a_refusal_is_not(receiver, caplog):
    receiver.statuses = [503, 429, 200, 400]
    notifier = WebhookNotifier(receiver.url, backoff_initial_s=0.05)
    with caplog.at_level(logging.WARNING, logger="tapeflow.alerts.webhook"):
        notifier.post("first")
        assert receiver.wait_for(1) == [{"text": "first"}]
        notifier.post("refused")
        notifier.close()
    assert (notifier.stats.delivered, notifier.stats.retries, notifier.stats.failed) == (1, 2, 1)
    assert "HTTP 503" in caplog.text and "HTTP 400" in caplog.text
    assert SECRET not in caplog.text and "services" not in caplog.text  # the token never reaches a log


def test_a_receiver_that_is_down_never_blocks_the_caller_and_a_full_queue_drops_and_counts():
    notifier = WebhookNotifier("http://127.0.0.1:9/" + SECRET, attempts=3, backoff_initial_s=5.0, queue_size=2)
    started = time.monotonic()
    accepted = [notifier.post(f"alert {i}") for i in range(10)]
    assert time.monotonic() - started < 1.0
    assert accepted.count(False) == notifier.stats.dropped >= 7
    notifier.close(timeout_s=0.5)


def test_the_host_is_all_a_log_says_about_a_webhook():
    assert webhook_host(f"https://hooks.slack.com/services/{SECRET}?x=1") == "https://hooks.slack.com/…"
    with pytest.raises(ValueError, match="http"):
        WebhookNotifier("file:///etc/passwd")
