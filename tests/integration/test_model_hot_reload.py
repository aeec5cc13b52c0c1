"""Hot reload in the running embedded pipeline: a model activated mid-run takes over between two
bars, with no bar scored twice or skipped."""

from __future__ import annotations

import threading
from collections import defaultdict

import pytest

from feeds import make_feed
from trading.desk import DeskConfig
from flows.pipeline import TradingConfig, feed_universe
from schemas import ControlKind
from config.control_channel import ControlChannel, make_command
from tests.integration.embedded_runs import run_embedded
from tests.unit.strategies.lgbm_models import registry_with, tiny_booster

pytestmark = pytest.mark.integration


def test_activate_v2_while_a_replay_runs_then_signals_switch_from_v1_to_v2_between_bars(module_warehouse, tmp_path):
    registry = registry_with(tmp_path, tiny_booster(seed=1), tiny_booster(seed=2))
    registry.activate("lightgbm", "v1")
    # paced at 20x: ~10 s of wall clock over ~200 s of tape, the first ~35 s of it the features' warm-up;
    # a flat day, or the open's double rate makes it ~100 s of tape that can end before the 5 s switch
    feed = make_feed("synthetic", seed=3, ticks_per_second=100, u_shape=0.0, speed=20.0, max_ticks=20_000)
    universe = feed_universe(feed)
    trading = TradingConfig(desk=DeskConfig(universe=universe), universe=universe, strategy_kind="lightgbm",
                            model_registry=str(registry.root))
    channel = ControlChannel(tmp_path / "control.jsonl")
    sender = threading.Timer(5.0, lambda: channel.send(make_command(ControlKind.ACTIVATE_MODEL, name="v2",
                                                                    issued_by="quant")))
    sender.start()
    try:
        run_embedded(module_warehouse, feed, "hot", trading=trading, control=channel)
    finally:
        sender.cancel()

    rows = module_warehouse.query(
        "SELECT toUnixTimestamp64Nano(bar_end), symbol, model_version FROM signals FINAL WHERE run_id = 'hot' "
        "ORDER BY bar_end, symbol").rows
    versions_by_bar = defaultdict(set)
    per_symbol = defaultdict(list)
    for bar_end, symbol, version in rows:
        versions_by_bar[bar_end].add(version)
        per_symbol[symbol].append(bar_end)
    sequence = [next(iter(v)) for _, v in sorted(versions_by_bar.items())]
    assert all(len(v) == 1 for v in versions_by_bar.values()), "a bar scored by two models"
    control = module_warehouse.query("SELECT kind, name, issued_by, detail FROM control WHERE run_id = 'hot'").rows
    assert "v1" in sequence and "v2" in sequence, (sequence, control)
    switch = sequence.index("v2")
    assert set(sequence[:switch]) == {"v1"} and set(sequence[switch:]) == {"v2"}
    for symbol, bars in per_symbol.items():
        assert len(bars) == len(set(bars)), f"{symbol}: a bar scored twice"
    kinds = module_warehouse.query(
        "SELECT kind, name, issued_by FROM control WHERE run_id = 'hot' AND kind = 'activate_model' "
        "AND issued_by = 'quant' AND detail LIKE 'accepted%'").rows
    assert kinds == [("activate_model", "v2", "quant")]
