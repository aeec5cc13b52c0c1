"""Market: candles of one symbol (1 s bars or 1 m OHLCV) with the desk's own fills on the price,
and the strategy's signal (score and target weight) under it on the same time axis."""

from __future__ import annotations

import panel as pn
import polars as pl
from bokeh.models import ColumnDataSource, HoverTool, LinearAxis, Range1d

from dashboards import style
from dashboards.context import DashboardContext
from dashboards.queries import fetch
from dashboards.snapshot import RunSnapshot

BARS = {"1s": 300, "1m": 240}  # 5 minutes of 1 s bars, 4 hours of 1 m bars
BAR_MS = {"1s": 1000, "1m": 60_000}
WIDTH_MS = {k: v * 0.7 for k, v in BAR_MS.items()}


def _empty(*columns: str) -> dict[str, list]:
    return {c: [] for c in columns}


CANDLE_COLUMNS = ("t", "mid", "open", "high", "low", "close", "volume", "height", "color")
FILL_COLUMNS = ("t", "price", "qty", "side", "color", "angle")
SIGNAL_COLUMNS = ("t", "score", "target_weight")


class MarketPage:
    title = "Market"

    def __init__(self, ctx: DashboardContext):
        self.ctx = ctx
        self.symbol = pn.widgets.Select(label="Symbol", options=[], width=140)
        self.interval = pn.widgets.RadioButtonGroup(label="Bars", options=["1s", "1m"], value="1s")
        self.candles = ColumnDataSource(_empty(*CANDLE_COLUMNS))
        self.fills = ColumnDataSource(_empty(*FILL_COLUMNS))
        self.signals = ColumnDataSource(_empty(*SIGNAL_COLUMNS))

        price = style.desk_figure(height=380, title="Price")
        price.segment("t", "high", "t", "low", source=self.candles, color="color")
        self._bodies = price.rect("t", "mid", width=WIDTH_MS["1s"], height="height", source=self.candles,
                                  fill_color="color", line_color="color")
        fills = price.scatter("t", "price", source=self.fills, marker="triangle", angle="angle", size=11,
                              fill_color="color", line_color="#ffffff", line_width=0.8, legend_label="own fills")
        price.legend.location = "top_left"
        price.legend.background_fill_alpha = 0.3
        price.legend.label_text_color = style.TEXT
        price.select_one(HoverTool).renderers = [fills]
        price.select_one(HoverTool).tooltips = [("fill", "@side @qty{0,0} @ @price{0,0.00}")]
        self.price_fig = price

        signal = style.desk_figure(height=170, title="Signal: score (line) and target weight (steps)",
                                   x_range=price.x_range)
        signal.line("t", "score", source=self.signals, color=style.ACCENT, line_width=1.5)
        signal.extra_y_ranges = {"weight": Range1d(-1.05, 1.05)}
        signal.add_layout(LinearAxis(y_range_name="weight", axis_label_text_color=style.MUTED,
                                     major_label_text_color=style.MUTED), "right")
        signal.step("t", "target_weight", source=self.signals, mode="after", color=style.AMBER, line_width=1.5,
                    y_range_name="weight")
        signal.select_one(HoverTool).tooltips = [("score", "@score{0.000}"), ("target weight", "@target_weight{0.00}")]
        self.signal_fig = signal

        self.status = pn.pane.HTML("", margin=(22, 12))
        self.view = pn.Column(
            pn.Row(self.symbol, self.interval, self.status),
            pn.pane.Bokeh(price), pn.pane.Bokeh(signal),
            sizing_mode="stretch_width",
        )

    def set_universe(self, strategies: list[str], symbols: list[str]) -> None:
        if symbols != self.symbol.options:
            self.symbol.options = symbols
            if self.symbol.value not in symbols and symbols:
                self.symbol.value = symbols[0]

    def reset(self) -> None:
        for source, columns in ((self.candles, CANDLE_COLUMNS), (self.fills, FILL_COLUMNS),
                                (self.signals, SIGNAL_COLUMNS)):
            source.data = _empty(*columns)

    def refresh(self, run_id: str, snap: RunSnapshot) -> None:
        symbol, interval = self.symbol.value, self.interval.value
        if not symbol:
            return
        wh = self.ctx.warehouse
        bars = fetch(wh, f"candles_{interval}", run_id=run_id, symbol=symbol, limit=BARS[interval])
        self._bodies.glyph.width = WIDTH_MS[interval]
        self.price_fig.title.text = f"{symbol} {interval} bars, with own fills"
        self.candles.data = candle_data(bars, BAR_MS[interval])
        since = int(bars["t"][0]) if bars.height else 0
        fills = fetch(wh, "symbol_fills", run_id=run_id, symbol=symbol, since_ms=since)
        self.fills.data = fill_data(fills)
        signals = fetch(wh, "symbol_signals", run_id=run_id, symbol=symbol, since_ms=since)
        self.signals.data = {"t": signals["t"].to_list(), "score": signals["score"].to_list(),
                             "target_weight": signals["target_weight"].to_list()}
        last = f"last {bars['close'][-1]:,.2f}" if bars.height else "no bars yet"
        self.status.object = (f'<span class="tf-muted" data-market="status">{symbol} · {interval} · {bars.height} bars · '
                              f'{last} · {fills.height} own fills · {signals.height} signals</span>')


def candle_data(bars: pl.DataFrame, bar_ms: int) -> dict[str, list]:
    # a bar is drawn at its middle, so its body sits between its start and its end
    half = bar_ms / 2
    opens, closes = bars["open"].to_list(), bars["close"].to_list()
    return {
        "t": [t + half for t in bars["t"].to_list()],
        "mid": [(o + c) / 2 for o, c in zip(opens, closes)],
        "open": opens, "high": bars["high"].to_list(), "low": bars["low"].to_list(), "close": closes,
        "volume": bars["volume"].to_list(),
        # a flat bar still shows as a tick
        "height": [max(abs(c - o), 1e-9) for o, c in zip(opens, closes)],
        "color": [style.UP if c >= o else style.DOWN for o, c in zip(opens, closes)],
    }


def fill_data(fills: pl.DataFrame) -> dict[str, list]:
    sides = fills["side"].to_list()
    return {
        "t": fills["t"].to_list(), "price": fills["last_price"].to_list(), "qty": fills["last_qty"].to_list(),
        "side": sides,
        "color": [style.UP if s == "buy" else style.DOWN for s in sides],
        "angle": [0.0 if s == "buy" else 3.14159 for s in sides],  # buys point up, sells down
    }
