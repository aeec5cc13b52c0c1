-- Market data: one table per topic (topics/catalog.py, dots -> underscores).
-- Times are DateTime64(9, 'UTC') from the records' int ns. run_id leads every key, so one run's rows
-- sit together and a query for one run prunes the rest.
-- Raw ticks, trades and quotes are plain MergeTree: they are the highest-volume tables and are never
-- summed as money. A retried insert is made safe by the writer's insert_deduplication_token, which
-- non_replicated_deduplication_window enables on a non-replicated table (and on the 1m OHLCV view fed
-- from md_trades).
-- Bars and features are ReplacingMergeTree on the record id: a replay of the same run rewrites the
-- same ids, and FINAL (or argMax) reads each bar once.

CREATE TABLE IF NOT EXISTS {db}.md_raw
(
    run_id LowCardinality(String),
    schema_version UInt16,
    id String,
    ts_event DateTime64(9, 'UTC'),
    ts_ingest DateTime64(9, 'UTC'),
    source LowCardinality(String),
    symbol LowCardinality(String),
    payload_format LowCardinality(String),
    payload String CODEC(ZSTD(3)),  -- the vendor message as JSON
    seq Int64,
    ts_written DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(ts_event)
ORDER BY (run_id, symbol, ts_event)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS {db}.md_trades
(
    run_id LowCardinality(String),
    schema_version UInt16,
    id String,
    ts_event DateTime64(9, 'UTC'),
    ts_ingest DateTime64(9, 'UTC'),
    symbol LowCardinality(String),
    price Float64,
    size Float64,
    aggressor LowCardinality(String),
    trade_id String,
    source LowCardinality(String),
    ts_tick_ingest DateTime64(9, 'UTC'),
    ts_written DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(ts_event)
ORDER BY (run_id, symbol, ts_event)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS {db}.md_quotes
(
    run_id LowCardinality(String),
    schema_version UInt16,
    id String,
    ts_event DateTime64(9, 'UTC'),
    ts_ingest DateTime64(9, 'UTC'),
    symbol LowCardinality(String),
    bid_price Float64,
    bid_size Float64,
    ask_price Float64,
    ask_size Float64,
    source LowCardinality(String),
    ts_tick_ingest DateTime64(9, 'UTC'),
    ts_written DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(ts_event)
ORDER BY (run_id, symbol, ts_event)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS {db}.md_bars
(
    run_id LowCardinality(String),
    schema_version UInt16,
    id String,
    ts_event DateTime64(9, 'UTC'),
    ts_ingest DateTime64(9, 'UTC'),
    symbol LowCardinality(String),
    interval LowCardinality(String),
    bar_start DateTime64(9, 'UTC'),
    bar_end DateTime64(9, 'UTC'),
    open Float64,
    high Float64,
    low Float64,
    close Float64,
    volume Float64,
    vwap Float64,
    trade_count Int64,
    buy_volume Float64,
    sell_volume Float64,
    ts_tick_ingest DateTime64(9, 'UTC'),
    ts_written DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts_event)
ORDER BY (run_id, symbol, ts_event, id)
SETTINGS non_replicated_deduplication_window = 1000;

-- FeatureVector.values expanded: one Float64 column per name of feature set v1, in its order
-- (flows/features.py FEATURE_SET_V1). A feature missing from a vector is NaN. A new feature set
-- needs a new migration that adds its columns.
CREATE TABLE IF NOT EXISTS {db}.features
(
    run_id LowCardinality(String),
    schema_version UInt16,
    id String,
    ts_event DateTime64(9, 'UTC'),
    ts_ingest DateTime64(9, 'UTC'),
    symbol LowCardinality(String),
    interval LowCardinality(String),
    feature_set LowCardinality(String),
    bar_end DateTime64(9, 'UTC'),
    close Float64,
    ret_1 Float64,
    ret_5 Float64,
    ret_15 Float64,
    rv_20 Float64,
    rsi_14 Float64,
    macd Float64,
    macd_signal Float64,
    macd_hist Float64,
    bb_pctb_20 Float64,
    vwap_dev Float64,
    volume_z_20 Float64,
    imbalance_1 Float64,
    imbalance_5 Float64,
    hl_range Float64,
    kbar_body Float64,
    kbar_upper Float64,
    kbar_lower Float64,
    ts_tick_ingest DateTime64(9, 'UTC'),
    ts_written DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts_event)
ORDER BY (run_id, symbol, ts_event, id)
SETTINGS non_replicated_deduplication_window = 1000;

-- Records a stage refused. Kept per run and source topic; ids are deterministic, so a retried
-- insert reads once under FINAL.
CREATE TABLE IF NOT EXISTS {db}.dlq
(
    run_id LowCardinality(String),
    schema_version UInt16,
    id String,
    ts_event DateTime64(9, 'UTC'),
    ts_ingest DateTime64(9, 'UTC'),
    source_topic LowCardinality(String),
    stage LowCardinality(String),
    reason LowCardinality(String),
    detail String,
    symbol LowCardinality(String),
    payload String CODEC(ZSTD(3)),
    ts_written DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts_event)
ORDER BY (run_id, source_topic, ts_event, id)
SETTINGS non_replicated_deduplication_window = 1000;
