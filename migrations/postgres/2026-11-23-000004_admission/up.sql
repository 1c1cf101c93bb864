-- Admission (DOMAIN.md "Admission and exit", steps 1-4): the working-day calendar, calls,
-- applications and their requested datasets, and organisations' credit records.

-- Exceptions to the weekday rule: public holidays and make-up working days.
CREATE TABLE calendar_days (
    day DATE PRIMARY KEY,
    kind TEXT NOT NULL,
    name_zh TEXT NOT NULL DEFAULT '',
    name_en TEXT NOT NULL DEFAULT '',
    created_by BIGINT REFERENCES users(id),
    created_at TIMESTAMP NOT NULL
);

-- Calls for applications (发布通告).
CREATE TABLE calls (
    id BIGSERIAL PRIMARY KEY,
    domain TEXT NOT NULL,
    title_zh TEXT NOT NULL,
    title_en TEXT NOT NULL,
    body_zh TEXT NOT NULL DEFAULT '',
    body_en TEXT NOT NULL DEFAULT '',
    scenarios TEXT NOT NULL DEFAULT '',
    conditions TEXT NOT NULL DEFAULT '',
    opens_on DATE NOT NULL,
    closes_on DATE NOT NULL,
    state TEXT NOT NULL,
    created_by BIGINT NOT NULL REFERENCES users(id),
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    published_at TIMESTAMP
);

-- The datasets a call offers.
CREATE TABLE call_datasets (
    call_id BIGINT NOT NULL REFERENCES calls(id),
    dataset_id BIGINT NOT NULL REFERENCES datasets(id),
    PRIMARY KEY (call_id, dataset_id)
);

-- Applications (提交申请) from enterprises against a call.
CREATE TABLE applications (
    id BIGSERIAL PRIMARY KEY,
    call_id BIGINT NOT NULL REFERENCES calls(id),
    org_id BIGINT NOT NULL REFERENCES organisations(id),
    created_by BIGINT NOT NULL REFERENCES users(id),
    state TEXT NOT NULL,
    scenario TEXT NOT NULL DEFAULT '',
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    submitted_at TIMESTAMP,
    decided_at TIMESTAMP
);
CREATE INDEX applications_org ON applications(org_id);
CREATE INDEX applications_state ON applications(state);

-- The datasets an application asks for, each with its purpose.
CREATE TABLE application_datasets (
    application_id BIGINT NOT NULL REFERENCES applications(id),
    dataset_id BIGINT NOT NULL REFERENCES datasets(id),
    purpose TEXT NOT NULL,
    PRIMARY KEY (application_id, dataset_id)
);

-- An organisation's credit record (信用档案): breaches found by rectification orders and
-- terminations for violations (Hangzhou point 10).
CREATE TABLE credit_records (
    id BIGSERIAL PRIMARY KEY,
    org_id BIGINT NOT NULL REFERENCES organisations(id),
    kind TEXT NOT NULL,
    summary TEXT NOT NULL,
    agreement_id BIGINT,
    created_by BIGINT REFERENCES users(id),
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX credit_records_org ON credit_records(org_id);
