"""Execution venues: the deterministic simulated exchange (and, elsewhere, Alpaca paper trading)."""

from venues.order_state import ORDER_TRANSITIONS, IllegalTransition, OrderStateMachine, can_transition
from venues.sim import SimVenue
from venues.sim_config import SimVenueConfig

__all__ = [
    "ORDER_TRANSITIONS", "IllegalTransition", "OrderStateMachine", "can_transition",
    "SimVenue", "SimVenueConfig",
]
