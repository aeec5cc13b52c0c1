"""The local broker: its KRaft cluster id, its thread sizing and the pauses its GC log reports."""

import base64
import uuid
from datetime import datetime, timezone

from tapeflow import broker


def test_cluster_id_when_random_bytes_encode_with_a_leading_dash_then_drawn_again(monkeypatch):
    # 0xf8 encodes to a leading "-" in URL-safe base64: the storage tool would read it as an option
    dashed, plain = uuid.UUID(bytes=b"\xf8" + b"\x00" * 15), uuid.UUID(bytes=b"\x10" * 16)
    draws = iter([dashed, plain])
    monkeypatch.setattr(broker.uuid, "uuid4", lambda: next(draws))
    cluster_id = broker.kafka_cluster_id()
    assert cluster_id == base64.urlsafe_b64encode(plain.bytes).decode().rstrip("=")
    assert len(cluster_id) == 22 and not cluster_id.startswith("-")


def test_request_threads_when_few_cores_then_fewer_threads_than_kafkas_server_defaults():
    assert broker.request_threads(2) == {"num.network.threads": "1", "num.io.threads": "2"}
    assert broker.request_threads(1) == {"num.network.threads": "1", "num.io.threads": "2"}


def test_request_threads_when_many_cores_then_kafkas_server_defaults():
    assert broker.request_threads(16) == {"num.network.threads": "3", "num.io.threads": "8"}


# lines as Java 17 writes them with -Xlog:gc,safepoint and the time,uptime decorations
GC_LOG_LINES = """\
[2026-12-06T15:21:33.577+0000][0.059s] Using The Z Garbage Collector
[2026-12-06T15:21:40.100+0000][6.582s] Safepoint "Cleanup", Time since last: 1000171245 ns, Reaching safepoint: 81217 ns, Cleanup: 2035 ns, At safepoint: 21590 ns, Total: 104842 ns
[2026-12-06T15:21:41.250+0000][7.732s] GC(3) Garbage Collection (Allocation Rate) 448M(88%)->88M(17%)
[2026-12-06T15:21:41.300+0000][7.782s] Safepoint "ZMarkStart", Time since last: 1200000000 ns, Reaching safepoint: 5000000 ns, Cleanup: 0 ns, At safepoint: 120000 ns, Total: 5120000 ns
[2026-12-06T15:21:45.000+0000][11.482s] Safepoint "Cleanup", Time since last: 3700000000 ns, Reaching safepoint: 100 ns, Cleanup: 0 ns, At safepoint: 100 ns, Total: 200 ns
"""


def test_safepoint_pauses_when_gc_log_read_then_each_pause_inside_the_window_in_ms(tmp_path):
    log = tmp_path / "gc.log"
    log.write_text(GC_LOG_LINES)
    at = lambda s: datetime(2026, 12, 6, 15, 21, s, tzinfo=timezone.utc)  # noqa: E731
    assert broker.safepoint_pauses_ms([log], at(35), at(42)) == [0.104842, 5.12]
    assert broker.safepoint_pauses_ms([log], at(41), at(50)) == [5.12, 0.0002]
    assert broker.safepoint_pauses_ms([log], at(46), at(50)) == []
