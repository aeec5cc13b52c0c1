"""The market-data builders under Bytewax itself: one worker and a 2-worker cluster agree."""

from __future__ import annotations

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, cluster_main, run_main

from feeds import make_feed
from flows.builders import bar_stage, feature_stage, normalize_stage
from market.normalize import NormalizeConfig
from schemas import Bar, DeadLetter, FeatureVector, Quote, Trade, content_hash

pytestmark = pytest.mark.integration

LATENESS_NS = 500_000_000


def ticks(n: int):
    feed = make_feed("synthetic", seed=3, ticks_per_second=200, max_ticks=n)
    return list(feed.ticks())


def market_data_flow(raw_ticks, out: list) -> Dataflow:
    flow = Dataflow("market_data_under_test")
    raw = op.input("feed", flow, TestingSource(raw_ticks, batch_size=500))
    normalized = normalize_stage("normalize", raw, NormalizeConfig(max_future_ns=10**30))
    bars = bar_stage("bars", normalized.market, ("1s", "1m"), LATENESS_NS)
    features = feature_stage("features", bars, "1s")
    op.output("out", op.merge("all", normalized.records, bars, features), TestingSink(out))
    return flow


def by_type(records, record_type):
    return sorted((r for r in records if type(r) is record_type), key=lambda r: r.id)


@pytest.fixture(scope="module")
def tape():
    return ticks(30_000)


def test_market_data_flow_when_run_on_one_worker_then_every_tick_accounted_and_features_emitted(tape):
    out: list = []
    run_main(market_data_flow(tape, out))
    trades, quotes = by_type(out, Trade), by_type(out, Quote)
    normalize_dead = [d for d in by_type(out, DeadLetter) if d.stage == "normalize"]
    assert len(trades) + len(quotes) + len(normalize_dead) == len(tape)
    assert by_type(out, Bar) and by_type(out, FeatureVector)


def test_market_data_flow_when_run_on_a_2_worker_cluster_then_same_records_as_one_worker(tape):
    single: list = []
    run_main(market_data_flow(tape, single))
    clustered: list = []
    cluster_main(market_data_flow(tape, clustered), [], 0, worker_count_per_proc=2)
    for record_type in (Trade, Quote, Bar, FeatureVector, DeadLetter):
        assert content_hash(by_type(clustered, record_type)) == content_hash(by_type(single, record_type)), record_type
