"""The local broker's KRaft cluster id."""

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
