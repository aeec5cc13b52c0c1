import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from venues.fill_model import FillModel, Increment, RecentVolume
from venues.sim_config import SimVenueConfig

SECOND = 1_000_000_000


def test_increment_when_value_on_grid_with_float_noise_then_floor_and_ceil_keep_it():
    cents = Increment(0.01)
    assert cents.floor(0.29) == 29 and cents.ceil(0.29) == 29
    assert cents.floor(100.02) == 10002 and cents.ceil(100.02) == 10002


def test_increment_when_converted_back_then_nearest_double_to_decimal():
    micro = Increment(1e-6)
    assert micro.to_float(1_234_567) == 1.234567
    assert micro.round(0.1 + 0.2) == 0.3


def test_increment_when_whole_lot_then_rounds_to_multiples():
    lots = Increment(100)
    assert lots.floor(250) == 2 and lots.to_float(2) == 200.0


@given(st.integers(min_value=0, max_value=10**12))
def test_increment_when_units_round_trip_then_identical(units):
    micro = Increment(1e-6)
    value = micro.to_float(units)
    assert micro.floor(value) == units == micro.ceil(value) == micro.nearest(value)


def test_config_when_increment_not_a_grid_then_refused():
    with pytest.raises(ValueError):
        SimVenueConfig(price_increment=0.03)


def test_recent_volume_when_prints_age_out_of_window_then_not_counted():
    window = RecentVolume(60 * SECOND)
    window.record("AAPL", 0, 100.0)
    window.record("AAPL", 30 * SECOND, 50.0)
    assert window.volume("AAPL", 59 * SECOND) == 150.0
    assert window.volume("AAPL", 60 * SECOND) == 50.0  # the window is (ts - 60s, ts]
    assert window.volume("AAPL", 90 * SECOND) == 0.0
    assert window.volume("MSFT", 0) == 0.0


def test_recent_volume_when_a_symbol_never_fills_then_it_holds_one_window_of_prints_not_its_tape():
    window = RecentVolume(60 * SECOND)
    for ms in range(0, 600_000, 10):  # 10 minutes of prints, never read
        window.record("AAPL", ms * 1_000_000, 1.0)
    assert len(window._times["AAPL"]) - window._head["AAPL"] == 6_000
    assert window.volume("AAPL", 599_990_000_000) == 6_000.0


def test_recent_volume_when_pickled_then_the_window_resumes_identically():
    window = RecentVolume(60 * SECOND)
    for ms in range(0, 90_000, 7):
        window.record("AAPL" if ms % 2 else "MSFT", ms * 1_000_000, float(ms % 13 + 1))
    copy = pickle.loads(pickle.dumps(window))
    for symbol in ("AAPL", "MSFT"):
        copy.record(symbol, 95 * SECOND, 5.0)
        window.record(symbol, 95 * SECOND, 5.0)
        assert copy.volume(symbol, 120 * SECOND) == window.volume(symbol, 120 * SECOND) > 0


@given(st.lists(st.tuples(st.integers(0, 3 * SECOND), st.one_of(st.integers(1, 10**6).map(float),
                                                             st.floats(0.001, 1e9, allow_nan=False))),
                min_size=0, max_size=60))
def test_recent_volume_when_pickled_packed_then_every_print_restored_exactly(steps):
    """Steps under ~2.1 s pack as int32 and sizes exact in float32 as float32; any other window
    (a longer gap, a fractional size) keeps its full width: the restored prints are the same."""
    window = RecentVolume(60 * SECOND)
    ts = 0
    for step, size in steps:
        ts += step
        window.record("AAPL", ts, size)
    copy = pickle.loads(pickle.dumps(window))
    if steps:
        head = window._head["AAPL"]
        assert copy._times["AAPL"].tolist() == window._times["AAPL"][head:].tolist()
        assert copy._sizes["AAPL"].tolist() == window._sizes["AAPL"][head:].tolist()


def test_recent_volume_when_prints_are_dense_and_whole_then_the_snapshot_is_half_the_raw_width():
    window = RecentVolume(60 * SECOND)
    for ms in range(0, 60_000, 3):
        window.record("AAPL", ms * 1_000_000 + 17, float(ms % 500 + 1))
    assert len(pickle.dumps(window)) < 20_000 * 16 * 0.6
    old = RecentVolume.__new__(RecentVolume)  # a snapshot from before the packing: plain bytes
    old.__setstate__((60 * SECOND, {"AAPL": (window._times["AAPL"].tobytes(), window._sizes["AAPL"].tobytes())},
                      dict(window._added), dict(window._evicted), dict(window._last)))
    assert old.volume("AAPL", 61 * SECOND) == window.volume("AAPL", 61 * SECOND)


def test_market_price_when_buy_then_reference_plus_half_spread_plus_impact():
    model = FillModel(SimVenueConfig())
    # impact = 0.1 * 50 / 1000 = 0.5% of 100 = 0.50; half spread 0.02
    assert model.market_price(+1, 100.0, 0.02, 50.0, 1000.0) == 100.52


def test_market_price_when_sell_then_reference_minus_half_spread_minus_impact():
    model = FillModel(SimVenueConfig())
    assert model.market_price(-1, 100.0, 0.02, 50.0, 1000.0) == 99.48


def test_market_price_when_off_tick_then_rounded_against_the_order():
    model = FillModel(SimVenueConfig(impact_coef=0.0))
    assert model.market_price(+1, 100.0, 0.005, 1.0, 1.0) == 100.01
    assert model.market_price(-1, 100.0, 0.005, 1.0, 1.0) == 99.99


def test_impact_when_large_against_volume_then_capped():
    model = FillModel(SimVenueConfig(max_impact_bps=100.0))
    assert model.impact_fraction(1_000.0, 10.0) == 0.01
    assert model.impact_fraction(1.0, 0.0) == 0.01  # no volume seen: assume the worst allowed


def test_market_price_when_sell_impact_would_go_below_zero_then_one_tick():
    model = FillModel(SimVenueConfig(max_impact_bps=10_000.0, impact_coef=10.0))
    assert model.market_price(-1, 0.05, 0.0, 100.0, 1.0) == 0.01


def test_fee_when_bps_and_per_share_then_both_charged_and_rounded():
    model = FillModel(SimVenueConfig(fee_bps=0.5, fee_per_share=0.005))
    # 100 * 100.52 * 0.5e-4 = 0.5026 ; 100 * 0.005 = 0.5
    assert model.fee(100.0, 100.52) == pytest.approx(1.0026, abs=0)
    assert model.fee(100.0, 100.52) == 1.0026


def test_available_units_when_participation_then_share_of_size_rounded_down():
    model = FillModel(SimVenueConfig(participation=0.25))
    assert model.available_units(10.0) == 2_500_000
    assert model.available_units(0.0000039) == 0


@settings(max_examples=60, deadline=None)
@given(prints=st.lists(st.tuples(st.integers(0, 4 * SECOND), st.integers(1, 500).map(float)), min_size=1, max_size=400),
       cuts=st.lists(st.integers(1, 80), min_size=1, max_size=5), restore=st.sets(st.integers(0, 30)))
def test_recent_volume_when_snapshotted_every_few_prints_then_each_snapshot_restores_the_live_window(
        prints, cuts, restore):
    """Incremental snapshots: at every cut a snapshot (pieces sealed since the previous one, the
    evicted ones dropped) restores exactly the live prints; some cuts go on from the restored copy,
    so pieces carried through a restore are reused too. Steps up to 4 s: fresh starts and long gaps."""
    window, reference = RecentVolume(10 * SECOND), RecentVolume(10 * SECOND)
    ts, start, step = 0, 0, 0
    while start < len(prints):
        stop = min(len(prints), start + cuts[step % len(cuts)])
        for gap, size in prints[start:stop]:
            ts += gap
            window.record("AAPL", ts, size)
            reference.record("AAPL", ts, size)
        copy = pickle.loads(pickle.dumps(window))
        head = window._head["AAPL"]
        assert copy._times["AAPL"].tolist() == window._times["AAPL"][head:].tolist()
        assert copy._sizes["AAPL"].tolist() == window._sizes["AAPL"][head:].tolist()
        assert copy.volume("AAPL", ts) == reference.volume("AAPL", ts)
        if step in restore:
            window = copy
        start, step = stop, step + 1


def test_recent_volume_when_snapshotted_again_then_only_the_new_prints_are_packed():
    window = RecentVolume(60 * SECOND)
    for ms in range(0, 30_000, 3):
        window.record("AAPL", ms * 1_000_000, 1.0)
    pickle.dumps(window)
    first = window._pieces["AAPL"][0]
    for ms in range(30_000, 30_030, 3):
        window.record("AAPL", ms * 1_000_000, 1.0)
    pickle.dumps(window)
    assert window._pieces["AAPL"][0] is first  # sealed once, reused
    assert [piece[3] for piece in window._pieces["AAPL"]] == [10_000, 10]
    for ms in range(30_030, 200_000, 3):  # the first piece leaves the window
        window.record("AAPL", ms * 1_000_000, 1.0)
    pickle.dumps(window)
    assert all(piece is not first for piece in window._pieces["AAPL"])
    for ms in range(200_000, 200_300, 3):  # after the front of the arrays was dropped
        window.record("AAPL", ms * 1_000_000, 2.0)
    assert window._origin["AAPL"] > 0
    copy = pickle.loads(pickle.dumps(window))
    head = window._head["AAPL"]
    assert copy._times["AAPL"].tolist() == window._times["AAPL"][head:].tolist()
    assert copy._sizes["AAPL"].tolist() == window._sizes["AAPL"][head:].tolist()
    assert copy.volume("AAPL", 230 * SECOND) == window.volume("AAPL", 230 * SECOND) > 0


def test_recent_volume_when_snapshotted_more_often_than_pieces_are_kept_then_the_oldest_are_joined():
    from venues.fill_model import _MAX_PIECES

    window = RecentVolume(60 * SECOND)
    ms = 0
    for _ in range(_MAX_PIECES + 5):  # a snapshot every 100 ms of prints: more pieces than kept
        for _ in range(20):
            ms += 5
            window.record("AAPL", ms * 1_000_000, float(ms % 7 + 1))
        copy = pickle.loads(pickle.dumps(window))
    assert len(window._pieces["AAPL"]) <= _MAX_PIECES
    assert sum(piece[3] for piece in window._pieces["AAPL"]) == len(window._times["AAPL"])
    assert copy._times["AAPL"].tolist() == window._times["AAPL"].tolist()
    assert copy._sizes["AAPL"].tolist() == window._sizes["AAPL"].tolist()


def test_recent_volume_when_a_snapshot_of_one_packed_window_is_restored_then_it_goes_on_incrementally():
    window = RecentVolume(60 * SECOND)
    for ms in range(0, 6_000, 3):
        window.record("AAPL", ms * 1_000_000, 2.0)
    state = list(window.__getstate__())
    head = window._head["AAPL"]
    from venues.fill_model import _packed
    state[1] = {"AAPL": _packed(window._times["AAPL"], window._sizes["AAPL"], head)}  # the form before pieces
    old = RecentVolume.__new__(RecentVolume)
    old.__setstate__(tuple(state))
    old.record("AAPL", 7 * SECOND, 2.0)
    window.record("AAPL", 7 * SECOND, 2.0)
    again = pickle.loads(pickle.dumps(old))
    assert again.volume("AAPL", 7 * SECOND) == window.volume("AAPL", 7 * SECOND) == 2.0 * 2_001
