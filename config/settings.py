"""Settings for every tapeflow command: pydantic-settings, environment prefix ``TAPEFLOW_``.

Precedence: command-line option > environment variable > ``.env`` file > default. The defaults
are the embedded laptop setup: chDB under ``./data/warehouse``, no Kafka.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_WAREHOUSE = "chdb://./data/warehouse"


def resolve_warehouse_url(url: str) -> str:
    """``chdb://relative/path`` and ``chdb://./x`` become ``chdb:///abs/path`` (chDB compares paths
    literally, so one warehouse must always be spelled the same way)."""
    if url.startswith("chdb://") and not url.startswith("chdb:///"):
        return "chdb://" + str(Path(url[len("chdb://"):]).resolve())
    return url


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TAPEFLOW_", env_file=".env", extra="ignore", frozen=True)

    warehouse: str = Field(DEFAULT_WAREHOUSE, description="chdb:///abs/path (embedded) or http(s)://host:8123")
    database: str = Field("tapeflow", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    lateness_ms: int = Field(500, ge=0, description="Per-symbol event-time lateness window.")
    price_band_pct: float = Field(10.0, gt=0, description="Max jump vs the last good price before dlq.")
    max_future_s: float = Field(5.0, ge=0, description="Max ts_event ahead of the wall clock at ingest.")
    bar_intervals: tuple[str, ...] = ("1s", "1m")
    feature_interval: str = "1s"
    store_raw: bool = Field(True, description="Also land md.raw ticks in the warehouse.")
    sink_max_rows: int = Field(50_000, ge=1)
    sink_max_age_s: float = Field(1.0, gt=0)
    account: str = Field("paper", min_length=1, description="The account the desk trades.")
    capital: float = Field(1_000_000.0, gt=0, description="Starting capital of the account.")
    execution: Literal["market", "passive"] = Field(
        "market", description="How the desk works its orders: market (cross the spread) or passive (a limit at "
        "the touch, re-quoted each bar; what `tapeflow train` evaluates LightGBM with).")
    bar_slippage_bps: float = Field(
        1.0, ge=0, description="Bar replay (--feed bars): a market order fills at the next bar's open moved this "
        "many basis points against it (see venues/sim.py, fills from bars).")
    control_path: str = Field("data/control.jsonl", description="Spool of operator commands for a running pipeline.")
    epoch_interval_s: float = Field(2.0, gt=0, description="Bytewax epoch: snapshot and sink-flush cadence.")
    metrics_port: int | None = Field(
        None, ge=1, le=65535, description="Serve Prometheus metrics on this port (split runs: this port for the "
        "run's own process, the next ones for its stages, in stage order).")
    log_format: Literal["text", "json"] = Field("text", description="json: one JSON object per log line.")
    stage_restarts_max: int = Field(5, ge=0, description="Split runs: restarts a stage may take within "
                                    "stage_restarts_window_s before the run stops.")
    stage_restarts_window_s: float = Field(300.0, gt=0, description="Split runs: the window of stage_restarts_max.")
    alert_webhook_url: str | None = Field(
        None, repr=False, description="POST alerts here (Slack-compatible JSON {\"text\": ...}); holds a token: "
        "never logged.")
    alert_dead_letters_per_minute: int = Field(100, ge=0, description="Alert when more dead letters land within "
                                               "a minute.")
    alert_lag_growing_s: float = Field(30.0, gt=0, description="Split runs: alert when a stage's lag has grown "
                                       "for this long.")
    reconcile_interval_s: float = Field(
        60.0, ge=0, description="--venue alpaca: reconcile positions and open orders with Alpaca every N seconds "
        "during the run (0: at start only).")
    reconcile_confirm_s: float = Field(
        2.0, ge=0, description="--venue alpaca: a difference is looked at again after this long and raised only if "
        "still there (a fill in flight is not a difference).")
    reconcile_halt: bool = Field(
        False, description="--venue alpaca: a reconciliation difference also halts the account (TRADING_STATE "
        "halted, issued by reconcile); re-arm with TRADING_STATE active.")
    calendar: Literal["XNYS", "24/7"] | None = Field(
        None, description="Trading sessions of the venue (market/calendar.py): XNYS (NYSE hours, holidays, early "
        "closes) or 24/7 (crypto). Unset: chosen per feed (synthetic and Alpaca stocks XNYS, Alpaca --crypto and "
        "replayed files 24/7); split stages started by hand (`tapeflow flow`) default to XNYS.")

    @field_validator("warehouse")
    @classmethod
    def _absolute_chdb_path(cls, url: str) -> str:
        return resolve_warehouse_url(url)
