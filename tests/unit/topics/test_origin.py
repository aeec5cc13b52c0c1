"""Recovery folders and their origin (cluster id, topic ids), and how `tapeflow lag` finds a run's stages."""

from __future__ import annotations

import json
import os

import pytest

from tapeflow.split_run import run_folder, stage_folders
from topics.origin import ORIGIN_FILE, StaleRecovery, TopicsOrigin, claim, read_start_offsets

HERE = TopicsOrigin("cluster-a", {"p.md.raw": "id-1", "p.signals": "id-2"})


def test_origin_when_same_cluster_and_topics_then_no_mismatch_else_the_reason_names_what_changed():
    assert HERE.mismatch(TopicsOrigin("cluster-a", {"p.md.raw": "id-1", "p.signals": "id-2", "p.new": "x"})) is None
    assert "cluster cluster-a" in HERE.mismatch(TopicsOrigin("cluster-b", HERE.topic_ids))
    reason = HERE.mismatch(TopicsOrigin("cluster-a", {"p.md.raw": "id-9", "p.signals": "id-2"}))
    assert "topic p.md.raw" in reason and "deleted and created again" in reason
    assert "p.signals" in HERE.mismatch(TopicsOrigin("cluster-a", {"p.md.raw": "id-1"}))  # deleted since


def test_claim_when_new_folder_then_origin_recorded_and_the_same_origin_resumes(tmp_path):
    folder = tmp_path / "run" / "market"
    claim(folder, HERE)
    assert json.loads((folder / ORIGIN_FILE).read_text())["cluster_id"] == "cluster-a"
    claim(folder, HERE)  # a restart on the same cluster and topics
    with pytest.raises(StaleRecovery, match=f"{folder}.*new --run-id.*rm -r {folder}"):
        claim(folder, TopicsOrigin("cluster-b", HERE.topic_ids))


def test_claim_when_snapshot_without_recorded_origin_then_refused(tmp_path):
    (tmp_path / "part-0.sqlite3").write_bytes(b"")
    with pytest.raises(StaleRecovery, match="records no Kafka cluster"):
        claim(tmp_path, HERE)


def test_start_offsets_when_read_then_by_topic_and_partition(tmp_path):
    path = tmp_path / "run-start.json"
    path.write_text(json.dumps({"origin": HERE.to_dict(), "start_offsets": {"p.md.raw:0": 5, "p.md.raw:3": 7}}))
    assert read_start_offsets(path) == {("p.md.raw", 0): 5, ("p.md.raw", 3): 7}


def _stage(folder, mtime: float):
    folder.mkdir(parents=True)
    store = folder / "part-0.sqlite3"
    store.write_bytes(b"")
    os.utime(store, (mtime, mtime))


def test_stage_folders_when_several_runs_then_the_named_run_or_the_one_written_last(tmp_path):
    for stage in ("market", "sink"):
        _stage(run_folder(tmp_path, "", "old") / stage, 1_000)
        _stage(run_folder(tmp_path, "p.", "new") / stage, 2_000)
    folder, stages = stage_folders(tmp_path)
    assert folder == tmp_path / "p." / "new" and set(stages) == {"market", "sink"}
    assert stage_folders(tmp_path, prefix="", run_id="old")[0] == tmp_path / "default" / "old"
    assert stage_folders(tmp_path, prefix="default")[0] == tmp_path / "default" / "old"
    flat = tmp_path / "compose"
    _stage(flat / "trading", 3_000)  # one stack's volumes, right under the root
    assert stage_folders(flat) == (flat, {"trading": flat / "trading"})


def test_origin_when_the_broker_answers_late_then_asked_again_and_returned(monkeypatch):
    import topics.origin as origin

    answers = [TimeoutError(), TimeoutError(), HERE]

    def current_origin(bootstrap, prefix, timeout_s):
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(origin, "current_origin", current_origin)
    monkeypatch.setattr(origin.time, "sleep", lambda s: None)
    said: list[str] = []
    assert origin.current_origin_when_reachable("127.0.0.1:9092", "p.", log=said.append) == HERE
    assert len(said) == 2 and all("Kafka at 127.0.0.1:9092 did not describe its cluster" in s for s in said)


def test_origin_when_no_broker_answers_then_timeout_error_names_the_broker_and_what_to_check():
    from topics.origin import current_origin_when_reachable

    said: list[str] = []
    with pytest.raises(TimeoutError, match=r"Kafka at 127.0.0.1:1 did not describe .* within 2.5 s .*is the broker up"):
        current_origin_when_reachable("127.0.0.1:1", "p.", wait_s=2.5, timeout_s=1.0, log=said.append)
    assert said, "each attempt that failed is said"
