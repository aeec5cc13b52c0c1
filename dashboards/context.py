"""What every page of one dashboard server shares: where to read, where to send, how often."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from config.users import UsersFile
from dashboards.operator import OperatorDesk
from trading.risk_limits import default_limits
from trading.risk_limits import RiskLimits


@dataclass
class DashboardContext:
    warehouse: Any  # sinks.warehouse.Warehouse (or anything with query_df)
    operator: OperatorDesk
    account: str = "paper"
    refresh_ms: int = 1000
    brokers: str | None = None  # split mode: Kafka bootstrap servers, for consumer lag
    limits: RiskLimits | None = None  # the desk's configured limits; default: the desk's defaults
    run_id: str | None = None  # show this run first instead of the latest
    users: UsersFile | None = None  # authenticated users and their roles; None: no users configured

    def base_limits(self) -> RiskLimits:
        return self.limits or default_limits()
