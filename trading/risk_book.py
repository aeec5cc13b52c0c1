"""What pre-trade risk knows about one symbol (split from ``trading/risk.py`` to keep it small)."""

from __future__ import annotations


class SymbolBook:
    """What risk knows about one symbol: filled position, working leaves per side, last trade.

    ``__slots__`` keeps it small and fast; it still pickles (Python >= 3.11 handles slots).
    Leaves are summed incrementally; when the last working order of a side closes its sum is reset
    to exactly 0.0 so floating error cannot accumulate across the session.
    """

    __slots__ = ("position", "buy_leaves", "sell_leaves", "buy_open", "sell_open",
                 "last_price", "last_trade_ts", "fill_price")

    def __init__(self) -> None:
        self.position = 0.0
        self.buy_leaves = 0.0
        self.sell_leaves = 0.0
        self.buy_open = 0
        self.sell_open = 0
        self.last_price = 0.0  # 0.0: no trade seen yet
        self.last_trade_ts = -1
        self.fill_price = 0.0  # fallback mark for a position filled before any trade was seen

    @property
    def mark(self) -> float:
        return self.last_price or self.fill_price

    def worst_case_position(self) -> float:
        """Position if every working order on the side that grows |position| more fills."""
        long_case = self.position + self.buy_leaves
        short_case = self.position - self.sell_leaves
        return long_case if abs(long_case) >= abs(short_case) else short_case

    def add_leaves(self, sign: int, qty: float) -> None:
        if sign > 0:
            self.buy_leaves += qty
            self.buy_open += 1
        else:
            self.sell_leaves += qty
            self.sell_open += 1

    def reduce_leaves(self, sign: int, qty: float, closed: bool) -> None:
        if sign > 0:
            self.buy_open -= 1 if closed else 0
            self.buy_leaves = self.buy_leaves - qty if self.buy_open else 0.0
        else:
            self.sell_open -= 1 if closed else 0
            self.sell_leaves = self.sell_leaves - qty if self.sell_open else 0.0
