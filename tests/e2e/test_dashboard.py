"""The dashboard in a real browser, over a live embedded run: the Desk fills up, figures move, the
kill switch is switched on through the Risk page, and the warehouse shows every later order denied.

Headless Chromium from Debian (/usr/bin/chromium), driven by Playwright; Playwright never
downloads a browser here. Screenshots of every page land in artifacts/e2e/.
"""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "e2e"
RUN_ID = "e2e-dashboard"
DURATION_S = 45
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                                                     "(apt-get install -y chromium)"),
]


def _free_port() -> int:
    from tapeflow.dashboard_server import free_port

    return free_port()


class RunProcess:
    """The pipeline with its dashboard, as ``tapeflow run`` starts it, in a subprocess."""

    def __init__(self, tmp: Path, port: int):
        self.env = dict(os.environ, TAPEFLOW_WAREHOUSE=f"chdb://{tmp / 'warehouse'}",
                        TAPEFLOW_CONTROL_PATH=str(tmp / "control.jsonl"), TAPEFLOW_OPERATOR="e2e-operator")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tapeflow.cli", "run", "--rate", "400", "--speed", "5",
             "--duration", str(DURATION_S), "--run-id", RUN_ID, "--dashboard-port", str(port)],
            cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            self.output.append(line)
            self.lines.put(line)

    def wait_for_line(self, prefix: str, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line.startswith(prefix):
                return line[len(prefix):].strip()
        raise AssertionError(f"the run did not print {prefix!r} within {timeout_s:g}s; output:\n{''.join(self.output)}")

    def query(self, sql: str) -> list[dict]:
        done = subprocess.run([sys.executable, "-m", "tapeflow.cli", "query", sql, "--json"], cwd=ROOT,
                              env=self.env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


@pytest.fixture
def live_run(tmp_path):
    run = RunProcess(tmp_path, _free_port())
    try:
        yield run
    finally:
        if run.proc.poll() is None:
            run.proc.terminate()
            run.proc.wait(timeout=30)


def _number(text: str) -> float:
    return float(text.replace(",", "").replace("+", "").replace("%", ""))


def test_dashboard_over_a_live_run_then_desk_updates_and_kill_switch_denies_later_orders(live_run):
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    url = live_run.wait_for_line("dashboard at ", timeout_s=60)
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
        page.goto(url, wait_until="domcontentloaded")

        # the Desk fills up: fills counted and an equity value
        fills = page.locator('[data-kpi="fills"] .v')
        expect(fills).to_have_text(re.compile(r"^[1-9][\d,]*$"), timeout=40_000)
        equity = page.locator('[data-kpi="equity"] .v')
        expect(equity).to_have_text(re.compile(r"^\d{1,3}(,\d{3})*\.\d\d$"))
        assert 900_000 < _number(equity.inner_text()) < 1_100_000

        # a live figure moves between two refreshes
        before = fills.inner_text()
        expect(fills).not_to_have_text(before, timeout=15_000)
        assert _number(fills.inner_text()) > _number(before)
        page.screenshot(path=str(ARTIFACTS / "desk.png"), full_page=True)

        # every page shows the run before its screenshot: an order's state, the bars, the stages
        for title, ready, text in (
            ("Blotter", '.tabulator-cell[tabulator-field="order_state"]', re.compile(r"filled|accepted|pending")),
            ("Market", '[data-market="status"]', re.compile(r"[1-9]\d* bars")),
            ("System", '.tabulator-cell[tabulator-field="table"]', re.compile(r"md_\w+")),
        ):
            page.locator(".bk-tab", has_text=title).click()
            expect(page.locator(ready).first).to_have_text(text, timeout=15_000)
            page.screenshot(path=str(ARTIFACTS / f"{title.lower()}.png"), full_page=True)

        # the kill switch, through the UI, with its confirmation
        page.locator(".bk-tab", has_text="Risk").click()
        page.get_by_role("button", name="Engage kill switch").click()
        expect(page.get_by_text("Engage the kill switch?")).to_be_visible(timeout=15_000)
        page.get_by_role("button", name="Confirm").click()
        banner = page.locator('[data-state="kill-switch"]')
        expect(banner).to_contain_text("KILL SWITCH ON", timeout=20_000)  # the desk's own record, read back
        expect(banner).to_contain_text("e2e-operator")
        switched_on_ns = time.time_ns()  # the desk applied it before its record landed
        expect(page.get_by_role("button", name="Release kill switch")).to_be_visible(timeout=5_000)
        page.screenshot(path=str(ARTIFACTS / "risk.png"), full_page=True)
        browser.close()

    live_run.wait_for_line(f"run {RUN_ID}: ", timeout_s=DURATION_S + 60)  # the summary: the run is over
    assert live_run.proc.wait(timeout=30) == 0, "".join(live_run.output)
    assert not errors, "browser console errors:\n" + "\n".join(errors)

    (switch,) = live_run.query(
        f"SELECT issued_by, value FROM control WHERE run_id = '{RUN_ID}' AND kind = 'kill_switch'")
    assert switch == {"issued_by": "e2e-operator", "value": 1.0}
    (after,) = live_run.query(
        "SELECT count() AS intents, countIf(r.id != '' AND has(r.reasons, 'kill_switch')) AS denied, "
        "countIf(a.id != '') AS approved "
        f"FROM (SELECT id FROM orders_intent FINAL WHERE run_id = '{RUN_ID}' AND action = 'new' "
        f"      AND toUnixTimestamp64Nano(ts_ingest) > {switched_on_ns}) AS i "
        f"LEFT JOIN (SELECT id, order_id, reasons FROM orders_rejected FINAL WHERE run_id = '{RUN_ID}') AS r "
        "  ON r.order_id = i.id "
        f"LEFT JOIN (SELECT id FROM orders_approved FINAL WHERE run_id = '{RUN_ID}') AS a ON a.id = i.id")
    assert int(after["intents"]) > 0, "no order intents after the kill switch: the check would prove nothing"
    assert int(after["approved"]) == 0 and int(after["denied"]) == int(after["intents"]), after
