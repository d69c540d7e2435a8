//! Provisioning events: every change writes exactly its event, in the change's transaction,
//! whoever makes it (the API, the CLI), in order per client; a refused change writes none.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use dcr_server::store::{EventFilter, EventRecord, EventStore};
use serde_json::{Value, json};

use crate::fixtures::Ctx;
use crate::support::{BOTH, Backend, Case, POSTGRES, TestEnv, count_rows, run_binary, serve_https};
use crate::{case, ensure_eq};

pub fn cases() -> Vec<Case> {
    vec![
        case!(every_change_writes_exactly_its_event, BOTH),
        case!(webhooks_get_every_event_signed_and_in_order, BOTH),
        case!(failing_webhooks_are_retried_then_marked_failed, BOTH),
        case!(a_stalled_webhook_holds_up_no_other, BOTH),
        case!(two_replicas_deliver_each_event_once, POSTGRES),
        case!(a_killed_server_delivers_after_restart, BOTH),
    ]
}

/// Every event, oldest first.
async fn events(ctx: &Ctx) -> Result<Vec<EventRecord>> {
    let filter = EventFilter {
        limit: 1000,
        ..EventFilter::default()
    };
    Ok(ctx
        .store
        .list_events(&filter)
        .await?
        .into_iter()
        .map(|(e, _)| e)
        .collect())
}

/// The types and actions of the events after the first `skip`.
async fn new_events(ctx: &Ctx, skip: usize) -> Result<Vec<(String, String)>> {
    Ok(events(ctx)
        .await?
        .into_iter()
        .skip(skip)
        .map(|e| (e.event_type.to_string(), e.action.to_string()))
        .collect())
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(t, a)| (t.to_string(), a.to_string()))
        .collect()
}

async fn every_change_writes_exactly_its_event(backend: Backend) -> Result<()> {
    let ctx = Ctx::start(
        backend,
        "software_id_as_application_name.enable = false",
        "",
    )
    .await?;
    let config = ctx.env.write_config(&ctx.config_text)?;
    let config = config.to_string_lossy().into_owned();
    let cli = |args: &[&str]| {
        let mut all = vec!["--config".to_string(), config.clone()];
        all.extend(args.iter().map(|a| a.to_string()));
        let cwd = ctx.env.dir.path().to_path_buf();
        async move {
            let (ok, out, err) = tokio::task::spawn_blocking(move || {
                let args: Vec<&str> = all.iter().map(String::as_str).collect();
                run_binary(&args, &cwd)
            })
            .await??;
            ensure!(ok, "{err}");
            anyhow::Ok(out)
        }
    };

    // A refused registration writes no event.
    let bad = ctx.request(|c| c["redirect_uris"] = json!(["http://not-https.example"]))?;
    let (status, body) = ctx.post(&bad, true).await?;
    ensure!(status == 400, "{status} {body}");
    ensure!(events(&ctx).await?.is_empty());

    // A registration, with the TPP's interaction id.
    let http = ctx.env.client(Some((&ctx.transport.0, &ctx.transport.1)))?;
    let interaction = "6e4f1a52-3d2b-4c1e-9a7f-0b8c5d2e1f3a";
    let answer = http
        .post(ctx.env.url(dcr_server::REGISTER_PATH))
        .header("content-type", "application/jwt")
        .header("x-fapi-interaction-id", interaction)
        .body(ctx.request(|_| {})?.body)
        .send()
        .await?;
    ensure_eq!(answer.status().as_u16(), 201);
    let created: Value = answer.json().await?;
    let id = created["client_id"]
        .as_str()
        .context("client_id")?
        .to_string();
    let all = events(&ctx).await?;
    ensure_eq!(all.len(), 1);
    let registered = &all[0];
    ensure_eq!(registered.event_type.as_str(), "client.registered");
    ensure_eq!(registered.action.as_str(), "register");
    ensure_eq!(registered.client_id, id);
    ensure_eq!(registered.software_id, ctx.sandbox.tpp.software_id);
    ensure_eq!(registered.org_id, ctx.sandbox.tpp.org_id);
    ensure_eq!(registered.dcr_version.as_str(), "3.2");
    ensure_eq!(registered.interaction_id.as_deref(), Some(interaction));
    ensure_eq!(registered.changed, None);
    ensure!(uuid::Uuid::parse_str(&registered.event_id).is_ok());

    // An update names the fields that changed; a refused one writes nothing.
    let token = ctx.pkj_token(&id).await?;
    let put = |body: String| ctx.manage(reqwest::Method::PUT, &id, Some(&token), Some(body), None);
    let refused = put(ctx
        .request(|c| c["token_endpoint_auth_method"] = json!("none"))?
        .body)
    .await?;
    ensure_eq!(refused.status, 400);
    ensure_eq!(events(&ctx).await?.len(), 1);
    let updated = put(ctx.request(|c| c["scope"] = json!("accounts"))?.body).await?;
    ensure!(updated.status == 200, "{} {}", updated.status, updated.body);
    let all = events(&ctx).await?;
    ensure_eq!(all.len(), 2);
    ensure_eq!(all[1].event_type.as_str(), "client.updated");
    let changed: Vec<String> = serde_json::from_str(all[1].changed.as_deref().context("changed")?)?;
    // The request carried a newly signed SSA, and a new scope.
    ensure_eq!(
        changed,
        vec!["scope".to_string(), "software_statement".into()]
    );

    // A management call for another ClientId revokes the token: client.tokens_revoked.
    let other = ctx
        .manage(
            reqwest::Method::GET,
            "someone-else",
            Some(&token),
            None,
            None,
        )
        .await?;
    ensure_eq!(other.status, 401);
    ensure_eq!(
        new_events(&ctx, 2).await?,
        pairs(&[("client.tokens_revoked", "token.revoke")])
    );

    // The CLI: disabling with a live token also reports the revoked tokens; without, not.
    ctx.pkj_token(&id).await?;
    cli(&["clients", "disable", &id]).await?;
    cli(&["clients", "enable", &id]).await?;
    cli(&["clients", "disable", &id]).await?;
    cli(&["clients", "enable", &id]).await?;
    ensure_eq!(
        new_events(&ctx, 3).await?,
        pairs(&[
            ("client.disabled", "client.disable"),
            ("client.tokens_revoked", "client.disable"),
            ("client.enabled", "client.enable"),
            ("client.disabled", "client.disable"),
            ("client.enabled", "client.enable"),
        ])
    );

    // Deleting through the API, and a second client through the CLI.
    let token = ctx.pkj_token(&id).await?;
    let deleted = ctx
        .manage(reqwest::Method::DELETE, &id, Some(&token), None, None)
        .await?;
    ensure_eq!(deleted.status, 204);
    let second = ctx.register(ctx.request(|_| {})?).await?;
    let second = second["client_id"].as_str().context("client_id")?;
    cli(&["clients", "delete", second]).await?;
    // Unknown clients change nothing and report nothing.
    let _ = cli(&["clients", "disable", "no-such-client"]).await;
    ensure_eq!(
        new_events(&ctx, 8).await?,
        pairs(&[
            ("client.deleted", "delete"),
            ("client.registered", "register"),
            ("client.deleted", "delete"),
        ])
    );

    // In order, each about its own client, none with a delivery (no webhook is configured).
    let all = ctx
        .store
        .list_events(&EventFilter {
            limit: 1000,
            ..EventFilter::default()
        })
        .await?;
    for pair in all.windows(2) {
        ensure!(pair[0].0.id < pair[1].0.id);
    }
    ensure!(all.iter().all(|(_, deliveries)| deliveries.is_empty()));
    ensure!(all[..9].iter().all(|(e, _)| e.client_id == id));
    ensure!(all[9..].iter().all(|(e, _)| e.client_id == second));
    ensure_eq!(count_rows(&ctx.store, "events").await?, 11);
    ctx.server.stop().await
}

/// One request the webhook receiver got.
#[derive(Debug, Clone)]
struct Received {
    id: String,
    /// The signature verified with the Standard Webhooks algorithm (HMAC-SHA256 over
    /// `{id}.{timestamp}.{body}` with the secret's key), and the timestamp is recent.
    verified: bool,
    content_type: String,
    body: Value,
}

/// A real HTTPS webhook receiver on loopback. It answers 503 to the first `fail` requests
/// (all of them while `fail` is `usize::MAX`), holds each answer for `delay`, and records
/// every request.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
    fail: Arc<AtomicUsize>,
    delay: Arc<Mutex<Duration>>,
    _task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start(ca: &dcr_server::sandbox::SandboxCa, key: Vec<u8>, path: &str) -> Result<Self> {
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let fail = Arc::new(AtomicUsize::new(0));
        let delay = Arc::new(Mutex::new(Duration::ZERO));
        let (g, f, d) = (got.clone(), fail.clone(), delay.clone());
        let key = Arc::new(key);
        let app = axum::Router::new().route(
            &format!("/{path}"),
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let (g, f, d, key) = (g.clone(), f.clone(), d.clone(), key.clone());
                    async move {
                        let header = |name: &str| {
                            headers
                                .get(name)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default()
                                .to_string()
                        };
                        let (id, timestamp) = (header("webhook-id"), header("webhook-timestamp"));
                        let signed = hmac::sign(
                            &hmac::Key::new(hmac::HMAC_SHA256, &key),
                            format!("{id}.{timestamp}.{}", String::from_utf8_lossy(&body))
                                .as_bytes(),
                        );
                        let expected = format!("v1,{}", STANDARD.encode(signed.as_ref()));
                        let recent = timestamp
                            .parse::<i64>()
                            .is_ok_and(|t| (dcr_server::clock::now() - t).abs() < 300);
                        let verified = recent
                            && header("webhook-signature")
                                .split(' ')
                                .any(|s| s == expected);
                        g.lock().unwrap().push(Received {
                            id,
                            verified,
                            content_type: header("content-type"),
                            body: serde_json::from_slice(&body).unwrap_or_default(),
                        });
                        let wait = *d.lock().unwrap();
                        tokio::time::sleep(wait).await;
                        let failing = f
                            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| match n {
                                0 => None,
                                usize::MAX => Some(usize::MAX),
                                n => Some(n - 1),
                            })
                            .is_ok();
                        if failing {
                            axum::http::StatusCode::SERVICE_UNAVAILABLE
                        } else {
                            axum::http::StatusCode::NO_CONTENT
                        }
                    }
                },
            ),
        );
        let (port, task) = serve_https(ca, app).await?;
        Ok(Self {
            url: format!("https://localhost:{port}/{path}"),
            got,
            fail,
            delay,
            _task: task,
        })
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until `n` requests came (answered or refused).
    async fn wait_for(&self, n: usize, limit: Duration) -> Result<Vec<Received>> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let got = self.got();
            if got.len() >= n {
                return Ok(got);
            }
            ensure!(
                std::time::Instant::now() < deadline,
                "{} of {n} webhook requests within {limit:?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A Standard Webhooks secret: its file's text and its key.
fn secret() -> (String, Vec<u8>) {
    let key: Vec<u8> = (0..32).map(|i| (i * 7 + 3) as u8).collect();
    (format!("whsec_{}\n", STANDARD.encode(&key)), key)
}

/// The `[events]` tables for `webhooks` (url, types), each with `secret_file` and the sandbox
/// CA as its `ca`.
fn events_toml(
    env: &TestEnv,
    secret_file: &Path,
    max_age: u64,
    webhooks: &[(&str, &str)],
) -> String {
    let mut text = format!("[events]\nmax_age_secs = {max_age}\n");
    for (url, types) in webhooks {
        text.push_str(&format!(
            "[[events.webhook]]\nurl = \"{url}\"\nsecret_file = \"{}\"\nca = [\"{}\"]\ntypes = [{types}]\ntimeout_ms = 1000\n",
            secret_file.display(),
            env.sandbox_dir.join("ca.pem").display()
        ));
    }
    text
}

/// A server whose events go to a receiver on loopback (every type), and a second receiver
/// for `client.deleted` only; with an admin API (and the allowed admin's client).
struct Hooked {
    ctx: Ctx,
    all: Receiver,
    deleted: Receiver,
    admin: reqwest::Client,
}

async fn hooked(backend: Backend, max_age: u64) -> Result<Hooked> {
    let env = TestEnv::new(backend).await?;
    let pki = crate::admin::admin_pki(&env)?;
    let admin =
        crate::support::https_client(&env.ca_pem()?, Some((&pki.allowed.0, &pki.allowed.1)))?;
    let (text, key) = secret();
    let secret_file = env.dir.path().join("webhook.key");
    std::fs::write(&secret_file, text)?;
    let ca = env.ca()?;
    let all = Receiver::start(&ca, key.clone(), "all").await?;
    let deleted = Receiver::start(&ca, key, "deleted").await?;
    let tables = events_toml(
        &env,
        &secret_file,
        max_age,
        &[(&all.url, ""), (&deleted.url, "\"client.deleted\"")],
    ) + &pki.table;
    let ctx = Ctx::start_in(
        env,
        "",
        "",
        "software_id_as_application_name.enable = false",
        "",
        &tables,
    )
    .await?;
    Ok(Hooked {
        ctx,
        all,
        deleted,
        admin,
    })
}

/// Registers a client; its client_id.
async fn register_one(ctx: &Ctx) -> Result<String> {
    let created = ctx.register(ctx.request(|_| {})?).await?;
    Ok(created["client_id"]
        .as_str()
        .context("client_id")?
        .to_string())
}

/// Each event reaches the webhooks that want it, once, signed, as a CloudEvent, in order per
/// client; a type filter holds.
async fn webhooks_get_every_event_signed_and_in_order(backend: Backend) -> Result<()> {
    let Hooked {
        ctx, all, deleted, ..
    } = hooked(backend, 3600).await?;
    let id = register_one(&ctx).await?;
    let token = ctx.pkj_token(&id).await?;
    let updated = ctx
        .manage(
            reqwest::Method::PUT,
            &id,
            Some(&token),
            Some(ctx.request(|c| c["scope"] = json!("accounts"))?.body),
            None,
        )
        .await?;
    ensure_eq!(updated.status, 200);
    let deleted_answer = ctx
        .manage(reqwest::Method::DELETE, &id, Some(&token), None, None)
        .await?;
    ensure_eq!(deleted_answer.status, 204);

    let got = all.wait_for(3, Duration::from_secs(15)).await?;
    let stored = events(&ctx).await?;
    ensure_eq!(got.len(), 3);
    for (r, e) in got.iter().zip(&stored) {
        ensure!(r.verified, "a signature does not verify: {r:?}");
        ensure_eq!(r.content_type, "application/cloudevents+json");
        ensure_eq!(r.id, e.event_id);
        ensure_eq!(r.body["specversion"], "1.0");
        ensure_eq!(r.body["id"], json!(e.event_id));
        ensure_eq!(r.body["type"], json!(e.event_type));
        ensure_eq!(r.body["subject"], json!(id));
        ensure_eq!(r.body["source"], json!(ctx.env.issuer()));
        ensure_eq!(r.body["data"]["client_id"], json!(id));
        ensure_eq!(
            r.body["data"]["software_id"],
            json!(ctx.sandbox.tpp.software_id)
        );
    }
    let types: Vec<&str> = got.iter().filter_map(|r| r.body["type"].as_str()).collect();
    ensure_eq!(
        types,
        ["client.registered", "client.updated", "client.deleted"]
    );
    ensure_eq!(
        got[1].body["data"]["changed_fields"],
        json!(["scope", "software_statement"])
    );
    let only = deleted.wait_for(1, Duration::from_secs(10)).await?;
    ensure_eq!(only[0].body["type"], "client.deleted");
    // Nothing more arrives, and the store has every delivery done.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    ensure_eq!(all.got().len(), 3);
    ensure_eq!(deleted.got().len(), 1);
    let listed = ctx
        .store
        .list_events(&EventFilter {
            limit: 10,
            ..EventFilter::default()
        })
        .await?;
    ensure!(
        listed
            .iter()
            .flat_map(|(_, d)| d)
            .all(|d| d.state.as_str() == "delivered" && d.attempts == 1)
    );
    ctx.server.stop().await
}

/// A receiver that fails, then recovers, gets every event, in order; one that never recovers
/// leaves them failed (visible in the CLI and the admin API), and a retry delivers them.
async fn failing_webhooks_are_retried_then_marked_failed(backend: Backend) -> Result<()> {
    let Hooked {
        ctx,
        all,
        deleted,
        admin,
    } = hooked(backend, 3600).await?;
    // Three failures (1 s, 2 s backoff...), then success.
    all.fail.store(3, Ordering::SeqCst);
    let first = register_one(&ctx).await?;
    let second = register_one(&ctx).await?;
    let got = all.wait_for(5, Duration::from_secs(20)).await?;
    // The first client's event, three times refused then delivered; the second client's is
    // not held back by it.
    let firsts: Vec<&Received> = got
        .iter()
        .filter(|r| r.body["subject"] == json!(first))
        .collect();
    ensure!(firsts.len() >= 2, "{got:?}");
    ensure!(got.iter().all(|r| r.verified));
    ensure!(got.iter().any(|r| r.body["subject"] == json!(second)));

    // Never recovers: past max_age (2 s from now on, by a reload) the deliveries are failed.
    let shorter = ctx
        .config_text
        .replace("max_age_secs = 3600", "max_age_secs = 2");
    ensure!(shorter != ctx.config_text);
    ctx.server
        .reloader
        .reload_file(&ctx.env.write_config(&shorter)?)?;
    all.fail.store(usize::MAX, Ordering::SeqCst);
    let token = ctx.pkj_token(&first).await?;
    let gone = ctx
        .manage(reqwest::Method::DELETE, &first, Some(&token), None, None)
        .await?;
    ensure_eq!(gone.status, 204);
    let config = ctx.env.write_config(&shorter)?;
    let config = config.to_string_lossy().into_owned();
    let cli = |args: Vec<String>| {
        let cwd = ctx.env.dir.path().to_path_buf();
        let mut all = vec!["--config".to_string(), config.clone()];
        all.extend(args);
        async move {
            tokio::task::spawn_blocking(move || {
                let args: Vec<&str> = all.iter().map(String::as_str).collect();
                run_binary(&args, &cwd)
            })
            .await?
        }
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let failed = loop {
        let (ok, out, err) = cli(vec![
            "events".into(),
            "list".into(),
            "--failed".into(),
            "--json".into(),
        ])
        .await?;
        ensure!(ok, "{err}");
        let rows: Vec<Value> = serde_json::from_str(&out)?;
        if !rows.is_empty() {
            break rows;
        }
        ensure!(std::time::Instant::now() < deadline, "nothing failed");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    ensure_eq!(failed[0]["type"], "client.deleted");
    let webhook_state = |row: &Value, url: &str| {
        row["deliveries"]
            .as_array()
            .and_then(|d| d.iter().find(|d| d["webhook"] == json!(url)))
            .map(|d| d["state"].clone())
    };
    ensure_eq!(webhook_state(&failed[0], &all.url), Some(json!("failed")));
    // The other webhook took it.
    ensure_eq!(
        webhook_state(&failed[0], &deleted.url),
        Some(json!("delivered"))
    );

    let event_id = failed[0]["event_id"]
        .as_str()
        .context("event_id")?
        .to_string();
    // The admin API shows the same.
    let base = crate::admin::admin_base(&ctx)?;
    let listed: Value = admin
        .get(format!("{base}/admin/events?failed=true"))
        .send()
        .await?
        .json()
        .await?;
    ensure_eq!(listed["events"][0]["event_id"], json!(event_id));
    ensure_eq!(
        webhook_state(&listed["events"][0], &all.url),
        Some(json!("failed"))
    );

    // Retried (through the admin API) once the receiver is back: delivered.
    all.fail.store(0, Ordering::SeqCst);
    let before = all.got().len();
    let retried = admin
        .post(format!("{base}/admin/events/{event_id}/retry"))
        .send()
        .await?;
    ensure_eq!(retried.status().as_u16(), 200);
    let body: Value = retried.json().await?;
    ensure_eq!(body["retried"], 1);
    let got = all.wait_for(before + 1, Duration::from_secs(10)).await?;
    ensure_eq!(got[before].id, event_id);
    ensure!(got[before].verified);
    // Nothing is left to retry.
    let (ok, _, _) = cli(vec!["events".into(), "retry".into(), event_id]).await?;
    ensure!(!ok, "nothing left to retry, yet it said so");
    let (ok, out, err) = cli(vec!["events".into(), "retry".into(), "--all-failed".into()]).await?;
    ensure!(ok && out.starts_with("0 "), "{out} {err}");

    // The metrics (on the admin listener here) count each outcome.
    let metrics = crate::support::Metrics(
        admin
            .get(format!("{base}/metrics"))
            .send()
            .await?
            .text()
            .await?,
    );
    for outcome in ["delivered", "retry", "failed"] {
        let label = format!("outcome=\"{outcome}\"");
        ensure!(
            metrics.has("dcr_event_deliveries_total", &[&label]),
            "no {outcome}: {metrics}"
        );
    }
    ensure!(metrics.has("dcr_events_pending", &[]), "{metrics}");
    ctx.server.stop().await
}

/// A webhook whose receiver stalls holds up only its own deliveries: another webhook gets a
/// client's three events, one after the other, while the stalled one is still in its first
/// attempt (it used to wait for the batch, so for the stalled send's timeout, per event).
async fn a_stalled_webhook_holds_up_no_other(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend).await?;
    let (text, key) = secret();
    let secret_file = env.dir.path().join("webhook.key");
    std::fs::write(&secret_file, text)?;
    let ca = env.ca()?;
    let stalled = Receiver::start(&ca, key.clone(), "stalled").await?;
    let prompt = Receiver::start(&ca, key, "prompt").await?;
    *stalled.delay.lock().unwrap() = Duration::from_secs(120);
    let ca_file = env.sandbox_dir.join("ca.pem");
    let mut tables = "[events]\nmax_age_secs = 3600\n".to_string();
    for (url, timeout_ms) in [(&stalled.url, 30_000), (&prompt.url, 1000)] {
        tables.push_str(&format!(
            "[[events.webhook]]\nurl = \"{url}\"\nsecret_file = \"{}\"\nca = [\"{}\"]\ntimeout_ms = {timeout_ms}\n",
            secret_file.display(),
            ca_file.display()
        ));
    }
    let ctx = Ctx::start_in(
        env,
        "",
        "",
        "software_id_as_application_name.enable = false",
        "",
        &tables,
    )
    .await?;
    let id = register_one(&ctx).await?;
    let token = ctx.pkj_token(&id).await?;
    for scope in ["accounts", "payments"] {
        let updated = ctx
            .manage(
                reqwest::Method::PUT,
                &id,
                Some(&token),
                Some(ctx.request(|c| c["scope"] = json!(scope))?.body),
                None,
            )
            .await?;
        ensure!(updated.status == 200, "{} {}", updated.status, updated.body);
    }
    // A client's events go one after the other: the second is sent only once the first is
    // delivered, so these three took three rounds of the prompt webhook.
    let got = prompt.wait_for(3, Duration::from_secs(40)).await?;
    let types: Vec<&str> = got.iter().filter_map(|r| r.body["type"].as_str()).collect();
    ensure_eq!(
        types,
        ["client.registered", "client.updated", "client.updated"]
    );
    // Meanwhile the stalled webhook got its first request and is still in that attempt.
    ensure_eq!(stalled.got().len(), 1);
    let listed = ctx
        .store
        .list_events(&EventFilter {
            limit: 10,
            ..EventFilter::default()
        })
        .await?;
    let to_stalled: Vec<(String, i64)> = listed
        .iter()
        .flat_map(|(_, d)| d)
        .filter(|d| d.webhook == stalled.url)
        .map(|d| (d.state.to_string(), d.attempts))
        .collect();
    ensure_eq!(
        to_stalled,
        vec![
            ("pending".to_string(), 0),
            ("pending".to_string(), 0),
            ("pending".to_string(), 0)
        ]
    );
    ctx.server.stop().await
}

/// Two replicas on one PostgreSQL share the deliveries: each event arrives once.
async fn two_replicas_deliver_each_event_once(backend: Backend) -> Result<()> {
    let Hooked { ctx, all, .. } = hooked(backend, 3600).await?;
    let second_port = crate::support::free_port();
    let text = ctx.config_text.replace(
        &format!("127.0.0.1:{}", ctx.env.port),
        &format!("127.0.0.1:{second_port}"),
    );
    let config = dcr_server::config::Config::parse(&text, std::path::Path::new("second.toml"))?;
    let replica = ctx.env.start_with(config, axum::Router::new()).await?;
    for _ in 0..12 {
        register_one(&ctx).await?;
    }
    let got = all.wait_for(12, Duration::from_secs(20)).await?;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let got_now = all.got();
    ensure_eq!(got_now.len(), got.len());
    let mut ids: Vec<&str> = got_now.iter().map(|r| r.id.as_str()).collect();
    ids.sort();
    ids.dedup();
    ensure_eq!(ids.len(), 12);
    replica.stop().await?;
    ctx.server.stop().await
}

/// kill -9 of the server while it delivers loses no event: after a restart the event is
/// delivered again (at least once), with the same webhook-id.
async fn a_killed_server_delivers_after_restart(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend).await?;
    let (text, key) = secret();
    let secret_file = env.dir.path().join("webhook.key");
    std::fs::write(&secret_file, text)?;
    let all = Receiver::start(&env.ca()?, key, "all").await?;
    // The first delivery is held, so that the server dies during it.
    *all.delay.lock().unwrap() = Duration::from_secs(30);
    let issuer = env.issuer();
    let config = env.config_toml_full(
        "",
        &format!("audience = [\"{issuer}\"]\nsoftware_id_as_application_name.enable = false"),
        "allowed_hosts = [\"localhost\"]",
        &events_toml(&env, &secret_file, 3600, &[(&all.url, "")]),
    );
    let path = env.write_config(&config)?;
    let serve = || -> Result<std::process::Child> {
        Ok(std::process::Command::new(env!("CARGO_BIN_EXE_dcr-server"))
            .args(["--config", &path.to_string_lossy(), "serve"])
            .current_dir(env.dir.path())
            .env_remove("DCR_DATABASE_URL")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?)
    };
    let ready = || async {
        let http = env.client(None)?;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http.get(env.url("/health")).send().await
                && r.status() == 200
            {
                return anyhow::Ok(());
            }
            ensure!(
                std::time::Instant::now() < deadline,
                "the server did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let mut child = serve()?;
    let outcome = async {
        ready().await?;
        let sandbox = env.sandbox()?;
        let claims = sandbox.request_claims(&dcr_server::sandbox::RequestOptions {
            aud: issuer.clone(),
            ..Default::default()
        })?;
        let (cert, key) = env.transport_pem()?;
        let answer = env
            .client(Some((&cert, &key)))?
            .post(env.url(dcr_server::REGISTER_PATH))
            .header("content-type", "application/jwt")
            .body(sandbox.sign_as_tpp(&claims, "PS256")?)
            .send()
            .await?;
        ensure_eq!(answer.status().as_u16(), 201);
        let first = all.wait_for(1, Duration::from_secs(15)).await?;
        child.kill()?;
        child.wait()?;
        *all.delay.lock().unwrap() = Duration::ZERO;
        child = serve()?;
        ready().await?;
        // Sent again once the dead worker's lease expires.
        let got = all.wait_for(2, Duration::from_secs(30)).await?;
        ensure_eq!(got[1].id, first[0].id);
        ensure!(got[1].verified);
        ensure_eq!(got[1].body["type"], "client.registered");
        anyhow::Ok(())
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    outcome
}
