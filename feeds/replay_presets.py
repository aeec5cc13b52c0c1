"""Column mappings for the tick files tapeflow ships (``data/real/``, see its README), by name.

A preset is picked by name (``ReplayFeed(path, mapping="tardis-trades")``) or detected from the
file name (``ReplayFeed(path)``). The 1-minute bar files in the same folder are known by name too:
asking the tick replay for them raises :class:`feeds.replay.BarFileError` instead of a confusing
"missing column" (bars get their own replay in a later issue).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path

from feeds.replay import BarFileError, ColumnMapping


@dataclass(frozen=True)
class ReplayPreset:
    name: str
    file_patterns: tuple[str, ...]  # fnmatch patterns on the file name
    mapping: ColumnMapping
    description: str


PRESETS: dict[str, ReplayPreset] = {
    preset.name: preset
    for preset in (
        ReplayPreset(
            name="binance-spot-trades",
            file_patterns=("binance-btcusdt-trades.parquet",),
            mapping=ColumnMapping(
                kind="trade", timestamp="timestamp", timestamp_unit="ms", price="price", size="quantity",
                buyer_maker="buyer_maker", trade_id="trade_id", fixed_symbol="BTCUSDT",
            ),
            description="Binance spot trades: ms timestamps, buyer_maker 'True'/'False' strings",
        ),
        ReplayPreset(
            name="tardis-trades",
            file_patterns=("binance-futures-btcusdt-trades-*.csv", "*tardis*trades*.csv"),
            mapping=ColumnMapping(
                kind="trade", timestamp="timestamp", timestamp_unit="us", price="price", size="amount",
                side="side", trade_id="id", symbol="symbol",
            ),
            description="tardis.dev trades CSV: µs timestamps, aggressor side column, id, amount",
        ),
        ReplayPreset(
            name="histdata-quotes",
            file_patterns=("eurusd-quotes-*.csv",),
            mapping=ColumnMapping(
                kind="quote", timestamp="datetime", timestamp_unit="datetime", timestamp_format="%Y%m%d %H%M%S%3f",
                bid="bid", ask="ask", fixed_symbol="EURUSD", has_header=False,
                column_names=("datetime", "bid", "ask", "volume"),
            ),
            description="Headerless FX quotes 'YYYYMMDD HHMMSSmmm,bid,ask,0' in UTC; no sizes (0)",
        ),
    )
}

BAR_FILE_PATTERNS: tuple[str, ...] = ("btc-perp-*_1m.csv", "fxcm-*-m1-*.csv", "*_1m.csv", "*-m1-*.csv")


def preset_mapping(name: str) -> ColumnMapping:
    try:
        return PRESETS[name].mapping
    except KeyError:
        raise ValueError(f"unknown replay preset {name!r}; presets: {sorted(PRESETS)}") from None


def preset_for_file(path: Path) -> str | None:
    """The name of the preset whose file pattern matches the file name, if one does."""
    for preset in PRESETS.values():
        if any(fnmatch.fnmatch(path.name, pattern) for pattern in preset.file_patterns):
            return preset.name
    return None


def detect_mapping(path: Path) -> ColumnMapping:
    """The preset whose file pattern matches the file name; bar files and unknown files are errors."""
    name = path.name
    if any(fnmatch.fnmatch(name, pattern) for pattern in BAR_FILE_PATTERNS):
        raise BarFileError(
            f"{name} holds 1-minute OHLC bars, not ticks; the tick replay cannot read it "
            "(replay bars with the bar replay instead)"
        )
    for preset in PRESETS.values():
        if any(fnmatch.fnmatch(name, pattern) for pattern in preset.file_patterns):
            return preset.mapping
    raise ValueError(
        f"{name}: no replay preset matches this file name; pass mapping=ColumnMapping(...) "
        f"or a preset name ({sorted(PRESETS)})"
    )
