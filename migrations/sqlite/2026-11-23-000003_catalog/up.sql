-- The data catalog: datasets, their schema columns and their immutable versions.
CREATE TABLE datasets (
    id INTEGER PRIMARY KEY,
    provider_org_id BIGINT NOT NULL REFERENCES organisations(id),
    title_zh TEXT NOT NULL,
    title_en TEXT NOT NULL,
    description_zh TEXT NOT NULL DEFAULT '',
    description_en TEXT NOT NULL DEFAULT '',
    category TEXT NOT NULL,
    grade INTEGER NOT NULL,
    open_type TEXT NOT NULL,
    sharing_type TEXT NOT NULL,
    update_frequency TEXT NOT NULL,
    source TEXT NOT NULL DEFAULT '',
    contact TEXT NOT NULL DEFAULT '',
    created_by BIGINT NOT NULL REFERENCES users(id),
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE INDEX datasets_provider ON datasets(provider_org_id);
CREATE INDEX datasets_category ON datasets(category);

CREATE TABLE dataset_columns (
    id INTEGER PRIMARY KEY,
    dataset_id BIGINT NOT NULL REFERENCES datasets(id),
    position INTEGER NOT NULL,
    name TEXT NOT NULL,
    label_zh TEXT NOT NULL DEFAULT '',
    label_en TEXT NOT NULL DEFAULT '',
    col_type TEXT NOT NULL,
    scale INTEGER NOT NULL DEFAULT 0,
    max_length INTEGER NOT NULL DEFAULT 1000,
    codes TEXT NOT NULL DEFAULT '[]',
    role TEXT NOT NULL,
    nullable BOOLEAN NOT NULL DEFAULT FALSE,
    UNIQUE (dataset_id, name)
);
CREATE INDEX dataset_columns_dataset ON dataset_columns(dataset_id, position);

CREATE TABLE dataset_versions (
    id INTEGER PRIMARY KEY,
    dataset_id BIGINT NOT NULL REFERENCES datasets(id),
    version_no INTEGER NOT NULL,
    row_count BIGINT NOT NULL,
    byte_count BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    storage_path TEXT NOT NULL,
    uploaded_by BIGINT NOT NULL REFERENCES users(id),
    created_at TIMESTAMP NOT NULL,
    UNIQUE (dataset_id, version_no)
);
