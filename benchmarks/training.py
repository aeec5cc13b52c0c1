"""Training time on the real BTC month (1-minute bars, ~45k rows): features, walk-forward, final fit.

Usage: python benchmarks/training.py [--path FILE] [--trees T] [--folds K] [--threads N]. Prints the
time of each phase and the out-of-sample metrics.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from research.evaluation import fold_cross_sections, sections_close_to_close
from strategies.lightgbm_strategy import LightGBMConfig
from research.training import TrainConfig, bars_from_file, feature_vectors, training_frame, vectors_frame, walk_forward

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "btc-perp-20211231-20220201_1m.csv"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--path", type=Path, default=DEFAULT)
    parser.add_argument("--trees", type=int, default=150)
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    config = TrainConfig(num_trees=args.trees, n_folds=args.folds, num_threads=args.threads)
    t = time.perf_counter()
    vectors = list(feature_vectors(bars_from_file(args.path), "1m"))
    frame = training_frame(vectors_frame(vectors), config.horizon)
    t_features = time.perf_counter() - t
    t = time.perf_counter()
    result = walk_forward(frame, config)
    t_train = time.perf_counter() - t
    t = time.perf_counter()
    pnl = sections_close_to_close(fold_cross_sections(result, frame, "1m", LightGBMConfig()), frame, cost_bps=1.0)
    t_pnl = time.perf_counter() - t
    print(f"{args.path.name}: {len(frame):,} labelled rows")
    print(f"bars -> features: {t_features:6.2f} s")
    print(f"walk-forward ({args.folds} folds) + final fit, {args.trees} trees, {args.threads} threads: {t_train:6.2f} s")
    print(f"serving-path scoring + close-to-close P&L of the test folds: {t_pnl:6.2f} s")
    o = result.overall
    print(f"out-of-sample IC {o['ic']:+.4f}  rank IC {o['rank_ic']:+.4f}  hit rate {o['hit_rate']:.3f}")
    for r in pnl:
        print(f"  fold {r['fold']}: net {r['net_return']:+.2%}  gross {r['gross_return']:+.2%}  turnover {r['turnover']:.0f}")


if __name__ == "__main__":
    main()
