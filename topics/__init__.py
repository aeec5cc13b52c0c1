"""Topic catalog, serde and (later) Kafka admin."""
