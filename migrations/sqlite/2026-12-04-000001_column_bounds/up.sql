-- Bounds an integer column may declare (either may be absent): a CSV value outside them is
-- refused, naming its line and column.
ALTER TABLE dataset_columns ADD COLUMN min_value BIGINT;
ALTER TABLE dataset_columns ADD COLUMN max_value BIGINT;
