//! The write units: every write the server makes, each described once as its ordered
//! statements and what their row counts mean.
//!
//! A backend runs a unit in one transaction (PostgreSQL) or one savepoint of a group commit
//! (the SQLite writer thread). All it supplies is "run this statement, tell me the rows it
//! changed" ([`Execute`] for the synchronous SQLite writer, [`ExecuteAsync`] for sqlx); the
//! order of the statements, and what 0 rows means, live here only. So "the jtis, the row and
//! the audit record, all or nothing" is stated once for both engines.

use std::future::Future;
use std::sync::Arc;

use super::error::{Conflict, StoreError, StoreResult};
use super::record::{
    AsLinkRecord, AuditRecord, ClientRecord, CompensationResult, DeliveryResult, EventRouting,
    EventTarget, EventType, JtiRecord, NewCompensation, TokenRecord,
};
use super::schema::{
    COMPENSATE_FROM_LINK, COMPENSATION_DONE, COMPENSATION_RETRY, DELETE_CLIENT,
    DELETE_CLIENT_TOKENS, DELIVERED, GIVE_UP, INSERT_AS_LINK, INSERT_AUDIT, INSERT_CLIENT,
    INSERT_CLIENT_EVENT, INSERT_CLIENT_EVENT_IF_LIVE_TOKENS,
    INSERT_CLIENT_REGISTERED_LINKED_POSTGRES, INSERT_CLIENT_REGISTERED_LINKED_WITH_JTI_POSTGRES,
    INSERT_CLIENT_REGISTERED_POSTGRES, INSERT_CLIENT_REGISTERED_WITH_JTI_POSTGRES,
    INSERT_COMPENSATION, INSERT_DELIVERY, INSERT_TOKEN, INSERT_TOKEN_AUDITED_POSTGRES,
    INSERT_TOKEN_AUDITED_WITH_JTI_POSTGRES, INSERT_TOKEN_EVENT, LEASE_COMPENSATIONS_POSTGRES,
    LEASE_COMPENSATIONS_SQLITE, LEASE_DELIVERIES_POSTGRES, LEASE_DELIVERIES_SQLITE, LOCK_CLIENT,
    PURGE_DELIVERED, PURGE_EVENTS, PURGE_JTIS, PURGE_TOKENS, REMEMBER_JTI, RETRY_FAILED,
    RETRY_LATER, REVOKE_CLIENT_TOKENS, REVOKE_TOKEN, SET_CLIENT_ENABLED, UPDATE_CLIENT,
    UPSERT_AS_LINK,
};

pub(super) use super::row::Param;
use Param::{Bool, Int, OptText, Text};

/// Parameters of the widest statement (INSERT_CLIENT_REGISTERED_LINKED_WITH_JTI_POSTGRES).
const MAX_PARAMS: usize = 41;

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
    /// An `INSERT … RETURNING id` of one row: the backends run it as a query and hand back
    /// the id it returns in place of a row count; the id is the unit's answer.
    Id,
}

/// One statement of a unit, with its parameters held inline (no allocation per statement).
#[derive(Debug, Clone, Copy)]
pub(super) struct Statement<'a> {
    /// The text for PostgreSQL, and for SQLite unless `sqlite_sql` differs.
    pub sql: &'static str,
    pub sqlite_sql: &'static str,
    params: [Param<'a>; MAX_PARAMS],
    len: usize,
    check: Check,
}

impl<'a> Statement<'a> {
    fn new<const N: usize>(sql: &'static str, check: Check, params: [Param<'a>; N]) -> Self {
        Self::per_engine(sql, sql, check, params)
    }

    /// A statement whose text differs per engine (row-locking clauses).
    fn per_engine<const N: usize>(
        sql: &'static str,
        sqlite_sql: &'static str,
        check: Check,
        params: [Param<'a>; N],
    ) -> Self {
        const { assert!(N <= MAX_PARAMS) };
        let mut all = [Int(0); MAX_PARAMS];
        all[..N].copy_from_slice(&params);
        Self {
            sql,
            sqlite_sql,
            params: all,
            len: N,
            check,
        }
    }

    /// The values for `$1`, `$2`, … in order.
    pub fn params(&self) -> &[Param<'a>] {
        &self.params[..self.len]
    }

    /// Whether the statement answers one row with the id it inserted ([`Check::Id`]), which
    /// the backend returns instead of the rows it changed.
    pub fn returns_id(&self) -> bool {
        self.check == Check::Id
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
    /// A row was inserted with this id: commit.
    Inserted(i64),
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

    /// The answer of an insert that returns its id.
    pub fn inserted(self) -> StoreResult<i64> {
        match self {
            Self::Inserted(id) => Ok(id),
            other => Err(StoreError::Other(format!("no id inserted: {other:?}"))),
        }
    }
}

/// The tables with an expiry to purge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expiring {
    Jtis,
    Tokens,
    /// Delivered deliveries, then events without deliveries.
    Events,
}

/// The events a unit writes, with the ids they get and the webhooks each gets a delivery
/// row for (as configured when the unit was made). Owned: cheap to copy to the SQLite writer.
#[derive(Debug, Clone)]
pub(super) struct Outbox {
    /// The ids of the unit's events, in the order of its plan (at most two: a disable's
    /// `client.disabled` and `client.tokens_revoked`).
    pub ids: [String; 2],
    pub routing: Arc<EventRouting>,
    /// For `client.updated`: the changed fields, a JSON array.
    pub changed: Option<String>,
}

/// Every write. It owns its data: the SQLite writer thread outlives the caller's borrow, and
/// one clone of a record costs nothing beside the write.
#[derive(Debug, Clone)]
pub(super) enum WriteUnit {
    CreateClient {
        client: ClientRecord,
        /// Fill `software_id_unique`, so that a second client for it is refused.
        unique_software_id: bool,
        jtis: Vec<JtiRecord>,
        audit: AuditRecord,
        outbox: Outbox,
        /// `rfc7591` mode: the client's registration at the AS, inserted right after its row.
        link: Option<AsLinkRecord>,
    },
    UpdateClient {
        client: ClientRecord,
        jtis: Vec<JtiRecord>,
        audit: AuditRecord,
        outbox: Outbox,
        /// `rfc7591` mode: the registration's new token and URI, after the client's row.
        link: Option<AsLinkRecord>,
    },
    DeleteClient {
        client_id: String,
        audit: AuditRecord,
        outbox: Outbox,
        /// `rfc7591` mode: the client's link (if it has one) becomes a compensation, before
        /// the row (and with it the link) goes.
        compensation: Option<Compensating>,
    },
    SetEnabled {
        client_id: String,
        enabled: bool,
        audit: AuditRecord,
        outbox: Outbox,
    },
    InsertToken {
        token: TokenRecord,
        jtis: Vec<JtiRecord>,
        audit: AuditRecord,
    },
    RevokeToken {
        token_hash: String,
        audit: AuditRecord,
        outbox: Outbox,
    },
    AppendAudit {
        audit: AuditRecord,
    },
    Purge {
        table: Expiring,
        /// Rows that expired at or before this time go.
        before: i64,
    },
    /// Leases up to `limit` due deliveries of `webhook` to `owner` until `until`.
    LeaseDeliveries {
        owner: String,
        webhook: String,
        until: i64,
        limit: i64,
    },
    /// Ends `owner`'s lease on delivery `id` with `result`. Not found: the lease was lost.
    FinishDelivery {
        id: i64,
        owner: String,
        result: DeliveryResult,
    },
    /// Failed deliveries to `webhook` (of one event, or all) are pending again, tried until
    /// `until`.
    RetryFailed {
        event_id: Option<String>,
        webhook: String,
        until: i64,
    },
    /// A compensation, due at `now`. Answers its id.
    EnqueueCompensation {
        compensation: NewCompensation,
        now: i64,
    },
    /// Leases up to `limit` compensations due at `now` to `owner` until `until`.
    LeaseCompensations {
        owner: String,
        now: i64,
        until: i64,
        limit: i64,
    },
    /// Ends `owner`'s lease on compensation `id` with `result`. Not found: the lease was lost.
    FinishCompensation {
        id: i64,
        owner: String,
        result: CompensationResult,
    },
}

/// What a deleted client's compensation is made with: why, and when (it is due at once).
#[derive(Debug, Clone)]
pub(super) struct Compensating {
    pub reason: String,
    pub now: i64,
}

/// How an event's row is written: from the client's row, from it only while the client has
/// live tokens, or from the client of a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EventSource {
    Client,
    ClientWithLiveTokens,
    Token,
}

/// One part of a unit's plan, after its jtis.
#[derive(Debug, Clone, Copy)]
enum Part {
    /// The unit's own statement `n`.
    Core(usize),
    /// Event `n` of the outbox: its row, then one delivery row per webhook that wants it.
    Event(usize, EventType, EventSource),
    Audit,
}

impl WriteUnit {
    /// Whether the unit can change an unbounded number of rows: a purge, a client's tokens,
    /// every failed delivery. The SQLite writer commits such a unit on its own, outside a
    /// savepoint, whose journal (in memory) would hold the old copy of every page it changes.
    pub(super) fn changes_many_rows(&self) -> bool {
        matches!(
            self,
            Self::Purge { .. }
                | Self::DeleteClient { .. }
                | Self::SetEnabled { .. }
                | Self::RetryFailed { .. }
        )
    }

    /// The order of a unit's statements after its jtis: the one place that says what each
    /// write does, in which order. An event follows the statement that takes the client's row
    /// lock, so that a client's events are numbered in the order their changes commit.
    fn plan(&self) -> &'static [Part] {
        use EventSource::{Client, ClientWithLiveTokens, Token};
        use EventType::*;
        use Part::{Audit, Core, Event};
        match self {
            Self::CreateClient { link: None, .. } => {
                &[Core(0), Event(0, Registered, Client), Audit]
            }
            // The link right after the row it refers to.
            Self::CreateClient { link: Some(_), .. } => {
                &[Core(0), Core(1), Event(0, Registered, Client), Audit]
            }
            Self::UpdateClient { link: None, .. } => &[Core(0), Event(0, Updated, Client), Audit],
            // Core(0) is 0 rows for an unknown client: the link is not written then.
            Self::UpdateClient { link: Some(_), .. } => {
                &[Core(0), Core(1), Event(0, Updated, Client), Audit]
            }
            // The lock, the event while the row exists, then the tokens and the row.
            Self::DeleteClient {
                compensation: None, ..
            } => &[Core(0), Event(0, Deleted, Client), Core(1), Core(2), Audit],
            // The compensation is made from the link before the row's delete cascades to it.
            Self::DeleteClient {
                compensation: Some(_),
                ..
            } => &[
                Core(0),
                Event(0, Deleted, Client),
                Core(3),
                Core(1),
                Core(2),
                Audit,
            ],
            Self::SetEnabled { enabled: true, .. } => &[Core(0), Event(0, Enabled, Client), Audit],
            // Whether live tokens were revoked is known only before they are.
            Self::SetEnabled { enabled: false, .. } => &[
                Core(0),
                Event(0, Disabled, Client),
                Event(1, TokensRevoked, ClientWithLiveTokens),
                Core(1),
                Audit,
            ],
            Self::InsertToken { .. } => &[Core(0), Audit],
            Self::RevokeToken { .. } => &[Core(0), Event(0, TokensRevoked, Token), Audit],
            Self::AppendAudit { .. } => &[Audit],
            Self::Purge {
                table: Expiring::Events,
                ..
            } => &[Core(0), Core(1)],
            Self::Purge { .. }
            | Self::LeaseDeliveries { .. }
            | Self::FinishDelivery { .. }
            | Self::RetryFailed { .. }
            | Self::EnqueueCompensation { .. }
            | Self::LeaseCompensations { .. }
            | Self::FinishCompensation { .. } => &[Core(0)],
        }
    }

    /// Statement `i` (from 0) of this unit, or None after its last.
    fn statement(&self, i: usize, now: i64) -> Option<Statement<'_>> {
        // The jtis go first, so that a replay is refused before any other row is written.
        let jtis = self.jtis();
        if let Some(j) = jtis.get(i) {
            return Some(Statement::new(
                REMEMBER_JTI,
                Check::FreshJti(i),
                jti_row(j, now),
            ));
        }
        let mut i = i - jtis.len();
        for part in self.plan() {
            let len = match part {
                Part::Event(_, event, _) => 1 + self.webhooks_for(*event).count(),
                _ => 1,
            };
            if i < len {
                return match *part {
                    Part::Core(n) => self.core(n, now),
                    Part::Audit => self.audit().map(insert_audit),
                    Part::Event(n, event, source) => self.event(n, event, source, i, now),
                };
            }
            i -= len;
        }
        None
    }

    /// The unit's own statement `n`.
    fn core(&self, n: usize, now: i64) -> Option<Statement<'_>> {
        use Check::{Any, Count, Found, Id};
        let statement = match (self, n) {
            (
                Self::CreateClient {
                    client,
                    unique_software_id,
                    ..
                },
                0,
            ) => Statement::new(INSERT_CLIENT, Any, client_row(client, *unique_software_id)),
            (
                Self::CreateClient {
                    link: Some(link), ..
                },
                1,
            ) => Statement::new(INSERT_AS_LINK, Any, link.values()),
            (
                Self::UpdateClient {
                    link: Some(link), ..
                },
                1,
            ) => Statement::new(UPSERT_AS_LINK, Any, link.values()),

            (Self::UpdateClient { client: c, .. }, 0) => Statement::new(
                UPDATE_CLIENT,
                Found,
                [
                    Text(&c.client_id),
                    Text(&c.org_id),
                    Text(&c.metadata),
                    Text(c.grant_types.as_str()),
                    Text(c.scope.as_str()),
                    Text(c.token_endpoint_auth_method.as_str()),
                    OptText(c.tls_client_auth_subject_dn.as_deref()),
                    Text(&c.jwks_uri),
                    OptText(c.cert_thumbprint.as_deref()),
                    Int(c.updated_at),
                    Text(c.dcr_version.as_str()),
                    OptText(c.jwks_revoked_uri.as_deref()),
                ],
            ),

            (Self::DeleteClient { client_id, .. }, 0) => {
                Statement::new(LOCK_CLIENT, Found, [Text(client_id)])
            }
            // Tokens first (the foreign key also cascades): no token may outlive its client.
            (Self::DeleteClient { client_id, .. }, 1) => {
                Statement::new(DELETE_CLIENT_TOKENS, Any, [Text(client_id)])
            }
            (Self::DeleteClient { client_id, .. }, 2) => {
                Statement::new(DELETE_CLIENT, Found, [Text(client_id)])
            }
            // A client without a link makes none (0 rows).
            (
                Self::DeleteClient {
                    client_id,
                    compensation: Some(Compensating { reason, now }),
                    ..
                },
                3,
            ) => Statement::new(
                COMPENSATE_FROM_LINK,
                Any,
                [Text(client_id), Text(reason), Int(*now)],
            ),

            (
                Self::SetEnabled {
                    client_id,
                    enabled,
                    audit,
                    ..
                },
                0,
            ) => Statement::new(
                SET_CLIENT_ENABLED,
                Found,
                [Text(client_id), Bool(*enabled), Int(audit.at)],
            ),
            // Disabling revokes every live token, so that enabling again brings none back.
            (Self::SetEnabled { client_id, .. }, 1) => Statement::new(
                REVOKE_CLIENT_TOKENS,
                Any,
                [Text(client_id), Bool(true), Bool(false)],
            ),

            // A token for a client that is gone fails on the foreign key: Conflict::UnknownClient.
            (Self::InsertToken { token, .. }, 0) => {
                Statement::new(INSERT_TOKEN, Any, token_row(token))
            }

            // 0 rows: unknown, or revoked already.
            (Self::RevokeToken { token_hash, .. }, 0) => Statement::new(
                REVOKE_TOKEN,
                Found,
                [Text(token_hash), Bool(true), Bool(false)],
            ),

            (Self::Purge { table, before }, 0) => match table {
                Expiring::Jtis => Statement::new(PURGE_JTIS, Count, [Int(*before)]),
                Expiring::Tokens => Statement::new(PURGE_TOKENS, Count, [Int(*before)]),
                Expiring::Events => Statement::new(PURGE_DELIVERED, Any, [Int(*before)]),
            },
            (
                Self::Purge {
                    table: Expiring::Events,
                    before,
                },
                1,
            ) => Statement::new(PURGE_EVENTS, Count, [Int(*before)]),

            (
                Self::LeaseDeliveries {
                    owner,
                    webhook,
                    until,
                    limit,
                },
                0,
            ) => Statement::per_engine(
                LEASE_DELIVERIES_POSTGRES,
                LEASE_DELIVERIES_SQLITE,
                Count,
                [
                    Text(owner),
                    Int(*until),
                    Int(now),
                    Int(*limit),
                    Text(webhook),
                ],
            ),
            (Self::FinishDelivery { id, owner, result }, 0) => match result {
                DeliveryResult::Delivered => {
                    Statement::new(DELIVERED, Found, [Int(*id), Text(owner), Int(now)])
                }
                DeliveryResult::RetryAt { next_at, error } => Statement::new(
                    RETRY_LATER,
                    Found,
                    [Int(*id), Text(owner), Int(*next_at), Text(error)],
                ),
                DeliveryResult::GiveUp { error } => Statement::new(
                    GIVE_UP,
                    Found,
                    [Int(*id), Text(owner), Int(now), Text(error)],
                ),
            },
            (
                Self::RetryFailed {
                    event_id,
                    webhook,
                    until,
                },
                0,
            ) => Statement::new(
                RETRY_FAILED,
                Count,
                [
                    OptText(event_id.as_deref()),
                    Int(now),
                    Int(*until),
                    Text(webhook),
                ],
            ),

            (
                Self::EnqueueCompensation {
                    compensation: c,
                    now,
                },
                0,
            ) => Statement::new(
                INSERT_COMPENSATION,
                Id,
                [
                    Text(&c.client_id),
                    Text(&c.registration_client_uri),
                    Text(&c.registration_access_token),
                    Text(&c.reason),
                    Int(*now),
                ],
            ),
            // The caller's `now`, not the walk's: the lease and its due scan agree on one time.
            (
                Self::LeaseCompensations {
                    owner,
                    now,
                    until,
                    limit,
                },
                0,
            ) => Statement::per_engine(
                LEASE_COMPENSATIONS_POSTGRES,
                LEASE_COMPENSATIONS_SQLITE,
                Count,
                [Text(owner), Int(*until), Int(*now), Int(*limit)],
            ),
            (Self::FinishCompensation { id, owner, result }, 0) => match result {
                CompensationResult::Done => {
                    Statement::new(COMPENSATION_DONE, Found, [Int(*id), Text(owner)])
                }
                CompensationResult::RetryAt { at, error } => Statement::new(
                    COMPENSATION_RETRY,
                    Found,
                    [Int(*id), Text(owner), Int(*at), Text(error)],
                ),
            },
            _ => return None,
        };
        Some(statement)
    }

    /// Statement `i` of event `n`: its row (0), then its deliveries.
    fn event(
        &self,
        n: usize,
        event: EventType,
        source: EventSource,
        i: usize,
        now: i64,
    ) -> Option<Statement<'_>> {
        let outbox = self.outbox()?;
        let id = outbox.ids.get(n)?;
        if i > 0 {
            let webhook = self.webhooks_for(event).nth(i - 1)?;
            let until = now.saturating_add(outbox.routing.max_age_secs);
            return Some(Statement::new(
                INSERT_DELIVERY,
                Check::Any,
                [Text(id), Text(&webhook.url), Int(now), Int(until)],
            ));
        }
        let audit = self.audit()?;
        let (sql, subject) = match (self, source) {
            (Self::CreateClient { client, .. } | Self::UpdateClient { client, .. }, _) => {
                (INSERT_CLIENT_EVENT, client.client_id.as_str())
            }
            (Self::DeleteClient { client_id, .. } | Self::SetEnabled { client_id, .. }, s) => (
                if s == EventSource::ClientWithLiveTokens {
                    INSERT_CLIENT_EVENT_IF_LIVE_TOKENS
                } else {
                    INSERT_CLIENT_EVENT
                },
                client_id.as_str(),
            ),
            (Self::RevokeToken { token_hash, .. }, _) => (INSERT_TOKEN_EVENT, token_hash.as_str()),
            _ => return None,
        };
        let params = [
            Text(id),
            Text(event.as_str()),
            Int(audit.at),
            Text(audit.action.as_str()),
            OptText(audit.interaction_id.as_deref()),
            OptText(outbox.changed.as_deref()),
            Text(subject),
        ];
        Some(if sql == INSERT_CLIENT_EVENT_IF_LIVE_TOKENS {
            let [a, b, c, d, e, f, g] = params;
            Statement::new(sql, Check::Any, [a, b, c, d, e, f, g, Bool(false)])
        } else {
            Statement::new(sql, Check::Any, params)
        })
    }

    /// The webhooks that get a delivery of `event`.
    fn webhooks_for(&self, event: EventType) -> impl Iterator<Item = &EventTarget> {
        self.outbox()
            .into_iter()
            .flat_map(|o| o.routing.webhooks.iter())
            .filter(move |w| w.wants(event))
    }

    fn jtis(&self) -> &[JtiRecord] {
        match self {
            Self::CreateClient { jtis, .. }
            | Self::UpdateClient { jtis, .. }
            | Self::InsertToken { jtis, .. } => jtis,
            _ => &[],
        }
    }

    fn audit(&self) -> Option<&AuditRecord> {
        match self {
            Self::CreateClient { audit, .. }
            | Self::UpdateClient { audit, .. }
            | Self::DeleteClient { audit, .. }
            | Self::SetEnabled { audit, .. }
            | Self::InsertToken { audit, .. }
            | Self::RevokeToken { audit, .. }
            | Self::AppendAudit { audit } => Some(audit),
            _ => None,
        }
    }

    fn outbox(&self) -> Option<&Outbox> {
        match self {
            Self::CreateClient { outbox, .. }
            | Self::UpdateClient { outbox, .. }
            | Self::DeleteClient { outbox, .. }
            | Self::SetEnabled { outbox, .. }
            | Self::RevokeToken { outbox, .. } => Some(outbox),
            _ => None,
        }
    }

    /// Whether the unit has more than one statement, so needs a transaction of its own.
    /// The unit as one PostgreSQL statement, where it has one: a token (the busiest write)
    /// and a registration whose event no webhook wants and that has no link to the bank's AS,
    /// each as its `jti`, its row, its event and its audit record chained through
    /// data-modifying CTEs, every row written only from the `RETURNING` of the one before. Against BEGIN, the statements one by one and
    /// COMMIT, that is one round trip instead of five or six, and PostgreSQL's own CPU per
    /// write falls by a third. The rules stay those of [`WriteUnit::statement`]: a replayed
    /// `jti` changes 0 rows and fails the unit with [`Conflict::Jti`] having written nothing;
    /// a key violation fails the whole statement. SQLite has no data-modifying CTEs (and its
    /// writer commits in groups anyway).
    pub(super) fn one_statement(&self, now: i64) -> Option<Statement<'_>> {
        match self {
            Self::InsertToken { token, jtis, audit } => {
                let (t, a) = (token_row(token), insert_audit(audit));
                match jtis.as_slice() {
                    [] => Some(Statement::new(
                        INSERT_TOKEN_AUDITED_POSTGRES,
                        Check::Any,
                        chain::<18>(&[&t, a.params()]),
                    )),
                    [j] => Some(Statement::new(
                        INSERT_TOKEN_AUDITED_WITH_JTI_POSTGRES,
                        Check::FreshJti(0),
                        chain::<22>(&[&jti_row(j, now), &t, a.params()]),
                    )),
                    _ => None,
                }
            }
            Self::CreateClient {
                client,
                unique_software_id,
                jtis,
                audit,
                outbox,
                link,
            } if self.webhooks_for(EventType::Registered).next().is_none() => {
                let c = client_row(client, *unique_software_id);
                let e = [
                    Text(&outbox.ids[0]),
                    Text(EventType::Registered.as_str()),
                    Int(audit.at),
                    Text(audit.action.as_str()),
                    OptText(audit.interaction_id.as_deref()),
                    OptText(outbox.changed.as_deref()),
                ];
                let a = insert_audit(audit);
                match (jtis.as_slice(), link) {
                    ([], None) => Some(Statement::new(
                        INSERT_CLIENT_REGISTERED_POSTGRES,
                        Check::Any,
                        chain::<34>(&[&c, &e, a.params()]),
                    )),
                    ([j], None) => Some(Statement::new(
                        INSERT_CLIENT_REGISTERED_WITH_JTI_POSTGRES,
                        Check::FreshJti(0),
                        chain::<38>(&[&jti_row(j, now), &c, &e, a.params()]),
                    )),
                    // The link is written from the client's RETURNING, so it names that
                    // client; a link for another one is refused before (`create_linked_client`).
                    ([], Some(l)) => Some(Statement::new(
                        INSERT_CLIENT_REGISTERED_LINKED_POSTGRES,
                        Check::Any,
                        chain::<37>(&[&c, &e, a.params(), &link_tail(l)]),
                    )),
                    ([j], Some(l)) => Some(Statement::new(
                        INSERT_CLIENT_REGISTERED_LINKED_WITH_JTI_POSTGRES,
                        Check::FreshJti(0),
                        chain::<41>(&[&jti_row(j, now), &c, &e, a.params(), &link_tail(l)]),
                    )),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    pub fn needs_transaction(&self) -> bool {
        self.jtis().len() + self.plan().len() > 1
    }
}

/// A client's parameters for [`INSERT_CLIENT`] and the bulk
/// [`INSERT_CLIENTS`](super::schema::INSERT_CLIENTS): its columns, then `software_id_unique`.
pub(super) fn client_row(c: &ClientRecord, unique_software_id: bool) -> [Param<'_>; 17] {
    let unique = [OptText(
        unique_software_id.then_some(c.software_id.as_str()),
    )];
    chain(&[&c.values(), &unique])
}

/// A link's parameters after its client_id (which the one-statement forms take from the
/// client's `RETURNING`).
fn link_tail(l: &AsLinkRecord) -> [Param<'_>; 3] {
    [
        Text(&l.registration_client_uri),
        Text(&l.registration_access_token),
        Int(l.updated_at),
    ]
}

/// A `jti`'s parameters for [`REMEMBER_JTI`]: remembered unless seen and alive at `now`.
fn jti_row(j: &JtiRecord, now: i64) -> [Param<'_>; 4] {
    [Text(&j.scope), Text(&j.jti), Int(j.expires_at), Int(now)]
}

/// A token's parameters, in column order, for [`INSERT_TOKEN`] and the bulk
/// [`INSERT_TOKENS`](super::schema::INSERT_TOKENS).
pub(super) fn token_row(t: &TokenRecord) -> [Param<'_>; 7] {
    t.values()
}

fn insert_audit(a: &AuditRecord) -> Statement<'_> {
    Statement::new(INSERT_AUDIT, Check::Any, a.values())
}

/// `parts` end to end, as the parameters of one statement.
fn chain<'a, const N: usize>(parts: &[&[Param<'a>]]) -> [Param<'a>; N] {
    let mut all = [Int(0); N];
    let mut at = 0;
    for part in parts {
        all[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    debug_assert_eq!(at, N);
    all
}

/// Walks a unit: hands out its statements one by one and judges each row count. Both
/// runners below only drive it, so the rules are in one place however the I/O is done.
struct Walk<'u> {
    unit: &'u WriteUnit,
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
    fn new(unit: &'u WriteUnit, now: i64) -> Self {
        Self {
            unit,
            now,
            next: 0,
            check: Check::Any,
        }
    }

    /// `rows`: what the statement handed out last changed (None before the first).
    fn step(&mut self, rows: Option<u64>) -> StoreResult<Step<'u>> {
        if let Some(rows) = rows
            && let Some(done) = judge(self.check, rows)?
        {
            return Ok(Step::Done(done));
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

/// What `rows` changed by a statement with `check` mean: the unit fails, ends, or goes on.
fn judge(check: Check, rows: u64) -> StoreResult<Option<Outcome>> {
    match (check, rows) {
        (Check::FreshJti(i), 0) => Err(StoreError::Conflict(Conflict::Jti(i))),
        (Check::Found, 0) => Ok(Some(Outcome::NotFound)),
        (Check::Count, n) => Ok(Some(Outcome::Count(n))),
        (Check::Id, id) => i64::try_from(id)
            .map(|id| Some(Outcome::Inserted(id)))
            .map_err(|_| StoreError::Other(format!("inserted id {id} out of range"))),
        _ => Ok(None),
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
pub(super) fn run(db: &mut impl Execute, unit: &WriteUnit, now: i64) -> StoreResult<Outcome> {
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
    unit: &WriteUnit,
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

/// [`run_async`] for a unit that [`WriteUnit::one_statement`] wrote as one statement: the same
/// judgement of its row count, in one round trip and without a transaction around it.
pub(super) async fn run_one_async(
    db: &mut (impl ExecuteAsync + Send),
    statement: &Statement<'_>,
) -> StoreResult<Outcome> {
    let rows = db.exec(statement).await?;
    Ok(judge(statement.check, rows)?.unwrap_or(Outcome::Done))
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

    fn go(unit: &WriteUnit, rows: &[u64]) -> (StoreResult<Outcome>, Vec<&'static str>) {
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
            grant_types: "client_credentials".parse().expect("grant types"),
            scope: "accounts".parse().expect("scopes"),
            client_secret_hash: "h".into(),
            token_endpoint_auth_method: crate::domain::AuthMethod::PrivateKeyJwt,
            tls_client_auth_subject_dn: None,
            jwks_uri: "https://x/jwks".into(),
            cert_thumbprint: None,
            enabled: true,
            created_at: 1,
            updated_at: 1,
            dcr_version: crate::domain::SpecVersion::V3_2,
            jwks_revoked_uri: None,
        }
    }

    fn audit() -> AuditRecord {
        AuditRecord::new(
            1,
            crate::domain::AuditAction::Register,
            crate::domain::AuditOutcome::Success,
        )
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
            scope: "accounts".parse().expect("scopes"),
            cert_thumbprint: None,
            issued_at: 1,
            expires_at: 2,
            revoked: false,
        }
    }

    fn link() -> AsLinkRecord {
        AsLinkRecord {
            client_id: "c".into(),
            registration_client_uri: "https://as/reg/c".into(),
            registration_access_token: "rat".into(),
            updated_at: 1,
        }
    }

    fn compensating() -> Compensating {
        Compensating {
            reason: "operator delete".into(),
            now: 7,
        }
    }

    fn new_compensation() -> NewCompensation {
        NewCompensation {
            client_id: "c".into(),
            registration_client_uri: "https://as/reg/c".into(),
            registration_access_token: "rat".into(),
            reason: "jti replayed".into(),
        }
    }

    /// An outbox routing to a webhook for every type and one for `client.disabled` only.
    fn outbox() -> Outbox {
        Outbox {
            ids: ["e1".into(), "e2".into()],
            routing: Arc::new(EventRouting {
                webhooks: vec![
                    EventTarget {
                        url: "https://all".into(),
                        types: Vec::new(),
                    },
                    EventTarget {
                        url: "https://disabled".into(),
                        types: vec![EventType::Disabled],
                    },
                ],
                max_age_secs: 60,
            }),
            changed: Some(r#"["scope"]"#.into()),
        }
    }

    #[test]
    fn one_statement_forms_bind_every_parameter_they_name() {
        /// What the one-statement form of a registration binds, if it has one.
        fn create(
            c: &ClientRecord,
            jtis: &[JtiRecord],
            outbox: Outbox,
        ) -> Option<(usize, usize, Check)> {
            create_linked(c, jtis, outbox, None)
        }
        fn create_linked(
            c: &ClientRecord,
            jtis: &[JtiRecord],
            outbox: Outbox,
            link: Option<AsLinkRecord>,
        ) -> Option<(usize, usize, Check)> {
            let a = audit();
            let unit = WriteUnit::CreateClient {
                client: c.clone(),
                unique_software_id: true,
                jtis: jtis.to_vec(),
                audit: a.clone(),
                outbox,
                link,
            };
            unit.one_statement(100)
                .map(|s| (placeholders(s.sql), s.params().len(), s.check))
        }
        let (c, t, a, all) = (client(), token(), audit(), jtis());
        let no_webhooks = || Outbox {
            routing: Arc::new(EventRouting::default()),
            ..outbox()
        };
        assert_eq!(create(&c, &[], no_webhooks()), Some((34, 34, Check::Any)));
        assert_eq!(
            create(&c, &all[..1], no_webhooks()),
            Some((38, 38, Check::FreshJti(0)))
        );
        // Two jtis (the SSA's too), or a webhook that wants the event: the walk, in a transaction.
        assert_eq!(create(&c, &all, no_webhooks()), None);
        assert_eq!(create(&c, &all[..1], outbox()), None);
        // With a link to the AS: the link from the client's RETURNING, in the same statement.
        assert_eq!(
            create_linked(&c, &[], no_webhooks(), Some(link())),
            Some((37, 37, Check::Any))
        );
        assert_eq!(
            create_linked(&c, &all[..1], no_webhooks(), Some(link())),
            Some((41, 41, Check::FreshJti(0)))
        );
        assert_eq!(create_linked(&c, &all, no_webhooks(), Some(link())), None);
        assert_eq!(create_linked(&c, &all[..1], outbox(), Some(link())), None);
        for (n, params, check) in [(0, 18, Check::Any), (1, 22, Check::FreshJti(0))] {
            let unit = WriteUnit::InsertToken {
                token: t.clone(),
                jtis: all[..n].to_vec(),
                audit: a.clone(),
            };
            let s = unit.one_statement(100).expect("a token is one statement");
            assert_eq!(
                (placeholders(s.sql), s.params().len(), s.check),
                (params, params, check)
            );
        }
        // Every other unit keeps its walk, and so do these (two jtis, webhooks that want it).
        for unit in every_unit(&c, &t, &all, &a) {
            assert!(unit.one_statement(100).is_none());
        }
    }

    fn every_unit<'a>(
        c: &'a ClientRecord,
        t: &'a TokenRecord,
        j: &'a [JtiRecord],
        a: &'a AuditRecord,
    ) -> Vec<WriteUnit> {
        let id = || c.client_id.clone();
        vec![
            WriteUnit::CreateClient {
                client: c.clone(),
                unique_software_id: true,
                jtis: j.to_vec(),
                audit: a.clone(),
                outbox: outbox(),
                link: Some(link()),
            },
            WriteUnit::UpdateClient {
                client: c.clone(),
                jtis: j.to_vec(),
                audit: a.clone(),
                outbox: outbox(),
                link: Some(link()),
            },
            WriteUnit::DeleteClient {
                client_id: id(),
                audit: a.clone(),
                outbox: outbox(),
                compensation: Some(compensating()),
            },
            WriteUnit::EnqueueCompensation {
                compensation: new_compensation(),
                now: 5,
            },
            WriteUnit::LeaseCompensations {
                owner: "w".into(),
                now: 5,
                until: 9,
                limit: 3,
            },
            WriteUnit::FinishCompensation {
                id: 1,
                owner: "w".into(),
                result: CompensationResult::Done,
            },
            WriteUnit::FinishCompensation {
                id: 1,
                owner: "w".into(),
                result: CompensationResult::RetryAt {
                    at: 5,
                    error: "e".into(),
                },
            },
            WriteUnit::CreateClient {
                client: c.clone(),
                unique_software_id: true,
                jtis: j.to_vec(),
                audit: a.clone(),
                outbox: outbox(),
                link: None,
            },
            WriteUnit::UpdateClient {
                client: c.clone(),
                jtis: j.to_vec(),
                audit: a.clone(),
                outbox: outbox(),
                link: None,
            },
            WriteUnit::DeleteClient {
                client_id: id(),
                audit: a.clone(),
                outbox: outbox(),
                compensation: None,
            },
            WriteUnit::SetEnabled {
                client_id: id(),
                enabled: true,
                audit: a.clone(),
                outbox: outbox(),
            },
            WriteUnit::SetEnabled {
                client_id: id(),
                enabled: false,
                audit: a.clone(),
                outbox: outbox(),
            },
            WriteUnit::InsertToken {
                token: t.clone(),
                jtis: j.to_vec(),
                audit: a.clone(),
            },
            WriteUnit::RevokeToken {
                token_hash: t.token_hash.clone(),
                audit: a.clone(),
                outbox: outbox(),
            },
            WriteUnit::AppendAudit { audit: a.clone() },
            WriteUnit::Purge {
                table: Expiring::Jtis,
                before: 5,
            },
            WriteUnit::Purge {
                table: Expiring::Tokens,
                before: 5,
            },
            WriteUnit::Purge {
                table: Expiring::Events,
                before: 5,
            },
            WriteUnit::LeaseDeliveries {
                owner: "w".into(),
                webhook: "https://h/".into(),
                until: 9,
                limit: 3,
            },
            WriteUnit::FinishDelivery {
                id: 1,
                owner: "w".into(),
                result: (DeliveryResult::Delivered),
            },
            WriteUnit::FinishDelivery {
                id: 1,
                owner: "w".into(),
                result: (DeliveryResult::RetryAt {
                    next_at: 5,
                    error: "e".into(),
                }),
            },
            WriteUnit::FinishDelivery {
                id: 1,
                owner: "w".into(),
                result: (DeliveryResult::GiveUp { error: "e".into() }),
            },
            WriteUnit::RetryFailed {
                event_id: Some("e1".into()),
                webhook: "https://h/".into(),
                until: 9,
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
        let (c, t, j, a) = (client(), token(), jtis(), audit());
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
        }
    }

    #[test]
    fn jtis_then_row_then_audit() {
        let (c, j, a) = (client(), jtis(), audit());
        let unit = WriteUnit::CreateClient {
            client: c.clone(),
            unique_software_id: false,
            jtis: j.clone(),
            audit: a.clone(),
            outbox: outbox(),
            link: None,
        };
        let (result, ran) = go(&unit, &[]);
        assert_eq!(result, Ok(Outcome::Done));
        // The event after the row, delivered to the webhook that takes every type only.
        assert_eq!(
            ran,
            [
                REMEMBER_JTI,
                REMEMBER_JTI,
                INSERT_CLIENT,
                INSERT_CLIENT_EVENT,
                INSERT_DELIVERY,
                INSERT_AUDIT
            ]
        );
        // The second jti was seen: its index, and nothing after it runs.
        let (result, ran) = go(&unit, &[1, 0]);
        assert_eq!(result, Err(StoreError::Conflict(Conflict::Jti(1))));
        assert_eq!(ran, [REMEMBER_JTI, REMEMBER_JTI]);
    }

    #[test]
    fn a_missing_row_is_not_found_and_writes_no_audit() {
        let (c, t, j, a) = (client(), token(), jtis(), audit());
        let update = WriteUnit::UpdateClient {
            client: c.clone(),
            jtis: j.clone(),
            audit: a.clone(),
            outbox: outbox(),
            link: None,
        };
        let (result, ran) = go(&update, &[1, 1, 0]);
        assert_eq!(result, Ok(Outcome::NotFound));
        assert!(!result.unwrap().commits());
        assert_eq!(ran, [REMEMBER_JTI, REMEMBER_JTI, UPDATE_CLIENT]);

        let delete = WriteUnit::DeleteClient {
            client_id: "c".into(),
            audit: a.clone(),
            outbox: outbox(),
            compensation: None,
        };
        let (result, ran) = go(&delete, &[0]);
        assert_eq!(result, Ok(Outcome::NotFound));
        assert_eq!(ran, [LOCK_CLIENT]);
        // The event is written while the row still exists.
        let (result, ran) = go(&delete, &[]);
        assert_eq!(result, Ok(Outcome::Done));
        assert_eq!(
            ran,
            [
                LOCK_CLIENT,
                INSERT_CLIENT_EVENT,
                INSERT_DELIVERY,
                DELETE_CLIENT_TOKENS,
                DELETE_CLIENT,
                INSERT_AUDIT
            ]
        );

        let revoke = WriteUnit::RevokeToken {
            token_hash: t.token_hash.clone(),
            audit: a.clone(),
            outbox: outbox(),
        };
        let (result, _) = go(&revoke, &[0]);
        assert_eq!(result.map(Outcome::found), Ok(false));
        let (result, ran) = go(&revoke, &[1]);
        assert_eq!(result.map(Outcome::found), Ok(true));
        assert_eq!(
            ran,
            [
                REVOKE_TOKEN,
                INSERT_TOKEN_EVENT,
                INSERT_DELIVERY,
                INSERT_AUDIT
            ]
        );
    }

    #[test]
    fn disabling_revokes_tokens_enabling_does_not() {
        let a = audit();
        let set = |enabled| WriteUnit::SetEnabled {
            client_id: "c".into(),
            enabled,
            audit: a.clone(),
            outbox: outbox(),
        };
        // client.disabled goes to both webhooks; client.tokens_revoked (only if there were
        // live tokens, decided before they are revoked) to the one that takes every type.
        let (_, ran) = go(&set(false), &[]);
        assert_eq!(
            ran,
            [
                SET_CLIENT_ENABLED,
                INSERT_CLIENT_EVENT,
                INSERT_DELIVERY,
                INSERT_DELIVERY,
                INSERT_CLIENT_EVENT_IF_LIVE_TOKENS,
                INSERT_DELIVERY,
                REVOKE_CLIENT_TOKENS,
                INSERT_AUDIT
            ]
        );
        let (_, ran) = go(&set(true), &[]);
        assert_eq!(
            ran,
            [
                SET_CLIENT_ENABLED,
                INSERT_CLIENT_EVENT,
                INSERT_DELIVERY,
                INSERT_AUDIT
            ]
        );
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
        let events = WriteUnit::Purge {
            table: Expiring::Events,
            before: 5,
        };
        let (result, ran) = go(&events, &[3, 2]);
        assert_eq!(result.map(Outcome::count), Ok(2));
        assert_eq!(ran, [PURGE_DELIVERED, PURGE_EVENTS]);
        assert!(events.needs_transaction());
    }

    #[test]
    fn links_and_compensations_go_where_the_rows_they_need_are() {
        let (c, j, a) = (client(), jtis(), audit());
        let create = WriteUnit::CreateClient {
            client: c.clone(),
            unique_software_id: true,
            jtis: j.clone(),
            audit: a.clone(),
            outbox: outbox(),
            link: Some(link()),
        };
        let (result, ran) = go(&create, &[]);
        assert_eq!(result, Ok(Outcome::Done));
        assert_eq!(
            ran,
            [
                REMEMBER_JTI,
                REMEMBER_JTI,
                INSERT_CLIENT,
                INSERT_AS_LINK,
                INSERT_CLIENT_EVENT,
                INSERT_DELIVERY,
                INSERT_AUDIT
            ]
        );
        // A replay writes neither row.
        let (result, ran) = go(&create, &[1, 0]);
        assert_eq!(result, Err(StoreError::Conflict(Conflict::Jti(1))));
        assert_eq!(ran, [REMEMBER_JTI, REMEMBER_JTI]);

        let update = WriteUnit::UpdateClient {
            client: c.clone(),
            jtis: Vec::new(),
            audit: a.clone(),
            outbox: outbox(),
            link: Some(link()),
        };
        let (result, ran) = go(&update, &[0]);
        assert_eq!(result, Ok(Outcome::NotFound));
        assert_eq!(ran, [UPDATE_CLIENT]);
        let (_, ran) = go(&update, &[]);
        assert_eq!(
            ran,
            [
                UPDATE_CLIENT,
                UPSERT_AS_LINK,
                INSERT_CLIENT_EVENT,
                INSERT_DELIVERY,
                INSERT_AUDIT
            ]
        );

        let delete = WriteUnit::DeleteClient {
            client_id: "c".into(),
            audit: a.clone(),
            outbox: outbox(),
            compensation: Some(compensating()),
        };
        let (result, ran) = go(&delete, &[0]);
        assert_eq!(result, Ok(Outcome::NotFound));
        assert_eq!(ran, [LOCK_CLIENT]);
        // No link (0 rows from it) is no failure: the client still goes.
        let (result, ran) = go(&delete, &[1, 1, 1, 0]);
        assert_eq!(result, Ok(Outcome::Done));
        assert_eq!(
            ran,
            [
                LOCK_CLIENT,
                INSERT_CLIENT_EVENT,
                INSERT_DELIVERY,
                COMPENSATE_FROM_LINK,
                DELETE_CLIENT_TOKENS,
                DELETE_CLIENT,
                INSERT_AUDIT
            ]
        );
        assert!(delete.changes_many_rows());

        let enqueue = WriteUnit::EnqueueCompensation {
            compensation: new_compensation(),
            now: 5,
        };
        let (result, ran) = go(&enqueue, &[42]);
        assert_eq!(result.and_then(Outcome::inserted), Ok(42));
        assert_eq!(ran, [INSERT_COMPENSATION]);
        assert!(!enqueue.needs_transaction());
    }
}
