-- `authorization_server.mode = "rfc7591"`: each client registered here is also registered at
-- the bank's authorization server (RFC 7591), which answers with the URI and the token that
-- manage it there (RFC 7592). Clients of the embedded mode have no row. The token is stored as
-- the server hands it over (sealed when `authorization_server.storage_key_file` is set).
CREATE TABLE as_registrations (
    client_id                 TEXT PRIMARY KEY NOT NULL
                              REFERENCES clients (client_id) ON DELETE CASCADE,
    registration_client_uri   TEXT NOT NULL,
    registration_access_token TEXT NOT NULL,
    updated_at                INTEGER NOT NULL
-- One B-tree keyed by client_id (no rowid table beside its key's index): one fewer tree
-- for each registration's commit to write.
) WITHOUT ROWID;

-- Clients of the authorization server still to be deleted there (one that could not be
-- committed here, or an operator's delete). No foreign key: a row outlives its client. A
-- replica works on a row while it holds its lease (`lease_owner` until `lease_until`), so that
-- replicas sharing the database do not both try it.
CREATE TABLE as_compensations (
    id                        INTEGER PRIMARY KEY AUTOINCREMENT,
    client_id                 TEXT NOT NULL,
    registration_client_uri   TEXT NOT NULL,
    registration_access_token TEXT NOT NULL,
    reason                    TEXT NOT NULL,
    attempts                  INTEGER NOT NULL DEFAULT 0,
    next_attempt_at           INTEGER NOT NULL,
    lease_owner               TEXT,
    lease_until               INTEGER NOT NULL DEFAULT 0,
    last_error                TEXT,
    created_at                INTEGER NOT NULL
);
-- The due scan: next_attempt_at <= now, oldest first.
CREATE INDEX as_compensations_due_idx ON as_compensations (next_attempt_at, id);
