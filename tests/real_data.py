"""Where the real market-data files live: ``$TAPEFLOW_REAL_DATA``, else ``shared/data/real`` beside
the repository (how developers' machines and CI lay it out)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def real_data_dir() -> Path:
    configured = os.environ.get("TAPEFLOW_REAL_DATA")
    folder = Path(configured) if configured else REPO.parent / "shared" / "data" / "real"
    if not folder.is_dir():
        raise FileNotFoundError(
            f"real market data not found at {folder}: put the shared/ folder beside the repository "
            "or set TAPEFLOW_REAL_DATA to the folder holding binance-btcusdt-trades.parquet"
        )
    return folder


REAL_DATA = real_data_dir()
