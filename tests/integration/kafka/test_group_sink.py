"""The warehouse sink as a Quix Streams consumer group, over the real broker and chDB."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from sinks.group_sink import SinkMembers, sink_group
from tests.integration.embedded_runs import table_content
from tests.integration.kafka.split_runs import MARKET, MONEY, publish_tape, run_stages, sink_to, split_config, tape
from tests.kafka_fixtures import consume_messages, topic_message_count
from topics.admin import create_topics, delete_topics, topic_name
from topics.catalog import TOPICS
from topics.end_of_tape import FEED, end_of_tape_header, publish_end_of_tape
from topics.kafka_records import KafkaEndpoint
from dashboards.lag import consumer_lag
from topics.lag import group_lag
from topics.serde import WATERMARK_SCHEMA, schema_header
from topics.tape_watermark import read_tape_watermark

pytestmark = pytest.mark.integration

TICKS = 30_000
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def filled_topics(kafka_bootstrap):
    """Every catalog topic with a replayed tape's records in it (the upstream stages run once)."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    create_topics(kafka_bootstrap, prefix=prefix)
    try:
        cfg = split_config(kafka_bootstrap, prefix, tape(TICKS))
        publish_tape(kafka_bootstrap, prefix, tape(TICKS))
        run_stages(cfg, ("market", "signals", "trading"))
        yield cfg
    finally:
        delete_topics(kafka_bootstrap, [topic_name(t.name, prefix) for t in TOPICS])


def records_per_table(bootstrap: str, prefix: str) -> dict[str, int]:
    """Messages per topic that are records (not stage or tape watermarks, nor end-of-tape markers), by
    warehouse table."""
    counts = {}
    for spec in TOPICS:
        total = topic_message_count(bootstrap, prefix + spec.name)
        messages = consume_messages(bootstrap, prefix + spec.name, total) if total else []
        counts[spec.table] = sum(1 for m in messages if schema_header(m.headers()) != WATERMARK_SCHEMA
                                 and end_of_tape_header(m.headers()) is None
                                 and read_tape_watermark(spec.name, m.headers(), m.value()) is None)
    return counts


def test_group_sink_when_two_members_share_a_chdb_warehouse_then_together_they_land_what_the_bytewax_sink_lands(
        filled_topics, module_warehouse, kafka_bootstrap):
    cfg = filled_topics
    sink_to(module_warehouse, cfg, "bytewax-sink")
    group = SinkMembers(module_warehouse, KafkaEndpoint((kafka_bootstrap,), cfg.endpoint.prefix), "quix-2", 2,
                        commit_interval_s=0.3, idle_stop_s=3.0)
    group.run()

    # Which member lands what depends on when each joins: on a loaded machine the first may drain these
    # small topics before the second is in the group. Both ran, and together they landed every message.
    assert len(group.sinks) == 2 and group.messages_landed > 0
    for table in MARKET + MONEY + ("md_raw", "dlq", "control"):
        assert table_content(module_warehouse, table, "quix-2") == table_content(module_warehouse, table, "bytewax-sink"), table
    expected = records_per_table(kafka_bootstrap, cfg.endpoint.prefix)
    for table, n in expected.items():  # every message once: counted without FINAL
        assert module_warehouse.query(f"SELECT count() FROM {table} WHERE run_id = 'quix-2'").scalar() == n, table
    assert expected["md_raw"] == TICKS and expected["orders_approved"] > 0, expected
    assert sum(r.lag for r in group_lag(kafka_bootstrap, group.group, cfg.endpoint.prefix)) == 0


SINK_ENV = {**os.environ, "TAPEFLOW_SINK_MAX_AGE_S": "0.2", "PYTHONPATH": str(ROOT)}


def start_sink(bootstrap: str, prefix: str, url: str, run_id: str, log: Path, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "tapeflow.cli", "flow", "sink", "--brokers", bootstrap, "--prefix", prefix,
               "--warehouse", url, "--run-id", run_id, "--members", "1", *extra]
    return subprocess.Popen(command, cwd=ROOT, env=SINK_ENV, stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def warehouse_report(path: Path, run_id: str) -> dict:
    """Row counts of a run per table, from a process of its own (chDB: one folder per process)."""
    script = (
        "import json, sys\n"
        "from sinks.warehouse import Warehouse\n"
        "from topics.catalog import TOPICS\n"
        "wh = Warehouse.connect(sys.argv[1])\n"
        "r = {'rows': {t.table: wh.query(f\"SELECT count() FROM {t.table} WHERE run_id = '{sys.argv[2]}'\").scalar() "
        "for t in TOPICS}}\n"
        "r['ohlcv_volume'] = wh.query(f\"SELECT sum(volume) FROM ohlcv_1m WHERE run_id = '{sys.argv[2]}'\").scalar()\n"
        "r['trade_volume'] = wh.query(f\"SELECT sum(size) FROM md_trades WHERE run_id = '{sys.argv[2]}'\").scalar()\n"
        "print(json.dumps(r))\n")
    out = subprocess.run([sys.executable, "-c", script, f"chdb://{path}", run_id], cwd=ROOT, env=SINK_ENV,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


RELANDED = "landed again under the token logged before"

# A sink member that kills itself -9 between two inserts of a checkpoint (its first batch landed, the
# rest logged only, nothing committed), once it has committed `after` checkpoints that landed rows and
# (with `after` > 0) has landed again a batch an earlier member logged: the window that a kill from
# outside hits only by chance (that took up to 16 tries and four minutes). Which partitions a member's
# first checkpoints hold depends on its fetches: in one loaded CI run the second member's first two
# held none of the first member's batches, and it died before reaching them. Its
# session with the group coordinator lasts 6 s (the broker's least), not the default 45 s for which the
# next member would wait for the dead one's partitions.
DIE_BETWEEN_INSERTS = (
    "import os, signal, sys\n"
    "from sinks import group_sink\n"
    "group_sink.CLIENT_CONFIG = {**group_sink.CLIENT_CONFIG, 'session.timeout.ms': 6000}\n"
    "sink = group_sink.GroupWarehouseSink\n"
    "after, committed, landed, flush, land = int(sys.argv[1]), [0], [0], sink.flush, sink._land\n"
    "relanded = [after == 0]\n"
    "def counting_flush(self):\n"
    "    landed[0] = 0\n"
    "    flush(self)\n"
    "    committed[0] += landed[0] > 0\n"
    "def die_between_inserts(self, slot, span, *args):\n"
    "    print(f'test: landing {slot[0]}[{slot[1]}] {span.first_offset}-{span.last_offset} logged={span.logged}', flush=True)\n"
    "    if landed[0] == 1 and committed[0] >= after and relanded[0]:\n"
    "        print(f'test: killing myself -9 between inserts after {committed[0]} checkpoints', flush=True)\n"
    "        os.kill(os.getpid(), signal.SIGKILL)\n"
    "    land(self, slot, span, *args)\n"
    "    landed[0] += 1\n"
    "    relanded[0] = relanded[0] or span.logged\n"
    "sink.flush, sink._land = counting_flush, die_between_inserts\n"
    "from tapeflow.cli import app\n"
    "sys.argv = ['tapeflow', *sys.argv[2:]]\n"
    "app()\n")


def start_dying_sink(bootstrap: str, prefix: str, url: str, run_id: str, log: Path, after: int) -> subprocess.Popen:
    command = [sys.executable, "-c", DIE_BETWEEN_INSERTS, str(after), "flow", "sink", "--brokers", bootstrap,
               "--prefix", prefix, "--warehouse", url, "--run-id", run_id, "--members", "1"]
    return subprocess.Popen(command, cwd=ROOT, env=SINK_ENV, stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def test_group_sink_member_when_killed_9_mid_run_then_the_next_member_loses_and_doubles_nothing(
        filled_topics, kafka_bootstrap, tmp_path):
    """The first member dies -9 between the inserts of a checkpoint (a batch landed, the others logged
    only, nothing of it committed). The second lands the first one's batches again under their tokens,
    commits checkpoints of its own and dies likewise. Then the rest is drained and every record is in
    the warehouse exactly once."""
    prefix, run_id = filled_topics.endpoint.prefix, "quix-kill"
    url = f"chdb://{tmp_path / 'warehouse'}"
    log = tmp_path / "sink.log"
    group = sink_group(prefix, run_id)
    for after in (0, 2):
        member = start_dying_sink(kafka_bootstrap, prefix, url, run_id, log, after)
        assert member.wait(180) == -signal.SIGKILL, log.read_text()[-3000:]
        kills = re.findall(r"between inserts after (\d+) checkpoints", log.read_text())
        assert len(kills) == 1 + (after > 0) and int(kills[-1]) >= after, kills
        assert sum(r.lag for r in group_lag(kafka_bootstrap, group, prefix)) > 0, "drained before the kill"
        if after:  # the dashboard's System page lists the group (known by its commits) with what it has left
            shown = [r for r in consumer_lag(kafka_bootstrap, root=tmp_path) if r["group"] == group]
            assert sum(r["lag"] for r in shown) > 0, shown
    # the wrapper prints each batch it lands (logged: cut by an earlier member), so a miss says where
    committed = [(r.topic, r.partition, r.offset) for r in group_lag(kafka_bootstrap, group, prefix) if r.offset]
    assert RELANDED in log.read_text(), (log.read_text()[-6000:], committed)
    member = start_sink(kafka_bootstrap, prefix, url, run_id, log, "--until-end")
    assert member.wait(180) == 0, log.read_text()[-3000:]
    assert sum(r.lag for r in group_lag(kafka_bootstrap, group, prefix)) == 0
    shown = [r for r in consumer_lag(kafka_bootstrap, root=tmp_path) if r["group"] == group]
    assert {r["topic"] for r in shown} >= {prefix + "md.raw", prefix + "md.trades"}
    assert all(r["lag"] == 0 for r in shown), shown

    report = warehouse_report(tmp_path / "warehouse", run_id)
    assert report["rows"] == records_per_table(kafka_bootstrap, prefix), "every record exactly once"
    assert report["ohlcv_volume"] == pytest.approx(report["trade_volume"]), "the 1m OHLCV sums counted each trade once"


def test_group_sink_when_a_second_process_opens_the_same_chdb_folder_then_refused_with_the_reason(
        kafka_topics, tmp_path):
    url = f"chdb://{tmp_path / 'warehouse'}"
    kafka_bootstrap, prefix = kafka_topics.bootstrap, kafka_topics.prefix
    first = start_sink(kafka_bootstrap, prefix, url, "one", tmp_path / "first.log")
    try:
        deadline = time.monotonic() + 60
        while "consumer group" not in (tmp_path / "first.log").read_text():
            assert first.poll() is None and time.monotonic() < deadline, (tmp_path / "first.log").read_text()
            time.sleep(0.1)
        second = subprocess.run([sys.executable, "-m", "tapeflow.cli", "flow", "sink", "--brokers", kafka_bootstrap,
                                 "--prefix", prefix, "--warehouse", url, "--run-id", "one", "--members", "1"],
                                cwd=ROOT, env=SINK_ENV, capture_output=True, text=True, timeout=60)
    finally:
        os.killpg(first.pid, signal.SIGTERM)
        first.wait(30)
    assert second.returncode == 2
    assert "another sink process holds the chDB warehouse" in second.stderr and "--members" in second.stderr


def test_group_sink_when_the_feed_marks_the_end_of_tape_then_the_members_land_it_and_stop_by_themselves(
        kafka_topics, warehouse):
    """A run whose only stage after the feed is the sink: once the feed's markers are read on every
    md.raw partition (and the rows before them landed), the members stop without --until-end."""
    from confluent_kafka import Producer

    from feeds import make_feed
    from tests.integration.kafka.split_runs import publish_ticks

    bootstrap, prefix = kafka_topics.bootstrap, kafka_topics.prefix
    sent = publish_ticks(bootstrap, prefix, make_feed("synthetic", seed=4, max_ticks=2_000).ticks())
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    publish_end_of_tape(producer, ["md.raw"], "tape-4", FEED, stages=("sink",), prefix=prefix)
    wh = warehouse  # chDB opens one folder per process: the session's, on a database of this test's own
    from topics.end_of_tape import RunTapeEnds

    tape = RunTapeEnds()
    group = SinkMembers(wh, KafkaEndpoint((bootstrap,), prefix), "eot", 2, commit_interval_s=0.3, tape=tape)
    runner = threading.Thread(target=group.run, daemon=True)
    runner.start()
    runner.join(120)
    assert not runner.is_alive(), "the members did not stop at the end of the tape"
    assert tape.complete and tape.tape == "tape-4"
    assert wh.query("SELECT count(), uniqExact(id) FROM md_raw WHERE run_id = 'eot'").rows[0] == (sent, sent)
    assert sum(r.lag for r in group_lag(bootstrap, group.group, prefix)) == 0, "committed up to the markers"
