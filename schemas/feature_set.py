"""The feature-set contract every floor reads by name: the warehouse DDL, the model registry, the
strategies and the features stage that computes it (``market/features.py``)."""

from __future__ import annotations

FEATURE_SET_VERSION = "v1"

# Column order is a contract: the warehouse DDL and the model registry read vectors by these names
# in this order. Any change, even appending a column, needs a new feature-set version.
FEATURE_SET_V1: tuple[str, ...] = (
    "ret_1",
    "ret_5",
    "ret_15",
    "rv_20",
    "rsi_14",
    "macd",
    "macd_signal",
    "macd_hist",
    "bb_pctb_20",
    "vwap_dev",
    "volume_z_20",
    "imbalance_1",
    "imbalance_5",
    "hl_range",
    "kbar_body",
    "kbar_upper",
    "kbar_lower",
)
