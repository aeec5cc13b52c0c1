"""No silent options in the split topology: every option of ``tapeflow run --brokers`` and of
``tapeflow flow STAGE`` either changes what runs or is refused with a reason (DESIGN §2).

The walks introspect the commands' parameters, so an option added later fails
``test_every_*_option_is_classified`` until it gets a row in RUN_CASES or FLOW_CASES: a list of
:class:`Changes` (these arguments, against ``base``, change the run) and :class:`Refused` (these
arguments exit non-zero with this reason).

What a run is, for the comparison: ``tapeflow run --brokers`` up to the point where it would start
processes (the :class:`SplitRun` and its stage commands, the tape, the limits:
``tapeflow.cli_split.execute_split`` is where the processes start); ``tapeflow flow STAGE`` up to
the dataflow it would run (its SplitConfig, venue, writer, dashboard, workers and recovery folder:
``flows.pipeline.run_flow`` runs it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from tapeflow.cli import app
from tests.alpaca_fake import FAKE_KEY_ID, FAKE_SECRET

REAL = Path("/work/shared/data/real")
TRADES_CSV = REAL / "binance-futures-btcusdt-trades-20200222.csv"
OTHER_CSV = REAL / "eurusd-quotes-20200101.csv"
ROOT = Path(__file__).resolve().parents[2]
BASELINE_TOML = ROOT / "tests" / "unit" / "strategies" / "baseline_strategy.toml"
MAPPING_TOML = ROOT / "tests" / "unit" / "feeds" / "binance_mapping.toml"


@dataclass(frozen=True)
class Changes:
    args: tuple[str, ...]
    base: tuple[str, ...] = ()


@dataclass(frozen=True)
class Refused:
    args: tuple[str, ...]
    reason: str  # a piece of the error message


@pytest.fixture(scope="module")
def registries(tmp_path_factory):
    """Two registries with active LightGBM models (``lightgbm`` and ``other`` in the first)."""
    from tests.unit.strategies.lgbm_models import registry_with, tiny_booster

    roots = []
    for i in range(2):
        registry = registry_with(tmp_path_factory.mktemp(f"reg{i}"), tiny_booster(seed=i))
        registry.activate("lightgbm", "v1")
        roots.append(registry.root)
    other = registry_with(roots[0].parent, tiny_booster(seed=5), name="other")
    other.activate("other", "v1")
    empty = tmp_path_factory.mktemp("empty") / "models"
    return str(roots[0]), str(roots[1]), str(empty)


def run_cases(reg: str, reg2: str, empty: str) -> dict[str, list]:
    lgbm = ("--strategy", "lightgbm", "--registry", reg)
    replay = ("--feed", "replay", "--path", str(TRADES_CSV))
    alpaca = ("--feed", "alpaca", "--symbols", "AAPL")
    return {
        "feed": [Changes(replay)],
        "venue": [Changes(("--venue", "alpaca")),
                  Refused(("--venue", "alpaca", "--separate-trading"), "fused trading stage"),
                  Refused(("--venue", "nyse"), "unknown venue")],
        "alpaca_feed": [Changes((*alpaca, "--alpaca-feed", "sip"), alpaca),
                        Refused(("--alpaca-feed", "sip"), "with --feed alpaca")],
        "crypto": [Changes(("--feed", "alpaca", "--symbols", "BTC/USD", "--crypto"),
                           ("--feed", "alpaca", "--symbols", "BTC/USD")),
                   Refused(("--crypto",), "with --feed alpaca")],
        "live": [Changes(("--venue", "alpaca", "--live"), ("--venue", "alpaca")),
                 Refused(("--live",), "with --venue alpaca")],
        "path": [Changes(("--feed", "replay", "--path", str(OTHER_CSV)), replay),
                 Refused(("--path", str(TRADES_CSV)), "reads no file"),
                 Refused((*alpaca, "--path", str(TRADES_CSV)), "the Alpaca feed is live")],
        "symbols": [Changes(("--symbols", "AAA,BBB")), Changes((*replay, "--symbols", "BTCUSDT,ETHUSDT"), replay)],
        "rate": [Changes(("--rate", "500")), Refused((*replay, "--rate", "500"), "pace a replay with --speed")],
        "speed": [Changes(("--speed", "2")), Changes((*replay, "--speed", "2"), replay)],
        "duration": [Changes(("--duration", "5"))],
        "max_ticks": [Changes(("--max-ticks", "100"))],
        "warehouse": [Changes(("--warehouse", "chdb:///tmp/elsewhere"))],
        "seed": [Changes(("--seed", "8")), Refused((*replay, "--seed", "8"), "a replay tape has no seed")],
        "run_id": [Changes(("--run-id", "other-run"))],
        "recovery_dir": [Changes(("--recovery-dir", "elsewhere"))],
        "no_raw": [Changes(("--no-raw",))],
        "no_trading": [Changes(("--no-trading",)),
                       Refused(("--no-trading", *lgbm), "--no-trading runs no signals"),
                       Refused(("--no-trading", "--separate-trading"), "--no-trading runs none")],
        "strategy": [Changes(lgbm), Changes(("--strategy", "baseline=0.5", "--strategy", "examples.momentum:Momentum=0.5")),
                     Refused(("--strategy", "lightgbm", "--registry", empty), "no active version"),
                     Refused(("--strategy", "momentum"), "momentum"),
                     Changes(("--strategy", "external:quix_example")),
                     Refused(("--strategy", "external:quix_example", "--strategy", "baseline=0.5"),
                             "one external strategy alone")],
        "strategy_config": [Changes(("--strategy", "baseline", "--strategy-config", str(BASELINE_TOML)),
                                    ("--strategy", "baseline")),
                            Refused(("--strategy-config", str(BASELINE_TOML), "--strategy-config", str(BASELINE_TOML)),
                                    "--strategy-config")],
        "columns": [Changes((*replay, "--columns", "ts=local_timestamp:us"), replay),
                    Refused(("--columns", "ts=time:ms"), "--columns")],
        "mapping": [Changes((*replay, "--mapping", str(MAPPING_TOML)), replay),
                    Refused(("--mapping", str(MAPPING_TOML)), "--mapping")],
        "preset": [Changes(("--feed", "replay", "--path", str(OTHER_CSV), "--preset", "histdata-quotes", "--symbols",
                            "EURUSD"), ("--feed", "replay", "--path", str(OTHER_CSV) + "@EURUSD")),
                   Refused(("--preset", "tardis-trades"), "--preset")],
        "model": [Changes((*lgbm, "--model", "other"), lgbm), Refused(("--model", "other"), "--strategy lightgbm")],
        "registry": [Changes(("--strategy", "lightgbm", "--registry", reg2), lgbm),
                     Refused(("--registry", reg), "--strategy lightgbm")],
        "progress_interval": [Changes(("--progress-interval", "3"))],
        "no_dashboard": [Changes(("--no-dashboard",))],
        "dashboard_port": [Changes(("--dashboard-port", "6123")),
                           Refused(("--no-dashboard", "--dashboard-port", "6123"), "--no-dashboard serves none")],
        "brokers": [Changes(("--brokers", "elsewhere:9092"))],
        "prefix": [Changes(("--prefix", "p1."))],
        "separate_trading": [Changes(("--separate-trading",))],
        "chain": [Changes(("--chain", "none")), Refused(("--chain", "stagewise"), "unknown --chain")],
        "adopt": [Refused(("--venue", "alpaca", "--adopt"), "--adopt with --brokers"),
                  Refused(("--adopt",), "needs --venue alpaca")],
    }


RUN_BASE = ("run", "--brokers", "127.0.0.1:1", "--run-id", "walk")


def tape_fingerprint(tape) -> dict:
    return {k: repr(v) for k, v in vars(tape).items() if not k.startswith("_") and k != "settings"}


@pytest.fixture
def split_plan(monkeypatch, tmp_path):
    """``args -> (exit code, output, plan)``: ``tapeflow run`` up to the start of its processes."""
    import tapeflow.cli_split as cli_split

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("APCA_API_KEY_ID", FAKE_KEY_ID)
    monkeypatch.setenv("APCA_API_SECRET_KEY", FAKE_SECRET)
    plans = []

    def capture(tape, split, max_ticks, duration, progress_interval, settings):
        plans.append({"stages": {s: split.stage_command(s) for s in split.stages}, "tape": tape_fingerprint(tape),
                      "type": type(tape).__name__, "max_ticks": max_ticks, "duration": duration,
                      "progress_interval": progress_interval})

    monkeypatch.setattr(cli_split, "execute_split", capture)

    def plan(args) -> tuple[int, str, dict | None]:
        plans.clear()
        done = CliRunner().invoke(app, [*RUN_BASE, *args])
        return done.exit_code, done.output, (plans[0] if plans else None)

    return plan


def options(command) -> set[str]:
    return {p.name for p in command.params}


def test_every_run_option_is_classified(registries):
    run = typer.main.get_command(app).commands["run"]
    assert options(run) == set(run_cases(*registries)), "classify the new option in RUN_CASES"


@pytest.mark.parametrize("option", sorted(options(typer.main.get_command(app).commands["run"])))
def test_run_with_brokers_when_option_given_then_it_changes_the_split_run_or_is_refused(option, registries,
                                                                                      split_plan):
    cases = run_cases(*registries).get(option)
    assert cases, f"--{option.replace('_', '-')} is not classified"
    for case in cases:
        code, output, plan = split_plan(case.args)
        if isinstance(case, Refused):
            assert code != 0 and plan is None, f"{case.args} was not refused: {output}"
            assert case.reason in output, output
            continue
        assert code == 0 and plan is not None, f"{case.args}: {output}"
        base_code, base_output, base = split_plan(case.base)
        assert base_code == 0, base_output
        assert plan != base, f"{case.args} changed nothing in the split run"


def test_run_with_brokers_when_options_given_then_the_stage_commands_carry_them(registries, split_plan):
    reg = registries[0]
    code, output, plan = split_plan(("--strategy", "lightgbm", "--registry", reg, "--no-raw", "--venue", "alpaca",
                                     "--recovery-dir", "rec", "--prefix", "p1.", "--dashboard-port", "6123"))
    assert code == 0, output
    stages = plan["stages"]
    signals = stages["signals"]
    assert signals[signals.index("--strategy") + 1] == "lightgbm" and signals[signals.index("--registry") + 1] == reg
    assert "--no-raw" in stages["sink"] and stages["sink"][stages["sink"].index("--dashboard-port") + 1] == "6123"
    assert stages["trading"][stages["trading"].index("--venue") + 1] == "alpaca"
    assert "--recovery-dir" not in stages["trading"]  # Alpaca holds the orders: reconciled, not resumed
    assert stages["market"][stages["market"].index("--recovery-dir") + 1] == str(Path("rec/p1./walk/market"))
    code, output, plan = split_plan(("--no-trading",))
    assert set(plan["stages"]) == {"market", "sink"}


def test_run_with_brokers_when_an_external_strategy_then_no_signals_stage_and_the_desk_stages_trade_its_name(
        split_plan):
    code, output, plan = split_plan(("--strategy", "external:quix_example=0.5", "--separate-trading"))
    assert code == 0, output
    assert set(plan["stages"]) == {"market", "risk", "execution", "pnl", "sink"}
    for stage in ("risk", "pnl"):
        command = plan["stages"][stage]
        assert command[command.index("--strategy") + 1] == "external:quix_example=0.5"
    assert "no signals stage" in output and "--name quix_example" in output


def test_run_with_brokers_when_replay_symbols_then_normalize_filters_to_them(split_plan):
    code, output, plan = split_plan(("--feed", "replay", "--path", str(TRADES_CSV), "--symbols", "ETHUSDT"))
    assert code == 0, output
    market = plan["stages"]["market"]
    assert market[market.index("--symbols") + 1] == "ETHUSDT"


# -- tapeflow flow ---------------------------------------------------------------------------------


def flow_cases(reg: str, reg2: str, empty: str, start_file: str) -> dict[str, list]:
    lgbm = ("signals", "--strategy", "lightgbm", "--registry", reg)
    return {
        "stage": [Changes(("bars",), ("market",)), Refused(("candles",), "unknown stage")],
        "brokers": [Changes(("market", "--brokers", "elsewhere:9092"), ("market",))],
        "prefix": [Changes(("market", "--prefix", "p1."), ("market",))],
        "workers": [Changes(("market", "--workers", "2"), ("market",))],
        "recovery_dir": [Changes(("market", "--recovery-dir", "rec/market"), ("market",))],
        "until_end": [Changes(("market", "--until-end"), ("market",)),
                      Refused(("risk", "--until-end"), "has no end of input")],
        "symbols": [Changes(("market", "--symbols", "A,B"), ("market",)),
                    Changes(("signals", "--symbols", "A,B"), ("signals",)),
                    Refused(("bars", "--symbols", "A,B"), "does not use --symbols")],
        "market_streams": [Changes(("trading", "--market-streams", "trade"), ("trading",)),
                           Refused(("signals", "--market-streams", "trade"), "does not use --market-streams")],
        "silent_after_s": [Changes(("signals", "--silent-after-s", "5"), ("signals",)),
                           Refused(("market", "--silent-after-s", "5"), "does not use --silent-after-s")],
        "warehouse": [Changes(("sink", "--warehouse", "chdb://{tmp}/wh2"), ("sink",)),
                      Refused(("market", "--warehouse", "chdb:///tmp/x"), "does not use --warehouse")],
        "run_id": [Changes(("sink", "--run-id", "r2"), ("sink",)),
                   Refused(("market", "--run-id", "r2"), "does not use --run-id")],
        "strategy": [Changes(lgbm, ("signals",)), Changes(("trading", "--strategy", "baseline=0.5", "--strategy",
                                                           "examples.momentum:Momentum=0.5"), ("trading",)),
                     Changes(("trading", "--strategy", "external:quix_example"), ("trading",)),
                     Refused(("signals", "--strategy", "external:quix_example"), "from its own app"),
                     Refused(("market", "--strategy", "lightgbm"), "does not use"),
                     Refused(("signals", "--strategy", "lightgbm", "--registry", empty), "no active version")],
        "strategy_config": [Changes(("signals", "--strategy-config", str(BASELINE_TOML)), ("signals",)),
                            Refused(("sink", "--strategy-config", str(BASELINE_TOML)), "does not use")],
        "addresses": [Changes(("market", "--addresses", "127.0.0.1:1;127.0.0.1:2", "--process-id", "1"), ("market",)),
                      Refused(("market", "--addresses", "127.0.0.1:1;127.0.0.1:2"), "go together")],
        "process_id": [Changes(("market", "--addresses", "127.0.0.1:1;127.0.0.1:2", "--process-id", "1"),
                               ("market", "--addresses", "127.0.0.1:1;127.0.0.1:2", "--process-id", "0")),
                       Refused(("market", "--process-id", "1"), "go together")],
        "model": [Changes((*lgbm, "--model", "other"), lgbm),
                  Refused(("signals", "--model", "other"), "--strategy lightgbm")],
        "registry": [Changes(("signals", "--strategy", "lightgbm", "--registry", reg2), lgbm),
                     Refused(("signals", "--registry", reg), "--strategy lightgbm")],
        "no_raw": [Changes(("sink", "--no-raw"), ("sink",)), Refused(("market", "--no-raw"), "does not use --no-raw")],
        "dashboard_port": [Changes(("sink", "--dashboard-port", "6123"), ("sink",)),
                           Refused(("market", "--dashboard-port", "6123"), "does not use --dashboard-port")],
        "venue": [Changes(("trading", "--venue", "alpaca"), ("trading",)),
                  Refused(("execution", "--venue", "alpaca"), "does not use --venue"),
                  Refused(("trading", "--venue", "alpaca", "--recovery-dir", "rec"), "Alpaca holds the live orders"),
                  Refused(("trading", "--venue", "alpaca", "--until-end"), "no end")],
        "live": [Changes(("trading", "--venue", "alpaca", "--live"), ("trading", "--venue", "alpaca")),
                 Refused(("trading", "--live"), "with --venue alpaca")],
        "start_offsets": [Changes(("market", "--start-offsets", start_file), ("market",)),
                          Refused(("sink", "--members", "1", "--start-offsets", start_file), "starts where its group")],
        "members": [Changes(("sink", "--members", "2"), ("sink",)),
                    Changes(("sink", "--members", "2"), ("sink", "--members", "1")),
                    Refused(("market", "--members", "2"), "does not use --members"),
                    Refused(("sink", "--members", "1", "--dashboard-port", "6123"), "serves no dashboard"),
                    Refused(("sink", "--members", "1", "--workers", "2"), "scales by members")],
    }


FLOW_ORIGIN_CLUSTER = "walk-cluster"


@pytest.fixture
def flow_plan(monkeypatch, tmp_path):
    """``args -> (exit code, output, plan)``: ``tapeflow flow`` up to running its dataflow."""
    import flows.pipeline
    import flows.split
    import tapeflow.cli_dashboard
    import tapeflow.cli
    import topics.origin
    from topics.origin import TopicsOrigin

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TAPEFLOW_WAREHOUSE", f"chdb://{tmp_path}/wh")
    monkeypatch.setenv("APCA_API_KEY_ID", FAKE_KEY_ID)
    monkeypatch.setenv("APCA_API_SECRET_KEY", FAKE_SECRET)
    monkeypatch.setattr("os.nice", lambda n: None)  # the sink lowers its own priority, not the test's
    # the cluster a recovery folder is claimed for: no broker in a unit test
    monkeypatch.setattr(topics.origin, "current_origin", lambda *a, **k: TopicsOrigin(FLOW_ORIGIN_CLUSTER, {}))
    plan: dict = {}

    class Venue:
        def __init__(self, live):
            self.live = live

        def stop(self):
            pass

    monkeypatch.setattr(tapeflow.cli, "_start_alpaca_venue",
                        lambda settings, live, alerts=None, adopt=False: (Venue(live), None))

    class Dashboard:
        def __init__(self, wh, settings, control, port, run_id, brokers, prefix=""):
            self.url = f"http://127.0.0.1:{port}"
            plan.update(dashboard=(wh.url, port, run_id, brokers))

        def stop(self):
            pass

    monkeypatch.setattr(tapeflow.cli_dashboard, "serve_alongside_run", Dashboard)
    real_build = flows.split.build_stage_flow

    def build(stage, cfg, writer=None, progress=None, alerts=None, metrics=None, venue=None):
        plan.update(stage=stage, cfg=repr(cfg), venue=getattr(venue, "live", None),
                    writer=(getattr(writer, "run_id", None), getattr(getattr(writer, "_warehouse", None), "url", None)))
        return real_build(stage, cfg, writer, progress, alerts, metrics, venue)

    monkeypatch.setattr(flows.split, "build_stage_flow", build)
    import tapeflow.cli_sink

    # the consumer-group sink (--members): what it would run, instead of the Bytewax dataflow
    monkeypatch.setattr(tapeflow.cli_sink, "run_group_sink", lambda **kw: plan.update(group_sink=kw))
    monkeypatch.setattr(flows.pipeline, "run_flow",
                        lambda flow, epoch, recovery_dir=None, workers=1, addresses=None, process_id=0: plan.update(
                            recovery=str(recovery_dir), workers=workers, cluster=(addresses, process_id)))

    def run(args) -> tuple[int, str, dict | None]:
        plan.clear()
        args = [a.replace("{tmp}", str(tmp_path)) for a in args]
        done = CliRunner().invoke(app, ["flow", *args[:1], "--brokers", "127.0.0.1:1", *args[1:]])
        return done.exit_code, done.output, (dict(plan) if plan else None)

    return run


@pytest.fixture
def start_file(tmp_path) -> str:
    import json

    path = tmp_path / "run-start.json"
    path.write_text(json.dumps({"origin": {"cluster_id": "c", "topic_ids": {}}, "start_offsets": {"md.raw:0": 42}}))
    return str(path)


def test_every_flow_option_is_classified(registries, start_file):
    flow = typer.main.get_command(app).commands["flow"]
    assert options(flow) == set(flow_cases(*registries, start_file)), "classify the new option in FLOW_CASES"


@pytest.mark.parametrize("option", sorted(options(typer.main.get_command(app).commands["flow"])))
def test_flow_when_option_given_then_it_changes_the_stage_or_is_refused(option, registries, start_file, flow_plan):
    for case in flow_cases(*registries, start_file)[option]:
        code, output, plan = flow_plan(case.args)
        if isinstance(case, Refused):
            assert code != 0 and plan is None, f"{case.args} was not refused: {output}"
            assert case.reason in output, output
            continue
        assert code == 0 and plan, f"{case.args}: {output}"
        base_code, base_output, base = flow_plan(case.base)
        assert base_code == 0, base_output
        assert plan != base, f"{case.args} changed nothing in the stage"


def test_flow_when_recovery_folder_of_another_cluster_then_refused_naming_it_and_how_to_start_fresh(
        flow_plan, tmp_path):
    import json

    from topics.origin import ORIGIN_FILE

    folder = tmp_path / "rec" / "market"
    folder.mkdir(parents=True)
    (folder / ORIGIN_FILE).write_text(json.dumps({"cluster_id": "another", "topic_ids": {}}))
    code, output, plan = flow_plan(("market", "--recovery-dir", str(folder)))
    assert code == 2 and plan is None
    assert str(folder) in output and "cluster another" in output and "--run-id" in output
    (folder / ORIGIN_FILE).write_text(json.dumps({"cluster_id": FLOW_ORIGIN_CLUSTER, "topic_ids": {}}))
    code, output, plan = flow_plan(("market", "--recovery-dir", str(folder)))
    assert code == 0 and plan["recovery"] == str(folder), output


@pytest.mark.parametrize("args, reason", [
    (("--prefix", "p1."), "needs --brokers"),
    (("--live",), "with --venue alpaca"),
    (("--no-trading", "--strategy", "lightgbm"), "--no-trading runs no signals"),
    (("--no-dashboard", "--dashboard-port", "6123"), "--no-dashboard serves none"),
    (("--strategy", "external:quix_example"), "the embedded run has no topics"),
])
def test_embedded_run_when_an_option_cannot_apply_then_refused_before_anything_runs(args, reason, tmp_path,
                                                                                   monkeypatch):
    monkeypatch.chdir(tmp_path)
    done = CliRunner().invoke(app, ["run", "--max-ticks", "10", *args])
    assert done.exit_code == 2 and reason in done.output, done.output
    assert not (tmp_path / "data").exists(), "nothing may run"
