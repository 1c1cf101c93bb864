-- Failed logins, one row per account and one per source address for each failure, so that every
-- server on this database counts the same attempts. The login throttle counts the rows of the
-- last window; older rows are deleted on the next failure of the same subject and by the
-- scheduler.
CREATE TABLE login_failures (
    id BIGSERIAL PRIMARY KEY,
    scope TEXT NOT NULL,
    subject TEXT NOT NULL,
    at TIMESTAMP NOT NULL
);
CREATE INDEX login_failures_subject ON login_failures(scope, subject, at);
CREATE INDEX login_failures_at ON login_failures(at);
