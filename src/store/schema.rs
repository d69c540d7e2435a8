//! Every SQL statement, once for both engines, and the names the migrations give the keys.
//!
//! SQLite and PostgreSQL accept the same text here (`$N` parameters, `ON CONFLICT ... DO
//! UPDATE ... WHERE`, `CAST`), so each statement is one constant. They are constants, never
//! formatted per request, so that both engines' statement caches hit.

use super::error::Conflict;

// Column lists are macros so that the statements below are `concat!`ed constants.
macro_rules! client_columns {
    () => {
        "client_id, software_id, org_id, metadata, grant_types, scope, client_secret_hash, \
         token_endpoint_auth_method, tls_client_auth_subject_dn, jwks_uri, cert_thumbprint, \
         enabled, created_at, updated_at, dcr_version, jwks_revoked_uri"
    };
}
macro_rules! token_columns {
    () => {
        "token_hash, client_id, scope, cert_thumbprint, issued_at, expires_at, revoked"
    };
}
macro_rules! audit_columns {
    () => {
        "at, action, outcome, client_id, software_id, org_id, cert_thumbprint, interaction_id, \
         error_code, detail, dcr_version"
    };
}

pub(super) const PING: &str = "SELECT 1";

pub(super) const SELECT_CLIENT: &str = concat!(
    "SELECT ",
    client_columns!(),
    " FROM clients WHERE client_id = $1"
);
pub(super) const LIST_CLIENTS: &str = concat!(
    "SELECT ",
    client_columns!(),
    " FROM clients ORDER BY created_at, client_id"
);
/// The head of a multi-row insert: the client columns, then `software_id_unique` (the order
/// of `unit::client_row`).
pub(super) const INSERT_CLIENTS: &str = concat!(
    "INSERT INTO clients (",
    client_columns!(),
    ", software_id_unique) "
);
/// Rows per multi-row INSERT: 17 parameters a row stays well under both engines' limit of
/// bound parameters (SQLite 32766, PostgreSQL 65535).
pub(super) const BULK_ROWS: usize = 1000;
pub(super) const INSERT_CLIENT: &str = concat!(
    "INSERT INTO clients (",
    client_columns!(),
    ", software_id_unique) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
);
pub(super) const UPDATE_CLIENT: &str = "UPDATE clients SET org_id = $2, metadata = $3, \
     grant_types = $4, scope = $5, token_endpoint_auth_method = $6, \
     tls_client_auth_subject_dn = $7, jwks_uri = $8, cert_thumbprint = $9, updated_at = $10, \
     dcr_version = $11, jwks_revoked_uri = $12 WHERE client_id = $1";
pub(super) const SET_CLIENT_ENABLED: &str =
    "UPDATE clients SET enabled = $2, updated_at = $3 WHERE client_id = $1";
pub(super) const DELETE_CLIENT: &str = "DELETE FROM clients WHERE client_id = $1";

/// Insert-or-refresh: a `jti` is new if it is absent or its row has expired. One statement,
/// so two replicas racing on the same `jti` cannot both succeed: the loser changes 0 rows.
pub(super) const REMEMBER_JTI: &str = "INSERT INTO jtis (scope, jti, expires_at) \
     VALUES ($1, $2, $3) ON CONFLICT (scope, jti) DO UPDATE SET expires_at = excluded.expires_at \
     WHERE jtis.expires_at <= $4";
pub(super) const PURGE_JTIS: &str = "DELETE FROM jtis WHERE expires_at <= $1";

pub(super) const SELECT_TOKEN: &str = concat!(
    "SELECT ",
    token_columns!(),
    " FROM tokens WHERE token_hash = $1"
);
/// The head of a multi-row insert (the order of `unit::token_row`).
pub(super) const INSERT_TOKENS: &str = concat!("INSERT INTO tokens (", token_columns!(), ") ");
pub(super) const INSERT_TOKEN: &str = concat!(
    "INSERT INTO tokens (",
    token_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7)"
);
/// `revoked` is bound (`$2` true, `$3` false) rather than written as a literal: SQLite stores
/// booleans as integers, PostgreSQL as `BOOLEAN`, and the driver knows both.
pub(super) const REVOKE_TOKEN: &str =
    "UPDATE tokens SET revoked = $2 WHERE token_hash = $1 AND revoked = $3";
pub(super) const REVOKE_CLIENT_TOKENS: &str =
    "UPDATE tokens SET revoked = $2 WHERE client_id = $1 AND revoked = $3";
pub(super) const DELETE_CLIENT_TOKENS: &str = "DELETE FROM tokens WHERE client_id = $1";
pub(super) const PURGE_TOKENS: &str = "DELETE FROM tokens WHERE expires_at <= $1";

pub(super) const INSERT_AUDIT: &str = concat!(
    "INSERT INTO audit_log (",
    audit_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
);
pub(super) const LIST_AUDIT: &str = concat!(
    "SELECT ",
    audit_columns!(),
    " FROM audit_log WHERE (CAST($1 AS TEXT) IS NULL OR client_id = $1) \
     AND (CAST($2 AS BIGINT) IS NULL OR at >= $2) ORDER BY id"
);

/// Row counts per table, for tests.
pub(super) const COUNT_ROWS: [(&str, &str); 4] = [
    ("clients", "SELECT COUNT(*) FROM clients"),
    ("jtis", "SELECT COUNT(*) FROM jtis"),
    ("tokens", "SELECT COUNT(*) FROM tokens"),
    ("audit_log", "SELECT COUNT(*) FROM audit_log"),
];
pub(super) const COUNT_MIGRATIONS: &str = "SELECT COUNT(*) FROM _sqlx_migrations";

/// The keys a write can run into, by the name each engine reports: PostgreSQL reports the
/// constraint or unique index (`clients_software_id_unique_idx` is named in `0001_init.sql`;
/// the primary and foreign keys carry PostgreSQL's default names); SQLite reports no name, only
/// `table.column` in the message of a UNIQUE or PRIMARY KEY failure.
const KEYS: [(Conflict, &str, &str); 2] = [
    (Conflict::ClientId, "clients_pkey", "clients.client_id"),
    (
        Conflict::SoftwareId,
        "clients_software_id_unique_idx",
        "clients.software_id_unique",
    ),
];
/// PostgreSQL's name for the one foreign key, tokens.client_id → clients.
const TOKENS_CLIENT_FKEY: &str = "tokens_client_id_fkey";

/// The conflict a PostgreSQL constraint (or unique index) name stands for.
pub(super) fn postgres_conflict(constraint: &str) -> Option<Conflict> {
    if constraint == TOKENS_CLIENT_FKEY {
        return Some(Conflict::UnknownClient);
    }
    KEYS.iter()
        .find(|(_, name, _)| *name == constraint)
        .map(|(c, _, _)| *c)
}

/// Which key a SQLite constraint failure hit: the extended result code says what kind of key,
/// and for UNIQUE and PRIMARY KEY the message's `table.column` (the only place SQLite names it)
/// says which one. Both SQLite paths (the writer thread's rusqlite, the sqlx pool) use it.
pub(super) fn sqlite_conflict(extended_code: i32, message: &str) -> Option<Conflict> {
    use rusqlite::ffi;
    match extended_code {
        ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
            let column = message.strip_prefix("UNIQUE constraint failed: ")?;
            KEYS.iter()
                .find(|(_, _, name)| *name == column)
                .map(|(c, _, _)| *c)
        }
        ffi::SQLITE_CONSTRAINT_FOREIGNKEY => Some(SQLITE_FOREIGN_KEY_CONFLICT),
        _ => None,
    }
}

/// SQLite does not name the foreign key that failed; tokens.client_id is the only one.
pub(super) const SQLITE_FOREIGN_KEY_CONFLICT: Conflict = Conflict::UnknownClient;
