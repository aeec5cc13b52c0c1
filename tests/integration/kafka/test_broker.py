"""The local broker: start, status, and the errors a developer meets (no java, no mvn, a taken
port, a broker that dies while starting)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tapeflow.broker import BrokerError, LocalBroker, broker_answers
from tapeflow.cli_kafka import kafka_app
from tests.kafka_fixtures import local_broker_possible

pytestmark = pytest.mark.integration

needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="java (17+) not on PATH")


def test_broker_status_when_session_broker_runs_then_ready_at_its_bootstrap(session_kafka):
    if session_kafka.local is None:
        pytest.skip(f"this session's Kafka comes from the {session_kafka.origin}, not a LocalBroker")
    broker: LocalBroker = session_kafka.local
    status = broker.status()
    assert status.running and status.ready
    assert status.bootstrap == session_kafka.bootstrap
    assert status.pid == int((broker.data_dir / "broker.pid").read_text())
    assert broker_answers(status.bootstrap)

    result = CliRunner().invoke(kafka_app, ["broker", "status", "--data-dir", str(broker.data_dir)])
    assert result.exit_code == 0, result.output
    assert f"broker ready at {status.bootstrap}" in result.output


def test_broker_when_session_broker_runs_then_its_collector_is_zgc_logging_to_its_folder(session_kafka):
    # a stop-the-world pause at the broker holds up every hop of tick -> order (tapeflow/broker.py)
    if session_kafka.local is None:
        pytest.skip(f"this session's Kafka comes from the {session_kafka.origin}, not a LocalBroker")
    broker: LocalBroker = session_kafka.local
    log = broker.gc_log_path.read_text()
    assert "Using The Z Garbage Collector" in log, log[:500]
    # the JVM stops at a safepoint at least once a second (GuaranteedSafepointInterval): the log reports each
    started = datetime.fromtimestamp(json.loads(broker.state_path.read_text())["started_at"], timezone.utc)
    pauses = broker.pauses_ms(started, datetime.now(timezone.utc))
    assert pauses and all(0 <= pause < 10_000 for pause in pauses), pauses[:20]
    assert "log.cleaner.dedupe.buffer.size=16777216" in broker.properties_path.read_text()
    # the whole heap is committed at start: -Xms as large as -Xmx
    command = Path(f"/proc/{broker.status().pid}/cmdline").read_bytes().split(b"\0")
    assert f"-Xms{broker.heap}".encode() in command and f"-Xmx{broker.heap}".encode() in command


def test_broker_status_when_folder_has_no_broker_then_stopped_and_exit_1(tmp_path):
    result = CliRunner().invoke(kafka_app, ["broker", "status", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "broker stopped" in result.output
    assert LocalBroker(tmp_path).stop() is False


def test_broker_start_when_java_missing_then_error_names_java_and_the_install_command(tmp_path):
    # a real `tapeflow broker start` in a subprocess whose PATH has no java (nor mvn)
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    env = {**os.environ, "PATH": str(empty_bin)}
    done = subprocess.run([sys.executable, "-m", "tapeflow.cli_kafka", "broker", "start", "--data-dir",
                           str(tmp_path / "kafka")], capture_output=True, text=True, env=env, timeout=60,
                          cwd=Path(__file__).resolve().parents[3])
    assert done.returncode == 2, done.stdout + done.stderr
    assert "`java` not found on PATH" in done.stderr
    assert "apt-get install openjdk-17-jre-headless maven" in done.stderr
    assert not (tmp_path / "kafka" / "broker.json").exists()


@needs_java
def test_broker_start_when_jars_not_cached_and_mvn_missing_then_error_names_mvn(tmp_path):
    no_mvn = lambda name: None if name == "mvn" else shutil.which(name)  # noqa: E731
    broker = LocalBroker(tmp_path / "kafka", cache_dir=tmp_path / "empty-cache", which=no_mvn, say=lambda _: None)
    with pytest.raises(BrokerError, match=r"`mvn` not found on PATH.*apt-get install openjdk-17-jre-headless maven"):
        broker.start()


@needs_java
def test_broker_start_when_port_taken_then_error_names_the_port(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(BrokerError, match=rf"port {port} on 127.0.0.1 is taken"):
            LocalBroker(tmp_path / "kafka", port=port, say=lambda _: None).start()
    assert not (tmp_path / "kafka" / "broker.json").exists()


def test_broker_start_when_broker_dies_while_starting_then_error_carries_its_log(tmp_path):
    possible, why_not = local_broker_possible()
    if not possible:
        pytest.skip(f"cannot start a local broker here: {why_not}")
    # storage formatted for another node: the broker refuses it and exits at once
    kraft = tmp_path / "kafka" / "kraft"
    kraft.mkdir(parents=True)
    (kraft / "meta.properties").write_text("version=1\nnode.id=7\ncluster.id=AAAAAAAAAAAAAAAAAAAAAA\n")
    broker = LocalBroker(tmp_path / "kafka", say=lambda _: None)
    with pytest.raises(BrokerError, match=r"exited during start") as err:
        broker.start(timeout_s=60)
    assert "Stored node id 7 doesn't match" in str(err.value)
    assert broker.status().running is False
