ALTER TABLE dataset_columns DROP COLUMN max_value;
ALTER TABLE dataset_columns DROP COLUMN min_value;
