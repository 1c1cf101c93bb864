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

-- Added by the admission workflow (the columns above keep their meaning).

-- The applicant's details as they were when it last saved the application, the evidence of the
-- four requirement groups, the declaration, the working-day deadlines and the decision's reasons.
ALTER TABLE applications ADD COLUMN org_name TEXT NOT NULL DEFAULT '';
ALTER TABLE applications ADD COLUMN credit_code TEXT NOT NULL DEFAULT '';
ALTER TABLE applications ADD COLUMN legal_representative TEXT NOT NULL DEFAULT '';
ALTER TABLE applications ADD COLUMN contact_name TEXT NOT NULL DEFAULT '';
ALTER TABLE applications ADD COLUMN contact_phone TEXT NOT NULL DEFAULT '';
ALTER TABLE applications ADD COLUMN address TEXT NOT NULL DEFAULT '';
ALTER TABLE applications ADD COLUMN evidence_basic TEXT NOT NULL DEFAULT '';
ALTER TABLE applications ADD COLUMN evidence_technical TEXT NOT NULL DEFAULT '';
ALTER TABLE applications ADD COLUMN evidence_scenario TEXT NOT NULL DEFAULT '';
ALTER TABLE applications ADD COLUMN evidence_domain TEXT NOT NULL DEFAULT '';
ALTER TABLE applications ADD COLUMN declared BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE applications ADD COLUMN review_due_on DATE;
ALTER TABLE applications ADD COLUMN notice_ends_on DATE;
ALTER TABLE applications ADD COLUMN decision_reasons TEXT NOT NULL DEFAULT '';
ALTER TABLE applications ADD COLUMN admitted_at TIMESTAMP;

-- Every transition of an application, with who, when and the message that came with it
-- (what is missing, reasons for a rejection, an objection's outcome).
CREATE TABLE application_events (
    id BIGSERIAL PRIMARY KEY,
    application_id BIGINT NOT NULL REFERENCES applications(id),
    at TIMESTAMP NOT NULL,
    actor_user_id BIGINT REFERENCES users(id),
    actor_name TEXT NOT NULL,
    action TEXT NOT NULL,
    from_state TEXT NOT NULL,
    to_state TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT ''
);
CREATE INDEX application_events_app ON application_events(application_id);

-- Evidence files (PDF, PNG, JPEG), stored under <data_dir>/attachments.
CREATE TABLE application_attachments (
    id BIGSERIAL PRIMARY KEY,
    application_id BIGINT NOT NULL REFERENCES applications(id),
    evidence_group TEXT NOT NULL,
    file_name TEXT NOT NULL,
    content_type TEXT NOT NULL,
    byte_count BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    storage_path TEXT NOT NULL,
    uploaded_by BIGINT NOT NULL REFERENCES users(id),
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX application_attachments_app ON application_attachments(application_id);

-- Experts assigned to an application and their opinions.
CREATE TABLE expert_assignments (
    id BIGSERIAL PRIMARY KEY,
    application_id BIGINT NOT NULL REFERENCES applications(id),
    expert_user_id BIGINT NOT NULL REFERENCES users(id),
    state TEXT NOT NULL,
    assigned_by BIGINT NOT NULL REFERENCES users(id),
    assigned_at TIMESTAMP NOT NULL,
    due_on DATE NOT NULL,
    recommendation TEXT NOT NULL DEFAULT '',
    opinion TEXT NOT NULL DEFAULT '',
    filed_at TIMESTAMP
);
CREATE INDEX expert_assignments_app ON expert_assignments(application_id);
CREATE INDEX expert_assignments_expert ON expert_assignments(expert_user_id);

-- Objections filed by the public during an application's notice period.
CREATE TABLE objections (
    id BIGSERIAL PRIMARY KEY,
    application_id BIGINT NOT NULL REFERENCES applications(id),
    name TEXT NOT NULL,
    contact TEXT NOT NULL,
    grounds TEXT NOT NULL,
    state TEXT NOT NULL,
    source_addr TEXT NOT NULL,
    filed_at TIMESTAMP NOT NULL,
    due_on DATE NOT NULL,
    decided_by BIGINT REFERENCES users(id),
    decided_at TIMESTAMP,
    reasons TEXT NOT NULL DEFAULT ''
);
CREATE INDEX objections_app ON objections(application_id);
CREATE INDEX objections_addr ON objections(source_addr, filed_at);
