"""Configuration of the simulated exchange (frozen, like every tapeflow config)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from market.calendar import CALENDARS, XNYS

NANOS_PER_MILLI = 1_000_000
NANOS_PER_SECOND = 1_000_000_000


class SimVenueConfig(BaseModel):
    """How the simulated venue delays, prices, sizes and charges fills.

    Defaults describe a liquid US equity traded from a retail-latency box:

    - ``latency_ns`` = 50 ms: an order can first trade at ``order.ts_event + latency_ns``; ticks
      before that belong to the past the strategy could not reach.
    - ``fee_bps`` = 0.5 bp of notional plus ``fee_per_share`` = 0 per unit of quantity.
    - ``impact_coef`` = 0.1, ``impact_window_ns`` = 60 s, ``max_impact_bps`` = 100: a market fill of
      ``q`` pays ``min(impact_coef * q / recent_volume, max_impact_bps / 1e4) * price`` on top of the
      half spread, where ``recent_volume`` is the symbol's traded volume over the last window of
      event time (the cap keeps a thin window from producing absurd prices).
    - ``participation`` = 1.0: the venue's orders together take at most this share of each print's
      size (or of the displayed quote size).
    - ``price_increment`` = 0.01 and ``qty_increment`` = 1e-6 (fractional shares): the grid prices
      and quantities are rounded to at the venue, the edge where DESIGN §4 wants money rounded.
      ``fee_increment`` = 1e-6 is the grid for fees.
    - ``bar_slippage_bps`` = 1.0: fills from bars (a bar replay, no ticks) take the bar's open moved
      this many basis points against the order (see ``venues/sim.py``).
    - ``calendar`` = ``XNYS`` (``market/calendar.py``; ``24/7`` for crypto): DAY orders are canceled
      at the first event at/after the real close of their session (16:00 New York in summer and
      winter, 13:00 on early-close days).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    venue: str = Field(default="sim", min_length=1)
    latency_ns: int = Field(default=50 * NANOS_PER_MILLI, ge=0)
    fee_bps: float = Field(default=0.5, ge=0)
    fee_per_share: float = Field(default=0.0, ge=0)
    impact_coef: float = Field(default=0.1, ge=0)
    impact_window_ns: int = Field(default=60 * NANOS_PER_SECOND, gt=0)
    max_impact_bps: float = Field(default=100.0, ge=0)
    participation: float = Field(default=1.0, gt=0, le=1.0)
    price_increment: float = Field(default=0.01, gt=0)
    qty_increment: float = Field(default=1e-6, gt=0)
    fee_increment: float = Field(default=1e-6, gt=0)
    bar_slippage_bps: float = Field(default=1.0, ge=0)
    calendar: str = Field(default=XNYS, description="Trading sessions of the venue: " + " | ".join(CALENDARS))

    @field_validator("calendar")
    @classmethod
    def _known_calendar(cls, name: str) -> str:
        if name not in CALENDARS:
            raise ValueError(f"unknown calendar {name!r}; calendars: {', '.join(CALENDARS)}")
        return name

    @model_validator(mode="after")
    def _increments_are_grids(self) -> "SimVenueConfig":
        # Rounding works in integer multiples of the increment; an increment must be either a whole
        # number or 1/n, otherwise the float it maps back to is not the decimal the grid intends.
        for name in ("price_increment", "qty_increment", "fee_increment"):
            step = getattr(self, name)
            whole = step >= 1 and abs(step - round(step)) < 1e-12
            fraction = step < 1 and abs(1 / step - round(1 / step)) < 1e-6
            if not (whole or fraction):
                raise ValueError(f"{name}={step} must be a whole number or 1/n")
        return self
