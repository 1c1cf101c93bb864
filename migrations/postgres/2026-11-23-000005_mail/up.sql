-- The mail outbox: every message is written here in the transaction of the workflow step that
-- causes it, and delivered afterwards (SMTP, or an .eml file in the data dir), with retries.
CREATE TABLE mail_outbox (
    id BIGSERIAL PRIMARY KEY,
    to_addr TEXT NOT NULL,
    to_user_id BIGINT REFERENCES users(id),
    lang TEXT NOT NULL,
    template TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    object_type TEXT NOT NULL DEFAULT '',
    object_id TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    next_attempt_at TIMESTAMP NOT NULL,
    created_at TIMESTAMP NOT NULL,
    sent_at TIMESTAMP,
    eml_path TEXT
);
CREATE INDEX mail_outbox_due ON mail_outbox(state, next_attempt_at);
