"""Stop and unwind from the dashboard in a real browser, over a live embedded run: the Risk page's
kill switch and flatten (each confirmed), then the Desk's open positions go to none and the
warehouse's last position of every symbol is zero.

Headless Chromium from Debian (/usr/bin/chromium), driven by Playwright, as tests/e2e/test_dashboard.py.
"""

from __future__ import annotations

import re
import signal
import time

import pytest

import tests.e2e.test_dashboard as live
from tests.e2e.test_dashboard import ARTIFACTS, BROWSER_ARGS, CHROMIUM, RunProcess, _free_port

RUN_ID = "e2e-dashboard"  # RunProcess's run

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                                                     "(apt-get install -y chromium)"),
]


DURATION_S = 90  # long enough to trade, stop, unwind and see the closes fill on a busy machine (then Ctrl-C)


@pytest.fixture
def live_run(tmp_path, monkeypatch):
    monkeypatch.setattr(live, "DURATION_S", DURATION_S)
    run = RunProcess(tmp_path, _free_port())
    try:
        yield run
    finally:
        if run.proc.poll() is None:
            run.proc.terminate()
            run.proc.wait(timeout=30)


def test_flatten_when_clicked_and_confirmed_on_the_risk_page_then_positions_go_to_zero(live_run):
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    url = live_run.wait_for_line("dashboard at ", timeout_s=60)
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
        page.goto(url, wait_until="domcontentloaded", timeout=90_000)

        # the strategy trades: open positions on the Desk
        expect(page.locator('[data-kpi="fills"] .v')).to_have_text(re.compile(r"^[1-9][\d,]*$"), timeout=60_000)
        open_positions = page.locator('.tabulator-cell[tabulator-field="exposure_pct"]')
        expect(open_positions.first).to_be_visible(timeout=40_000)

        # stop, then unwind: each through its confirmation
        page.locator(".bk-tab", has_text="Risk").click()
        page.get_by_role("button", name="Engage kill switch").click()
        page.get_by_role("button", name="Confirm").click()
        expect(page.locator('[data-state="kill-switch"]')).to_contain_text("KILL SWITCH ON", timeout=40_000)
        page.get_by_role("button", name="Flatten positions").click()
        expect(page.get_by_text("Flatten account paper?")).to_be_visible(timeout=30_000)
        page.get_by_role("button", name="Confirm").click()
        expect(page.get_by_text("Sent flatten")).to_be_visible(timeout=30_000)
        flattened_ns = time.time_ns()
        page.screenshot(path=str(ARTIFACTS / "risk-flatten.png"), full_page=True)

        # the Desk: no open position left once the closes have filled
        page.locator(".bk-tab", has_text="Desk").click()
        expect(open_positions).to_have_count(0, timeout=60_000)
        page.screenshot(path=str(ARTIFACTS / "desk-flat.png"), full_page=True)
        browser.close()

    live_run.proc.send_signal(signal.SIGINT)  # Ctrl-C: the run lands what it holds and prints its summary
    live_run.wait_for_line(f"run {RUN_ID}: ", timeout_s=DURATION_S + 120)
    assert live_run.proc.wait(timeout=30) == 0, "".join(live_run.output)
    assert not errors, "browser errors:\n" + "\n".join(errors)
    positions = live_run.query(
        "SELECT symbol, argMax(quantity, (ts_event, id)) AS qty FROM positions FINAL "
        f"WHERE run_id = '{RUN_ID}' GROUP BY strategy, symbol")
    assert positions and all(p["qty"] == 0.0 for p in positions), positions
    (flatten,) = live_run.query(f"SELECT issued_by, target FROM control WHERE run_id = '{RUN_ID}' AND kind = 'flatten'")
    assert flatten == {"issued_by": "e2e-operator", "target": "paper"}
    (closes,) = live_run.query(
        f"SELECT count() AS n FROM orders_approved FINAL WHERE run_id = '{RUN_ID}' AND action = 'new' "
        f"AND position(client_order_id, '-u') > 0 AND toUnixTimestamp64Nano(ts_ingest) <= {flattened_ns + 60 * 10**9}")
    assert int(closes["n"]) > 0
