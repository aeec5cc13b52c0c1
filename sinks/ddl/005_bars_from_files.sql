-- Bars replayed from a file carry what the file has: volume, VWAP, trade count and aggressor volumes
-- are NULL where the file has no such column (never a made-up value).
ALTER TABLE {db}.md_bars MODIFY COLUMN IF EXISTS volume Nullable(Float64);
ALTER TABLE {db}.md_bars MODIFY COLUMN IF EXISTS vwap Nullable(Float64);
ALTER TABLE {db}.md_bars MODIFY COLUMN IF EXISTS trade_count Nullable(Int64);
ALTER TABLE {db}.md_bars MODIFY COLUMN IF EXISTS buy_volume Nullable(Float64);
ALTER TABLE {db}.md_bars MODIFY COLUMN IF EXISTS sell_volume Nullable(Float64);
