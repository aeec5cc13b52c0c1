-- Signal.section_size and section_seq: how many signals its bar's cross-section holds and which
-- cross-section it is, so the split topology's trading flow can reassemble complete cross-sections
-- in order from signals spread over several partitions.
ALTER TABLE {db}.signals ADD COLUMN IF NOT EXISTS section_size Int64 AFTER ts_tick_ingest;
ALTER TABLE {db}.signals ADD COLUMN IF NOT EXISTS section_seq Int64 AFTER section_size;
