//! The one diesel schema, shared by both backends (hand-written, kept in step with the
//! migrations in `migrations/sqlite` and `migrations/postgres`). Each domain appends its tables
//! in its own section.

diesel::table! {
    /// Organisations: regulator, providers, the platform operator, enterprises, expert panels.
    organisations (id) {
        id -> BigInt,
        name -> Text,
        kind -> Text,
        credit_code -> Nullable<Text>,
        legal_representative -> Text,
        contact_name -> Text,
        contact_phone -> Text,
        address -> Text,
        business_scope -> Text,
        email -> Text,
        status -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    /// People who log in; each belongs to one organisation and has one role.
    users (id) {
        id -> BigInt,
        org_id -> BigInt,
        username -> Text,
        display_name -> Text,
        email -> Text,
        password_hash -> Text,
        role -> Text,
        status -> Text,
        created_at -> Timestamp,
        last_login_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    /// Server-side records of browser sessions and API tokens (revocable).
    sessions (id) {
        id -> Text,
        user_id -> BigInt,
        kind -> Text,
        label -> Text,
        source_addr -> Text,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        revoked_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    /// The hash-chained audit log.
    audit_log (id) {
        id -> BigInt,
        at -> Timestamp,
        actor_user_id -> Nullable<BigInt>,
        actor_name -> Text,
        org_id -> Nullable<BigInt>,
        action -> Text,
        object_type -> Text,
        object_id -> Text,
        source_addr -> Text,
        details -> Text,
        prev_hash -> Text,
        hash -> Text,
    }
}

diesel::joinable!(users -> organisations (org_id));
diesel::joinable!(sessions -> users (user_id));

// Catalog (migrations/*/2026-11-23-000003_catalog).

diesel::table! {
    /// Datasets described by providers in the catalog.
    datasets (id) {
        id -> BigInt,
        provider_org_id -> BigInt,
        title_zh -> Text,
        title_en -> Text,
        description_zh -> Text,
        description_en -> Text,
        category -> Text,
        grade -> Integer,
        open_type -> Text,
        sharing_type -> Text,
        update_frequency -> Text,
        source -> Text,
        contact -> Text,
        created_by -> BigInt,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    /// The declared columns of a dataset, in CSV order (`position`).
    dataset_columns (id) {
        id -> BigInt,
        dataset_id -> BigInt,
        position -> Integer,
        name -> Text,
        label_zh -> Text,
        label_en -> Text,
        col_type -> Text,
        scale -> Integer,
        max_length -> Integer,
        codes -> Text,
        role -> Text,
        nullable -> Bool,
        min_value -> Nullable<BigInt>,
        max_value -> Nullable<BigInt>,
    }
}

diesel::table! {
    /// Immutable uploaded versions of a dataset's data (stored columnar in the data dir).
    dataset_versions (id) {
        id -> BigInt,
        dataset_id -> BigInt,
        version_no -> Integer,
        row_count -> BigInt,
        byte_count -> BigInt,
        sha256 -> Text,
        storage_path -> Text,
        uploaded_by -> BigInt,
        created_at -> Timestamp,
        state -> Text,
        schema_no -> Integer,
        summary -> Text,
        decided_by -> Nullable<BigInt>,
        decided_at -> Nullable<Timestamp>,
    }
}

diesel::joinable!(datasets -> organisations (provider_org_id));
diesel::joinable!(dataset_columns -> datasets (dataset_id));
diesel::joinable!(dataset_versions -> datasets (dataset_id));
diesel::joinable!(dataset_versions -> users (uploaded_by));

// --- admission -------------------------------------------------------------------------

diesel::table! {
    /// Exceptions to the weekday rule: public holidays and make-up working days.
    calendar_days (day) {
        day -> Date,
        kind -> Text,
        name_zh -> Text,
        name_en -> Text,
        created_by -> Nullable<BigInt>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    /// Calls for applications (发布通告).
    calls (id) {
        id -> BigInt,
        domain -> Text,
        title_zh -> Text,
        title_en -> Text,
        body_zh -> Text,
        body_en -> Text,
        scenarios -> Text,
        conditions -> Text,
        opens_on -> Date,
        closes_on -> Date,
        state -> Text,
        created_by -> BigInt,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        published_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    /// The datasets a call offers.
    call_datasets (call_id, dataset_id) {
        call_id -> BigInt,
        dataset_id -> BigInt,
    }
}

diesel::table! {
    /// Applications (提交申请) from enterprises against a call.
    applications (id) {
        id -> BigInt,
        call_id -> BigInt,
        org_id -> BigInt,
        created_by -> BigInt,
        state -> Text,
        scenario -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        submitted_at -> Nullable<Timestamp>,
        decided_at -> Nullable<Timestamp>,
        org_name -> Text,
        credit_code -> Text,
        legal_representative -> Text,
        contact_name -> Text,
        contact_phone -> Text,
        address -> Text,
        evidence_basic -> Text,
        evidence_technical -> Text,
        evidence_scenario -> Text,
        evidence_domain -> Text,
        declared -> Bool,
        review_due_on -> Nullable<Date>,
        notice_ends_on -> Nullable<Date>,
        decision_reasons -> Text,
        admitted_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    /// The datasets an application asks for, each with its purpose.
    application_datasets (application_id, dataset_id) {
        application_id -> BigInt,
        dataset_id -> BigInt,
        purpose -> Text,
    }
}

diesel::table! {
    /// Organisations' credit records (信用档案).
    credit_records (id) {
        id -> BigInt,
        org_id -> BigInt,
        kind -> Text,
        summary -> Text,
        agreement_id -> Nullable<BigInt>,
        created_by -> Nullable<BigInt>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    /// Every transition of an application, with its message.
    application_events (id) {
        id -> BigInt,
        application_id -> BigInt,
        at -> Timestamp,
        actor_user_id -> Nullable<BigInt>,
        actor_name -> Text,
        action -> Text,
        from_state -> Text,
        to_state -> Text,
        message -> Text,
    }
}

diesel::table! {
    /// Evidence files of applications (stored under the data dir).
    application_attachments (id) {
        id -> BigInt,
        application_id -> BigInt,
        evidence_group -> Text,
        file_name -> Text,
        content_type -> Text,
        byte_count -> BigInt,
        sha256 -> Text,
        storage_path -> Text,
        uploaded_by -> BigInt,
        created_at -> Timestamp,
    }
}

diesel::table! {
    /// Experts assigned to applications and their opinions.
    expert_assignments (id) {
        id -> BigInt,
        application_id -> BigInt,
        expert_user_id -> BigInt,
        state -> Text,
        assigned_by -> BigInt,
        assigned_at -> Timestamp,
        due_on -> Date,
        recommendation -> Text,
        opinion -> Text,
        filed_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    /// Objections filed by the public during a notice period.
    objections (id) {
        id -> BigInt,
        application_id -> BigInt,
        name -> Text,
        contact -> Text,
        grounds -> Text,
        state -> Text,
        source_addr -> Text,
        filed_at -> Timestamp,
        due_on -> Date,
        decided_by -> Nullable<BigInt>,
        decided_at -> Nullable<Timestamp>,
        reasons -> Text,
    }
}

diesel::joinable!(call_datasets -> calls (call_id));
diesel::joinable!(call_datasets -> datasets (dataset_id));
diesel::joinable!(applications -> calls (call_id));
diesel::joinable!(applications -> organisations (org_id));
diesel::joinable!(application_datasets -> applications (application_id));
diesel::joinable!(application_datasets -> datasets (dataset_id));
diesel::joinable!(credit_records -> organisations (org_id));
diesel::joinable!(application_events -> applications (application_id));
diesel::joinable!(application_attachments -> applications (application_id));
diesel::joinable!(expert_assignments -> applications (application_id));
diesel::joinable!(objections -> applications (application_id));

// --- mail --------------------------------------------------------------------------------

diesel::table! {
    /// The mail outbox: written in the workflow step's transaction, delivered afterwards.
    mail_outbox (id) {
        id -> BigInt,
        to_addr -> Text,
        to_user_id -> Nullable<BigInt>,
        lang -> Text,
        template -> Text,
        subject -> Text,
        body -> Text,
        object_type -> Text,
        object_id -> Text,
        state -> Text,
        attempts -> Integer,
        last_error -> Text,
        next_attempt_at -> Timestamp,
        created_at -> Timestamp,
        sent_at -> Nullable<Timestamp>,
        eml_path -> Nullable<Text>,
    }
}

// --- agreements (migrations/*/2026-11-23-000006_agreements) -----------------------------

diesel::table! {
    /// Authorized-operation agreements (签订协议), one row per version.
    agreements (id) {
        id -> BigInt,
        number -> Text,
        version -> Integer,
        previous_id -> Nullable<BigInt>,
        application_id -> BigInt,
        regulator_org_id -> BigInt,
        regulator_name -> Text,
        operator_org_id -> BigInt,
        operator_name -> Text,
        operator_credit_code -> Text,
        state -> Text,
        purpose -> Text,
        scenario -> Text,
        security_measures -> Text,
        disposal -> Text,
        trial_months -> Integer,
        price_per_job -> Nullable<Text>,
        price_per_thousand_rows -> Nullable<Text>,
        split_platform -> Text,
        split_provider -> Text,
        split_operator -> Text,
        run_budget -> Integer,
        run_period -> Text,
        created_by -> BigInt,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        starts_on -> Nullable<Date>,
        ends_on -> Nullable<Date>,
        expiry_warned_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    /// The operator's signature and the regulator's seal of an agreement.
    agreement_signatures (agreement_id) {
        agreement_id -> BigInt,
        operator_signed_by -> BigInt,
        operator_signed_name -> Text,
        operator_signed_at -> Timestamp,
        sealed_by -> Nullable<BigInt>,
        sealed_at -> Nullable<Timestamp>,
        canonical_sha256 -> Nullable<Text>,
        signature -> Nullable<Text>,
        public_key -> Nullable<Text>,
    }
}

diesel::table! {
    /// How an agreement ended, and the operator's data-disposal confirmation.
    agreement_exits (agreement_id) {
        agreement_id -> BigInt,
        reason -> Text,
        note -> Text,
        ended_by -> Nullable<BigInt>,
        ended_at -> Timestamp,
        disposal_what -> Nullable<Text>,
        disposal_on -> Nullable<Date>,
        disposal_by -> Nullable<Text>,
        disposal_filed_by -> Nullable<BigInt>,
        disposal_filed_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    /// The datasets an agreement covers, with provider and privacy budget as signed.
    agreement_datasets (agreement_id, dataset_id) {
        agreement_id -> BigInt,
        dataset_id -> BigInt,
        dataset_title -> Text,
        provider_org_id -> BigInt,
        provider_name -> Text,
        epsilon -> Text,
    }
}

diesel::table! {
    /// Rectification orders (责令限期改正) and the operator's answers.
    rectifications (id) {
        id -> BigInt,
        agreement_id -> BigInt,
        state -> Text,
        order_text -> Text,
        working_days -> Integer,
        due_on -> Date,
        ordered_by -> BigInt,
        ordered_at -> Timestamp,
        answer -> Nullable<Text>,
        answered_by -> Nullable<BigInt>,
        answered_at -> Nullable<Timestamp>,
        decision_note -> Text,
        decided_by -> Nullable<BigInt>,
        decided_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    /// The operator's requests to end an agreement early.
    termination_requests (id) {
        id -> BigInt,
        agreement_id -> BigInt,
        state -> Text,
        reason -> Text,
        requested_by -> BigInt,
        requested_at -> Timestamp,
        decision_note -> Text,
        decided_by -> Nullable<BigInt>,
        decided_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    /// The schema version of a dataset an agreement's operator accepted
    /// (migrations/*/2026-12-04-000010_dataset_versions).
    agreement_schemas (agreement_id, dataset_id) {
        agreement_id -> BigInt,
        dataset_id -> BigInt,
        schema_no -> Integer,
        accepted_by -> Nullable<BigInt>,
        accepted_at -> Timestamp,
    }
}

diesel::joinable!(agreement_signatures -> agreements (agreement_id));
diesel::joinable!(agreement_schemas -> agreements (agreement_id));
diesel::joinable!(agreement_exits -> agreements (agreement_id));
diesel::joinable!(agreement_datasets -> agreements (agreement_id));
diesel::joinable!(rectifications -> agreements (agreement_id));
diesel::joinable!(termination_requests -> agreements (agreement_id));

// --- jobs (migrations/*/2026-11-23-000007_jobs) -----------------------------------------

diesel::table! {
    /// Staff training (人员培训) per user.
    trainings (id) {
        id -> BigInt,
        user_id -> BigInt,
        course -> Text,
        trained_on -> Date,
        expires_on -> Date,
        recorded_by -> BigInt,
        recorded_at -> Timestamp,
    }
}

diesel::table! {
    /// Index of the module blobs kept in the data dir by sha256.
    job_modules (sha256) {
        sha256 -> Text,
        size -> BigInt,
        imports -> Text,
        exports -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    /// Computations: an operator's module pinned by hash, its manifest and purpose, approved once.
    computations (id) {
        id -> BigInt,
        org_id -> BigInt,
        agreement_id -> BigInt,
        module_sha256 -> Text,
        manifest -> Text,
        manifest_sha256 -> Text,
        name -> Text,
        bindings -> Text,
        purpose -> Text,
        epsilon -> Text,
        state -> Text,
        differs_from -> Nullable<Text>,
        submitted_by -> BigInt,
        submitted_at -> Timestamp,
        reviewed_by -> Nullable<BigInt>,
        reviewed_at -> Nullable<Timestamp>,
        review_note -> Text,
    }
}

diesel::table! {
    /// Runs of computations: the job queue.
    jobs (id) {
        id -> BigInt,
        computation_id -> BigInt,
        org_id -> BigInt,
        submitted_by -> BigInt,
        purpose -> Text,
        state -> Text,
        created_at -> Timestamp,
        queued_at -> Nullable<Timestamp>,
        started_at -> Nullable<Timestamp>,
        finished_at -> Nullable<Timestamp>,
        lease_owner -> Nullable<Text>,
        lease_expires_at -> Nullable<Timestamp>,
        attempts -> Integer,
        rows_done -> BigInt,
        rows_total -> BigInt,
        versions -> Text,
        outcome -> Text,
        reason -> Text,
        report -> Nullable<Text>,
        output -> Nullable<Text>,
        guest_log -> Nullable<Text>,
        decided_by -> Nullable<BigInt>,
        decided_at -> Nullable<Timestamp>,
        decision_note -> Text,
    }
}

diesel::table! {
    /// The released files of a run, with provenance and signatures.
    job_releases (job_id) {
        job_id -> BigInt,
        json_body -> Text,
        json_sha256 -> Text,
        json_signature -> Text,
        csv_body -> Text,
        csv_sha256 -> Text,
        csv_signature -> Text,
        public_key -> Text,
        released_at -> Timestamp,
    }
}

diesel::table! {
    /// Rows read per dataset version by a run, with the agreement's prices at the time.
    job_meters (id) {
        id -> BigInt,
        job_id -> BigInt,
        agreement_id -> BigInt,
        dataset_id -> BigInt,
        version_id -> BigInt,
        rows_read -> BigInt,
        price_per_job -> Nullable<Text>,
        price_per_thousand_rows -> Nullable<Text>,
        recorded_at -> Timestamp,
    }
}

diesel::table! {
    /// The privacy-budget ledger: epsilon debited per operator and dataset at release.
    budget_debits (id) {
        id -> BigInt,
        org_id -> BigInt,
        agreement_id -> BigInt,
        dataset_id -> BigInt,
        job_id -> BigInt,
        epsilon -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    /// How the operator used a released output (反馈数据使用情况).
    usage_reports (job_id) {
        job_id -> BigInt,
        org_id -> BigInt,
        body -> Text,
        filed_by -> BigInt,
        filed_at -> Timestamp,
    }
}

diesel::table! {
    /// Failed logins, one row per account (`scope` `account`) and per source address (`address`)
    /// for each failure; the login throttle counts those of the last window.
    login_failures (id) {
        id -> BigInt,
        scope -> Text,
        subject -> Text,
        at -> Timestamp,
    }
}

diesel::table! {
    idempotency_keys (id) {
        id -> BigInt,
        scope -> Text,
        key -> Text,
        request_hash -> Text,
        status -> Integer,
        response -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    /// The differencing guard's record of each cell a run released without noise (platform
    /// only): its persons, sorted, 8 bytes each, their digest and sketch; they count once the
    /// run is released.
    released_cells (id) {
        id -> BigInt,
        job_id -> BigInt,
        org_id -> BigInt,
        aggregate -> Text,
        cell_key -> Text,
        k -> BigInt,
        persons -> BigInt,
        digest -> Text,
        sketch -> Binary,
        members -> Binary,
    }
}

diesel::table! {
    /// The catalog datasets a kept cell depends on.
    released_cell_datasets (dataset_id, cell_id) {
        cell_id -> BigInt,
        dataset_id -> BigInt,
    }
}

diesel::table! {
    /// Why the differencing guard withheld a run: the pairs of cells 1 to k − 1 persons apart.
    differencing_findings (id) {
        id -> BigInt,
        job_id -> BigInt,
        aggregate -> Text,
        cell_key -> Text,
        other_job_id -> BigInt,
        other_aggregate -> Text,
        other_cell_key -> Text,
        difference -> BigInt,
        k -> BigInt,
    }
}

diesel::joinable!(trainings -> users (user_id));
diesel::joinable!(computations -> organisations (org_id));
diesel::joinable!(computations -> agreements (agreement_id));
diesel::joinable!(computations -> job_modules (module_sha256));
diesel::joinable!(jobs -> computations (computation_id));
diesel::joinable!(jobs -> organisations (org_id));
diesel::joinable!(job_releases -> jobs (job_id));
diesel::joinable!(job_meters -> jobs (job_id));
diesel::joinable!(budget_debits -> jobs (job_id));
diesel::joinable!(usage_reports -> jobs (job_id));
diesel::joinable!(released_cells -> jobs (job_id));
diesel::joinable!(released_cell_datasets -> released_cells (cell_id));

diesel::allow_tables_to_appear_in_same_query!(
    organisations,
    users,
    sessions,
    audit_log,
    datasets,
    dataset_columns,
    dataset_versions,
    calendar_days,
    calls,
    call_datasets,
    applications,
    application_datasets,
    credit_records,
    application_events,
    application_attachments,
    expert_assignments,
    objections,
    mail_outbox,
    agreements,
    agreement_signatures,
    agreement_exits,
    agreement_datasets,
    agreement_schemas,
    rectifications,
    termination_requests,
    trainings,
    job_modules,
    computations,
    jobs,
    job_releases,
    job_meters,
    budget_debits,
    usage_reports,
    released_cells,
    released_cell_datasets,
    differencing_findings,
    login_failures,
);
