-- The consumer-group sink's batch log: before it inserts the rows of a batch of one topic partition,
-- the sink records the batch's offsets and its insert token here. A member that takes the partition
-- over after a crash (before the offsets were committed) cuts the same offsets into the same
-- batches under the same tokens, so ClickHouse drops the copies of what had landed (every table
-- keeps a deduplication window) and inserts what had not: nothing lost, nothing doubled, plain
-- MergeTree market data and the 1m OHLCV sums included. One row per batch; old rows expire.
CREATE TABLE IF NOT EXISTS {db}.sink_batches
(
    `consumer_group` String,
    `topic` LowCardinality(String),
    `partition` Int32,
    `first_offset` Int64,
    `last_offset` Int64,
    `token` String,
    `ts_logged` DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (consumer_group, topic, partition, first_offset)
TTL toDateTime(ts_logged) + INTERVAL 30 DAY
SETTINGS non_replicated_deduplication_window = 1000;
