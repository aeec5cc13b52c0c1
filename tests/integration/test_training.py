"""Training end to end: vectors equal the Bytewax stages', the planted signal is found out of sample,
the shuffled-label control finds nothing, P&L goes through the simulated desk, the real BTC bars run."""

from __future__ import annotations

import json

import bytewax.operators as op
import polars as pl
import pytest
import typer
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main
from typer.testing import CliRunner

from feeds import make_feed
from flows.builders import bar_stage, feature_stage, normalize_stage
from schemas.feature_set import FEATURE_SET_V1
from market.normalize import NormalizeConfig
from schemas import FeatureVector
from research.evaluation import desk_pnl, fold_cross_sections
from strategies.lightgbm_strategy import LightGBMConfig
from research.training import TapeConfig, TrainConfig, tape_vectors, training_frame, vectors_frame, walk_forward
from tapeflow.cli_models import register as register_cli
from tests.real_data import REAL_DATA

pytestmark = pytest.mark.integration

TAPE = TapeConfig(normalize=NormalizeConfig(max_future_ns=10**30), bar_intervals=("1s", "1m"), lateness_ns=500_000_000)
SEED, TICKS_PER_SECOND, TICKS = 7, 150, 1_000_000  # tapeflow train's synthetic defaults
FAST = dict(num_trees=60, learning_rate=0.05, num_threads=1)  # fewer trees than the CLI default: test time


def synthetic(ticks: int = TICKS, **options):
    return lambda: make_feed("synthetic", seed=SEED, ticks_per_second=TICKS_PER_SECOND, max_ticks=ticks, **options).ticks()


def test_training_vectors_when_computed_in_process_then_equal_the_bytewax_feature_stage():
    tape = list(synthetic(50_000)())
    out: list = []
    flow = Dataflow("features_under_test")
    raw = op.input("feed", flow, TestingSource(tape, batch_size=500))
    normalized = normalize_stage("normalize", raw, TAPE.normalize)
    bars = bar_stage("bars", normalized.market, TAPE.bar_intervals, TAPE.lateness_ns)
    op.output("out", feature_stage("features", bars, "1s"), TestingSink(out))
    run_main(flow)
    pipeline = {(v.symbol, v.bar_end): v for v in out if type(v) is FeatureVector}
    ours = {(v.symbol, v.bar_end): v for v in tape_vectors(tape, TAPE)}
    assert len(ours) > 800 and ours.keys() == pipeline.keys()
    for key, vector in ours.items():
        other = pipeline[key]
        assert vector.close == other.close
        assert all(abs(vector.values[n] - other.values[n]) <= 1e-12 for n in FEATURE_SET_V1), key


@pytest.fixture(scope="module")
def planted():
    """The default synthetic tape (planted flow alpha 0.25) at the length ``tapeflow train`` replays,
    labelled at the default horizon (5 bars), and its walk-forward result."""
    frame = training_frame(vectors_frame(tape_vectors(synthetic()(), TAPE)), TrainConfig().horizon)
    return frame, walk_forward(frame, TrainConfig(**FAST))


def test_walk_forward_when_the_synthetic_flow_is_planted_then_out_of_sample_ic_at_least_0_05(planted):
    _, result = planted
    assert result.overall["ic"] >= 0.05, result.folds
    assert result.overall["rank_ic"] > 0 and result.overall["hit_rate"] > 0.5
    assert next(iter(result.importance)) in ("imbalance_5", "imbalance_1")  # the planted feature leads


def test_walk_forward_when_labels_are_shuffled_then_ic_within_0_02_of_zero(planted):
    frame, _ = planted
    result = walk_forward(frame, TrainConfig(shuffle_labels=True, **FAST))
    assert abs(result.overall["ic"]) <= 0.02, result.overall


def net_per_fold(make_tape, frame, result):
    """Each test fold through the signals stage and its own desk, with the defaults ``tapeflow train``
    reports: the edge strategy (entry 1.5 bp, exit 0.5 bp) and passive execution, the venue's fees."""
    sections = fold_cross_sections(result, frame, "1s", LightGBMConfig())
    return desk_pnl(make_tape(), TAPE, sections)


def test_desk_pnl_when_the_default_planted_flow_is_traded_passively_then_the_test_folds_net_positive_after_fees(planted):
    frame, result = planted
    pnl = net_per_fold(synthetic(), frame, result)
    assert all(r["fills"] > 100 and r["fees"] > 0 and r["rejected"] == 0 for r in pnl), pnl
    assert sum(r["net_pnl"] for r in pnl) > 0, pnl
    assert sum(r["net_pnl"] > 0 for r in pnl) >= 3, pnl  # a clear majority of the 4 folds, not one lucky fold


def test_desk_pnl_when_no_flow_is_planted_then_the_same_strategy_and_desk_lose_after_fees():
    # The control for the P&L: without the planted flow (alpha 0) the same training, strategy and
    # passive desk must not make money, or the profit above would be the venue's passive fills.
    make_tape = synthetic(flow_alpha=0.0)
    frame = training_frame(vectors_frame(tape_vectors(make_tape(), TAPE)), TrainConfig().horizon)
    pnl = net_per_fold(make_tape, frame, walk_forward(frame, TrainConfig(**FAST)))
    assert sum(r["fills"] for r in pnl) > 50, pnl  # it trades, so the loss is measured, not assumed
    assert sum(r["net_pnl"] for r in pnl) < 0, pnl


def test_train_cli_when_run_on_the_real_btc_minute_bars_then_evaluates_and_registers(tmp_path):
    source = REAL_DATA / "btc-perp-20211231-20220201_1m.csv"
    head = tmp_path / "btc-perp-head_1m.csv"  # a week of the month keeps the test short
    pl.read_csv(source).head(10_000).write_csv(head)
    app = typer.Typer()
    app.command("noop")(lambda: None)
    register_cli(app)
    result = CliRunner().invoke(app, ["train", "--feed", "replay", "--path", str(head), "--registry",
                                      str(tmp_path / "models"), "--name", "btc", "--trees", "40", "--folds", "3"])
    assert result.exit_code == 0, result.output
    assert "out-of-sample: IC" in result.output and "close-to-close net return" in result.output
    meta = json.loads((tmp_path / "models" / "btc" / "v1" / "metadata.json").read_text())
    assert meta["interval"] == "1m" and meta["training_window"]["symbols"] == ["BTC-PERP"]
    assert len(meta["metrics"]["folds"]) == 3 and len(meta["metrics"]["pnl"]) == 3
    assert meta["feature_names"] == list(FEATURE_SET_V1) and len(meta["data_hash"]) == 64
    assert meta["label"]["horizon_bars"] == 5 and meta["evaluation"]["strategy"]["mode"] == "edge"
    assert meta["evaluation"]["execution"] == "close_to_close"  # a bar file has no touch to rest at
