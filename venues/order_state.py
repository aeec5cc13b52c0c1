"""The order life cycle as an explicit state machine (NautilusTrader style).

Every change of an order's state is an ``ExecutionReport`` on ``exec.reports``; downstream stages
(risk's open-order book, the ledger) rebuild an order from those reports alone. A venue that emitted
an impossible sequence (a fill after a cancel, a cancel after the order filled) would silently
corrupt them, so the venue routes every change through :meth:`OrderStateMachine.transition_to`,
which refuses anything outside :data:`ORDER_TRANSITIONS` by raising :class:`IllegalTransition`.

::

    new ──> accepted ──> partially_filled ──> filled
     │         │  │  │        │    ^  │
     │         │  │  │        └────┘  └──> canceled
     │         │  │  └──> filled
     │         │  └─────> canceled
     │         └────────> rejected   (venues that reject after acknowledging, e.g. Alpaca)
     └──> rejected

``partially_filled -> partially_filled`` is legal: each further partial fill is its own event.
Terminal states (filled, canceled, rejected) have no way out.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

from schemas.trading import OrderState

_S = OrderState

ORDER_TRANSITIONS: Mapping[OrderState, frozenset[OrderState]] = MappingProxyType(
    {
        _S.NEW: frozenset({_S.ACCEPTED, _S.REJECTED}),
        # accepted -> rejected is never used by the simulated venue; it is kept because a real
        # venue (Alpaca) can refuse an order after acknowledging it, and both venues share this table.
        _S.ACCEPTED: frozenset({_S.PARTIALLY_FILLED, _S.FILLED, _S.CANCELED, _S.REJECTED}),
        _S.PARTIALLY_FILLED: frozenset({_S.PARTIALLY_FILLED, _S.FILLED, _S.CANCELED}),
        _S.FILLED: frozenset(),
        _S.CANCELED: frozenset(),
        _S.REJECTED: frozenset(),
    }
)


class IllegalTransition(Exception):
    """An order was asked to move to a state the life cycle does not allow from where it is."""

    def __init__(self, client_order_id: str, from_state: OrderState, to_state: OrderState) -> None:
        super().__init__(f"order {client_order_id!r}: illegal transition {from_state.value} -> {to_state.value}")
        self.client_order_id = client_order_id
        self.from_state = from_state
        self.to_state = to_state


def can_transition(from_state: OrderState, to_state: OrderState) -> bool:
    return to_state in ORDER_TRANSITIONS[from_state]


class OrderStateMachine:
    """Holds one order's state and refuses illegal moves.

    A plain slotted class rather than a pydantic model: the simulated venue keeps one per working
    order and mutates it on every fill, so it has to be cheap and picklable (Bytewax recovery).
    """

    __slots__ = ("client_order_id", "state")

    def __init__(self, client_order_id: str, state: OrderState = OrderState.NEW) -> None:
        self.client_order_id = client_order_id
        self.state = state

    @property
    def is_terminal(self) -> bool:
        return self.state.is_terminal

    def can_transition_to(self, to_state: OrderState) -> bool:
        return to_state in ORDER_TRANSITIONS[self.state]

    def transition_to(self, to_state: OrderState) -> OrderState:
        """Move to ``to_state`` and return the previous state; raise :class:`IllegalTransition`."""
        from_state = self.state
        if to_state not in ORDER_TRANSITIONS[from_state]:
            raise IllegalTransition(self.client_order_id, from_state, to_state)
        self.state = to_state
        return from_state
