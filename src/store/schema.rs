//! Every SQL statement, once for both engines, and the names the migrations give the keys.
//!
//! SQLite and PostgreSQL accept the same text here (`$N` parameters, `ON CONFLICT ... DO
//! UPDATE ... WHERE`, `CAST`), so each statement is one constant. They are constants, never
//! formatted per request, so that both engines' statement caches hit.

use super::error::{Conflict, StoreResult};
use super::record::{
    AsLinkRecord, AuditEntry, AuditRecord, ClientRecord, CompensationRecord, DeliveryRecord,
    EventRecord, LeasedDelivery, TokenRecord,
};
use super::row::{Column, Cursor, Row, columns};

// Each record's columns, once, in table order: the column lists of the statements below
// (`concat!`ed constants), the order its values bind in, and the order it decodes in.
columns! {
    client_columns => ClientRecord {
        client_id, software_id, org_id, metadata, grant_types, scope, client_secret_hash,
        token_endpoint_auth_method, tls_client_auth_subject_dn, jwks_uri, cert_thumbprint,
        enabled, created_at, updated_at, dcr_version, jwks_revoked_uri,
    }
}
columns! {
    token_columns => TokenRecord {
        token_hash, client_id, scope, cert_thumbprint, issued_at, expires_at, revoked,
    }
}
columns! {
    audit_columns => AuditRecord {
        at, action, outcome, client_id, software_id, org_id, cert_thumbprint, interaction_id,
        error_code, detail, dcr_version,
    }
}
// Events and deliveries are written by statements (from the client's row), never from a
// record: their lists are read only.
columns! {
    event_columns => EventRecord after [id] read only {
        event_id, event_type = "type", at, client_id, software_id, org_id, dcr_version, action,
        interaction_id, changed,
    }
}
columns! {
    delivery_columns => DeliveryRecord read only {
        id, event_id, webhook, client_id, state, attempts, next_at, expires_at, last_error,
        done_at,
    }
}
columns! {
    as_link_columns => AsLinkRecord {
        client_id, registration_client_uri, registration_access_token, updated_at,
    }
}
// Compensations are written from a `NewCompensation` or a client's link, never from a record.
columns! {
    compensation_columns => CompensationRecord after [id] read only {
        client_id, registration_client_uri, registration_access_token, reason, attempts,
        next_attempt_at, last_error, created_at,
    }
}

/// An audit record after its id.
impl Row for AuditEntry {
    const WIDTH: usize = 1 + AuditRecord::WIDTH;
    fn read(c: &mut Cursor<'_>) -> StoreResult<Self> {
        Ok(Self {
            id: Column::read(c)?,
            record: AuditRecord::read(c)?,
        })
    }
}

/// [`SELECT_LEASED`]: the delivery's columns, then its event's.
impl Row for LeasedDelivery {
    const WIDTH: usize = 4 + EventRecord::WIDTH;
    fn read(c: &mut Cursor<'_>) -> StoreResult<Self> {
        Ok(Self {
            delivery_id: Column::read(c)?,
            webhook: Column::read(c)?,
            attempts: Column::read(c)?,
            expires_at: Column::read(c)?,
            event: EventRecord::read(c)?,
        })
    }
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
/// A page of clients after client_id `$1`, filtered by software_id `$2`, org_id `$3`,
/// enabled `$4` (1, 0, or -1 for either) and DCR version `$5`, at most `$6`.
pub(super) const LIST_CLIENTS_PAGE: &str = concat!(
    "SELECT ",
    client_columns!(),
    " FROM clients WHERE client_id > $1 AND (CAST($2 AS TEXT) IS NULL OR software_id = $2) \
     AND (CAST($3 AS TEXT) IS NULL OR org_id = $3) AND ($4 < 0 OR enabled = ($4 = 1)) \
     AND (CAST($5 AS TEXT) IS NULL OR dcr_version = $5) ORDER BY client_id LIMIT $6"
);
#[cfg(feature = "test-support")]
/// The head of a multi-row insert: the client columns, then `software_id_unique` (the order
/// of `unit::client_row`).
pub(super) const INSERT_CLIENTS: &str = concat!(
    "INSERT INTO clients (",
    client_columns!(),
    ", software_id_unique) "
);
#[cfg(feature = "test-support")]
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
macro_rules! remember_jti {
    () => {
        "INSERT INTO jtis (scope, jti, expires_at) \
         VALUES ($1, $2, $3) ON CONFLICT (scope, jti) DO UPDATE SET expires_at = excluded.expires_at \
         WHERE jtis.expires_at <= $4"
    };
}
pub(super) const REMEMBER_JTI: &str = remember_jti!();
pub(super) const PURGE_JTIS: &str = "DELETE FROM jtis WHERE expires_at <= $1";

pub(super) const SELECT_TOKEN: &str = concat!(
    "SELECT ",
    token_columns!(),
    " FROM tokens WHERE token_hash = $1"
);
/// A token by hash (`$1`) and a client by id (`$2`), in one row: what every management call
/// reads first, in one round trip (PostgreSQL). The token's columns come first, then the
/// client's; a missing token or client leaves its columns NULL.
pub(super) const SELECT_TOKEN_AND_CLIENT: &str = concat!(
    "SELECT t.*, c.* FROM (SELECT 1 AS one) o LEFT JOIN (SELECT ",
    token_columns!(),
    " FROM tokens WHERE token_hash = $1) t ON TRUE LEFT JOIN (SELECT ",
    client_columns!(),
    " FROM clients WHERE client_id = $2) c ON TRUE"
);
#[cfg(feature = "test-support")]
/// The head of a multi-row insert (the order of `unit::token_row`).
pub(super) const INSERT_TOKENS: &str = concat!("INSERT INTO tokens (", token_columns!(), ") ");
pub(super) const INSERT_TOKEN: &str = concat!(
    "INSERT INTO tokens (",
    token_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7)"
);
/// A token and its audit record as one PostgreSQL statement (atomic by itself: no BEGIN and
/// COMMIT round trips). The audit row is written from the token's `RETURNING`, so both or
/// neither. `$1`–`$7` the token (`unit::token_row`), `$8`–`$18` the audit record.
pub(super) const INSERT_TOKEN_AUDITED_POSTGRES: &str = concat!(
    "WITH token AS (INSERT INTO tokens (",
    token_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING 1) INSERT INTO audit_log (",
    audit_columns!(),
    ") SELECT $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18 FROM token"
);
/// As [`INSERT_TOKEN_AUDITED_POSTGRES`], after remembering the client assertion's `jti`
/// ([`REMEMBER_JTI`], `$1`–`$4`): the token (`$5`–`$11`) is written only from the `jti`'s
/// `RETURNING` and the audit record (`$12`–`$22`) only from the token's, so a replay writes
/// nothing and changes 0 rows.
pub(super) const INSERT_TOKEN_AUDITED_WITH_JTI_POSTGRES: &str = concat!(
    "WITH jti AS (",
    remember_jti!(),
    " RETURNING 1), \
     token AS (INSERT INTO tokens (",
    token_columns!(),
    ") SELECT $5, $6, $7, $8, $9, $10, $11 FROM jti RETURNING 1) INSERT INTO audit_log (",
    audit_columns!(),
    ") SELECT $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22 FROM token"
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

/// A registration as one PostgreSQL statement, when no webhook wants its event: the client
/// (`$1`–`$17`, `unit::client_row`), its `client.registered` event written from the client's
/// `RETURNING` (`$18`–`$23`: id, type, at, action, interaction id, changed) and the audit
/// record from the event's (`$24`–`$34`).
pub(super) const INSERT_CLIENT_REGISTERED_POSTGRES: &str = concat!(
    "WITH client AS (INSERT INTO clients (",
    client_columns!(),
    ", software_id_unique) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, \
     $14, $15, $16, $17) RETURNING client_id, software_id, org_id, dcr_version), \
     event AS (INSERT INTO events (",
    event_columns!(),
    ") SELECT $18, $19, $20, client_id, software_id, org_id, dcr_version, $21, $22, $23 \
     FROM client RETURNING 1) INSERT INTO audit_log (",
    audit_columns!(),
    ") SELECT $24, $25, $26, $27, $28, $29, $30, $31, $32, $33, $34 FROM event"
);
/// As [`INSERT_CLIENT_REGISTERED_POSTGRES`], after remembering the request's `jti`
/// ([`REMEMBER_JTI`], `$1`–`$4`), the client written only from the `jti`'s `RETURNING`
/// (`$5`–`$21`), the event `$22`–`$27`, the audit record `$28`–`$38`.
pub(super) const INSERT_CLIENT_REGISTERED_WITH_JTI_POSTGRES: &str = concat!(
    "WITH jti AS (",
    remember_jti!(),
    " RETURNING 1), \
     client AS (INSERT INTO clients (",
    client_columns!(),
    ", software_id_unique) SELECT $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
     $18, $19, $20, $21 FROM jti RETURNING client_id, software_id, org_id, dcr_version), \
     event AS (INSERT INTO events (",
    event_columns!(),
    ") SELECT $22, $23, $24, client_id, software_id, org_id, dcr_version, $25, $26, $27 \
     FROM client RETURNING 1) INSERT INTO audit_log (",
    audit_columns!(),
    ") SELECT $28, $29, $30, $31, $32, $33, $34, $35, $36, $37, $38 FROM event"
);
/// The body of a linked registration's one statement (`rfc7591` mode): the client from
/// `$from` (a `VALUES` or the `jti`'s `RETURNING`), its link to the AS from the client's
/// `RETURNING`, the event from both, the audit record from the event. `$c`: the client's
/// first placeholder; then the event's six, the audit record's eleven and the link's three
/// (uri, token, updated_at) follow in that order.
macro_rules! linked_client_chain {
    ($client_select:literal, $event:literal, $audit:literal, $link:literal) => {
        concat!(
            "client AS (INSERT INTO clients (",
            client_columns!(),
            ", software_id_unique) ",
            $client_select,
            " RETURNING client_id, software_id, org_id, dcr_version), \
             link AS (INSERT INTO as_registrations (",
            as_link_columns!(),
            ") SELECT client_id, ",
            $link,
            " FROM client RETURNING client_id), \
             event AS (INSERT INTO events (",
            event_columns!(),
            ") SELECT ",
            $event,
            " FROM client JOIN link USING (client_id) RETURNING 1) INSERT INTO audit_log (",
            audit_columns!(),
            ") SELECT ",
            $audit,
            " FROM event"
        )
    };
}
/// As [`INSERT_CLIENT_REGISTERED_POSTGRES`], with the client's link to the bank's AS
/// (`$35`–`$37`: uri, token, updated_at) written from the client's `RETURNING`.
pub(super) const INSERT_CLIENT_REGISTERED_LINKED_POSTGRES: &str = concat!(
    "WITH ",
    linked_client_chain!(
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
        "$18, $19, $20, client_id, software_id, org_id, dcr_version, $21, $22, $23",
        "$24, $25, $26, $27, $28, $29, $30, $31, $32, $33, $34",
        "$35, $36, $37"
    )
);
/// As [`INSERT_CLIENT_REGISTERED_WITH_JTI_POSTGRES`], with the client's link to the bank's AS
/// (`$39`–`$41`: uri, token, updated_at) written from the client's `RETURNING`.
pub(super) const INSERT_CLIENT_REGISTERED_LINKED_WITH_JTI_POSTGRES: &str = concat!(
    "WITH jti AS (",
    remember_jti!(),
    " RETURNING 1), ",
    linked_client_chain!(
        "SELECT $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21 FROM jti",
        "$22, $23, $24, client_id, software_id, org_id, dcr_version, $25, $26, $27",
        "$28, $29, $30, $31, $32, $33, $34, $35, $36, $37, $38",
        "$39, $40, $41"
    )
);
/// Locks a client's row (a no-op update) before its event is written, so that the event is
/// ordered after any change of that client still in flight. 0 rows: no such client.
pub(super) const LOCK_CLIENT: &str =
    "UPDATE clients SET updated_at = updated_at WHERE client_id = $1";
/// The event of a change to client `$7`, its data read from the client's row as the change
/// left it: `$1` event_id, `$2` type, `$3` at, `$4` action, `$5` interaction_id, `$6`
/// changed.
pub(super) const INSERT_CLIENT_EVENT: &str = concat!(
    "INSERT INTO events (",
    event_columns!(),
    ") SELECT $1, $2, $3, client_id, software_id, org_id, dcr_version, $4, $5, $6 \
     FROM clients WHERE client_id = $7"
);
/// As [`INSERT_CLIENT_EVENT`], only when the client has live tokens (`$8` false: not
/// revoked; not expired at `$3`).
pub(super) const INSERT_CLIENT_EVENT_IF_LIVE_TOKENS: &str = concat!(
    "INSERT INTO events (",
    event_columns!(),
    ") SELECT $1, $2, $3, client_id, software_id, org_id, dcr_version, $4, $5, $6 \
     FROM clients WHERE client_id = $7 AND EXISTS (SELECT 1 FROM tokens \
     WHERE tokens.client_id = clients.client_id AND tokens.revoked = $8 \
     AND tokens.expires_at > $3)"
);
/// The event of revoking token `$7`, for its client (parameters as [`INSERT_CLIENT_EVENT`]).
pub(super) const INSERT_TOKEN_EVENT: &str = concat!(
    "INSERT INTO events (",
    event_columns!(),
    ") SELECT $1, $2, $3, c.client_id, c.software_id, c.org_id, c.dcr_version, $4, $5, $6 \
     FROM tokens t JOIN clients c ON c.client_id = t.client_id WHERE t.token_hash = $7"
);
/// A pending delivery of event `$1` (if it was written) to webhook `$2`, due at `$3`, tried
/// until `$4`.
pub(super) const INSERT_DELIVERY: &str = "INSERT INTO event_deliveries \
     (event_id, webhook, client_id, state, next_at, expires_at) \
     SELECT event_id, $2, client_id, 'pending', $3, $4 FROM events WHERE event_id = $1";

/// The deliveries a worker may take at `now` (a placeholder): pending, due, not leased, and
/// the oldest pending one of their (webhook, client), so that a client's events arrive in
/// order.
macro_rules! due_condition {
    ($now:literal) => {
        concat!(
            "d.state = 'pending' AND d.next_at <= ",
            $now,
            " AND d.lease_until <= ",
            $now,
            " AND NOT EXISTS (SELECT 1 FROM event_deliveries e \
             WHERE e.webhook = d.webhook AND e.client_id = d.client_id AND e.state = 'pending' \
             AND e.id < d.id)"
        )
    };
}
/// The due deliveries (at `$3`) of webhook `$5`, oldest first, at most `$4`.
macro_rules! deliveries_due {
    () => {
        concat!(
            "SELECT d.id FROM event_deliveries d WHERE d.webhook = $5 AND ",
            due_condition!("$3"),
            " ORDER BY d.id LIMIT $4"
        )
    };
}
/// The webhooks with a delivery due at `$1` (as a lease would take it): each gets a lease of
/// its own, so that one slow webhook holds up no other.
pub(super) const DUE_WEBHOOKS: &str = concat!(
    "SELECT DISTINCT d.webhook FROM event_deliveries d WHERE ",
    due_condition!("$1"),
    " ORDER BY d.webhook"
);
/// Leases up to `$4` due deliveries of webhook `$5` to worker `$1` until `$2`. The outer
/// conditions are checked again on each row as it is locked, so two replicas never hold one
/// lease; PostgreSQL skips rows another replica is leasing rather than waiting for them.
pub(super) const LEASE_DELIVERIES_POSTGRES: &str = concat!(
    "UPDATE event_deliveries SET lease_owner = $1, lease_until = $2 WHERE id IN (",
    deliveries_due!(),
    " FOR UPDATE SKIP LOCKED) AND state = 'pending' AND lease_until <= $3"
);
/// SQLite has no row locks (one writer at a time): the same without `FOR UPDATE`.
pub(super) const LEASE_DELIVERIES_SQLITE: &str = concat!(
    "UPDATE event_deliveries SET lease_owner = $1, lease_until = $2 WHERE id IN (",
    deliveries_due!(),
    ") AND state = 'pending' AND lease_until <= $3"
);
/// The deliveries worker `$1` leased until `$2`, with their events, oldest first.
pub(super) const SELECT_LEASED: &str = concat!(
    "SELECT d.id, d.webhook, d.attempts, d.expires_at, e.* \
     FROM event_deliveries d JOIN (SELECT id, ",
    event_columns!(),
    " FROM events) e ON e.event_id = d.event_id \
     WHERE d.lease_owner = $1 AND d.lease_until = $2 ORDER BY d.id"
);
/// Delivery `$1` by lease holder `$2` succeeded at `$3`.
pub(super) const DELIVERED: &str = "UPDATE event_deliveries SET state = 'delivered', \
     attempts = attempts + 1, done_at = $3, last_error = NULL, lease_owner = NULL, \
     lease_until = 0 WHERE id = $1 AND lease_owner = $2";
/// Delivery `$1` by lease holder `$2` failed with `$4`; tried again at `$3`.
pub(super) const RETRY_LATER: &str = "UPDATE event_deliveries SET attempts = attempts + 1, \
     next_at = $3, last_error = $4, lease_owner = NULL, lease_until = 0 \
     WHERE id = $1 AND lease_owner = $2";
/// Delivery `$1` by lease holder `$2` is given up at `$3`, with `$4`.
pub(super) const GIVE_UP: &str = "UPDATE event_deliveries SET state = 'failed', \
     attempts = attempts + 1, done_at = $3, last_error = $4, lease_owner = NULL, \
     lease_until = 0 WHERE id = $1 AND lease_owner = $2";
/// Failed deliveries to webhook `$4` (of event `$1`, or all) are pending again from `$2`,
/// tried until `$3`.
pub(super) const RETRY_FAILED: &str = "UPDATE event_deliveries SET state = 'pending', \
     attempts = 0, next_at = $2, expires_at = $3, done_at = NULL, lease_owner = NULL, \
     lease_until = 0 WHERE state = 'failed' AND webhook = $4 \
     AND (CAST($1 AS TEXT) IS NULL OR event_id = $1)";
/// Deliveries done at or before `$1` go; failed ones stay for the operator.
pub(super) const PURGE_DELIVERED: &str =
    "DELETE FROM event_deliveries WHERE state = 'delivered' AND done_at <= $1";
/// Events written at or before `$1` that have no delivery left go.
pub(super) const PURGE_EVENTS: &str = "DELETE FROM events WHERE at <= $1 AND NOT EXISTS \
     (SELECT 1 FROM event_deliveries d WHERE d.event_id = events.event_id)";

/// A client's link to the bank's authorization server, by client_id `$1`.
pub(super) const SELECT_AS_LINK: &str = concat!(
    "SELECT ",
    as_link_columns!(),
    " FROM as_registrations WHERE client_id = $1"
);
/// The link of a client just inserted (the parameters of `AsLinkRecord::values`).
macro_rules! insert_as_link {
    () => {
        concat!(
            "INSERT INTO as_registrations (",
            as_link_columns!(),
            ") VALUES ($1, $2, $3, $4)"
        )
    };
}
pub(super) const INSERT_AS_LINK: &str = insert_as_link!();
/// A client's new link after an update at the AS: the row replaced, or made if the client had
/// none.
pub(super) const UPSERT_AS_LINK: &str = concat!(
    insert_as_link!(),
    " ON CONFLICT (client_id) DO UPDATE SET \
     registration_client_uri = excluded.registration_client_uri, \
     registration_access_token = excluded.registration_access_token, \
     updated_at = excluded.updated_at"
);
/// A compensation for client `$1`'s link, if it has one, with reason `$2`, due at and made at
/// `$3`: before the client's row goes (its link goes with it).
pub(super) const COMPENSATE_FROM_LINK: &str = "INSERT INTO as_compensations (client_id, \
     registration_client_uri, registration_access_token, reason, next_attempt_at, created_at) \
     SELECT client_id, registration_client_uri, registration_access_token, $2, $3, $3 \
     FROM as_registrations WHERE client_id = $1";
/// A compensation (`$1`–`$4`: client_id, uri, token, reason) due at and made at `$5`; answers
/// its id.
pub(super) const INSERT_COMPENSATION: &str = "INSERT INTO as_compensations (client_id, \
     registration_client_uri, registration_access_token, reason, next_attempt_at, created_at) \
     VALUES ($1, $2, $3, $4, $5, $5) RETURNING id";
/// The compensations due at `$3` that no lease holds, oldest due first, at most `$4`.
macro_rules! compensations_due {
    () => {
        "SELECT id FROM as_compensations WHERE next_attempt_at <= $3 AND lease_until <= $3 \
         ORDER BY next_attempt_at, id LIMIT $4"
    };
}
/// Leases up to `$4` compensations due at `$3` to worker `$1` until `$2`, counting the attempt.
/// As with deliveries, the outer conditions are checked again on each row as it is locked, and
/// PostgreSQL skips rows another replica is leasing.
pub(super) const LEASE_COMPENSATIONS_POSTGRES: &str = concat!(
    "UPDATE as_compensations SET lease_owner = $1, lease_until = $2, attempts = attempts + 1 \
     WHERE id IN (",
    compensations_due!(),
    " FOR UPDATE SKIP LOCKED) AND next_attempt_at <= $3 AND lease_until <= $3"
);
/// SQLite has no row locks (one writer at a time): the same without `FOR UPDATE`.
pub(super) const LEASE_COMPENSATIONS_SQLITE: &str = concat!(
    "UPDATE as_compensations SET lease_owner = $1, lease_until = $2, attempts = attempts + 1 \
     WHERE id IN (",
    compensations_due!(),
    ") AND next_attempt_at <= $3 AND lease_until <= $3"
);
/// The compensations worker `$1` leased until `$2`, oldest first.
pub(super) const SELECT_LEASED_COMPENSATIONS: &str = concat!(
    "SELECT id, ",
    compensation_columns!(),
    " FROM as_compensations WHERE lease_owner = $1 AND lease_until = $2 ORDER BY id"
);
/// Compensation `$1`, leased by `$2`, is done: it goes.
pub(super) const COMPENSATION_DONE: &str =
    "DELETE FROM as_compensations WHERE id = $1 AND lease_owner = $2";
/// Compensation `$1`, leased by `$2`, failed with `$4`; tried again at `$3`.
pub(super) const COMPENSATION_RETRY: &str = "UPDATE as_compensations SET next_attempt_at = $3, \
     last_error = $4, lease_owner = NULL, lease_until = 0 WHERE id = $1 AND lease_owner = $2";
pub(super) const COUNT_COMPENSATIONS: &str = "SELECT COUNT(*) FROM as_compensations";
pub(super) const LIST_COMPENSATIONS: &str = concat!(
    "SELECT id, ",
    compensation_columns!(),
    " FROM as_compensations ORDER BY id"
);

/// Events after id `$1`, of client `$2` (or all), only those with a failed delivery when `$3`
/// is 1, oldest first, at most `$4`.
pub(super) const LIST_EVENTS: &str = concat!(
    "SELECT id, ",
    event_columns!(),
    " FROM events WHERE id > $1 AND (CAST($2 AS TEXT) IS NULL OR client_id = $2) \
     AND ($3 = 0 OR EXISTS (SELECT 1 FROM event_deliveries d \
     WHERE d.event_id = events.event_id AND d.state = 'failed')) ORDER BY id LIMIT $4"
);
/// The deliveries of the events with ids from `$1` to `$2`, in order.
pub(super) const LIST_DELIVERIES: &str = concat!(
    "SELECT ",
    delivery_columns!(),
    " FROM event_deliveries WHERE event_id IN \
     (SELECT event_id FROM events WHERE id >= $1 AND id <= $2) ORDER BY id"
);
/// Pending deliveries: how many, and the oldest one's event time (0 when none).
pub(super) const PENDING_SUMMARY: &str = "SELECT COUNT(*), COALESCE(MIN(e.at), 0) \
     FROM event_deliveries d JOIN events e ON e.event_id = d.event_id WHERE d.state = 'pending'";

/// A page of audit records after id `$1`, of client `$2` (or all), at or after `$3`, at most
/// `$4`.
pub(super) const LIST_AUDIT_PAGE: &str = concat!(
    "SELECT id, ",
    audit_columns!(),
    " FROM audit_log WHERE id > $1 AND (CAST($2 AS TEXT) IS NULL OR client_id = $2) \
     AND at >= $3 ORDER BY id LIMIT $4"
);

#[cfg(feature = "test-support")]
/// Row counts per table, for tests.
pub(super) const COUNT_ROWS: [(&str, &str); 8] = [
    ("clients", "SELECT COUNT(*) FROM clients"),
    ("jtis", "SELECT COUNT(*) FROM jtis"),
    ("tokens", "SELECT COUNT(*) FROM tokens"),
    ("audit_log", "SELECT COUNT(*) FROM audit_log"),
    ("events", "SELECT COUNT(*) FROM events"),
    ("event_deliveries", "SELECT COUNT(*) FROM event_deliveries"),
    ("as_registrations", "SELECT COUNT(*) FROM as_registrations"),
    ("as_compensations", "SELECT COUNT(*) FROM as_compensations"),
];
#[cfg(feature = "test-support")]
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
