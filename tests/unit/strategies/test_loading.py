"""--strategy specs and configs: the plug-ins load, and every bad spec fails at once naming its problem."""

from __future__ import annotations

import pickle
import sys

import pytest

from examples.mean_reversion import MeanReversion
from examples.momentum import Momentum
from strategies.baseline import BaselineStrategy
from strategies.loading import StrategyLoadError, load_strategies, parse_specs, strategy_options
from strategies.signals import SignalState
from strategies.portfolio import PortfolioConstructor
from tests.unit.strategies.fixtures import EIGHT, T0, vector

MR = "examples.mean_reversion:MeanReversion"
MOM = "examples.momentum:Momentum"


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A module of the user's own, importable from the working directory only."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])

    def write(source: str, name: str = "my_rules") -> str:
        (tmp_path / f"{name}.py").write_text(source)
        sys.modules.pop(name, None)
        return name

    yield write


def test_built_in_names_and_a_plug_in_class_load_with_their_config(tmp_path):
    config = tmp_path / "mr.toml"
    config.write_text('entry_bps = 8.0\nname = "fader"\n')
    loaded = load_strategies(["baseline=0.25", f"{MR}=0.75"], ["-", str(config)])
    baseline, fader = loaded.strategies
    assert isinstance(baseline, BaselineStrategy) and isinstance(fader, MeanReversion)
    assert fader.config.entry_bps == 8.0 and loaded.capital == {"baseline": 0.25, "fader": 0.75}


def test_one_strategy_without_a_capital_trades_the_whole_account():
    assert load_strategies([MOM]).capital == {"momentum": 1.0}
    assert load_strategies([]).names == ("baseline",)


def test_a_module_in_the_working_directory_loads(user_module):
    name = user_module(
        "from examples.momentum import Momentum\n"
        "class Mine(Momentum):\n"
        "    pass\n")
    (strategy,) = load_strategies([f"{name}:Mine"]).strategies
    assert strategy.name == "momentum" and type(strategy).__name__ == "Mine"


@pytest.mark.parametrize("spec, message", [
    ("no_such_pkg.rules:Rule", "no module 'no_such_pkg'"),
    ("examples.momentum:Nope", "has no 'Nope' (its classes: Momentum, MomentumConfig)"),
    ("examples.momentum", "expected baseline, lightgbm, package.module:ClassName"),
    ("baseline=2", "capital must be a fraction in (0, 1]"),
    ("baseline=half", "capital 'half' is not a number"),
])
def test_a_bad_spec_is_refused_naming_what_is_wrong(spec, message):
    with pytest.raises(StrategyLoadError) as caught:
        load_strategies([spec])
    assert message in str(caught.value)


def test_a_class_that_misses_the_protocol_is_refused_listing_what_it_lacks(user_module):
    name = user_module("class Rule:\n    name = 'r'\n    def score(self, cross_section):\n        return {}\n")
    with pytest.raises(StrategyLoadError) as caught:
        load_strategies([f"{name}:Rule"])
    text = str(caught.value)
    assert "does not meet the strategy protocol" in text
    assert "no method target_weights()" in text and "no attribute 'version'" in text


def test_a_strategy_that_does_not_pickle_is_refused_because_snapshots_need_it(user_module):
    name = user_module(
        "import threading\n"
        "from examples.momentum import Momentum\n"
        "class Locked(Momentum):\n"
        "    def __init__(self, config=None):\n"
        "        super().__init__(config)\n"
        "        self.lock = threading.Lock()\n")
    with pytest.raises(StrategyLoadError, match="does not pickle"):
        load_strategies([f"{name}:Locked"])


def test_unknown_config_keys_are_refused_naming_the_known_ones(tmp_path):
    config = tmp_path / "mom.toml"
    config.write_text("top_n = 2\nlook_back = 'ret_5'\n")
    with pytest.raises(StrategyLoadError) as caught:
        load_strategies([MOM], [str(config)])
    text = str(caught.value)
    assert "look_back: Extra inputs are not permitted" in text and "name, lookback, top_n, gross" in text


@pytest.mark.parametrize("content, message", [("top_n = [", "not TOML"), ("top_n = 0", "top_n: Input should be")])
def test_a_config_file_that_is_not_valid_is_refused(tmp_path, content, message):
    config = tmp_path / "mom.toml"
    config.write_text(content)
    with pytest.raises(StrategyLoadError, match=message):
        load_strategies([MOM], [str(config)])


def test_a_missing_config_file_and_a_config_for_a_class_without_one_are_refused(tmp_path, user_module):
    with pytest.raises(StrategyLoadError, match="no such file"):
        load_strategies([MOM], [str(tmp_path / "absent.toml")])
    name = user_module(
        "from examples.momentum import Momentum\n"
        "class Fixed(Momentum):\n"
        "    Config = None\n"
        "    def __init__(self):\n"
        "        super().__init__()\n")
    (tmp_path / "x.toml").write_text("top_n = 2\n")
    with pytest.raises(StrategyLoadError, match="takes no config"):
        load_strategies([f"{name}:Fixed"], [str(tmp_path / "x.toml")])


@pytest.mark.parametrize("specs, configs, message", [
    (["baseline", MOM], [], "give each its capital fraction"),
    (["baseline=0.6", f"{MOM}=0.6"], [], "sum to 1.2"),
    (["baseline=0.5", "baseline=0.5"], [], "two strategies are named 'baseline'"),
    (["baseline=0.5", f"{MOM}=0.5"], ["-"], "1 --strategy-config for 2 --strategy"),
])
def test_a_bad_set_of_strategies_is_refused(specs, configs, message):
    with pytest.raises(StrategyLoadError, match=message):
        load_strategies(specs, configs)


def test_lightgbm_without_an_active_model_says_how_to_get_one(tmp_path):
    with pytest.raises(StrategyLoadError, match="tapeflow models activate"):
        load_strategies(["lightgbm"], registry=tmp_path / "models")


def test_stage_options_reload_the_same_strategies(tmp_path):
    config = tmp_path / "mom.toml"
    config.write_text("top_n = 2\n")
    options = strategy_options(["baseline=0.5", f"{MOM}=0.5"], ["-", str(config)])
    specs = [options[i + 1] for i, o in enumerate(options) if o == "--strategy"]
    configs = [options[i + 1] for i, o in enumerate(options) if o == "--strategy-config"]
    assert [s.target for s in parse_specs(specs, configs)] == ["strategies.baseline:BaselineStrategy", "examples.momentum:Momentum"]
    assert load_strategies(specs, configs).strategies[1].config.top_n == 2


def test_several_strategies_score_one_cross_section_each_and_their_state_survives_a_snapshot():
    loaded = load_strategies(["baseline=0.5", f"{MOM}=0.5"])
    state = SignalState(loaded.strategies, PortfolioConstructor(), "paper", symbols=EIGHT, emit_orders=False)
    out = []
    for i, symbol in enumerate(EIGHT):  # the universe is known: the bar goes out with its last symbol
        out += state.on_features(vector(symbol, T0, imbalance=i / 10 - 0.35, ret_15=(i - 3.5) / 1000))
    (section,) = out
    assert [(s.strategy, s.section_size) for s in section.signals] == [("baseline", 16)] * 8 + [("momentum", 16)] * 8
    momentum = {s.symbol: s.target_weight for s in section.signals if s.strategy == "momentum"}
    assert momentum["SYN7"] == 0.5 and momentum["SYN0"] == -0.5 and sum(map(abs, momentum.values())) == 1.0
    restored = pickle.loads(pickle.dumps(state))
    assert [s.name for s in restored.strategies] == ["baseline", "momentum"]


def test_external_strategy_when_named_then_nothing_is_built_and_the_desk_gets_its_name_and_capital():
    loaded = load_strategies(["external:quix_example=0.5"])
    assert loaded.strategies == () and loaded.external == ("quix_example",)
    assert loaded.names == ("quix_example",) and loaded.capital == {"quix_example": 0.5}
    assert strategy_options(["external:quix_example"]) == ("--strategy", "external:quix_example")


@pytest.mark.parametrize("specs, configs, reason", [
    (["external:q", "baseline=0.5"], [], "trades one external strategy alone"),
    (["baseline=0.5", "external:q=0.5"], [], "trades one external strategy alone"),
    (["external:q=0.5", "external:r=0.5"], [], "trades one external strategy alone"),
    (["external:"], [], "needs the name its app publishes signals under"),
    (["external:a b"], [], "needs the name its app publishes signals under"),
    (["external:q"], ["q.toml"], "its config is its app's own"),
])
def test_external_strategy_when_it_cannot_be_traded_as_given_then_refused_with_the_reason(specs, configs, reason):
    with pytest.raises(StrategyLoadError, match=reason):
        load_strategies(specs, configs)
