"""Scoring latency of the LightGBM serving strategy per bar (one cross-section).

Usage: python benchmarks/scoring.py [--bars N] [--trees T]. Trains a model of T trees (default 150,
the training default) on random rows, then times ``score`` + ``target_weights`` for cross-sections
of 8 and of 100 symbols: the feature matrix build, ONE batched ``booster.predict``, the z-scores
and the weights. Prints p50 / p99 / max in microseconds. Target: p99 <= 2 ms for 100 symbols.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from schemas.feature_set import FEATURE_SET_V1
from schemas import FeatureVector
from strategies.lightgbm_strategy import LightGBMStrategy, ServingModel
from research.training import TrainConfig, lgb_params

T0 = 1_704_205_800_000_000_000


def booster(trees: int):
    import lightgbm as lgb

    rng = np.random.default_rng(0)
    x = rng.normal(size=(20_000, len(FEATURE_SET_V1)))
    y = 0.1 * x[:, 12] + rng.normal(size=len(x))
    params = lgb_params(TrainConfig(num_trees=trees))
    return lgb.train(params, lgb.Dataset(x, label=y, feature_name=list(FEATURE_SET_V1)), num_boost_round=trees)


def sections(n_symbols: int, bars: int):
    rng = np.random.default_rng(n_symbols)
    symbols = [f"S{i:03d}" for i in range(n_symbols)]
    for b in range(bars):
        values = rng.normal(size=(n_symbols, len(FEATURE_SET_V1)))
        yield [
            FeatureVector.model_construct(
                schema_version=1, id=f"{s}:{b}", ts_event=T0 + b, ts_ingest=0, ts_tick_ingest=0, symbol=s,
                interval="1s", feature_set="v1", bar_end=T0 + b, close=100.0, values=dict(zip(FEATURE_SET_V1, row)),
            )
            for s, row in zip(symbols, values)
        ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bars", type=int, default=3_000)
    parser.add_argument("--trees", type=int, default=150)
    args = parser.parse_args()
    strategy = LightGBMStrategy(ServingModel.from_booster(booster(args.trees), "bench"))
    print(f"LightGBM scoring per bar, {args.trees} trees, {args.bars} bars per size")
    for n in (8, 100):
        batch = list(sections(n, args.bars))
        for section in batch[:50]:  # warm-up: booster parse, allocator
            strategy.target_weights(strategy.score(section))
        samples = []
        for section in batch:
            started = time.perf_counter_ns()
            strategy.target_weights(strategy.score(section))
            samples.append(time.perf_counter_ns() - started)
        p50, p99 = np.percentile(samples, [50, 99]) / 1e3
        print(f"{n:>4} symbols: p50 {p50:8.1f} us   p99 {p99:8.1f} us   max {max(samples) / 1e3:8.1f} us")


if __name__ == "__main__":
    main()
