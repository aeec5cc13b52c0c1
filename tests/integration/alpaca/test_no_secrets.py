"""No secret reaches a log line or a table: Alpaca's keys, the alert webhook's token, the dashboard
users' password hashes, across a whole run (Alpaca venue, webhook, dashboard with users)."""

from __future__ import annotations

import json

import pytest

from config.users import UsersFile
from sinks.warehouse import Warehouse
from tests.alpaca_fake import FAKE_KEY_ID, FAKE_SECRET
from tests.integration.alpaca.test_cli_adopt import tapeflow
from tests.unit.sinks.test_alerts import SECRET as WEBHOOK_TOKEN, Receiver

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"


def test_a_run_logs_and_lands_no_secret(fake_alpaca, tmp_path):
    users = UsersFile(tmp_path / "users.json")
    users.add("alice", PASSWORD, "trader")
    stored = json.loads(users.path.read_text())["users"]["alice"]
    receiver = Receiver()
    settings = fake_alpaca.settings()
    url = f"chdb://{tmp_path}/wh"
    try:
        done = tapeflow("run", "--venue", "alpaca", "--dashboard-port", "0", "--max-ticks", "3000", "--warehouse", url,
                        "--run-id", "secrets", cwd=tmp_path, APCA_API_KEY_ID=FAKE_KEY_ID,
                        APCA_API_SECRET_KEY=FAKE_SECRET, APCA_TRADING_URL=settings.trading_url,
                        APCA_TRADING_STREAM_URL=settings.trading_stream_url, TAPEFLOW_USERS_FILE=str(users.path),
                        TAPEFLOW_ALERT_WEBHOOK_URL=receiver.url, TAPEFLOW_CONTROL_PATH=str(tmp_path / "control.jsonl"),
                        TAPEFLOW_LOG_FORMAT="json")
    finally:
        receiver.close()
    assert done.returncode == 0, done.stderr
    secrets = {"Alpaca secret": FAKE_SECRET, "Alpaca key id": FAKE_KEY_ID, "webhook token": WEBHOOK_TOKEN,
               "password": PASSWORD, "password hash": stored["hash"], "password salt": stored["salt"]}
    output = done.stdout + done.stderr
    assert "users of" in output or "sign in" in output or "dashboard at" in output
    assert [name for name, value in secrets.items() if value in output] == []
    wh = Warehouse.connect(url, database="tapeflow")
    searched = []
    for table, engine in wh.tables().items():
        states = wh.query("SELECT count() FROM system.columns WHERE database = {d:String} AND table = {t:String} "
                          "AND type LIKE '%AggregateFunction%'", {"d": wh.database, "t": table}).scalar()
        if states or "MaterializedView" in engine:  # rollups of numbers: their states read back as no rows
            continue
        columns = wh.query(f"SELECT * FROM {table} LIMIT 0").column_names
        if "run_id" not in columns:
            continue
        searched.append(table)
        text = json.dumps(wh.query(f"SELECT * FROM {table} WHERE run_id = 'secrets'").rows, default=str)
        leaked = [name for name, value in secrets.items() if value in text]
        assert leaked == [], f"{table} holds the {', '.join(leaked)}"
    assert {"control", "exec_reports", "orders_intent", "dlq", "md_raw"} <= set(searched)
