-- Idempotency keys of API requests (src/idempotency.rs): the first answer to a request sent
-- with an Idempotency-Key header, recorded in the transaction that did its work, so that a
-- retry with the same key gets that answer again instead of doing the work twice. A key is
-- unique within its scope (an organisation: "org:<id>"), which makes concurrent retries on any
-- backend record one answer; the scheduler deletes keys older than 24 hours.
CREATE TABLE idempotency_keys (
    id INTEGER PRIMARY KEY,
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status INTEGER NOT NULL,
    response TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    UNIQUE (scope, key)
);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys(created_at);
