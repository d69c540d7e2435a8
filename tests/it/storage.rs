//! The storage suite: the same checks against SQLite and PostgreSQL.

use anyhow::{Context, Result, bail, ensure};
use dcr_server::domain::{AuditOutcome, AuthMethod, SpecVersion};
use dcr_server::store::{
    AuditLog, AuditRecord, ClientRecord, ClientStore, Conflict, Database, DeliveryResult,
    EventFilter, EventRouting, EventStore, EventTarget, EventType, JtiRecord, JtiStore,
    LeasedDelivery, StoreError, TokenRecord, TokenStore,
};

use crate::support::{BOTH, Backend, Case, TestDb};
use crate::{case, ensure_eq};

pub fn cases() -> Vec<Case> {
    vec![
        case!(clients_round_trip, BOTH),
        case!(one_client_per_software_id_when_asked, BOTH),
        case!(replayed_jti_writes_nothing, BOTH),
        case!(jti_expiry_and_purge, BOTH),
        case!(concurrent_jti_is_accepted_once, BOTH),
        case!(a_failing_unit_undoes_only_its_own_rows, BOTH),
        case!(tokens_and_client_deletion, BOTH),
        case!(audit_log_is_append_only, BOTH),
        case!(migrations_keep_existing_data, BOTH),
        case!(migration_0003_copies_grant_types_and_scope, BOTH),
        case!(migration_0004_gives_existing_clients_v3_2, BOTH),
        case!(stored_webhook_urls_lose_their_userinfo, BOTH),
        case!(bulk_seeding_round_trip, BOTH),
        case!(event_deliveries_are_leased_in_order_and_purged, BOTH),
        case!(retries_skip_webhooks_no_longer_configured, BOTH),
    ]
}

pub(crate) async fn store(backend: Backend) -> Result<(TestDb, Database)> {
    let db = TestDb::new(backend).await?;
    let store = db.connect().await?;
    store.migrate().await?;
    Ok((db, store))
}

pub(crate) fn client(client_id: &str, software_id: &str) -> ClientRecord {
    let now = dcr_server::clock::now();
    ClientRecord {
        client_id: client_id.into(),
        software_id: software_id.into(),
        org_id: "0015800001ABCDEFGH".into(),
        metadata: format!(
            r#"{{"client_id":"{client_id}","redirect_uris":["{}"]}}"#,
            long_uri()
        ),
        grant_types: "client_credentials".parse().expect("grant types"),
        scope: "openid accounts".parse().expect("scopes"),
        client_secret_hash: "hash".into(),
        token_endpoint_auth_method: AuthMethod::PrivateKeyJwt,
        tls_client_auth_subject_dn: None,
        jwks_uri: "https://keystore.example.com/jwks".into(),
        cert_thumbprint: Some("thumb".into()),
        enabled: true,
        created_at: now,
        updated_at: now,
        dcr_version: SpecVersion::V3_4,
        jwks_revoked_uri: None,
    }
}

/// Longer than the seed's varchar(1024) callback column.
fn long_uri() -> String {
    format!("https://tpp.example.com/{}", "a".repeat(3000))
}

pub(crate) fn audit(action: &str, client_id: &str) -> AuditRecord {
    let action = action.parse().expect("an audit action");
    AuditRecord::new(dcr_server::clock::now(), action, AuditOutcome::Success).client_id(client_id)
}

pub(crate) fn jti(scope: &str, jti: &str, expires_at: i64) -> JtiRecord {
    JtiRecord {
        scope: scope.into(),
        jti: jti.into(),
        expires_at,
    }
}

pub(crate) fn conflict<T: std::fmt::Debug>(r: Result<T, StoreError>, want: Conflict) -> Result<()> {
    match r {
        Err(StoreError::Conflict(c)) if c == want => Ok(()),
        other => bail!("expected conflict {want:?}, got {other:?}"),
    }
}

async fn clients_round_trip(backend: Backend) -> Result<()> {
    let (_db, s) = store(backend).await?;
    let later = dcr_server::clock::now() + 600;
    let c = client("c1", "sw1");
    s.create_client(
        &c,
        true,
        &[jti("request:sw1", "j1", later)],
        &audit("register", "c1"),
    )
    .await?;
    ensure_eq!(s.get_client("c1").await?, Some(c.clone()));
    ensure_eq!(s.get_client("nope").await?, None);
    ensure!(
        s.get_client("c1")
            .await?
            .is_some_and(|c| c.metadata.contains(&long_uri()))
    );

    let mut updated = c.clone();
    updated.metadata = r#"{"client_id":"c1","scope":"openid"}"#.into();
    updated.grant_types = "client_credentials refresh_token".parse()?;
    updated.scope = "openid".parse()?;
    updated.updated_at += 5;
    ensure!(
        s.update_client(
            &updated,
            &["scope".to_string()],
            &[jti("request:sw1", "j2", later)],
            &audit("update", "c1")
        )
        .await?
    );
    ensure_eq!(s.get_client("c1").await?, Some(updated.clone()));
    // An update of an unknown client changes nothing, and its jti is not kept.
    let ghost = client("ghost", "sw9");
    ensure!(
        !s.update_client(
            &ghost,
            &[],
            &[jti("request:sw9", "j3", later)],
            &audit("update", "ghost")
        )
        .await?
    );

    s.create_client(&client("c2", "sw2"), true, &[], &audit("register", "c2"))
        .await?;
    let ids: Vec<String> = s
        .list_clients()
        .await?
        .into_iter()
        .map(|c| c.client_id)
        .collect();
    ensure_eq!(ids, vec!["c1".to_string(), "c2".to_string()]);
    // The failed update's jti is free: a registration may use it.
    s.create_client(
        &client("c9", "sw9"),
        true,
        &[jti("request:sw9", "j3", later)],
        &audit("register", "c9"),
    )
    .await?;
    conflict(
        s.create_client(&client("c1", "sw3"), false, &[], &audit("register", "c1"))
            .await,
        Conflict::ClientId,
    )
}

async fn one_client_per_software_id_when_asked(backend: Backend) -> Result<()> {
    let (_db, s) = store(backend).await?;
    s.create_client(&client("a", "sw"), true, &[], &audit("register", "a"))
        .await?;
    conflict(
        s.create_client(&client("b", "sw"), true, &[], &audit("register", "b"))
            .await,
        Conflict::SoftwareId,
    )?;
    ensure_eq!(s.get_client("b").await?, None);
    // With the policy off, a second client for the same software is fine.
    s.create_client(&client("c", "sw"), false, &[], &audit("register", "c"))
        .await?;
    // Deleting the unique one frees the software_id again.
    ensure!(s.delete_client("a", &audit("delete", "a")).await?);
    s.create_client(&client("d", "sw"), true, &[], &audit("register", "d"))
        .await?;
    Ok(())
}

async fn replayed_jti_writes_nothing(backend: Backend) -> Result<()> {
    let (_db, s) = store(backend).await?;
    let later = dcr_server::clock::now() + 600;
    s.create_client(
        &client("a", "sw1"),
        true,
        &[jti("request:x", "same", later)],
        &audit("register", "a"),
    )
    .await?;
    let audits_before = s.list_audit(None, None).await?.len();
    conflict(
        s.create_client(
            &client("b", "sw2"),
            true,
            &[jti("request:x", "same", later)],
            &audit("register", "b"),
        )
        .await,
        Conflict::Jti(0),
    )?;
    ensure_eq!(s.get_client("b").await?, None);
    ensure_eq!(s.list_audit(None, None).await?.len(), audits_before);
    // A software_id clash after a fresh jti rolls the jti back too.
    conflict(
        s.create_client(
            &client("c", "sw1"),
            true,
            &[jti("request:x", "fresh", later)],
            &audit("register", "c"),
        )
        .await,
        Conflict::SoftwareId,
    )?;
    s.create_client(
        &client("d", "sw4"),
        true,
        &[jti("request:x", "fresh", later)],
        &audit("register", "d"),
    )
    .await?;
    // The same jti under another scope is a different jti.
    s.create_client(
        &client("e", "sw5"),
        true,
        &[jti("request:y", "same", later)],
        &audit("register", "e"),
    )
    .await?;
    // A replay later in the list names its index, and the fresh one before it is undone too.
    conflict(
        s.create_client(
            &client("f", "sw6"),
            true,
            &[
                jti("request:x", "new", later),
                jti("request:x", "same", later),
            ],
            &audit("register", "f"),
        )
        .await,
        Conflict::Jti(1),
    )?;
    ensure_eq!(s.get_client("f").await?, None);
    s.create_client(
        &client("g", "sw7"),
        true,
        &[jti("request:x", "new", later)],
        &audit("register", "g"),
    )
    .await?;
    Ok(())
}

async fn jti_expiry_and_purge(backend: Backend) -> Result<()> {
    let (_db, s) = store(backend).await?;
    let now = dcr_server::clock::now();
    s.create_client(
        &client("a", "sw1"),
        true,
        &[jti("ssa:OB", "old", now - 1)],
        &audit("register", "a"),
    )
    .await?;
    // Expired but not purged yet: usable again, and it now lives until the new expiry.
    s.insert_token(
        &token("t1", "a", now),
        &[jti("ssa:OB", "old", now + 600)],
        &audit("token.issue", "a"),
    )
    .await?;
    conflict(
        s.create_client(
            &client("b", "sw2"),
            true,
            &[jti("ssa:OB", "old", now + 900)],
            &audit("register", "b"),
        )
        .await,
        Conflict::Jti(0),
    )?;
    s.insert_token(
        &token("t2", "a", now),
        &[jti("ssa:OB", "gone", now - 10)],
        &audit("token.issue", "a"),
    )
    .await?;
    ensure_eq!(s.purge_expired_jtis(now).await?, 1);
    ensure_eq!(s.purge_expired_jtis(now).await?, 0);
    conflict(
        s.insert_token(
            &token("t3", "a", now),
            &[jti("ssa:OB", "old", now + 900)],
            &audit("token.issue", "a"),
        )
        .await,
        Conflict::Jti(0),
    )?;
    ensure_eq!(s.find_token("t3").await?, None);
    // The purged one is new again.
    s.insert_token(
        &token("t4", "a", now),
        &[jti("ssa:OB", "gone", now + 600)],
        &audit("token.issue", "a"),
    )
    .await?;
    Ok(())
}

fn token(hash: &str, client_id: &str, now: i64) -> TokenRecord {
    TokenRecord {
        token_hash: hash.into(),
        client_id: client_id.into(),
        scope: "accounts".parse().expect("scopes"),
        cert_thumbprint: Some("thumb".into()),
        issued_at: now,
        expires_at: now + 3600,
        revoked: false,
    }
}

/// Runs 20 units at once, each made by `unit` from its number, that all claim the same jti:
/// how many succeeded. A loser must fail with the jti conflict, nothing else.
async fn race_for_one_jti<F, Fut>(unit: F) -> Result<usize>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<(), StoreError>> + Send + 'static,
{
    let tasks: Vec<_> = (0..20).map(|i| tokio::spawn(unit(i))).collect();
    let mut ok = 0;
    for t in tasks {
        match t.await? {
            Ok(()) => ok += 1,
            Err(StoreError::Conflict(Conflict::Jti(0))) => {}
            Err(e) => bail!("unexpected error: {e}"),
        }
    }
    Ok(ok)
}

async fn concurrent_jti_is_accepted_once(backend: Backend) -> Result<()> {
    let (_db, s) = store(backend).await?;
    let later = dcr_server::clock::now() + 600;
    let ok = race_for_one_jti(|i| {
        let s = s.clone();
        async move {
            let id = format!("client-{i}");
            s.create_client(
                &client(&id, &format!("sw-{i}")),
                true,
                &[jti("request:race", "one", later)],
                &audit("register", &id),
            )
            .await
        }
    })
    .await?;
    ensure_eq!(ok, 1);
    ensure_eq!(s.list_clients().await?.len(), 1);

    // The same for tokens: one client assertion, many concurrent token requests.
    let client_id = s.list_clients().await?.remove(0).client_id;
    let now = dcr_server::clock::now();
    let ok = race_for_one_jti(|i| {
        let (s, client_id) = (s.clone(), client_id.clone());
        async move {
            s.insert_token(
                &token(&format!("race-{i}"), &client_id, now),
                &[jti("assertion:race", "one", later)],
                &audit("token.issue", &client_id),
            )
            .await
        }
    })
    .await?;
    ensure_eq!(ok, 1);
    // The losers wrote nothing: one token row.
    ensure_eq!(s.count_rows("tokens").await?, 1);
    Ok(())
}

/// Concurrent units that fail after writing (a fresh jti and the client row, then the
/// software_id clash) among units that succeed, with a purge and a client's deletion (units
/// the SQLite writer commits on their own) among them. On SQLite the others share group
/// commits, so a failing unit's savepoint must give back pages that the units before it had
/// already changed.
async fn a_failing_unit_undoes_only_its_own_rows(backend: Backend) -> Result<()> {
    let (_db, s) = store(backend).await?;
    let now = dcr_server::clock::now();
    let later = now + 600;
    for (id, software) in [("base", "taken"), ("gone", "sw-gone")] {
        s.create_client(&client(id, software), true, &[], &audit("register", id))
            .await?;
    }
    s.create_client(
        &client("holder", "sw-holder"),
        true,
        &[jti("request:group", "expired", now - 1)],
        &audit("register", "holder"),
    )
    .await?;
    s.insert_token(
        &token("t-gone", "gone", now),
        &[],
        &audit("token.issue", "gone"),
    )
    .await?;
    let purge = {
        let s = s.clone();
        tokio::spawn(async move { s.purge_expired_jtis(now).await })
    };
    let mut tasks = Vec::new();
    for i in 0..40 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let (id, software) = if i % 2 == 0 {
                (format!("ok-{i}"), format!("sw-{i}"))
            } else {
                (format!("bad-{i}"), "taken".to_string())
            };
            let result = s
                .create_client(
                    &client(&id, &software),
                    true,
                    &[jti("request:group", &format!("j-{i}"), later)],
                    &audit("register", &id),
                )
                .await;
            (i, result)
        }));
    }
    let delete = {
        let s = s.clone();
        tokio::spawn(async move { s.delete_client("gone", &audit("delete", "gone")).await })
    };
    for t in tasks {
        match t.await? {
            (i, Ok(())) if i % 2 == 0 => {}
            (i, Err(StoreError::Conflict(Conflict::SoftwareId))) if i % 2 == 1 => {}
            (i, other) => bail!("unit {i}: unexpected {other:?}"),
        }
    }
    ensure_eq!(purge.await??, 1);
    ensure!(delete.await??, "the client to delete was not found");
    // 3 clients before, 20 registered, 1 deleted; 20 fresh jtis, the expired one purged; an
    // audit record for each of the 4 writes before, the 20 registrations and the deletion.
    ensure_eq!(s.count_rows("clients").await?, 22);
    ensure_eq!(s.count_rows("jtis").await?, 20);
    ensure_eq!(s.count_rows("tokens").await?, 0);
    ensure_eq!(s.count_rows("audit_log").await?, 25);
    for i in (0..40).step_by(2) {
        ensure!(
            s.get_client(&format!("ok-{i}")).await?.is_some(),
            "ok-{i} is missing"
        );
    }
    // Every failed unit's jti was given back: it registers now.
    for i in (1..40).step_by(2) {
        let id = format!("again-{i}");
        s.create_client(
            &client(&id, &format!("sw-{i}")),
            true,
            &[jti("request:group", &format!("j-{i}"), later)],
            &audit("register", &id),
        )
        .await?;
    }
    ensure_eq!(s.count_rows("clients").await?, 42);
    Ok(())
}

async fn tokens_and_client_deletion(backend: Backend) -> Result<()> {
    let (_db, s) = store(backend).await?;
    let now = dcr_server::clock::now();
    s.create_client(&client("a", "sw"), true, &[], &audit("register", "a"))
        .await?;
    let token = |hash: &str, client_id: &str| token(hash, client_id, now);
    s.insert_token(&token("t1", "a"), &[], &audit("token.issue", "a"))
        .await?;
    s.insert_token(&token("t2", "a"), &[], &audit("token.issue", "a"))
        .await?;
    ensure_eq!(s.find_token("t1").await?, Some(token("t1", "a")));
    // Read together (one query on PostgreSQL), each as the single reads give it; either may
    // be missing.
    let (t, c) = s.find_token_and_client("t1", "a").await?;
    ensure_eq!(t, Some(token("t1", "a")));
    ensure!(c.is_some());
    ensure_eq!(c, s.get_client("a").await?);
    let (t, c) = s.find_token_and_client("unknown", "a").await?;
    ensure_eq!(t, None);
    ensure!(c.is_some());
    for ghost in ["ghost", "a\0"] {
        let (t, c) = s.find_token_and_client("t1", ghost).await?;
        ensure_eq!(t, Some(token("t1", "a")));
        ensure_eq!(c, None);
    }
    // The assertion's jti goes in with the token; a replay stores neither.
    let assertion = jti("assertion:a", "once", now + 600);
    s.insert_token(
        &token("t4", "a"),
        std::slice::from_ref(&assertion),
        &audit("token.issue", "a"),
    )
    .await?;
    let audited = s.count_rows("audit_log").await?;
    conflict(
        s.insert_token(&token("t5", "a"), &[assertion], &audit("token.issue", "a"))
            .await,
        Conflict::Jti(0),
    )?;
    ensure_eq!(s.find_token("t5").await?, None);
    // Nor its audit record (on PostgreSQL the three are one statement).
    ensure_eq!(s.count_rows("audit_log").await?, audited);
    ensure!(s.revoke_token("t1", &audit("token.revoke", "a")).await?);
    ensure!(!s.revoke_token("t1", &audit("token.revoke", "a")).await?);
    ensure!(
        !s.revoke_token("unknown", &audit("token.revoke", "a"))
            .await?
    );
    ensure_eq!(s.find_token("t1").await?.map(|t| t.revoked), Some(true));
    // No token for a client that does not exist.
    conflict(
        s.insert_token(&token("t3", "ghost"), &[], &audit("token.issue", "ghost"))
            .await,
        Conflict::UnknownClient,
    )?;
    ensure_eq!(s.find_token("t3").await?, None);
    ensure_eq!(s.count_rows("audit_log").await?, audited + 1);

    ensure!(s.delete_client("a", &audit("delete", "a")).await?);
    ensure_eq!(s.find_token("t2").await?, None);
    ensure_eq!(s.get_client("a").await?, None);
    ensure!(!s.delete_client("a", &audit("delete", "a")).await?);

    s.create_client(&client("b", "sw2"), true, &[], &audit("register", "b"))
        .await?;
    let mut old = token("old", "b");
    old.expires_at = now - 1;
    s.insert_token(&old, &[], &audit("token.issue", "b"))
        .await?;
    ensure_eq!(s.purge_expired_tokens(now).await?, 1);
    ensure_eq!(s.find_token("old").await?, None);
    Ok(())
}

async fn audit_log_is_append_only(backend: Backend) -> Result<()> {
    let (_db, s) = store(backend).await?;
    let mut first = audit("register", "a");
    first.at = 1000;
    first.error_code = Some("invalid_redirect_uri".parse()?);
    first.detail = Some(r#"{"uri":"http://x"}"#.into());
    s.append_audit(&first).await?;
    let mut second = audit("register", "b");
    second.at = 2000;
    s.append_audit(&second).await?;
    ensure_eq!(
        s.list_audit(None, None).await?,
        vec![first.clone(), second.clone()]
    );
    ensure_eq!(s.list_audit(Some("a"), None).await?, vec![first.clone()]);
    ensure_eq!(s.list_audit(None, Some(1500)).await?, vec![second.clone()]);

    let update = "UPDATE audit_log SET outcome = 'tampered'";
    let delete = "DELETE FROM audit_log";
    let refused = [
        s.raw_execute(update).await.is_err(),
        s.raw_execute(delete).await.is_err(),
    ];
    ensure_eq!(refused, [true, true]);
    ensure_eq!(s.list_audit(None, None).await?.len(), 2);
    Ok(())
}

/// A database made by the first schema, with data in it, migrates to the current schema
/// without losing a client, a token, a jti or an audit row.
async fn migrations_keep_existing_data(backend: Backend) -> Result<()> {
    let db = TestDb::new(backend).await?;
    let now = dcr_server::clock::now();
    let rows = [
        "INSERT INTO clients (client_id, software_id, org_id, metadata, software_statement, \
         ssa_claims, client_secret_hash, token_endpoint_auth_method, jwks_uri, created_at, \
         updated_at) VALUES ('old', 'sw', 'org', '{\"client_id\":\"old\"}', 'eyJ.x.y', '{}', \
         'hash', 'private_key_jwt', 'https://tpp.example.com/jwks', 1, 1)",
        "INSERT INTO tokens (token_hash, client_id, scope, issued_at, expires_at) \
         VALUES ('t', 'old', 'accounts', 1, 4102444800)",
        "INSERT INTO jtis (scope, jti, expires_at) VALUES ('request:sw', 'j', 4102444800)",
        "INSERT INTO audit_log (at, action, outcome, client_id) VALUES (1, 'register', 'success', 'old')",
    ];
    old_schema(backend, &db, &["0001_init.sql"], &rows).await?;
    let s = db.connect().await?;
    s.migrate().await?;
    let old = s.get_client("old").await?;
    ensure_eq!(
        old.map(|c| (
            c.metadata,
            c.client_secret_hash,
            c.grant_types.to_string(),
            c.scope.to_string()
        )),
        Some((
            r#"{"client_id":"old"}"#.to_string(),
            "hash".to_string(),
            String::new(),
            String::new()
        ))
    );
    ensure_eq!(
        s.find_token("t").await?.map(|t| t.client_id),
        Some("old".into())
    );
    conflict(
        s.create_client(
            &client("new", "sw-new"),
            true,
            &[jti("request:sw", "j", now + 600)],
            &audit("register", "new"),
        )
        .await,
        Conflict::Jti(0),
    )?;
    // The audit log carries on after the old rows, and is still append-only.
    s.append_audit(&audit("register", "new")).await?;
    let all = s.list_audit(None, None).await?;
    ensure_eq!(
        all.iter().map(|a| a.action.as_str()).collect::<Vec<_>>(),
        ["register", "register"]
    );
    ensure_eq!(s.list_audit(Some("old"), None).await?.len(), 1);
    ensure!(s.delete_client("old", &audit("delete", "old")).await?);
    ensure_eq!(s.find_token("t").await?, None);
    Ok(())
}

/// Deliveries stored while webhook URLs could carry userinfo lose it (sqlite 0007, postgres
/// 0008), and nothing else of a URL changes: an `@` in a path or query is not userinfo.
async fn stored_webhook_urls_lose_their_userinfo(backend: Backend) -> Result<()> {
    let db = TestDb::new(backend).await?;
    let before: &[&str] = match backend {
        Backend::Postgres => &[
            "0001_init.sql",
            "0002_leaner_rows.sql",
            "0003_client_grants_and_scope.sql",
            "0004_dcr_version.sql",
            "0005_jwks_revoked_uri.sql",
            "0006_events.sql",
            "0007_clients_inline.sql",
        ],
        _ => &[
            "0001_init.sql",
            "0002_leaner_rows.sql",
            "0003_client_grants_and_scope.sql",
            "0004_dcr_version.sql",
            "0005_jwks_revoked_uri.sql",
            "0006_events.sql",
        ],
    };
    let urls = [
        (
            "https://user:s3cret@gateway.example/hook",
            "https://gateway.example/hook",
        ),
        (
            "https://only-user@gateway.example:8443/",
            "https://gateway.example:8443/",
        ),
        (
            "http://u%40x:p%2Fw@127.0.0.1:9000/a@b?c=d@e",
            "http://127.0.0.1:9000/a@b?c=d@e",
        ),
        (
            "https://gateway.example/hook?by=ops@bank.example",
            "https://gateway.example/hook?by=ops@bank.example",
        ),
        ("https://plain.example/", "https://plain.example/"),
    ];
    let mut rows = vec![
        "INSERT INTO events (event_id, type, at, client_id, software_id, org_id, dcr_version, \
         action) VALUES ('e1', 'client.registered', 1, 'c1', 'sw', 'org', '3.2', 'register')"
            .to_string(),
    ];
    for (stored, _) in urls {
        rows.push(format!(
            "INSERT INTO event_deliveries (event_id, webhook, client_id, state, next_at, \
             expires_at) VALUES ('e1', '{stored}', 'c1', 'pending', 1, 4102444800)"
        ));
    }
    let rows: Vec<&str> = rows.iter().map(String::as_str).collect();
    old_schema(backend, &db, before, &rows).await?;
    let s = db.connect().await?;
    s.migrate().await?;
    let now = s
        .raw_strings("SELECT webhook FROM event_deliveries ORDER BY id")
        .await?;
    ensure_eq!(
        now,
        urls.iter()
            .map(|(_, want)| want.to_string())
            .collect::<Vec<_>>()
    );
    Ok(())
}

/// Makes the schema of the first `migrations` only, and writes `rows` into it.
pub(crate) async fn old_schema(
    backend: Backend,
    db: &TestDb,
    migrations: &[&str],
    rows: &[&str],
) -> Result<()> {
    let flavour = match backend {
        Backend::Postgres => "postgres",
        _ => "sqlite",
    };
    let dir = tempfile::TempDir::new()?;
    for file in migrations {
        std::fs::copy(
            format!("migrations/{flavour}/{file}"),
            dir.path().join(file),
        )?;
    }
    let migrator = sqlx::migrate::Migrator::new(dir.path()).await?;
    match backend {
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await?;
            migrator.run(&pool).await?;
            for sql in rows {
                sqlx::query(sql).execute(&pool).await?;
            }
            pool.close().await;
        }
        _ => {
            let pool = sqlx::SqlitePool::connect(&format!("{}?mode=rwc", db.url)).await?;
            migrator.run(&pool).await?;
            for sql in rows {
                sqlx::query(sql).execute(&pool).await?;
            }
            pool.close().await;
        }
    }
    Ok(())
}

/// Clients stored before 0003 get `grant_types` and `scope` columns holding what the token
/// endpoint used to read from their metadata JSON.
async fn migration_0003_copies_grant_types_and_scope(backend: Backend) -> Result<()> {
    let db = TestDb::new(backend).await?;
    let cases = [
        // As registration stores it.
        (
            "registered",
            r#"{"client_id":"registered","grant_types":["client_credentials","authorization_code"],"scope":"openid accounts","software_statement":"eyJ.x.y"}"#,
            "client_credentials authorization_code",
            "openid accounts",
        ),
        // Absent: no grant type (the token endpoint answered unauthorized_client), no scope.
        ("bare", r#"{"client_id":"bare"}"#, "", ""),
        // The wrong JSON types count as absent; non-string grant types are skipped; the
        // scope string is kept as it was, escapes decoded.
        (
            "odd",
            r#"{"grant_types":[1,"refresh_token",null,"client_credentials"],"scope":"a\u00e9  b"}"#,
            "refresh_token client_credentials",
            "a\u{e9}  b",
        ),
        (
            "typed",
            r#"{"grant_types":"client_credentials","scope":["accounts"]}"#,
            "",
            "",
        ),
        // Not JSON at all: migrated, with nothing registered.
        ("broken", "not json", "", ""),
    ];
    let rows: Vec<String> = cases
        .iter()
        .map(|(id, metadata, _, _)| {
            format!(
                "INSERT INTO clients (client_id, software_id, org_id, metadata, \
                 client_secret_hash, token_endpoint_auth_method, jwks_uri, created_at, \
                 updated_at) VALUES ('{id}', 'sw-{id}', 'org', '{metadata}', 'hash', \
                 'private_key_jwt', 'https://tpp.example.com/jwks', 1, 1)"
            )
        })
        .collect();
    let rows: Vec<&str> = rows.iter().map(String::as_str).collect();
    old_schema(
        backend,
        &db,
        &["0001_init.sql", "0002_leaner_rows.sql"],
        &rows,
    )
    .await?;
    let s = db.connect().await?;
    s.migrate().await?;
    for (id, metadata, grant_types, scope) in cases {
        let c = s.get_client(id).await?.context("client")?;
        ensure_eq!(
            (
                c.metadata.as_str(),
                c.grant_types.as_str(),
                c.scope.as_str()
            ),
            (metadata, grant_types, scope)
        );
    }
    // New rows carry their own values.
    let mut fresh = client("fresh", "sw-fresh");
    fresh.grant_types = "client_credentials".parse()?;
    fresh.scope = "payments".parse()?;
    s.create_client(&fresh, true, &[], &audit("register", "fresh"))
        .await?;
    ensure_eq!(s.get_client("fresh").await?, Some(fresh));
    Ok(())
}

/// Clients stored before 0004 came through the only endpoint there was: they are v3.2. Old
/// audit records have no version; new ones, and updates, keep theirs.
async fn migration_0004_gives_existing_clients_v3_2(backend: Backend) -> Result<()> {
    let db = TestDb::new(backend).await?;
    let rows = [
        "INSERT INTO clients (client_id, software_id, org_id, metadata, grant_types, scope, \
         client_secret_hash, token_endpoint_auth_method, jwks_uri, created_at, updated_at) \
         VALUES ('old', 'sw-old', 'org', '{}', 'client_credentials', 'accounts', 'hash', \
         'private_key_jwt', 'https://tpp.example.com/jwks', 1, 1)",
        "INSERT INTO audit_log (at, action, outcome, client_id) VALUES (1, 'register', 'success', 'old')",
    ];
    old_schema(
        backend,
        &db,
        &[
            "0001_init.sql",
            "0002_leaner_rows.sql",
            "0003_client_grants_and_scope.sql",
        ],
        &rows,
    )
    .await?;
    let s = db.connect().await?;
    s.migrate().await?;
    let old = s.get_client("old").await?.context("client")?;
    ensure_eq!(old.dcr_version.as_str(), "3.2");
    ensure_eq!(s.list_audit(Some("old"), None).await?[0].dcr_version, None);
    // An update moves it; a new client has its own version.
    let moved = ClientRecord {
        dcr_version: SpecVersion::V3_4,
        jwks_revoked_uri: None,
        updated_at: 2,
        ..old
    };
    let mut update = audit("update", "old");
    update.dcr_version = Some(SpecVersion::V3_4);
    ensure!(s.update_client(&moved, &[], &[], &update).await?);
    ensure_eq!(s.get_client("old").await?, Some(moved));
    let trail = s.list_audit(Some("old"), None).await?;
    ensure_eq!(trail[1].dcr_version.map(|v| v.as_str()), Some("3.4"));
    let fresh = client("fresh", "sw-fresh");
    s.create_client(&fresh, true, &[], &audit("register", "fresh"))
        .await?;
    ensure_eq!(
        s.get_client("fresh").await?.map(|c| c.dcr_version),
        Some(SpecVersion::V3_4)
    );
    Ok(())
}

/// The bench seeder's bulk load: more rows than one INSERT takes, read back like any others.
async fn bulk_seeding_round_trip(backend: Backend) -> Result<()> {
    let (_db, s) = store(backend).await?;
    let now = dcr_server::clock::now();
    let clients: Vec<ClientRecord> = (0..2500)
        .map(|i| client(&format!("seed-{i}"), "sw-seed"))
        .collect();
    s.seed_clients(&clients).await?;
    let tokens: Vec<TokenRecord> = (0..2500)
        .map(|i| token(&format!("t{i}"), &format!("seed-{}", i % 7), now))
        .collect();
    s.seed_tokens(&tokens).await?;
    ensure_eq!(s.count_rows("clients").await?, 2500);
    ensure_eq!(s.count_rows("tokens").await?, 2500);
    ensure_eq!(s.count_rows("audit_log").await?, 0);
    ensure_eq!(s.get_client("seed-2499").await?, clients.last().cloned());
    ensure_eq!(s.find_token("t1234").await?, tokens.get(1234).cloned());
    // Seeded clients do not hold their software_id: a registration for it is accepted.
    s.create_client(
        &client("new", "sw-seed"),
        true,
        &[],
        &audit("register", "new"),
    )
    .await?;
    // A token for a client that does not exist is refused, as on the request path.
    conflict(
        s.seed_tokens(&[token("orphan", "ghost", now)]).await,
        Conflict::UnknownClient,
    )?;
    ensure!(s.count_rows("nope").await.is_err());
    Ok(())
}

/// The deliveries a lease by `owner` got: (webhook, client_id, event type).
fn leased(got: &[LeasedDelivery]) -> Vec<(String, String, String)> {
    let mut all: Vec<_> = got
        .iter()
        .map(|d| {
            (
                d.webhook.clone(),
                d.event.client_id.clone(),
                d.event.event_type.to_string(),
            )
        })
        .collect();
    all.sort();
    all
}

fn triple(w: &str, c: &str, t: &str) -> (String, String, String) {
    (w.into(), c.into(), t.into())
}

/// Deliveries are leased oldest first per (webhook, client), one lease at a time; a lost
/// lease changes nothing; a retried one holds back the later events of its client; failed
/// ones can be retried; delivered ones are purged with their events.
async fn event_deliveries_are_leased_in_order_and_purged(backend: Backend) -> Result<()> {
    let (_db, s) = store(backend).await?;
    let (all, only_disabled) = ("https://all.example/hook", "https://disabled.example/hook");
    s.set_event_routing(EventRouting {
        webhooks: vec![
            EventTarget {
                url: all.into(),
                types: Vec::new(),
            },
            EventTarget {
                url: only_disabled.into(),
                types: vec![EventType::Disabled],
            },
        ],
        max_age_secs: 3600,
    });
    for (c, sw) in [("c1", "sw1"), ("c2", "sw2")] {
        s.create_client(&client(c, sw), false, &[], &audit("register", c))
            .await?;
    }
    ensure!(
        s.set_client_enabled("c1", false, &audit("client.disable", "c1"))
            .await?
    );
    let now = dcr_server::clock::now();
    let until = now + 30;

    // Both webhooks have deliveries due; each is leased on its own.
    ensure_eq!(
        s.due_webhooks().await?,
        vec![all.to_string(), only_disabled.to_string()]
    );
    // The oldest pending delivery of each (webhook, client); c1's client.disabled to `all`
    // waits for its client.registered.
    let mut first = s.lease_deliveries("w1", all, until, 10).await?;
    ensure_eq!(
        leased(&first),
        vec![
            triple(all, "c1", "client.registered"),
            triple(all, "c2", "client.registered"),
        ]
    );
    ensure_eq!(s.due_webhooks().await?, vec![only_disabled.to_string()]);
    let other = s.lease_deliveries("w1b", only_disabled, until, 10).await?;
    ensure_eq!(
        leased(&other),
        vec![triple(only_disabled, "c1", "client.disabled")]
    );
    first.extend(other);
    // Nothing is free for a second worker, and nothing is due.
    ensure!(s.lease_deliveries("w2", all, until, 10).await?.is_empty());
    ensure!(s.due_webhooks().await?.is_empty());

    let find = |w: &str, c: &str| {
        first
            .iter()
            .find(|d| d.webhook == w && d.event.client_id == c)
            .map(|d| d.delivery_id)
            .context("leased")
    };
    // A worker that lost its lease changes nothing.
    ensure!(
        !s.finish_delivery(find(all, "c1")?, "w2", &DeliveryResult::Delivered)
            .await?
    );
    ensure!(
        s.finish_delivery(find(all, "c1")?, "w1", &DeliveryResult::Delivered)
            .await?
    );
    ensure!(
        s.lease_deliveries("w2", only_disabled, until, 10)
            .await?
            .is_empty()
    );
    let next = s.lease_deliveries("w2", all, until, 10).await?;
    ensure_eq!(leased(&next), vec![triple(all, "c1", "client.disabled")]);
    // Retried later: it holds back nothing else, and is not leased before its time.
    ensure!(
        s.finish_delivery(
            next[0].delivery_id,
            "w2",
            &DeliveryResult::RetryAt {
                next_at: now + 3600,
                error: "HTTP 503".into(),
            },
        )
        .await?
    );
    // Given up: failed, visible with its error, and retried on request.
    ensure!(
        s.finish_delivery(
            find(all, "c2")?,
            "w1",
            &DeliveryResult::GiveUp {
                error: "timed out".into(),
            },
        )
        .await?
    );
    ensure!(s.lease_deliveries("w3", all, until, 10).await?.is_empty());
    let failed = s
        .list_events(&EventFilter {
            failed: true,
            limit: 10,
            ..EventFilter::default()
        })
        .await?;
    ensure_eq!(failed.len(), 1);
    let (event, deliveries) = &failed[0];
    ensure_eq!(event.client_id, "c2");
    ensure_eq!(deliveries.len(), 1);
    ensure_eq!(deliveries[0].state.as_str(), "failed");
    ensure_eq!(deliveries[0].attempts, 1);
    ensure_eq!(deliveries[0].last_error.as_deref(), Some("timed out"));
    // Only the webhook asked for is retried.
    ensure_eq!(
        s.retry_failed(Some(&event.event_id), only_disabled, now + 60)
            .await?,
        0
    );
    ensure_eq!(
        s.retry_failed(Some(&event.event_id), all, now + 60).await?,
        1
    );
    let again = s.lease_deliveries("w3", all, until, 10).await?;
    ensure_eq!(leased(&again), vec![triple(all, "c2", "client.registered")]);
    ensure!(
        s.finish_delivery(again[0].delivery_id, "w3", &DeliveryResult::Delivered)
            .await?
    );
    ensure_eq!(s.pending_summary().await?.0, 2);

    // Purged: delivered deliveries, and events with none left. c1's client.registered goes;
    // its client.disabled (still pending for both webhooks) stays, as does c2's (delivered,
    // but it is its only delivery: the event goes with it).
    let purged = s.purge_events(now + 1).await?;
    ensure_eq!(purged, 2);
    let left = s
        .list_events(&EventFilter {
            limit: 10,
            ..EventFilter::default()
        })
        .await?;
    ensure_eq!(left.len(), 1);
    ensure_eq!(left[0].0.event_type.as_str(), "client.disabled");
    ensure_eq!(left[0].1.len(), 2);
    Ok(())
}

/// `events retry` (one event or `--all-failed`, through [`dcr_server::operator`] as the CLI
/// and the admin API call it) makes pending again only the failed deliveries to webhooks the
/// config still has; one to a removed webhook stays failed.
async fn retries_skip_webhooks_no_longer_configured(backend: Backend) -> Result<()> {
    let (_db, s) = store(backend).await?;
    let (kept, removed) = ("https://kept.example/hook", "https://removed.example/hook");
    s.set_event_routing(EventRouting {
        webhooks: [kept, removed]
            .iter()
            .map(|url| EventTarget {
                url: url.to_string(),
                types: Vec::new(),
            })
            .collect(),
        max_age_secs: 3600,
    });
    s.create_client(&client("c1", "sw1"), false, &[], &audit("register", "c1"))
        .await?;
    let until = dcr_server::clock::now() + 30;
    for webhook in [kept, removed] {
        for d in s.lease_deliveries("w", webhook, until, 10).await? {
            let gave_up = DeliveryResult::GiveUp {
                error: "HTTP 503".into(),
            };
            ensure!(s.finish_delivery(d.delivery_id, "w", &gave_up).await?);
        }
    }
    let config = dcr_server::config::EventsConfig {
        webhook: vec![dcr_server::config::WebhookConfig {
            url: kept.parse().map_err(anyhow::Error::msg)?,
            secret_file: "unused.key".into(),
            ca: Vec::new(),
            types: Vec::new(),
            timeout_ms: 1000,
        }],
        ..dcr_server::config::EventsConfig::default()
    };
    let failed = |s: Database| async move {
        let listed = s
            .list_events(&EventFilter {
                limit: 10,
                ..EventFilter::default()
            })
            .await?;
        let states: Vec<(String, String)> = listed
            .iter()
            .flat_map(|(_, d)| d)
            .map(|d| (d.webhook.clone(), d.state.to_string()))
            .collect();
        anyhow::Ok((listed[0].0.event_id.clone(), states))
    };
    let (event_id, _) = failed(s.clone()).await?;
    ensure_eq!(
        dcr_server::operator::retry_events(&s, Some(&event_id), &config).await?,
        1
    );
    let (_, states) = failed(s.clone()).await?;
    ensure_eq!(
        states,
        vec![
            (kept.to_string(), "pending".to_string()),
            (removed.to_string(), "failed".to_string())
        ]
    );
    // `--all-failed`: still nothing for the removed webhook.
    ensure_eq!(
        dcr_server::operator::retry_events(&s, None, &config).await?,
        0
    );
    Ok(())
}
