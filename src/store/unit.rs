//! The write units: every write the server makes, each described once as its ordered
//! statements and what their row counts mean.
//!
//! A backend runs a unit in one transaction (PostgreSQL) or one savepoint of a group commit
//! (the SQLite writer thread). All it supplies is "run this statement, tell me the rows it
//! changed" ([`Execute`] for the synchronous SQLite writer, [`ExecuteAsync`] for sqlx); the
//! order of the statements, and what 0 rows means, live here only. So "the jtis, the row and
//! the audit record, all or nothing" is stated once for both engines.

use std::borrow::Cow;
use std::future::Future;

use super::error::{Conflict, StoreError, StoreResult};
use super::record::{AuditRecord, ClientRecord, JtiRecord, TokenRecord};
use super::schema::{
    DELETE_CLIENT, DELETE_CLIENT_TOKENS, INSERT_AUDIT, INSERT_CLIENT, INSERT_TOKEN, PURGE_JTIS,
    PURGE_TOKENS, REMEMBER_JTI, REVOKE_CLIENT_TOKENS, REVOKE_TOKEN, SET_CLIENT_ENABLED,
    UPDATE_CLIENT,
};

/// One bound value; statement parameters `$1`, `$2`, … are the slice in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Param<'a> {
    Text(&'a str),
    OptText(Option<&'a str>),
    Int(i64),
    Bool(bool),
}

use Param::{Bool, Int, OptText, Text};

/// Parameters of the widest statement (INSERT_CLIENT).
const MAX_PARAMS: usize = 17;

/// What a statement's row count means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Any count is fine.
    Any,
    /// 0 rows: the `jti` at this index was seen and has not expired. The unit fails with
    /// [`Conflict::Jti`] and writes nothing.
    FreshJti(usize),
    /// 0 rows: the row to change does not exist. The unit is undone and answers "not found".
    Found,
    /// The count is the unit's answer (a purge).
    Count,
}

/// One statement of a unit, with its parameters held inline (no allocation per statement).
#[derive(Debug, Clone, Copy)]
pub(super) struct Statement<'a> {
    pub sql: &'static str,
    params: [Param<'a>; MAX_PARAMS],
    len: usize,
    check: Check,
}

impl<'a> Statement<'a> {
    fn new<const N: usize>(sql: &'static str, check: Check, params: [Param<'a>; N]) -> Self {
        const { assert!(N <= MAX_PARAMS) };
        let mut all = [Int(0); MAX_PARAMS];
        all[..N].copy_from_slice(&params);
        Self {
            sql,
            params: all,
            len: N,
            check,
        }
    }

    /// The values for `$1`, `$2`, … in order.
    pub fn params(&self) -> &[Param<'a>] {
        &self.params[..self.len]
    }
}

/// How a unit ended, when no statement failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Every statement ran: commit.
    Done,
    /// The row to change does not exist: undo the unit (its jtis too) and answer false.
    NotFound,
    /// A purge deleted this many rows: commit.
    Count(u64),
}

impl Outcome {
    /// Whether the unit's writes are kept; otherwise the backend rolls them back.
    pub fn commits(self) -> bool {
        !matches!(self, Self::NotFound)
    }

    /// The answer of the units that report whether their row existed.
    pub fn found(self) -> bool {
        matches!(self, Self::Done)
    }

    /// The answer of a purge.
    pub fn count(self) -> u64 {
        match self {
            Self::Count(n) => n,
            _ => 0,
        }
    }
}

/// The tables with an expiry to purge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expiring {
    Jtis,
    Tokens,
}

/// Every write. Borrowed for PostgreSQL (run in the caller's task); owned
/// ([`to_static`](Self::to_static)) to cross to the SQLite writer thread.
#[derive(Debug, Clone)]
pub(super) enum WriteUnit<'a> {
    CreateClient {
        client: Cow<'a, ClientRecord>,
        /// Fill `software_id_unique`, so that a second client for it is refused.
        unique_software_id: bool,
        jtis: Cow<'a, [JtiRecord]>,
        audit: Cow<'a, AuditRecord>,
    },
    UpdateClient {
        client: Cow<'a, ClientRecord>,
        jtis: Cow<'a, [JtiRecord]>,
        audit: Cow<'a, AuditRecord>,
    },
    DeleteClient {
        client_id: Cow<'a, str>,
        audit: Cow<'a, AuditRecord>,
    },
    SetEnabled {
        client_id: Cow<'a, str>,
        enabled: bool,
        audit: Cow<'a, AuditRecord>,
    },
    InsertToken {
        token: Cow<'a, TokenRecord>,
        jtis: Cow<'a, [JtiRecord]>,
        audit: Cow<'a, AuditRecord>,
    },
    RevokeToken {
        token_hash: Cow<'a, str>,
        audit: Cow<'a, AuditRecord>,
    },
    AppendAudit {
        audit: Cow<'a, AuditRecord>,
    },
    Purge {
        table: Expiring,
        /// Rows that expired at or before this time go.
        before: i64,
    },
}

impl WriteUnit<'_> {
    /// Statement `i` (from 0) of this unit, or None after its last. This is the one place that
    /// says what each write does, in which order, and what 0 rows means.
    fn statement(&self, i: usize, now: i64) -> Option<Statement<'_>> {
        use Check::{Any, Count, Found};
        // The jtis go first, so that a replay is refused before any other row is written.
        let jtis = self.jtis();
        if let Some(j) = jtis.get(i) {
            return Some(Statement::new(
                REMEMBER_JTI,
                Check::FreshJti(i),
                [Text(&j.scope), Text(&j.jti), Int(j.expires_at), Int(now)],
            ));
        }
        let statement = match (self, i - jtis.len()) {
            (
                Self::CreateClient {
                    client,
                    unique_software_id,
                    ..
                },
                0,
            ) => Statement::new(INSERT_CLIENT, Any, client_row(client, *unique_software_id)),
            (Self::CreateClient { audit, .. }, 1) => insert_audit(audit),

            (Self::UpdateClient { client: c, .. }, 0) => Statement::new(
                UPDATE_CLIENT,
                Found,
                [
                    Text(&c.client_id),
                    Text(&c.org_id),
                    Text(&c.metadata),
                    Text(&c.grant_types),
                    Text(&c.scope),
                    Text(&c.token_endpoint_auth_method),
                    OptText(c.tls_client_auth_subject_dn.as_deref()),
                    Text(&c.jwks_uri),
                    OptText(c.cert_thumbprint.as_deref()),
                    Int(c.updated_at),
                    Text(&c.dcr_version),
                    OptText(c.jwks_revoked_uri.as_deref()),
                ],
            ),
            (Self::UpdateClient { audit, .. }, 1) => insert_audit(audit),

            // Tokens first (the foreign key also cascades): no token may outlive its client.
            (Self::DeleteClient { client_id, .. }, 0) => {
                Statement::new(DELETE_CLIENT_TOKENS, Any, [Text(client_id)])
            }
            (Self::DeleteClient { client_id, .. }, 1) => {
                Statement::new(DELETE_CLIENT, Found, [Text(client_id)])
            }
            (Self::DeleteClient { audit, .. }, 2) => insert_audit(audit),

            (
                Self::SetEnabled {
                    client_id,
                    enabled,
                    audit,
                },
                0,
            ) => Statement::new(
                SET_CLIENT_ENABLED,
                Found,
                [Text(client_id), Bool(*enabled), Int(audit.at)],
            ),
            // Disabling revokes every live token, so that enabling again brings none back.
            (
                Self::SetEnabled {
                    client_id,
                    enabled: false,
                    ..
                },
                1,
            ) => Statement::new(
                REVOKE_CLIENT_TOKENS,
                Any,
                [Text(client_id), Bool(true), Bool(false)],
            ),
            (
                Self::SetEnabled {
                    audit,
                    enabled: true,
                    ..
                },
                1,
            )
            | (
                Self::SetEnabled {
                    audit,
                    enabled: false,
                    ..
                },
                2,
            ) => insert_audit(audit),

            // A token for a client that is gone fails on the foreign key: Conflict::UnknownClient.
            (Self::InsertToken { token, .. }, 0) => {
                Statement::new(INSERT_TOKEN, Any, token_row(token))
            }
            (Self::InsertToken { audit, .. }, 1) => insert_audit(audit),

            // 0 rows: unknown, or revoked already.
            (Self::RevokeToken { token_hash, .. }, 0) => Statement::new(
                REVOKE_TOKEN,
                Found,
                [Text(token_hash), Bool(true), Bool(false)],
            ),
            (Self::RevokeToken { audit, .. }, 1) => insert_audit(audit),

            (Self::AppendAudit { audit }, 0) => insert_audit(audit),

            (Self::Purge { table, before }, 0) => {
                let sql = match table {
                    Expiring::Jtis => PURGE_JTIS,
                    Expiring::Tokens => PURGE_TOKENS,
                };
                Statement::new(sql, Count, [Int(*before)])
            }
            _ => return None,
        };
        Some(statement)
    }

    fn jtis(&self) -> &[JtiRecord] {
        match self {
            Self::CreateClient { jtis, .. }
            | Self::UpdateClient { jtis, .. }
            | Self::InsertToken { jtis, .. } => jtis,
            _ => &[],
        }
    }

    /// Whether the unit has more than one statement, so needs a transaction of its own.
    pub fn needs_transaction(&self) -> bool {
        !matches!(self, Self::AppendAudit { .. } | Self::Purge { .. })
    }

    /// The same unit owning its data (the SQLite writer thread outlives the caller's borrow).
    pub fn to_static(&self) -> WriteUnit<'static> {
        fn own<T: ToOwned + ?Sized>(c: &T) -> Cow<'static, T> {
            Cow::Owned(c.to_owned())
        }
        match self {
            Self::CreateClient {
                client,
                unique_software_id,
                jtis,
                audit,
            } => WriteUnit::CreateClient {
                client: own(&**client),
                unique_software_id: *unique_software_id,
                jtis: own(&**jtis),
                audit: own(&**audit),
            },
            Self::UpdateClient {
                client,
                jtis,
                audit,
            } => WriteUnit::UpdateClient {
                client: own(&**client),
                jtis: own(&**jtis),
                audit: own(&**audit),
            },
            Self::DeleteClient { client_id, audit } => WriteUnit::DeleteClient {
                client_id: own(&**client_id),
                audit: own(&**audit),
            },
            Self::SetEnabled {
                client_id,
                enabled,
                audit,
            } => WriteUnit::SetEnabled {
                client_id: own(&**client_id),
                enabled: *enabled,
                audit: own(&**audit),
            },
            Self::InsertToken { token, jtis, audit } => WriteUnit::InsertToken {
                token: own(&**token),
                jtis: own(&**jtis),
                audit: own(&**audit),
            },
            Self::RevokeToken { token_hash, audit } => WriteUnit::RevokeToken {
                token_hash: own(&**token_hash),
                audit: own(&**audit),
            },
            Self::AppendAudit { audit } => WriteUnit::AppendAudit {
                audit: own(&**audit),
            },
            Self::Purge { table, before } => WriteUnit::Purge {
                table: *table,
                before: *before,
            },
        }
    }
}

/// A client's parameters, in column order, for [`INSERT_CLIENT`] and the bulk
/// [`INSERT_CLIENTS`](super::schema::INSERT_CLIENTS).
pub(super) fn client_row(c: &ClientRecord, unique_software_id: bool) -> [Param<'_>; 17] {
    [
        Text(&c.client_id),
        Text(&c.software_id),
        Text(&c.org_id),
        Text(&c.metadata),
        Text(&c.grant_types),
        Text(&c.scope),
        Text(&c.client_secret_hash),
        Text(&c.token_endpoint_auth_method),
        OptText(c.tls_client_auth_subject_dn.as_deref()),
        Text(&c.jwks_uri),
        OptText(c.cert_thumbprint.as_deref()),
        Bool(c.enabled),
        Int(c.created_at),
        Int(c.updated_at),
        Text(&c.dcr_version),
        OptText(c.jwks_revoked_uri.as_deref()),
        OptText(unique_software_id.then_some(c.software_id.as_str())),
    ]
}

/// A token's parameters, in column order, for [`INSERT_TOKEN`] and the bulk
/// [`INSERT_TOKENS`](super::schema::INSERT_TOKENS).
pub(super) fn token_row(t: &TokenRecord) -> [Param<'_>; 7] {
    [
        Text(&t.token_hash),
        Text(&t.client_id),
        Text(&t.scope),
        OptText(t.cert_thumbprint.as_deref()),
        Int(t.issued_at),
        Int(t.expires_at),
        Bool(t.revoked),
    ]
}

fn insert_audit(a: &AuditRecord) -> Statement<'_> {
    Statement::new(
        INSERT_AUDIT,
        Check::Any,
        [
            Int(a.at),
            Text(&a.action),
            Text(&a.outcome),
            OptText(a.client_id.as_deref()),
            OptText(a.software_id.as_deref()),
            OptText(a.org_id.as_deref()),
            OptText(a.cert_thumbprint.as_deref()),
            OptText(a.interaction_id.as_deref()),
            OptText(a.error_code.as_deref()),
            OptText(a.detail.as_deref()),
            OptText(a.dcr_version.as_deref()),
        ],
    )
}

/// Walks a unit: hands out its statements one by one and judges each row count. Both
/// runners below only drive it, so the rules are in one place however the I/O is done.
struct Walk<'u> {
    unit: &'u WriteUnit<'u>,
    now: i64,
    next: usize,
    check: Check,
}

// A step lives on the stack for one statement; boxing it would allocate per statement.
#[allow(clippy::large_enum_variant)]
enum Step<'u> {
    Run(Statement<'u>),
    Done(Outcome),
}

impl<'u> Walk<'u> {
    fn new(unit: &'u WriteUnit<'u>, now: i64) -> Self {
        Self {
            unit,
            now,
            next: 0,
            check: Check::Any,
        }
    }

    /// `rows`: what the statement handed out last changed (None before the first).
    fn step(&mut self, rows: Option<u64>) -> StoreResult<Step<'u>> {
        match (self.check, rows) {
            (Check::FreshJti(i), Some(0)) => return Err(StoreError::Conflict(Conflict::Jti(i))),
            (Check::Found, Some(0)) => return Ok(Step::Done(Outcome::NotFound)),
            (Check::Count, Some(n)) => return Ok(Step::Done(Outcome::Count(n))),
            _ => {}
        }
        match self.unit.statement(self.next, self.now) {
            Some(s) => {
                self.next += 1;
                self.check = s.check;
                Ok(Step::Run(s))
            }
            None => Ok(Step::Done(Outcome::Done)),
        }
    }
}

/// Runs one statement and returns the rows it changed: all a synchronous backend supplies.
pub(super) trait Execute {
    fn exec(&mut self, statement: &Statement<'_>) -> StoreResult<u64>;
}

/// Runs one statement and returns the rows it changed: all an async backend supplies.
pub(super) trait ExecuteAsync {
    fn exec(&mut self, statement: &Statement<'_>) -> impl Future<Output = StoreResult<u64>> + Send;
}

/// Runs `unit` on `db`. On `Err` or [`Outcome::NotFound`] the caller rolls back what ran.
pub(super) fn run(db: &mut impl Execute, unit: &WriteUnit<'_>, now: i64) -> StoreResult<Outcome> {
    let mut walk = Walk::new(unit, now);
    let mut rows = None;
    loop {
        match walk.step(rows)? {
            Step::Run(s) => rows = Some(db.exec(&s)?),
            Step::Done(outcome) => return Ok(outcome),
        }
    }
}

/// [`run`], for an async backend.
pub(super) async fn run_async(
    db: &mut (impl ExecuteAsync + Send),
    unit: &WriteUnit<'_>,
    now: i64,
) -> StoreResult<Outcome> {
    let mut walk = Walk::new(unit, now);
    let mut rows = None;
    loop {
        match walk.step(rows)? {
            Step::Run(s) => rows = Some(db.exec(&s).await?),
            Step::Done(outcome) => return Ok(outcome),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers each statement with the next scripted row count (1 when the script ends),
    /// and records what ran.
    struct Script {
        rows: Vec<u64>,
        ran: Vec<(&'static str, usize)>,
    }

    impl Execute for Script {
        fn exec(&mut self, s: &Statement<'_>) -> StoreResult<u64> {
            self.ran.push((s.sql, s.params().len()));
            Ok(if self.ran.len() <= self.rows.len() {
                self.rows[self.ran.len() - 1]
            } else {
                1
            })
        }
    }

    fn go(unit: &WriteUnit<'_>, rows: &[u64]) -> (StoreResult<Outcome>, Vec<&'static str>) {
        let mut db = Script {
            rows: rows.to_vec(),
            ran: Vec::new(),
        };
        let result = run(&mut db, unit, 100);
        (result, db.ran.into_iter().map(|(sql, _)| sql).collect())
    }

    fn client() -> ClientRecord {
        ClientRecord {
            client_id: "c".into(),
            software_id: "s".into(),
            org_id: "o".into(),
            metadata: "{}".into(),
            grant_types: "client_credentials".into(),
            scope: "accounts".into(),
            client_secret_hash: "h".into(),
            token_endpoint_auth_method: "private_key_jwt".into(),
            tls_client_auth_subject_dn: None,
            jwks_uri: "https://x/jwks".into(),
            cert_thumbprint: None,
            enabled: true,
            created_at: 1,
            updated_at: 1,
            dcr_version: "3.2".into(),
            jwks_revoked_uri: None,
        }
    }

    fn jtis() -> Vec<JtiRecord> {
        ["a", "b"]
            .map(|j| JtiRecord {
                scope: "request:s".into(),
                jti: j.into(),
                expires_at: 200,
            })
            .to_vec()
    }

    fn token() -> TokenRecord {
        TokenRecord {
            token_hash: "t".into(),
            client_id: "c".into(),
            scope: "accounts".into(),
            cert_thumbprint: None,
            issued_at: 1,
            expires_at: 2,
            revoked: false,
        }
    }

    fn every_unit<'a>(
        c: &'a ClientRecord,
        t: &'a TokenRecord,
        j: &'a [JtiRecord],
        a: &'a AuditRecord,
    ) -> Vec<WriteUnit<'a>> {
        let id = || Cow::Borrowed(c.client_id.as_str());
        vec![
            WriteUnit::CreateClient {
                client: Cow::Borrowed(c),
                unique_software_id: true,
                jtis: Cow::Borrowed(j),
                audit: Cow::Borrowed(a),
            },
            WriteUnit::UpdateClient {
                client: Cow::Borrowed(c),
                jtis: Cow::Borrowed(j),
                audit: Cow::Borrowed(a),
            },
            WriteUnit::DeleteClient {
                client_id: id(),
                audit: Cow::Borrowed(a),
            },
            WriteUnit::SetEnabled {
                client_id: id(),
                enabled: true,
                audit: Cow::Borrowed(a),
            },
            WriteUnit::SetEnabled {
                client_id: id(),
                enabled: false,
                audit: Cow::Borrowed(a),
            },
            WriteUnit::InsertToken {
                token: Cow::Borrowed(t),
                jtis: Cow::Borrowed(j),
                audit: Cow::Borrowed(a),
            },
            WriteUnit::RevokeToken {
                token_hash: Cow::Borrowed(&t.token_hash),
                audit: Cow::Borrowed(a),
            },
            WriteUnit::AppendAudit {
                audit: Cow::Borrowed(a),
            },
            WriteUnit::Purge {
                table: Expiring::Jtis,
                before: 5,
            },
            WriteUnit::Purge {
                table: Expiring::Tokens,
                before: 5,
            },
        ]
    }

    /// The highest `$N` in a statement.
    fn placeholders(sql: &str) -> usize {
        sql.split('$')
            .skip(1)
            .filter_map(|s| {
                let digits: String = s.chars().take_while(char::is_ascii_digit).collect();
                digits.parse().ok()
            })
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn every_statement_binds_each_of_its_placeholders() {
        let (c, t, j, a) = (client(), token(), jtis(), AuditRecord::default());
        for unit in every_unit(&c, &t, &j, &a) {
            let mut db = Script {
                rows: Vec::new(),
                ran: Vec::new(),
            };
            run(&mut db, &unit, 100).unwrap();
            assert!(!db.ran.is_empty());
            for (sql, n) in db.ran {
                assert_eq!(placeholders(sql), n, "{sql}");
            }
            // The owned copy is the same unit.
            assert_eq!(format!("{:?}", unit.to_static()), format!("{unit:?}"));
        }
    }

    #[test]
    fn jtis_then_row_then_audit() {
        let (c, j, a) = (client(), jtis(), AuditRecord::default());
        let unit = WriteUnit::CreateClient {
            client: Cow::Borrowed(&c),
            unique_software_id: false,
            jtis: Cow::Borrowed(&j),
            audit: Cow::Borrowed(&a),
        };
        let (result, ran) = go(&unit, &[]);
        assert_eq!(result, Ok(Outcome::Done));
        assert_eq!(
            ran,
            [REMEMBER_JTI, REMEMBER_JTI, INSERT_CLIENT, INSERT_AUDIT]
        );
        // The second jti was seen: its index, and nothing after it runs.
        let (result, ran) = go(&unit, &[1, 0]);
        assert_eq!(result, Err(StoreError::Conflict(Conflict::Jti(1))));
        assert_eq!(ran, [REMEMBER_JTI, REMEMBER_JTI]);
    }

    #[test]
    fn a_missing_row_is_not_found_and_writes_no_audit() {
        let (c, t, j, a) = (client(), token(), jtis(), AuditRecord::default());
        let update = WriteUnit::UpdateClient {
            client: Cow::Borrowed(&c),
            jtis: Cow::Borrowed(&j),
            audit: Cow::Borrowed(&a),
        };
        let (result, ran) = go(&update, &[1, 1, 0]);
        assert_eq!(result, Ok(Outcome::NotFound));
        assert!(!result.unwrap().commits());
        assert_eq!(ran, [REMEMBER_JTI, REMEMBER_JTI, UPDATE_CLIENT]);

        let delete = WriteUnit::DeleteClient {
            client_id: Cow::Borrowed("c"),
            audit: Cow::Borrowed(&a),
        };
        let (result, ran) = go(&delete, &[0, 0]);
        assert_eq!(result, Ok(Outcome::NotFound));
        assert_eq!(ran, [DELETE_CLIENT_TOKENS, DELETE_CLIENT]);

        let revoke = WriteUnit::RevokeToken {
            token_hash: Cow::Borrowed(&t.token_hash),
            audit: Cow::Borrowed(&a),
        };
        let (result, _) = go(&revoke, &[0]);
        assert_eq!(result.map(Outcome::found), Ok(false));
        let (result, ran) = go(&revoke, &[1]);
        assert_eq!(result.map(Outcome::found), Ok(true));
        assert_eq!(ran, [REVOKE_TOKEN, INSERT_AUDIT]);
    }

    #[test]
    fn disabling_revokes_tokens_enabling_does_not() {
        let a = AuditRecord::default();
        let set = |enabled| WriteUnit::SetEnabled {
            client_id: Cow::Borrowed("c"),
            enabled,
            audit: Cow::Borrowed(&a),
        };
        let (_, ran) = go(&set(false), &[]);
        assert_eq!(
            ran,
            [SET_CLIENT_ENABLED, REVOKE_CLIENT_TOKENS, INSERT_AUDIT]
        );
        let (_, ran) = go(&set(true), &[]);
        assert_eq!(ran, [SET_CLIENT_ENABLED, INSERT_AUDIT]);
    }

    #[test]
    fn a_purge_answers_its_count() {
        let unit = WriteUnit::Purge {
            table: Expiring::Tokens,
            before: 5,
        };
        let (result, ran) = go(&unit, &[7]);
        assert_eq!(result.map(Outcome::count), Ok(7));
        assert_eq!(ran, [PURGE_TOKENS]);
        assert!(!unit.needs_transaction());
    }
}
