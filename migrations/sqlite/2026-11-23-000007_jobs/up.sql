-- Computation jobs (issue 5; DOMAIN.md "Processing, products and use"): staff training, module
-- blobs pinned by sha256, computations (an approved module and manifest per operator), runs
-- queued for workers with leases, their released output, metering, the privacy-budget ledger
-- and usage reports. Decimals are TEXT holding the canonical rust_decimal string.

-- Staff training (人员培训) recorded by the platform admin; only members with current training
-- may submit jobs.
CREATE TABLE trainings (
    id INTEGER PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users(id),
    course TEXT NOT NULL,
    trained_on DATE NOT NULL,
    expires_on DATE NOT NULL,
    recorded_by BIGINT NOT NULL REFERENCES users(id),
    recorded_at TIMESTAMP NOT NULL
);
CREATE INDEX trainings_user ON trainings(user_id);

-- Module bytes are kept in the data dir at `modules/<sha256>.wasm`; this is their index.
CREATE TABLE job_modules (
    sha256 TEXT PRIMARY KEY,
    size BIGINT NOT NULL,
    imports TEXT NOT NULL,
    exports TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);

-- A computation: one operator's module (pinned by hash) with its manifest and purpose under an
-- agreement, approved once by the reviewer.
CREATE TABLE computations (
    id INTEGER PRIMARY KEY,
    org_id BIGINT NOT NULL REFERENCES organisations(id),
    agreement_id BIGINT NOT NULL REFERENCES agreements(id),
    module_sha256 TEXT NOT NULL REFERENCES job_modules(sha256),
    manifest TEXT NOT NULL,
    manifest_sha256 TEXT NOT NULL,
    name TEXT NOT NULL,
    bindings TEXT NOT NULL,
    purpose TEXT NOT NULL,
    epsilon TEXT NOT NULL,
    state TEXT NOT NULL,
    differs_from TEXT,
    submitted_by BIGINT NOT NULL REFERENCES users(id),
    submitted_at TIMESTAMP NOT NULL,
    reviewed_by BIGINT REFERENCES users(id),
    reviewed_at TIMESTAMP,
    review_note TEXT NOT NULL DEFAULT ''
);
CREATE INDEX computations_org ON computations(org_id);
CREATE INDEX computations_pin ON computations(org_id, module_sha256, manifest_sha256);

-- Runs of computations: the queue. A worker claims a queued run (or one whose lease expired)
-- and renews its lease while it runs.
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY,
    computation_id BIGINT NOT NULL REFERENCES computations(id),
    org_id BIGINT NOT NULL REFERENCES organisations(id),
    submitted_by BIGINT NOT NULL REFERENCES users(id),
    purpose TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    queued_at TIMESTAMP,
    started_at TIMESTAMP,
    finished_at TIMESTAMP,
    lease_owner TEXT,
    lease_expires_at TIMESTAMP,
    attempts INTEGER NOT NULL DEFAULT 0,
    rows_done BIGINT NOT NULL DEFAULT 0,
    rows_total BIGINT NOT NULL DEFAULT 0,
    versions TEXT NOT NULL DEFAULT '[]',
    outcome TEXT NOT NULL DEFAULT '',
    reason TEXT NOT NULL DEFAULT '',
    report TEXT,
    output TEXT,
    guest_log TEXT,
    decided_by BIGINT REFERENCES users(id),
    decided_at TIMESTAMP,
    decision_note TEXT NOT NULL DEFAULT ''
);
CREATE INDEX jobs_state ON jobs(state, id);
CREATE INDEX jobs_org ON jobs(org_id);
CREATE INDEX jobs_computation ON jobs(computation_id);

-- The released files of a run, with their provenance and the platform's signature over each
-- file's sha256.
CREATE TABLE job_releases (
    job_id BIGINT PRIMARY KEY REFERENCES jobs(id),
    json_body TEXT NOT NULL,
    json_sha256 TEXT NOT NULL,
    json_signature TEXT NOT NULL,
    csv_body TEXT NOT NULL,
    csv_sha256 TEXT NOT NULL,
    csv_signature TEXT NOT NULL,
    public_key TEXT NOT NULL,
    released_at TIMESTAMP NOT NULL
);

-- Metering for revenue: rows read per dataset version and the agreement's prices at the time.
CREATE TABLE job_meters (
    id INTEGER PRIMARY KEY,
    job_id BIGINT NOT NULL REFERENCES jobs(id),
    agreement_id BIGINT NOT NULL REFERENCES agreements(id),
    dataset_id BIGINT NOT NULL REFERENCES datasets(id),
    version_id BIGINT NOT NULL REFERENCES dataset_versions(id),
    rows_read BIGINT NOT NULL,
    price_per_job TEXT,
    price_per_thousand_rows TEXT,
    recorded_at TIMESTAMP NOT NULL
);
CREATE INDEX job_meters_job ON job_meters(job_id);
CREATE INDEX job_meters_agreement ON job_meters(agreement_id);

-- The privacy budget ledger: epsilon debited per operator and dataset when a DP run is released.
CREATE TABLE budget_debits (
    id INTEGER PRIMARY KEY,
    org_id BIGINT NOT NULL REFERENCES organisations(id),
    agreement_id BIGINT NOT NULL REFERENCES agreements(id),
    dataset_id BIGINT NOT NULL REFERENCES datasets(id),
    job_id BIGINT NOT NULL REFERENCES jobs(id),
    epsilon TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX budget_debits_org_dataset ON budget_debits(org_id, dataset_id);

-- How the operator used a released output (反馈数据使用情况).
CREATE TABLE usage_reports (
    job_id BIGINT PRIMARY KEY REFERENCES jobs(id),
    org_id BIGINT NOT NULL REFERENCES organisations(id),
    body TEXT NOT NULL,
    filed_by BIGINT NOT NULL REFERENCES users(id),
    filed_at TIMESTAMP NOT NULL
);
