//! What `rfc7591` mode stores, on SQLite and PostgreSQL: each client's link to the bank's
//! authorization server, written with the client, and the compensations (AS clients still to
//! be deleted there) that a background job leases until they are done.

use std::collections::HashSet;

use anyhow::{Context, Result, ensure};
use dcr_server::store::{
    AsLinkRecord, AsLinkStore, AuditLog, ClientStore, CompensationRecord, CompensationResult,
    CompensationStore, Conflict, NewCompensation, StoreError, TokenStore,
};

use crate::storage::{audit, client, conflict, jti, old_schema, store};
use crate::support::{BOTH, Backend, Case, TestDb};
use crate::{case, ensure_eq};

pub fn cases() -> Vec<Case> {
    vec![
        case!(a_linked_client_is_written_with_its_link_or_not_at_all, BOTH),
        case!(updates_keep_or_replace_the_link, BOTH),
        case!(deleting_a_client_compensates_through_its_link, BOTH),
        case!(compensations_are_leased_once_and_retried, BOTH),
        case!(concurrent_leases_never_share_a_compensation, BOTH),
        case!(the_migration_keeps_embedded_clients_as_they_were, BOTH),
    ]
}

fn link(client_id: &str, token: &str) -> AsLinkRecord {
    AsLinkRecord {
        client_id: client_id.into(),
        registration_client_uri: format!("https://as.example.com/reg/{client_id}"),
        registration_access_token: token.into(),
        updated_at: dcr_server::clock::now(),
    }
}

fn compensation(client_id: &str, reason: &str) -> NewCompensation {
    NewCompensation {
        client_id: client_id.into(),
        registration_client_uri: format!("https://as.example.com/reg/{client_id}"),
        registration_access_token: format!("rat-{client_id}"),
        reason: reason.into(),
    }
}

fn ids(records: &[CompensationRecord]) -> Vec<i64> {
    records.iter().map(|c| c.id).collect()
}

async fn a_linked_client_is_written_with_its_link_or_not_at_all(backend: Backend) -> Result<()> {
    let (_db, s) = store(backend).await?;
    let later = dcr_server::clock::now() + 600;
    // The AS's own client_ids: not UUIDs.
    let (a, b) = ("AS.client-1_~", "AS.client-2");
    let c = client(a, "sw1");
    let l = link(a, "rat-1");
    s.create_linked_client(
        &c,
        true,
        &[jti("request:sw1", "j1", later)],
        &audit("register", a),
        &l,
    )
    .await?;
    ensure_eq!(s.get_client(a).await?, Some(c.clone()));
    ensure_eq!(s.get_as_link(a).await?, Some(l.clone()));
    ensure_eq!(s.list_audit(Some(a), None).await?.len(), 1);

    // A replayed jti, a taken software_id, a taken client_id: neither row, nor a jti.
    let refused = [
        (
            client(b, "sw2"),
            vec![jti("request:sw1", "j1", later)],
            Conflict::Jti(0),
        ),
        (
            client(b, "sw1"),
            vec![jti("request:sw1", "j2", later)],
            Conflict::SoftwareId,
        ),
        (
            client(a, "sw3"),
            vec![jti("request:sw3", "j3", later)],
            Conflict::ClientId,
        ),
    ];
    for (refused_client, jtis, want) in refused {
        let id = refused_client.client_id.clone();
        conflict(
            s.create_linked_client(
                &refused_client,
                true,
                &jtis,
                &audit("register", &id),
                &link(&id, "rat-refused"),
            )
            .await,
            want,
        )?;
    }
    ensure_eq!(s.get_client(b).await?, None);
    ensure_eq!(s.get_as_link(b).await?, None);
    // The client_id's first holder keeps its row and its link.
    ensure_eq!(s.get_client(a).await?, Some(c.clone()));
    ensure_eq!(s.get_as_link(a).await?, Some(l));
    ensure_eq!(s.count_rows("as_registrations").await?, 1);
    ensure_eq!(s.count_rows("clients").await?, 1);
    ensure_eq!(s.list_audit(None, None).await?.len(), 1);
    // The refused units' jtis are free.
    s.create_linked_client(
        &client(b, "sw2"),
        true,
        &[
            jti("request:sw1", "j2", later),
            jti("request:sw3", "j3", later),
        ],
        &audit("register", b),
        &link(b, "rat-2"),
    )
    .await?;
    ensure_eq!(s.count_rows("as_registrations").await?, 2);

    // A link for another client than the one written is refused before anything is written.
    let refused = s
        .create_linked_client(
            &client("c3", "sw4"),
            true,
            &[],
            &audit("register", "c3"),
            &link(a, "rat-wrong"),
        )
        .await;
    ensure!(matches!(refused, Err(StoreError::Other(_))), "{refused:?}");
    ensure_eq!(s.get_client("c3").await?, None);

    // An embedded registration has no link; nor has an unknown (or NUL) client_id.
    s.create_client(
        &client("embedded", "sw5"),
        true,
        &[],
        &audit("register", "e"),
    )
    .await?;
    ensure_eq!(s.get_as_link("embedded").await?, None);
    ensure_eq!(s.get_as_link("nope").await?, None);
    ensure_eq!(s.get_as_link("a\0b").await?, None);
    ensure_eq!(s.count_rows("as_registrations").await?, 2);

    // A deleted client leaves no link (and, deleted so, no compensation).
    ensure!(s.delete_client(a, &audit("delete", a)).await?);
    ensure_eq!(s.get_as_link(a).await?, None);
    ensure_eq!(s.count_rows("as_registrations").await?, 1);
    ensure_eq!(s.pending_compensations().await?, 0);
    Ok(())
}

async fn updates_keep_or_replace_the_link(backend: Backend) -> Result<()> {
    let (_db, s) = store(backend).await?;
    let later = dcr_server::clock::now() + 600;
    let c = client("c1", "sw1");
    let first = link("c1", "rat-1");
    s.create_linked_client(&c, true, &[], &audit("register", "c1"), &first)
        .await?;

    // Without a new link: the client changes, the link stays.
    let mut updated = c.clone();
    updated.scope = "openid".parse()?;
    updated.updated_at += 5;
    ensure!(
        s.update_linked_client(
            &updated,
            &["scope".to_string()],
            &[jti("request:sw1", "u1", later)],
            &audit("update", "c1"),
            None,
        )
        .await?
    );
    ensure_eq!(s.get_client("c1").await?, Some(updated.clone()));
    ensure_eq!(s.get_as_link("c1").await?, Some(first.clone()));

    // With one (the AS rotated the token, moved the URI): both, in one transaction.
    let rotated = AsLinkRecord {
        registration_client_uri: "https://as.example.com/v2/reg/c1".into(),
        registration_access_token: "rat-2".into(),
        updated_at: first.updated_at + 10,
        ..first.clone()
    };
    updated.updated_at += 5;
    ensure!(
        s.update_linked_client(&updated, &[], &[], &audit("update", "c1"), Some(&rotated))
            .await?
    );
    ensure_eq!(s.get_client("c1").await?, Some(updated.clone()));
    ensure_eq!(s.get_as_link("c1").await?, Some(rotated.clone()));
    ensure_eq!(s.list_audit(Some("c1"), None).await?.len(), 3);

    // A replayed jti: neither the client nor the link changes.
    let mut replayed = updated.clone();
    replayed.scope = "accounts".parse()?;
    conflict(
        s.update_linked_client(
            &replayed,
            &[],
            &[jti("request:sw1", "u1", later)],
            &audit("update", "c1"),
            Some(&link("c1", "rat-3")),
        )
        .await,
        Conflict::Jti(0),
    )?;
    ensure_eq!(s.get_client("c1").await?, Some(updated));
    ensure_eq!(s.get_as_link("c1").await?, Some(rotated));

    // An unknown client: false, no link, and its jti is not kept.
    ensure!(
        !s.update_linked_client(
            &client("ghost", "sw9"),
            &[],
            &[jti("request:sw9", "g", later)],
            &audit("update", "ghost"),
            Some(&link("ghost", "rat-g")),
        )
        .await?
    );
    ensure_eq!(s.get_as_link("ghost").await?, None);
    s.create_client(
        &client("later", "sw9"),
        true,
        &[jti("request:sw9", "g", later)],
        &audit("register", "later"),
    )
    .await?;

    // A client without a link gets the one its update brings.
    let l = link("later", "rat-later");
    ensure!(
        s.update_linked_client(
            &client("later", "sw9"),
            &[],
            &[],
            &audit("update", "later"),
            Some(&l),
        )
        .await?
    );
    ensure_eq!(s.get_as_link("later").await?, Some(l));
    Ok(())
}

async fn deleting_a_client_compensates_through_its_link(backend: Backend) -> Result<()> {
    let (_db, s) = store(backend).await?;
    let now = dcr_server::clock::now();
    let l = link("linked", "rat-linked");
    s.create_linked_client(
        &client("linked", "sw1"),
        true,
        &[],
        &audit("register", "linked"),
        &l,
    )
    .await?;
    s.create_client(
        &client("embedded", "sw2"),
        true,
        &[],
        &audit("register", "embedded"),
    )
    .await?;

    ensure!(
        s.delete_client_compensating("linked", &audit("delete", "linked"), "operator delete", now)
            .await?
    );
    ensure_eq!(s.get_client("linked").await?, None);
    ensure_eq!(s.get_as_link("linked").await?, None);
    let pending = s.list_compensations().await?;
    ensure_eq!(pending.len(), 1);
    let c = &pending[0];
    ensure_eq!(
        (
            c.client_id.as_str(),
            c.registration_client_uri.as_str(),
            c.registration_access_token.as_str(),
            c.reason.as_str(),
            c.attempts,
            c.next_attempt_at,
            c.last_error.as_deref(),
            c.created_at,
        ),
        (
            "linked",
            l.registration_client_uri.as_str(),
            "rat-linked",
            "operator delete",
            0,
            now,
            None,
            now,
        )
    );
    // The token stays out of Debug output.
    ensure!(!format!("{c:?}").contains("rat-linked"), "{c:?}");
    ensure!(!format!("{l:?}").contains("rat-linked"), "{l:?}");
    ensure_eq!(
        s.list_audit(Some("linked"), None)
            .await?
            .last()
            .map(|a| a.action.as_str()),
        Some("delete")
    );

    // No link, no compensation; no client, false.
    ensure!(
        s.delete_client_compensating("embedded", &audit("delete", "embedded"), "op", now)
            .await?
    );
    ensure_eq!(s.get_client("embedded").await?, None);
    ensure!(
        !s.delete_client_compensating("linked", &audit("delete", "linked"), "op", now)
            .await?
    );
    ensure_eq!(s.pending_compensations().await?, 1);
    ensure_eq!(s.count_rows("as_registrations").await?, 0);
    Ok(())
}

async fn compensations_are_leased_once_and_retried(backend: Backend) -> Result<()> {
    let (_db, s) = store(backend).await?;
    let now = dcr_server::clock::now();
    let mut enqueued = Vec::new();
    for id in ["x1", "x2", "x3"] {
        enqueued.push(
            s.enqueue_compensation(&compensation(id, "jti replayed"), now)
                .await?,
        );
    }
    ensure!(enqueued.windows(2).all(|w| w[0] < w[1]), "{enqueued:?}");
    ensure_eq!(s.pending_compensations().await?, 3);
    ensure_eq!(ids(&s.list_compensations().await?), enqueued);
    // Not due before `now`.
    ensure!(
        s.lease_compensations("early", now - 1, now + 30, 10)
            .await?
            .is_empty()
    );

    // Oldest first, up to the limit, the attempt counted.
    let until = now + 30;
    let first = s.lease_compensations("w1", now, until, 2).await?;
    ensure_eq!(ids(&first), enqueued[..2].to_vec());
    ensure!(first.iter().all(|c| c.attempts == 1), "{first:?}");
    ensure_eq!(first[0].registration_access_token.as_str(), "rat-x1");
    // What w1 holds is not leased to w2 while the lease lasts.
    let second = s.lease_compensations("w2", now + 10, now + 40, 10).await?;
    ensure_eq!(ids(&second), vec![enqueued[2]]);
    ensure!(
        s.lease_compensations("w3", now + 29, now + 60, 10)
            .await?
            .is_empty()
    );

    // Done: only by the lease holder, and the row goes.
    let done = CompensationResult::Done;
    ensure!(!s.finish_compensation(first[0].id, "w2", &done).await?);
    ensure!(s.finish_compensation(first[0].id, "w1", &done).await?);
    ensure!(!s.finish_compensation(first[0].id, "w1", &done).await?);
    ensure_eq!(s.pending_compensations().await?, 2);

    // RetryAt: the time and the error are kept, the lease is free, and it is not leased
    // again before then.
    let retry = CompensationResult::RetryAt {
        at: now + 120,
        error: "AS answered 503".into(),
    };
    ensure!(s.finish_compensation(second[0].id, "w2", &retry).await?);
    let kept = s.list_compensations().await?;
    let retried = kept
        .iter()
        .find(|c| c.id == second[0].id)
        .context("the retried compensation")?;
    ensure_eq!(
        (
            retried.next_attempt_at,
            retried.last_error.as_deref(),
            retried.attempts
        ),
        (now + 120, Some("AS answered 503"), 1)
    );

    // Past its `until`, w1's other lease is taken by w4; w1 can no longer finish it.
    let taken = s.lease_compensations("w4", until, until + 30, 10).await?;
    ensure_eq!(ids(&taken), vec![first[1].id]);
    ensure_eq!(taken[0].attempts, 2);
    ensure!(!s.finish_compensation(first[1].id, "w1", &done).await?);
    ensure!(!s.finish_compensation(first[1].id, "w1", &retry).await?);
    ensure!(s.finish_compensation(first[1].id, "w4", &done).await?);

    // The retried one is due at its time, to anyone.
    ensure!(
        s.lease_compensations("w5", now + 119, now + 200, 10)
            .await?
            .is_empty()
    );
    let again = s
        .lease_compensations("w5", now + 120, now + 200, 10)
        .await?;
    ensure_eq!(ids(&again), vec![second[0].id]);
    ensure_eq!(
        (again[0].attempts, again[0].last_error.as_deref()),
        (2, Some("AS answered 503"))
    );
    ensure!(s.finish_compensation(again[0].id, "w5", &done).await?);
    ensure_eq!(s.pending_compensations().await?, 0);
    ensure!(s.list_compensations().await?.is_empty());
    Ok(())
}

/// Owners leasing at the same time (replicas sharing PostgreSQL; SQLite's writer serialises
/// them) never get the same compensation, and between them every one is leased once.
async fn concurrent_leases_never_share_a_compensation(backend: Backend) -> Result<()> {
    let (_db, s) = store(backend).await?;
    let now = dcr_server::clock::now();
    const ROWS: usize = 40;
    for i in 0..ROWS {
        s.enqueue_compensation(&compensation(&format!("c{i}"), "db failed"), now)
            .await?;
    }
    let tasks: Vec<_> = (0..8)
        .map(|w| {
            let s = s.clone();
            tokio::spawn(async move {
                let owner = format!("worker-{w}");
                let mut got = Vec::new();
                // Each takes a few at a time until nothing is left for it; each lease ends at
                // its own time, so that it reads back only what it took.
                for round in 0.. {
                    let until = now + 60 + round;
                    let leased = s.lease_compensations(&owner, now, until, 3).await?;
                    if leased.is_empty() {
                        break;
                    }
                    got.extend(leased.into_iter().map(|c| (c.id, c.attempts)));
                    tokio::task::yield_now().await;
                }
                Ok::<_, StoreError>((owner, got))
            })
        })
        .collect();
    let mut seen = HashSet::new();
    let mut held = Vec::new();
    for t in tasks {
        let (owner, got) = t.await??;
        for (id, attempts) in got {
            ensure!(seen.insert(id), "compensation {id} leased twice");
            ensure_eq!(attempts, 1);
            held.push((id, owner.clone()));
        }
    }
    ensure_eq!(seen.len(), ROWS);
    // Each finishes by its one holder only.
    for (id, owner) in &held {
        ensure!(
            !s.finish_compensation(*id, "someone-else", &CompensationResult::Done)
                .await?
        );
        ensure!(
            s.finish_compensation(*id, owner, &CompensationResult::Done)
                .await?
        );
    }
    ensure_eq!(s.pending_compensations().await?, 0);
    Ok(())
}

/// A database with clients (and tokens) from before the authorization-server tables migrates
/// with its clients as they were: no link, no compensation; new links and compensations work.
async fn the_migration_keeps_embedded_clients_as_they_were(backend: Backend) -> Result<()> {
    let db = TestDb::new(backend).await?;
    let flavour = match backend {
        Backend::Postgres => "postgres",
        _ => "sqlite",
    };
    let mut before: Vec<String> = std::fs::read_dir(format!(
        "{}/migrations/{flavour}",
        env!("CARGO_MANIFEST_DIR")
    ))?
    .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
    .collect::<Result<_>>()?;
    before.sort();
    let last = before.pop().context("no migrations")?;
    ensure!(last.ends_with("_authorization_server.sql"), "{last}");
    let before: Vec<&str> = before.iter().map(String::as_str).collect();
    let rows = [
        "INSERT INTO clients (client_id, software_id, org_id, metadata, grant_types, scope, \
         client_secret_hash, token_endpoint_auth_method, jwks_uri, created_at, updated_at, \
         dcr_version) VALUES ('old', 'sw-old', 'org', '{\"client_id\":\"old\"}', \
         'client_credentials', 'accounts', 'hash', 'private_key_jwt', \
         'https://tpp.example.com/jwks', 1, 1, '3.3')",
        "INSERT INTO tokens (token_hash, client_id, scope, issued_at, expires_at) \
         VALUES ('t', 'old', 'accounts', 1, 4102444800)",
    ];
    old_schema(backend, &db, &before, &rows).await?;
    let s = db.connect().await?;
    let old = s.get_client("old").await?.context("the old client")?;
    s.migrate().await?;
    ensure_eq!(s.get_client("old").await?, Some(old.clone()));
    ensure_eq!(
        s.find_token("t").await?.map(|t| t.client_id),
        Some("old".into())
    );
    ensure_eq!(s.get_as_link("old").await?, None);
    ensure_eq!(s.count_rows("as_registrations").await?, 0);
    ensure_eq!(s.pending_compensations().await?, 0);

    // An old client's update writes no link unless it brings one.
    ensure!(
        s.update_linked_client(&old, &[], &[], &audit("update", "old"), None)
            .await?
    );
    ensure_eq!(s.get_as_link("old").await?, None);
    let l = link("new", "rat-new");
    s.create_linked_client(
        &client("new", "sw-new"),
        true,
        &[],
        &audit("register", "new"),
        &l,
    )
    .await?;
    ensure_eq!(s.get_as_link("new").await?, Some(l));
    let id = s
        .enqueue_compensation(&compensation("gone", "db failed"), 5)
        .await?;
    ensure_eq!(ids(&s.list_compensations().await?), vec![id]);
    // Deleting the old one still takes its token, and compensates nothing.
    ensure!(
        s.delete_client_compensating("old", &audit("delete", "old"), "op", 5)
            .await?
    );
    ensure_eq!(s.find_token("t").await?, None);
    ensure_eq!(s.pending_compensations().await?, 1);
    Ok(())
}
