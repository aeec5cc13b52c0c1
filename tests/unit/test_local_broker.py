"""The local broker: its KRaft cluster id and its thread sizing."""

import base64
import uuid

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
