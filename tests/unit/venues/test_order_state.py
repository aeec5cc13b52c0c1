import pickle

import pytest

from schemas import OrderState
from venues.order_state import ORDER_TRANSITIONS, IllegalTransition, OrderStateMachine, can_transition

S = OrderState

LEGAL = [
    (S.NEW, S.ACCEPTED),
    (S.NEW, S.REJECTED),
    (S.ACCEPTED, S.PARTIALLY_FILLED),
    (S.ACCEPTED, S.FILLED),
    (S.ACCEPTED, S.CANCELED),
    (S.ACCEPTED, S.REJECTED),
    (S.PARTIALLY_FILLED, S.PARTIALLY_FILLED),
    (S.PARTIALLY_FILLED, S.FILLED),
    (S.PARTIALLY_FILLED, S.CANCELED),
]
ILLEGAL = [(a, b) for a in S for b in S if (a, b) not in LEGAL]


@pytest.mark.parametrize(("from_state", "to_state"), LEGAL)
def test_transition_when_in_table_then_state_moves(from_state, to_state):
    machine = OrderStateMachine("o1", from_state)
    previous = machine.transition_to(to_state)
    assert previous is from_state
    assert machine.state is to_state


@pytest.mark.parametrize(("from_state", "to_state"), ILLEGAL)
def test_transition_when_not_in_table_then_illegal_transition_and_state_kept(from_state, to_state):
    machine = OrderStateMachine("o1", from_state)
    with pytest.raises(IllegalTransition) as refused:
        machine.transition_to(to_state)
    assert machine.state is from_state
    assert (refused.value.from_state, refused.value.to_state) == (from_state, to_state)
    assert "o1" in str(refused.value)


@pytest.mark.parametrize(("from_state", "to_state"), [
    (S.FILLED, S.CANCELED), (S.CANCELED, S.FILLED), (S.CANCELED, S.PARTIALLY_FILLED),
    (S.REJECTED, S.ACCEPTED), (S.NEW, S.FILLED), (S.PARTIALLY_FILLED, S.ACCEPTED),
])
def test_transition_when_named_refusals_then_refused(from_state, to_state):
    assert not can_transition(from_state, to_state)


def test_terminal_states_when_listed_then_have_no_way_out():
    for state in S:
        assert (len(ORDER_TRANSITIONS[state]) == 0) == state.is_terminal


def test_table_when_read_then_covers_every_state():
    assert set(ORDER_TRANSITIONS) == set(S)


def test_state_machine_when_pickled_then_state_survives():
    machine = OrderStateMachine("o1")
    machine.transition_to(S.ACCEPTED)
    restored = pickle.loads(pickle.dumps(machine))
    assert (restored.client_order_id, restored.state) == ("o1", S.ACCEPTED)
