"""Signing in to the dashboard by name: a wrong password is refused, a viewer cannot send commands,
a trader's command carries their authenticated name (real headless Chromium, real dashboard process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from config.users import UsersFile
from tests.e2e.test_dashboard import BROWSER_ARGS, CHROMIUM, ROOT, _free_port

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                                                     "(apt-get install -y chromium)"),
]
PASSWORD = "correct horse battery"


@pytest.fixture
def dashboard(tmp_path):
    users = UsersFile(tmp_path / "users.json")
    users.add("alice", PASSWORD, "trader")
    users.add("bob", PASSWORD, "viewer")
    port = _free_port()
    env = dict(os.environ, TAPEFLOW_WAREHOUSE=f"chdb://{tmp_path / 'warehouse'}",
               TAPEFLOW_CONTROL_PATH=str(tmp_path / "control.jsonl"), TAPEFLOW_USERS_FILE=str(users.path))
    log = open(tmp_path / "dashboard.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "tapeflow.cli", "dashboard", "--port", str(port)], cwd=ROOT,
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while "dashboard at" not in (tmp_path / "dashboard.log").read_text():
        assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "dashboard.log").read_text()
        time.sleep(0.2)
    try:
        yield f"http://127.0.0.1:{port}/", tmp_path
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def sign_in(page, url: str, name: str, password: str) -> None:
    page.goto(url, wait_until="domcontentloaded")
    page.locator("input[name=username]").fill(name)
    page.locator("input[name=password]").fill(password)
    page.locator("button[type=submit], input[type=submit]").first.click()


def test_sign_in_roles_and_the_audit_trail(dashboard):
    from playwright.sync_api import expect, sync_playwright

    url, folder = dashboard
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        try:
            stranger = browser.new_context().new_page()
            sign_in(stranger, url, "alice", "not her password")
            expect(stranger.get_by_text("Invalid username or password")).to_be_visible(timeout=15_000)

            viewer = browser.new_context().new_page()
            sign_in(viewer, url, "bob", PASSWORD)
            viewer.locator(".bk-tab", has_text="Risk").click(timeout=30_000)
            expect(viewer.get_by_text("Signed in as a viewer")).to_be_visible(timeout=15_000)
            expect(viewer.get_by_role("button", name="Engage kill switch")).to_be_disabled()

            trader = browser.new_context().new_page()
            sign_in(trader, url, "alice", PASSWORD)
            trader.locator(".bk-tab", has_text="Risk").click(timeout=30_000)
            trader.get_by_role("button", name="Engage kill switch").click()
            trader.get_by_role("button", name="Confirm").click()
            expect(trader.get_by_text("as alice")).to_be_visible(timeout=15_000)
        finally:
            browser.close()
    commands = [json.loads(line) for line in (folder / "control.jsonl").read_text().splitlines()]
    assert [(c["kind"], c["issued_by"]) for c in commands] == [("kill_switch", "alice")]
    log = (folder / "dashboard.log").read_text()
    assert PASSWORD not in log and "sign-in refused for 'alice'" in log
