-- Merges of the market tables run column by column (the vertical algorithm) from the first row on.
-- A horizontal merge reads every column of every part it merges at once, and in the embedded
-- pipeline two of them held up to 144 MiB beside the dataflow: a 300 s replay peaked at 1,190 MiB,
-- 889 MiB with this (same throughput, a sixth less merge CPU). The defaults wait for 131,072 rows
-- and 11 columns, so most merges of these tables ran horizontally.
ALTER TABLE {db}.md_raw MODIFY SETTING vertical_merge_algorithm_min_rows_to_activate = 1, vertical_merge_algorithm_min_columns_to_activate = 1;
ALTER TABLE {db}.md_trades MODIFY SETTING vertical_merge_algorithm_min_rows_to_activate = 1, vertical_merge_algorithm_min_columns_to_activate = 1;
ALTER TABLE {db}.md_quotes MODIFY SETTING vertical_merge_algorithm_min_rows_to_activate = 1, vertical_merge_algorithm_min_columns_to_activate = 1;
ALTER TABLE {db}.md_bars MODIFY SETTING vertical_merge_algorithm_min_rows_to_activate = 1, vertical_merge_algorithm_min_columns_to_activate = 1;
ALTER TABLE {db}.features MODIFY SETTING vertical_merge_algorithm_min_rows_to_activate = 1, vertical_merge_algorithm_min_columns_to_activate = 1;
