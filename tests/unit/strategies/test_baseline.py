"""BaselineStrategy: order-flow scores and long/short target weights on hand-made cross-sections."""

from __future__ import annotations

import math
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from strategies.base import Strategy, gross_exposure, is_valid_target
from strategies.baseline import BaselineConfig, BaselineStrategy, zscores
from tests.unit.strategies.fixtures import EIGHT, cross_section, vector

EIGHT_IMBALANCES = dict(zip(EIGHT, (0.5, -0.4, 0.1, 0.0, 0.3, -0.2, -0.6, 0.05)))


def test_baseline_is_a_strategy_on_feature_set_v1():
    strategy = BaselineStrategy()
    assert isinstance(strategy, Strategy)
    assert strategy.name == "baseline"
    assert strategy.feature_set == "v1"
    assert strategy.model_version == ""


def test_default_config_trades_the_planted_flow_sign_on_imbalance_5():
    cfg = BaselineConfig()
    assert cfg.flow_feature == "imbalance_5"
    assert cfg.w_flow > 0 and cfg.w_mom == 0.0
    assert (cfg.mode, cfg.top_n, cfg.gross) == ("rank", 2, 1.0)


def test_version_changes_with_parameters_and_is_stable_for_equal_ones():
    assert BaselineStrategy().version == BaselineStrategy(BaselineConfig()).version
    assert BaselineStrategy().version != BaselineStrategy(BaselineConfig(top_n=3)).version


def test_config_with_no_signal_weight_is_rejected():
    with pytest.raises(ValidationError):
        BaselineConfig(w_flow=0.0, w_mom=0.0)


def test_config_is_frozen():
    with pytest.raises(ValidationError):
        BaselineConfig().top_n = 3  # type: ignore[misc]


def test_zscores_are_cross_sectional_population_zscores():
    z = zscores({"A": 1.0, "B": 2.0, "C": 3.0})
    sd = math.sqrt(2.0 / 3.0)
    assert z == pytest.approx({"A": -1 / sd, "B": 0.0, "C": 1 / sd})


def test_zscores_without_dispersion_or_value_are_neutral():
    assert zscores({"A": 0.2, "B": 0.2, "C": 0.2}) == {"A": 0.0, "B": 0.0, "C": 0.0}
    z = zscores({"A": 1.0, "B": None, "C": 3.0})
    assert z["B"] == 0.0 and z["A"] == pytest.approx(-1.0) and z["C"] == pytest.approx(1.0)


def test_score_is_the_zscore_of_the_flow_feature_by_default():
    scores = BaselineStrategy().score(cross_section(EIGHT_IMBALANCES))
    expected = zscores(EIGHT_IMBALANCES)
    assert list(scores) == sorted(EIGHT)
    assert scores == pytest.approx(expected)


def test_score_uses_the_configured_flow_feature():
    vectors = [vector(s, imbalance_1=x, imbalance_5=-x) for s, x in EIGHT_IMBALANCES.items()]
    one = BaselineStrategy(BaselineConfig(flow_feature="imbalance_1")).score(vectors)
    five = BaselineStrategy(BaselineConfig(flow_feature="imbalance_5")).score(vectors)
    assert one == pytest.approx({s: -v for s, v in five.items()})
    assert one["SYN0"] > 0


def test_score_adds_momentum_when_weighted():
    rets = dict(zip(EIGHT, (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.01)))
    vectors = [vector(s, imbalance=EIGHT_IMBALANCES[s], ret_5=rets[s]) for s in EIGHT]
    cfg = BaselineConfig(w_flow=1.0, w_mom=0.5)
    scores = BaselineStrategy(cfg).score(vectors)
    z_flow, z_mom = zscores(EIGHT_IMBALANCES), zscores(rets)
    assert scores == pytest.approx({s: z_flow[s] + 0.5 * z_mom[s] for s in EIGHT})


def test_missing_flow_feature_scores_neutral():
    warming_up = vector("C").model_copy(update={"values": {"ret_5": 0.0}})  # no imbalance yet
    vectors = cross_section({"A": 0.4, "B": -0.4}) + [warming_up]
    scores = BaselineStrategy().score(vectors)
    assert scores["C"] == 0.0 and scores["A"] > 0 > scores["B"]


def test_score_rejects_two_vectors_for_one_symbol():
    with pytest.raises(ValueError):
        BaselineStrategy().score([vector("A"), vector("A"), vector("B")])


def test_rank_mode_longs_top_two_and_shorts_bottom_two_of_eight_at_equal_weight():
    strategy = BaselineStrategy()
    weights = strategy.target_weights(strategy.score(cross_section(EIGHT_IMBALANCES)))
    assert weights == {
        "SYN0": 0.25, "SYN4": 0.25,  # strongest buying
        "SYN6": -0.25, "SYN1": -0.25,  # strongest selling
        "SYN2": 0.0, "SYN3": 0.0, "SYN5": 0.0, "SYN7": 0.0,
    }
    assert gross_exposure(weights) == pytest.approx(1.0)


def test_rank_mode_positive_imbalance_goes_long():
    strategy = BaselineStrategy(BaselineConfig(top_n=1))
    weights = strategy.target_weights(strategy.score(cross_section({"A": 0.6, "B": 0.0, "C": -0.6})))
    assert weights == {"A": 0.5, "B": 0.0, "C": -0.5}


def test_rank_mode_with_a_thin_cross_section_shrinks_n_not_the_per_name_weight():
    strategy = BaselineStrategy()  # top_n = 2 -> 0.25 per name
    weights = strategy.target_weights(strategy.score(cross_section({"A": 0.6, "B": 0.0, "C": -0.6})))
    assert weights == {"A": 0.25, "B": 0.0, "C": -0.25}


def test_rank_mode_without_dispersion_stays_flat():
    strategy = BaselineStrategy()
    weights = strategy.target_weights(strategy.score(cross_section({s: 0.3 for s in EIGHT})))
    assert set(weights.values()) == {0.0}


def test_rank_mode_breaks_score_ties_by_symbol():
    strategy = BaselineStrategy(BaselineConfig(top_n=1))
    weights = strategy.target_weights({"B": 1.0, "A": 1.0, "C": -1.0, "D": -1.0})
    assert weights == {"A": 0.5, "B": 0.0, "C": -0.5, "D": 0.0}


def test_rank_mode_never_shorts_a_positive_score():
    strategy = BaselineStrategy()
    weights = strategy.target_weights({"A": 3.0, "B": 2.0, "C": 1.0, "D": 0.5})
    assert weights == {"A": 0.25, "B": 0.25, "C": 0.0, "D": 0.0}


def test_threshold_mode_trades_every_name_past_the_threshold_at_one_over_n():
    strategy = BaselineStrategy(BaselineConfig(mode="threshold", z_threshold=1.0))
    weights = strategy.target_weights({"A": 1.5, "B": 1.0, "C": 0.9, "D": -2.0})
    assert weights == {"A": 0.25, "B": 0.25, "C": 0.0, "D": -0.25}


def test_single_symbol_uses_the_raw_imbalance_against_the_threshold():
    strategy = BaselineStrategy(BaselineConfig(ts_threshold=0.2))
    assert strategy.score([vector("A", imbalance=0.35)]) == {"A": 0.35}
    assert strategy.target_weights({"A": 0.35}) == {"A": 1.0}
    assert strategy.target_weights({"A": -0.25}) == {"A": -1.0}
    assert strategy.target_weights({"A": 0.1}) == {"A": 0.0}


def test_two_symbols_are_traded_as_two_time_series_splitting_the_gross():
    strategy = BaselineStrategy()
    scores = strategy.score(cross_section({"A": 0.5, "B": 0.1}))
    assert scores == {"A": 0.5, "B": 0.1}  # raw, not z-scored: z over two names is always +-1
    assert strategy.target_weights(scores) == {"A": 0.5, "B": 0.0}


def test_empty_cross_section_has_no_targets():
    strategy = BaselineStrategy()
    assert strategy.score([]) == {} and strategy.target_weights({}) == {}


def test_strategy_pickles():
    strategy = BaselineStrategy(BaselineConfig(top_n=3))
    clone = pickle.loads(pickle.dumps(strategy))
    assert clone.config == strategy.config and clone.version == strategy.version


@settings(max_examples=200, deadline=None)
@given(
    imbalances=st.lists(st.floats(-1.0, 1.0, allow_nan=False), min_size=1, max_size=12),
    mode=st.sampled_from(["rank", "threshold"]),
    top_n=st.integers(1, 6),
    gross=st.floats(0.1, 1.0),
)
def test_weights_are_within_unit_range_and_gross_for_any_cross_section(imbalances, mode, top_n, gross):
    strategy = BaselineStrategy(BaselineConfig(mode=mode, top_n=top_n, gross=gross, z_threshold=0.5))
    vectors = cross_section({f"S{i:02d}": x for i, x in enumerate(imbalances)})
    weights = strategy.target_weights(strategy.score(vectors))
    assert set(weights) == {v.symbol for v in vectors}
    assert is_valid_target(weights, gross_cap=gross)
