"""`tapeflow report --html`: the page and its charts agree with the warehouse and open offline."""

from __future__ import annotations

import html
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sinks.warehouse import Warehouse
from tapeflow.report_html import exact_quantile, gather_report
from trading.run_statistics import run_statistics

pytestmark = pytest.mark.integration

TAPEFLOW = [sys.executable, "-m", "tapeflow.cli"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CHROMIUM = Path("/usr/bin/chromium")
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="module")
def reported_run(tmp_path_factory) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("report")
    url = f"chdb://{folder}/wh"
    done = subprocess.run([*TAPEFLOW, "run", "--no-dashboard", "--max-ticks", "300000", "--warehouse", url,
                           "--run-id", "html", "--progress-interval", "9"], cwd=folder, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = subprocess.run([*TAPEFLOW, "report", "--run-id", "html", "--warehouse", url, "--html",
                             str(folder / "run.html")], cwd=folder, capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr
    return folder, report.stdout


def test_the_text_summary_names_the_period_of_its_ratios_and_does_not_annualize_a_short_run(reported_run):
    _, stdout = reported_run
    assert re.search(r"Sharpe -?\d+\.\d{3} and Sortino -?\d+\.\d{3} per 1-second period \([\d,]+ periods\); "
                     r"not annualized", stdout), stdout


def test_the_page_shows_the_warehouse_figures_and_the_charts_are_pngs(reported_run):
    folder, stdout = reported_run
    page = html.unescape((folder / "run.html").read_text())  # Bokeh embeds the tables escaped
    wh = Warehouse.connect(f"chdb://{folder}/wh")
    curve = [(int(t), float(e)) for t, e in wh.query(
        "SELECT toUnixTimestamp64Nano(ts_event), equity FROM pnl FINAL WHERE run_id = 'html' AND strategy = '*' "
        "ORDER BY ts_event, ts_ingest").rows]
    stats = run_statistics(curve)
    assert f"{stats.sharpe:.3f} over {stats.periods:,} periods" in page
    assert f"{stats.max_drawdown:.4%}" in page
    report = gather_report(wh, "html")
    assert report.pnl_by_symbol and all(f"<td>{symbol}</td>" in page for _, symbol, *_ in report.pnl_by_symbol)
    net = {symbol: r + u - f for _, symbol, r, u, f, _ in report.pnl_by_symbol}
    for symbol, realized, unrealized, fees in wh.query(
            "SELECT symbol, argMax(realized_pnl, (ts_event, ts_ingest)), argMax(unrealized_pnl, (ts_event, ts_ingest)), "
            "argMax(fees, (ts_event, ts_ingest)) FROM positions FINAL WHERE run_id = 'html' GROUP BY symbol").rows:
        assert net[symbol] == pytest.approx(realized + unrealized - fees)
    # the same latency figures as the text summary (ClickHouse's quantileExact)
    p50 = exact_quantile(report.tick_to_order_us, 0.5)
    assert f"tick->order p50 {p50:,.0f} us" in stdout
    for name in ("equity.png", "drawdown.png", "pnl_by_symbol.png", "latency.png"):
        data = (folder / "run_charts" / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5_000, name


@pytest.mark.e2e
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                                                  "(apt-get install -y chromium)")
def test_the_page_renders_its_charts_in_a_browser_with_no_network(reported_run):
    from playwright.sync_api import sync_playwright

    folder, _ = reported_run
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        try:
            page = browser.new_page()
            requests = []
            page.on("request", lambda request: requests.append(request.url))
            page.goto((folder / "run.html").as_uri())
            page.wait_for_function("window.Bokeh && Bokeh.documents.length == 1", timeout=30_000)
            # every figure drew onto its canvas: four line/bar charts and two latency histograms
            roots = page.evaluate("Bokeh.documents[0].roots().length")
            assert roots == 1
            page.wait_for_function("document.querySelector('div.bk-Column') !== null", timeout=30_000)
            assert page.get_by_text("P&L by symbol").count() >= 1
            assert all(url.startswith("file://") or url.startswith("data:") for url in requests), requests
        finally:
            browser.close()
