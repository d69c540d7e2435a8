-- dcr-server schema, PostgreSQL flavour. Times are Unix seconds. URIs and JSON are TEXT with
-- no length limit (the WSO2 seed's varchar(512/1024) columns truncated long redirect URI lists).

CREATE TABLE clients (
    client_id                  TEXT PRIMARY KEY,
    software_id                TEXT NOT NULL,
    -- equals software_id while one client per software_id is enforced, else NULL; the unique
    -- index makes the duplicate check atomic across replicas
    software_id_unique         TEXT,
    org_id                     TEXT NOT NULL,
    metadata                   TEXT NOT NULL,
    software_statement         TEXT NOT NULL,
    ssa_claims                 TEXT NOT NULL,
    client_secret_hash         TEXT NOT NULL,
    token_endpoint_auth_method TEXT NOT NULL,
    tls_client_auth_subject_dn TEXT,
    jwks_uri                   TEXT NOT NULL,
    cert_thumbprint            TEXT,
    enabled                    BOOLEAN NOT NULL DEFAULT TRUE,
    created_at                 BIGINT NOT NULL,
    updated_at                 BIGINT NOT NULL
);
CREATE UNIQUE INDEX clients_software_id_unique_idx ON clients (software_id_unique);
CREATE INDEX clients_software_id_idx ON clients (software_id);

CREATE TABLE jtis (
    scope      TEXT NOT NULL,
    jti        TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (scope, jti)
);
CREATE INDEX jtis_expires_at_idx ON jtis (expires_at);

CREATE TABLE tokens (
    token_hash      TEXT PRIMARY KEY,
    client_id       TEXT NOT NULL REFERENCES clients (client_id) ON DELETE CASCADE,
    scope           TEXT NOT NULL,
    cert_thumbprint TEXT,
    issued_at       BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    revoked         BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX tokens_client_id_idx ON tokens (client_id);
CREATE INDEX tokens_expires_at_idx ON tokens (expires_at);

CREATE TABLE audit_log (
    id              BIGSERIAL PRIMARY KEY,
    at              BIGINT NOT NULL,
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
CREATE INDEX audit_log_client_id_idx ON audit_log (client_id);
CREATE INDEX audit_log_at_idx ON audit_log (at);

-- The audit log is append-only.
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$;
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
