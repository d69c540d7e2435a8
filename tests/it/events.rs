//! Provisioning events: every change writes exactly its event, in the change's transaction,
//! whoever makes it (the API, the CLI), in order per client; a refused change writes none.

use anyhow::{Context, Result, ensure};
use dcr_server::store::{EventFilter, EventRecord, EventStore};
use serde_json::{Value, json};

use crate::registration::Ctx;
use crate::support::{BOTH, Backend, Case, count_rows, run_binary};
use crate::{case, ensure_eq};

pub fn cases() -> Vec<Case> {
    vec![case!(every_change_writes_exactly_its_event, BOTH)]
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
        .map(|e| (e.event_type, e.action))
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
    ensure_eq!(registered.event_type, "client.registered");
    ensure_eq!(registered.action, "register");
    ensure_eq!(registered.client_id, id);
    ensure_eq!(registered.software_id, ctx.sandbox.tpp.software_id);
    ensure_eq!(registered.org_id, ctx.sandbox.tpp.org_id);
    ensure_eq!(registered.dcr_version, "3.2");
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
    ensure_eq!(all[1].event_type, "client.updated");
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
