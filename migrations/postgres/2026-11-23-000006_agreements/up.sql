-- Agreements (DOMAIN.md "Agreements"; Hangzhou points 5, 8, 9): authorized-operation agreements
-- drafted from admitted applications, their datasets, rectification orders and the operator's
-- requests to end early. Decimals are TEXT holding the canonical rust_decimal string.

CREATE TABLE agreements (
    id BIGSERIAL PRIMARY KEY,
    number TEXT NOT NULL UNIQUE,
    version INTEGER NOT NULL,
    previous_id BIGINT REFERENCES agreements(id),
    application_id BIGINT NOT NULL REFERENCES applications(id),
    regulator_org_id BIGINT NOT NULL REFERENCES organisations(id),
    regulator_name TEXT NOT NULL,
    operator_org_id BIGINT NOT NULL REFERENCES organisations(id),
    operator_name TEXT NOT NULL,
    operator_credit_code TEXT NOT NULL,
    state TEXT NOT NULL,
    purpose TEXT NOT NULL,
    scenario TEXT NOT NULL,
    security_measures TEXT NOT NULL,
    disposal TEXT NOT NULL,
    trial_months INTEGER NOT NULL,
    price_per_job TEXT,
    price_per_thousand_rows TEXT,
    split_platform TEXT NOT NULL,
    split_provider TEXT NOT NULL,
    split_operator TEXT NOT NULL,
    run_budget INTEGER NOT NULL,
    run_period TEXT NOT NULL,
    created_by BIGINT NOT NULL REFERENCES users(id),
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    starts_on DATE,
    ends_on DATE,
    expiry_warned_at TIMESTAMP
);
CREATE INDEX agreements_operator ON agreements(operator_org_id);
CREATE INDEX agreements_state ON agreements(state);
CREATE INDEX agreements_application ON agreements(application_id);

-- The signatures: the operator's, then the regulator's seal over the canonical text.
CREATE TABLE agreement_signatures (
    agreement_id BIGINT PRIMARY KEY REFERENCES agreements(id),
    operator_signed_by BIGINT NOT NULL REFERENCES users(id),
    operator_signed_name TEXT NOT NULL,
    operator_signed_at TIMESTAMP NOT NULL,
    sealed_by BIGINT REFERENCES users(id),
    sealed_at TIMESTAMP,
    canonical_sha256 TEXT,
    signature TEXT,
    public_key TEXT
);

-- How an agreement ended, and the operator's data-disposal confirmation.
CREATE TABLE agreement_exits (
    agreement_id BIGINT PRIMARY KEY REFERENCES agreements(id),
    reason TEXT NOT NULL,
    note TEXT NOT NULL,
    ended_by BIGINT REFERENCES users(id),
    ended_at TIMESTAMP NOT NULL,
    disposal_what TEXT,
    disposal_on DATE,
    disposal_by TEXT,
    disposal_filed_by BIGINT REFERENCES users(id),
    disposal_filed_at TIMESTAMP
);

-- The datasets an agreement covers, with the parties' names and the privacy budget as signed.
CREATE TABLE agreement_datasets (
    agreement_id BIGINT NOT NULL REFERENCES agreements(id),
    dataset_id BIGINT NOT NULL REFERENCES datasets(id),
    dataset_title TEXT NOT NULL,
    provider_org_id BIGINT NOT NULL REFERENCES organisations(id),
    provider_name TEXT NOT NULL,
    epsilon TEXT NOT NULL,
    PRIMARY KEY (agreement_id, dataset_id)
);
CREATE INDEX agreement_datasets_dataset ON agreement_datasets(dataset_id);

-- Rectification orders (责令限期改正) and the operator's answers.
CREATE TABLE rectifications (
    id BIGSERIAL PRIMARY KEY,
    agreement_id BIGINT NOT NULL REFERENCES agreements(id),
    state TEXT NOT NULL,
    order_text TEXT NOT NULL,
    working_days INTEGER NOT NULL,
    due_on DATE NOT NULL,
    ordered_by BIGINT NOT NULL REFERENCES users(id),
    ordered_at TIMESTAMP NOT NULL,
    answer TEXT,
    answered_by BIGINT REFERENCES users(id),
    answered_at TIMESTAMP,
    decision_note TEXT NOT NULL DEFAULT '',
    decided_by BIGINT REFERENCES users(id),
    decided_at TIMESTAMP
);
CREATE INDEX rectifications_agreement ON rectifications(agreement_id);

-- The operator's requests to end an agreement early, and the regulator's decisions.
CREATE TABLE termination_requests (
    id BIGSERIAL PRIMARY KEY,
    agreement_id BIGINT NOT NULL REFERENCES agreements(id),
    state TEXT NOT NULL,
    reason TEXT NOT NULL,
    requested_by BIGINT NOT NULL REFERENCES users(id),
    requested_at TIMESTAMP NOT NULL,
    decision_note TEXT NOT NULL DEFAULT '',
    decided_by BIGINT REFERENCES users(id),
    decided_at TIMESTAMP
);
CREATE INDEX termination_requests_agreement ON termination_requests(agreement_id);
