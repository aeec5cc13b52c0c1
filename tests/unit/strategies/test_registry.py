"""The model registry: versions, checksums, the promotion gate, activation and rollback, the CLI."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from strategies.registry import ChecksumMismatch, GatePolicy, ModelRefused, ModelRegistry, RegistryError, gate_reasons
from tapeflow.cli_models import register as register_cli
from tests.unit.strategies.lgbm_models import metadata, registry_with, tiny_booster


@pytest.fixture(scope="module")
def boosters():
    return tiny_booster(seed=1), tiny_booster(seed=2)


def test_register_when_loaded_back_then_same_model_text_and_metadata_with_version_and_checksum(tmp_path, boosters):
    registry = registry_with(tmp_path, *boosters)
    assert registry.versions("lightgbm") == ["v1", "v2"]
    loaded = registry.load("lightgbm", "v2")
    assert loaded.model_text == boosters[1].model_to_string()
    assert loaded.metadata["version"] == "v2" and loaded.metadata["feature_names"][0] == "ret_1"
    assert (loaded.path / "CHECKSUM").read_text().strip()
    assert loaded.serving_model().predict(__import__("numpy").zeros((1, 17))).shape == (1,)


def test_versions_when_more_than_nine_then_ordered_by_number(tmp_path, boosters):
    registry = ModelRegistry(tmp_path)
    for _ in range(11):
        registry.register("m", "text", metadata())
    assert registry.versions("m")[-3:] == ["v9", "v10", "v11"]


@pytest.mark.parametrize("victim", ["model.txt", "metadata.json"])
def test_load_when_a_file_was_tampered_with_then_checksum_error_names_model_and_version(tmp_path, boosters, victim):
    registry = registry_with(tmp_path, boosters[0])
    path = tmp_path / "models" / "lightgbm" / "v1" / victim
    path.write_text(path.read_text().replace("0", "1", 1))
    with pytest.raises(ChecksumMismatch, match="lightgbm v1 .* fails its checksum"):
        registry.load("lightgbm", "v1")


def test_gate_when_feature_set_differs_then_refused_with_the_reason():
    reasons = gate_reasons(metadata(feature_set="v2"))
    assert len(reasons) == 1 and reasons[0].startswith("feature_set_mismatch") and "'v2'" in reasons[0]


def test_gate_when_column_order_differs_then_refused_with_the_reason():
    from schemas.feature_set import FEATURE_SET_V1

    swapped = (FEATURE_SET_V1[1], FEATURE_SET_V1[0], *FEATURE_SET_V1[2:])
    assert gate_reasons(metadata(feature_names=swapped))[0].startswith("feature_columns_mismatch")


def test_gate_when_ic_below_the_floor_then_refused_and_a_lower_floor_accepts():
    assert gate_reasons(metadata(ic=0.01)) == ["ic_below_floor: out-of-sample IC 0.0100 < floor 0.0200"]
    assert gate_reasons(metadata(ic=0.01), GatePolicy(ic_floor=0.005)) == []


def test_activate_when_gate_refuses_then_active_pointer_unchanged(tmp_path, boosters):
    registry = registry_with(tmp_path, *boosters, ics=[0.08, 0.0])
    registry.activate("lightgbm", "v1")
    with pytest.raises(ModelRefused, match="ic_below_floor"):
        registry.activate("lightgbm", "v2")
    assert registry.active("lightgbm") == "v1"


def test_rollback_when_v1_then_v2_active_then_v1_again_and_then_nothing_left(tmp_path, boosters):
    registry = registry_with(tmp_path, *boosters)
    registry.activate("lightgbm", "v1", "ops")
    registry.activate("lightgbm", "v2", "ops")
    assert registry.rollback("lightgbm", "ops").version == "v1"
    assert registry.active("lightgbm") == "v1"
    assert [(e["action"], e["version"], e["previous"]) for e in registry.history("lightgbm")] == [
        ("activate", "v1", None), ("activate", "v2", "v1"), ("rollback", "v1", "v2")]
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        registry.rollback("lightgbm")


def test_load_when_version_unknown_then_error_lists_the_known_ones(tmp_path, boosters):
    with pytest.raises(RegistryError, match=r"no version 'v7'.*versions: v1"):
        registry_with(tmp_path, boosters[0]).load("lightgbm", "v7")


def test_models_cli_when_list_show_activate_rollback_then_each_reports_and_refusals_fail(tmp_path, boosters, monkeypatch):
    monkeypatch.setenv("TAPEFLOW_CONTROL_PATH", str(tmp_path / "control.jsonl"))
    monkeypatch.delenv("TAPEFLOW_KAFKA_BOOTSTRAP", raising=False)  # it would route the notices to Kafka
    registry_with(tmp_path, *boosters, ics=[0.08, 0.09])
    ModelRegistry(tmp_path / "models").register("lightgbm", boosters[0].model_to_string(), metadata(ic=0.001))
    app = typer.Typer()
    app.command("noop")(lambda: None)
    register_cli(app)
    run = lambda *args: CliRunner().invoke(app, [*args, "--registry", str(tmp_path / "models")])  # noqa: E731
    assert run("models", "activate", "v1").exit_code == 0
    result = run("models", "activate", "v2")
    assert result.exit_code == 0 and "activated lightgbm v2" in result.output
    refused = run("models", "activate", "v3")
    assert refused.exit_code == 2 and "ic_below_floor" in refused.output
    listing = run("models", "list").output
    assert "* lightgbm v2" in listing and "  lightgbm v1" in listing
    shown = json.loads(run("models", "show", "v2").output)
    assert shown["metrics"]["overall"]["ic"] == 0.09
    back = run("models", "rollback")
    assert back.exit_code == 0 and "from v2 to v1" in back.output
    sent = [json.loads(line) for line in (tmp_path / "control.jsonl").read_text().splitlines()]
    assert [(c["kind"], c["name"]) for c in sent] == [("activate_model", "v1"), ("activate_model", "v2"),
                                                      ("activate_model", "v1")]
