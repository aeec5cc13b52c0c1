"""The look of the desk: one dark palette, dense tables, figure tiles; number and time formats.

Nothing here loads from the internet (no web fonts, no CDN): the dashboard must work on a desk
machine without outside access, and a failed font request is a browser console error.
"""

from __future__ import annotations

import html
from datetime import datetime, timezone
from typing import Any, Iterable

from bokeh.models import DatetimeTickFormatter, NumeralTickFormatter
from bokeh.plotting import figure

BG = "#0b0f14"
PANEL = "#121821"
GRID = "#1e2733"
TEXT = "#d6dde6"
MUTED = "#7f8b99"
UP = "#26a269"
DOWN = "#e5484d"
ACCENT = "#3b82f6"
AMBER = "#f5a524"

CSS = f"""
body, .bk-root {{ background: {BG}; color: {TEXT}; font-family: "DejaVu Sans", "Helvetica Neue", Arial, sans-serif; }}
.tf-header {{ display: flex; align-items: center; gap: 18px; padding: 6px 14px; background: {PANEL};
  border-bottom: 1px solid {GRID}; font-size: 13px; }}
.tf-brand {{ font-weight: 700; font-size: 16px; letter-spacing: .5px; color: #fff; }}
.tf-chip {{ padding: 2px 8px; border-radius: 3px; font-weight: 600; font-size: 12px; border: 1px solid {GRID}; }}
.tf-chip.ok {{ background: rgba(38,162,105,.18); color: {UP}; border-color: {UP}; }}
.tf-chip.warn {{ background: rgba(245,165,36,.15); color: {AMBER}; border-color: {AMBER}; }}
.tf-chip.bad {{ background: rgba(229,72,77,.18); color: {DOWN}; border-color: {DOWN}; }}
.tf-muted {{ color: {MUTED}; }}
.tf-kpis {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 6px; }}
.tf-kpi {{ background: {PANEL}; border: 1px solid {GRID}; border-radius: 4px; padding: 6px 10px; }}
.tf-kpi .k {{ font-size: 11px; text-transform: uppercase; letter-spacing: .6px; color: {MUTED}; }}
.tf-kpi .v {{ font-size: 20px; font-weight: 600; font-variant-numeric: tabular-nums; color: #fff; }}
.tf-kpi .s {{ font-size: 11px; color: {MUTED}; font-variant-numeric: tabular-nums; }}
.tf-kpi .v.up {{ color: {UP}; }} .tf-kpi .v.down {{ color: {DOWN}; }}
.tf-section {{ font-size: 12px; font-weight: 700; text-transform: uppercase; letter-spacing: .8px; color: {MUTED};
  margin: 4px 0 0 2px; }}
.tf-banner {{ padding: 10px 14px; border-radius: 4px; font-size: 15px; font-weight: 700; }}
.tf-banner.ok {{ background: rgba(38,162,105,.15); color: {UP}; border: 1px solid {UP}; }}
.tf-banner.bad {{ background: rgba(229,72,77,.2); color: {DOWN}; border: 1px solid {DOWN}; }}
.tf-banner.warn {{ background: rgba(245,165,36,.15); color: {AMBER}; border: 1px solid {AMBER}; }}
.tf-note {{ color: {MUTED}; font-size: 12px; }}
"""

TABULATOR_CSS = f"""
.tabulator {{ font-size: 12px; background-color: {PANEL}; border: 1px solid {GRID}; }}
.tabulator .tabulator-header {{ background-color: #18202b; color: {MUTED}; border-bottom: 1px solid {GRID}; }}
.tabulator .tabulator-header .tabulator-col {{ background-color: #18202b; border-right: 1px solid {GRID}; }}
.tabulator-row {{ background-color: {PANEL}; color: {TEXT}; min-height: 22px; border-bottom: 1px solid {GRID}; }}
.tabulator-row.tabulator-row-even {{ background-color: #151c26; }}
.tabulator-row .tabulator-cell {{ padding: 3px 6px; border-right: 1px solid {GRID}; }}
.tabulator .tabulator-tableholder {{ background-color: {PANEL}; }}
"""


def signed_money(decimals: int = 2):
    """A Tabulator cell: gains green, losses red, thousands separated."""
    from bokeh.models import HTMLTemplateFormatter

    return HTMLTemplateFormatter(template=(
        f'<span style="font-variant-numeric:tabular-nums;color:<%= value < 0 ? "{DOWN}" : value > 0 ? "{UP}" : "{TEXT}" %>">'
        f"<%= value == null ? '-' : value.toLocaleString('en-US', {{minimumFractionDigits: {decimals}, "
        f"maximumFractionDigits: {decimals}}}) %></span>"
    ))


def titles(columns: Iterable[str]) -> dict[str, str]:
    """Column headers a trader reads: ``avg_cost`` -> ``Avg cost``; P&L and ids kept short."""
    special = {"pnl": "P&L", "qty": "Qty", "pct": "%", "id": "ID", "s": "s"}
    out = {}
    for column in columns:
        words = [special.get(w, w) for w in column.split("_")]
        out[column] = " ".join([words[0][:1].upper() + words[0][1:], *words[1:]])
    return out


def tabulator_options(**overrides: Any) -> dict[str, Any]:
    options: dict[str, Any] = dict(
        disabled=True, show_index=False, layout="fit_data_stretch", sizing_mode="stretch_width",
        stylesheets=[TABULATOR_CSS], theme="midnight",
    )
    options.update(overrides)
    return options


def desk_figure(height: int = 260, title: str | None = None, datetime_x: bool = True, **kwargs: Any):
    """A dark Bokeh figure with the desk's grid and fonts; x is event time unless told otherwise."""
    kwargs.setdefault("x_axis_type", "datetime" if datetime_x else "linear")
    fig = figure(
        height=height, sizing_mode="stretch_width", title=title, toolbar_location="right",
        tools="xpan,xwheel_zoom,box_zoom,reset,hover,save",
        background_fill_color=PANEL, border_fill_color=BG, outline_line_color=GRID, **kwargs,
    )
    fig.toolbar.logo = None
    fig.toolbar.autohide = True
    for axis in (fig.xaxis, fig.yaxis):
        axis.axis_line_color = GRID
        axis.major_tick_line_color = GRID
        axis.minor_tick_line_color = None
        axis.major_label_text_color = MUTED
        axis.major_label_text_font_size = "11px"
    fig.xgrid.grid_line_color = GRID
    fig.ygrid.grid_line_color = GRID
    if fig.title is not None:
        fig.title.text_color = TEXT
        fig.title.text_font_size = "12px"
    if datetime_x:
        fig.xaxis.formatter = DatetimeTickFormatter(seconds="%H:%M:%S", minsec="%H:%M:%S", minutes="%H:%M", hours="%H:%M")
    return fig


def money_axis(fig, fmt: str = "0,0") -> None:
    fig.yaxis.formatter = NumeralTickFormatter(format=fmt)


# ------------------------------------------------------------------------------------ formats

def money(value: Any, decimals: int = 2, signed: bool = False) -> str:
    if value is None:
        return "—"
    return f"{float(value):+,.{decimals}f}" if signed else f"{float(value):,.{decimals}f}"


def pct(value: Any, decimals: int = 2) -> str:
    return "—" if value is None else f"{float(value) * 100:.{decimals}f}%"


def count(value: Any) -> str:
    return "—" if value is None else f"{int(value):,}"


def clock_ms(ms: Any) -> str:
    """Event time of the tape, UTC, to the millisecond."""
    if ms is None:
        return "—"
    return datetime.fromtimestamp(int(ms) / 1000, tz=timezone.utc).strftime("%H:%M:%S.%f")[:-3]


def direction(value: Any) -> str:
    if value is None or float(value) == 0:
        return ""
    return "up" if float(value) > 0 else "down"


def kpi_tiles(tiles: Iterable[tuple[str, str, str, str]]) -> str:
    """``(key, label, value, sub)`` tiles; ``key`` becomes ``data-kpi`` for tests and tooling.
    A value starting with + or - is coloured as a gain or a loss."""
    parts = []
    for key, label, value, sub in tiles:
        tone = "up" if value.startswith("+") else "down" if value.startswith("-") and value != "-" else ""
        parts.append(
            f'<div class="tf-kpi" data-kpi="{html.escape(key)}"><div class="k">{html.escape(label)}</div>'
            f'<div class="v {tone}">{html.escape(value)}</div><div class="s">{html.escape(sub)}</div></div>'
        )
    return f'<div class="tf-kpis">{"".join(parts)}</div>'


def section(title: str) -> str:
    return f'<div class="tf-section">{html.escape(title)}</div>'
