-- The SSA was stored three times per client: in `metadata` (as the response's
-- `software_statement`), raw, and decoded. `metadata` keeps it; the other two copies went.
ALTER TABLE clients DROP COLUMN software_statement;
ALTER TABLE clients DROP COLUMN ssa_claims;

-- Fewer B-trees to write per operation. `jtis` is a WITHOUT ROWID table: the primary key is
-- the row, so an insert touches one B-tree instead of a table and its key index. (`tokens`
-- stays a rowid table: its client_id index, keyed by rowid, is appended to in order; keyed by
-- the random token hash it was written at random, and tokens cost 20% more CPU.)
CREATE TABLE jtis_v2 (
    scope      TEXT NOT NULL,
    jti        TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (scope, jti)
) WITHOUT ROWID;
INSERT INTO jtis_v2 (scope, jti, expires_at) SELECT scope, jti, expires_at FROM jtis;
DROP TABLE jtis;
ALTER TABLE jtis_v2 RENAME TO jtis;
CREATE INDEX jtis_expires_at_idx ON jtis (expires_at);

-- The audit log's ids without AUTOINCREMENT, which wrote sqlite_sequence on every insert. The
-- log is append-only (no row is ever deleted), so ids still only grow.
CREATE TABLE audit_log_v2 (
    id              INTEGER PRIMARY KEY,
    at              INTEGER NOT NULL,
    action          TEXT NOT NULL,
    outcome         TEXT NOT NULL,
    client_id       TEXT,
    software_id     TEXT,
    org_id          TEXT,
    cert_thumbprint TEXT,
    interaction_id  TEXT,
    error_code      TEXT,
    detail          TEXT
);
INSERT INTO audit_log_v2 SELECT id, at, action, outcome, client_id, software_id, org_id,
    cert_thumbprint, interaction_id, error_code, detail FROM audit_log;
DROP TABLE audit_log;
ALTER TABLE audit_log_v2 RENAME TO audit_log;
CREATE INDEX audit_log_client_id_idx ON audit_log (client_id);
CREATE INDEX audit_log_at_idx ON audit_log (at);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
