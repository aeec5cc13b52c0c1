"""The serving strategy: one batched predict per cross-section, offline == serving, picklable."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from strategies.base import is_valid_target
from strategies.baseline import zscores
from research.evaluation import vectors_from_frame
from strategies.lightgbm_strategy import LightGBMConfig, LightGBMStrategy, ServingModel, feature_rows
from research.training import feature_matrix, vectors_frame
from tests.unit.strategies.fixtures import SECOND, T0
from tests.unit.strategies.lgbm_models import random_cross_section, tiny_booster


@pytest.fixture(scope="module")
def booster():
    return tiny_booster()


def strategy(booster, **config):
    return LightGBMStrategy(ServingModel.from_booster(booster, "v1", prediction_scale=0.5), LightGBMConfig(**config))


@pytest.mark.parametrize("mode", ["threshold", "edge"])
def test_score_when_scored_offline_from_the_training_frame_then_equals_serving_scores_exactly(booster, mode):
    serving = strategy(booster, mode=mode)
    sections = [random_cross_section(T0 + i * SECOND, seed=i) for i in range(20)]
    frame = vectors_frame([v for s in sections for v in s])
    offline = booster.predict(feature_matrix(frame), num_threads=1)
    for section in sections:
        bar_end = section[0].bar_end
        rows = np.flatnonzero(frame["bar_end"].to_numpy() == bar_end)
        predictions = dict(zip(frame["symbol"].to_numpy()[rows], offline[rows]))
        if mode == "edge":  # the forecast itself, in bp: no z-score
            expected = {s: p * 1e4 for s, p in predictions.items()}
        else:
            expected = zscores(predictions)
        assert serving.score(section) == expected  # bit-for-bit, not approx
    # and the frame round trip the evaluation uses scores the same
    back = vectors_from_frame(frame, "1s")
    assert serving.score([v for v in back if v.bar_end == T0]) == serving.score(sections[0])


def test_score_when_a_cross_section_arrives_then_one_batched_predict_call(booster, monkeypatch):
    serving = strategy(booster)
    calls = []
    real = ServingModel.predict
    monkeypatch.setattr(ServingModel, "predict", lambda self, m: calls.append(m.shape) or real(self, m))
    serving.score(random_cross_section(T0, seed=3))
    assert calls == [(8, 17)]


def test_score_when_one_symbol_then_prediction_over_scale_and_threshold_weights(booster):
    serving = strategy(booster, mode="threshold", ts_threshold=1.0)
    section = random_cross_section(T0, seed=4, symbols=("BTC",))
    raw = booster.predict(feature_rows(section), num_threads=1)[0]
    scores = serving.score(section)
    assert scores == {"BTC": raw / 0.5}
    weight = serving.target_weights(scores)["BTC"]
    assert weight == (np.sign(raw) if abs(raw / 0.5) >= 1.0 else 0.0)


@pytest.mark.parametrize("mode", ["rank", "threshold", "edge"])
def test_target_weights_when_any_cross_section_then_within_the_weight_contract(booster, mode):
    serving = strategy(booster, mode=mode, z_threshold=0.5, entry_bps=0.0)
    for seed in range(30):
        weights = serving.target_weights(serving.score(random_cross_section(T0 + seed * SECOND, seed=seed)))
        assert len(weights) == 8 and is_valid_target(weights)
    fresh = strategy(booster, mode=mode, z_threshold=0.5, entry_bps=0.5)
    weights = fresh.target_weights({"A": 2.0, "B": 0.1, "C": -0.1, "D": -2.0})
    if mode == "rank":
        assert weights == {"A": 0.25, "B": 0.25, "C": -0.25, "D": -0.25}
    else:
        assert weights == {"A": 0.25, "B": 0.0, "C": 0.0, "D": -0.25}


def test_edge_weights_when_forecasts_cross_entry_and_exit_then_open_hold_and_close_per_name(booster):
    serving = strategy(booster, mode="edge", entry_bps=1.5, exit_bps=0.5)
    bars = [  # forecasts in bp, one dict per bar
        {"A": 1.6, "B": -1.5, "C": 1.4, "D": 0.0},   # A long, B short (at the threshold), C below entry
        {"A": 0.2, "B": 0.4, "C": 1.4, "D": 0.0},    # A and B faded but not turned: held
        {"A": -0.5, "B": 0.6, "C": 0.0, "D": 0.0},   # A exactly exit_bps against: held; B beyond: closed
        {"A": -0.51, "B": 0.0, "C": -2.0, "D": 3.0}, # A closed; C short, D long
        {"A": 0.0, "B": 0.0, "C": 1.5, "D": 0.0},    # C flips straight to long; D held
    ]
    got = [serving.target_weights(forecasts) for forecasts in bars]
    q = 0.25  # gross 1 over 4 names
    assert got == [
        {"A": q, "B": -q, "C": 0.0, "D": 0.0},
        {"A": q, "B": -q, "C": 0.0, "D": 0.0},
        {"A": q, "B": 0.0, "C": 0.0, "D": 0.0},
        {"A": 0.0, "B": 0.0, "C": -q, "D": q},
        {"A": 0.0, "B": 0.0, "C": q, "D": q},
    ]


def test_edge_weights_when_a_held_name_skips_a_bar_then_it_is_still_held_when_it_returns(booster):
    serving = strategy(booster, mode="edge", entry_bps=1.0, exit_bps=0.5)
    assert serving.target_weights({"A": 2.0, "B": 0.0}) == {"A": 0.5, "B": 0.0}
    assert serving.target_weights({"B": 0.0}) == {"B": 0.0}  # A had no bar: not in this cross-section
    assert serving.target_weights({"A": 0.1, "B": 0.0}) == {"A": 0.5, "B": 0.0}


def test_edge_weights_when_pickled_mid_position_then_the_restored_strategy_keeps_holding(booster):
    serving = strategy(booster, mode="edge", entry_bps=1.0, exit_bps=0.5)
    serving.target_weights({"A": -3.0, "B": 0.0})
    restored = pickle.loads(pickle.dumps(serving))
    assert restored.target_weights({"A": 0.3, "B": 0.0}) == {"A": -0.5, "B": 0.0}
    assert restored.target_weights({"A": 0.6, "B": 0.0}) == {"A": 0.0, "B": 0.0}


def test_edge_score_when_one_symbol_then_the_forecast_in_bp_not_over_the_scale(booster):
    serving = strategy(booster, mode="edge", entry_bps=0.0)
    section = random_cross_section(T0, seed=4, symbols=("BTC",))
    raw = booster.predict(feature_rows(section), num_threads=1)[0]
    scores = serving.score(section)
    assert scores == {"BTC": raw * 1e4}
    assert serving.target_weights(scores) == {"BTC": float(np.sign(raw))}


def test_score_when_a_feature_is_missing_then_scored_as_missing_not_as_zero(booster):
    section = random_cross_section(T0, seed=5)
    values = dict(section[0].values)
    values.pop("imbalance_5")
    section[0] = section[0].model_copy(update={"values": values})
    assert np.isnan(feature_rows(section)[0, 12])
    assert set(strategy(booster).score(section)) == {v.symbol for v in section}


def test_strategy_when_pickled_then_restored_scores_identically_and_carries_the_model_version(booster):
    serving = strategy(booster)
    section = random_cross_section(T0, seed=6)
    before = serving.score(section)
    data = pickle.dumps(serving)
    assert b"Booster" not in data  # the model travels as text, not as a live handle
    restored = pickle.loads(data)
    assert restored.score(section) == before
    assert restored.model_version == "v1" and serving.model_version == "v1"


def test_serving_model_when_columns_differ_from_the_booster_then_error_names_the_version(booster):
    with pytest.raises(ValueError, match="model v9 was trained on columns"):
        ServingModel(booster.model_to_string(), "v9", feature_names=("a", "b")).booster
