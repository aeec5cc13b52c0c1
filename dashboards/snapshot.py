"""What the header and every page read on each refresh: the account's key figures and its
trading state (breaker state and kill switch), from the warehouse."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dashboards.queries import fetch, fetch_one


@dataclass(frozen=True)
class RunSnapshot:
    figures: dict[str, Any] = field(default_factory=dict)
    trading_state: str = "active"  # the breaker's (or an operator's) latest trading_state record
    trading_state_detail: str = ""
    kill_switch_on: bool = False
    kill_switch_by: str = ""
    kill_switch_target: str = ""

    @classmethod
    def load(cls, warehouse: Any, run_id: str, account: str) -> "RunSnapshot":
        figures = fetch_one(warehouse, "desk_figures", run_id=run_id)
        state, detail, kill_on, kill_by, kill_target = "active", "", False, "", ""
        for row in fetch(warehouse, "trading_state", run_id=run_id).iter_rows(named=True):
            if row["target"] not in ("global", account):
                continue
            if row["kind"] == "trading_state":
                state, detail = row["name"] or state, row["detail"]
            elif row["kind"] == "kill_switch" and row["value"] == 1.0:
                # the global and the account switch are separate flags: either one stops new orders
                kill_on, kill_by, kill_target = True, row["issued_by"], row["target"]
        return cls(figures, state, detail, kill_on, kill_by, kill_target)
