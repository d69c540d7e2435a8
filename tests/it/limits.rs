//! Rate limits per client certificate and load shedding, over real mTLS: a certificate that
//! reaches a limit gets 429 with `Retry-After` before any signature work (its software JWKS is
//! never fetched), while another certificate's requests still succeed; requests without a
//! certificate are not limited; more pending requests than `max_pending_requests` get 503.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

use crate::registration::{Ctx, eidas_cert};
use crate::support::{Backend, Case, Doc, SQLITE};
use crate::{case, ensure_eq};

pub fn cases() -> Vec<Case> {
    vec![
        case!(registrations_are_limited_per_certificate, SQLITE),
        case!(
            token_requests_are_limited_per_certificate_and_client,
            SQLITE
        ),
        case!(requests_are_limited_per_certificate_only, SQLITE),
        case!(pending_requests_beyond_the_bound_are_shed, SQLITE),
    ]
}

const POLICY_OFF: &str = "software_id_as_application_name.enable = false";

async fn limited(server: &str) -> Result<Ctx> {
    Ctx::start_custom(Backend::Sqlite, server, POLICY_OFF, "", "").await
}

fn ensure_429(status: u16, headers: &reqwest::header::HeaderMap, body: &Value) -> Result<()> {
    ensure!(status == 429, "want 429: {status} {body}");
    ensure_eq!(body["error"], json!("too_many_requests"));
    let retry = headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .context("Retry-After")?;
    ensure!(retry >= 1, "Retry-After {retry}");
    Ok(())
}

async fn send(b: reqwest::RequestBuilder) -> Result<(u16, reqwest::header::HeaderMap, Value)> {
    let r = b.send().await?;
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.json().await.unwrap_or(Value::Null);
    Ok((status, headers, body))
}

/// One registration a minute (bucket 1): the second POST from the certificate is 429, and its
/// software JWKS is never fetched; another certificate still registers.
async fn registrations_are_limited_per_certificate(_: Backend) -> Result<()> {
    let ctx = limited(
        "rate_limit.enable = true\nrate_limit.registrations_per_minute = 1\nrate_limit.burst = 1.0",
    )
    .await?;
    let (status, body) = ctx.post(&ctx.request(|_| {})?, true).await?;
    ensure!(status == 201, "first: {status} {body}");
    // The second request's SSA points at a JWKS of its own: a 429 must not fetch it.
    ctx.jwks
        .set("limited.jwks", Doc::json(ctx.tpp_jwks.to_string()));
    let url = ctx.jwks.url("limited.jwks");
    let req = ctx.request_with_ssa(|s| s["software_jwks_endpoint"] = json!(url))?;
    let before = ctx.counts().await?;
    let http = ctx.env.client(Some((&ctx.transport.0, &ctx.transport.1)))?;
    let (status, headers, body) = send(
        http.post(ctx.env.url(dcr_server::REGISTER_PATH))
            .header("content-type", "application/jwt")
            .body(req.body.clone()),
    )
    .await?;
    ensure_429(status, &headers, &body)?;
    ensure_eq!(ctx.jwks.hits("limited.jwks"), 0);
    ensure_eq!(ctx.counts().await?, before);
    // Another certificate of the same software has its own bucket.
    let mut other = ctx.request(|_| {})?;
    other.identity = Some(eidas_cert(&ctx, "PSDGB-FCA-123456")?);
    let (status, body) = ctx.post(&other, true).await?;
    ensure!(status == 201, "another certificate: {status} {body}");
    // A PUT is a registration too.
    let id = body["client_id"].as_str().context("client_id")?;
    let (status, headers, body) = send(
        http.put(ctx.env.url(&format!("{}/{id}", dcr_server::REGISTER_PATH)))
            .bearer_auth("whatever")
            .header("content-type", "application/jwt")
            .body(req.body),
    )
    .await?;
    ensure_429(status, &headers, &body)?;
    ctx.server.stop().await
}

/// One token request a second per (certificate, claimed client_id): the second for the same
/// client is 429; the same certificate claiming another client is not limited by it.
async fn token_requests_are_limited_per_certificate_and_client(_: Backend) -> Result<()> {
    let ctx = limited(
        "rate_limit.enable = true\nrate_limit.token_requests_per_second = 1\nrate_limit.burst = 1.0",
    )
    .await?;
    let (status, body) = ctx.post(&ctx.request(|_| {})?, true).await?;
    ensure!(status == 201, "{status} {body}");
    let id = body["client_id"].as_str().context("client_id")?.to_string();
    let http = ctx.env.client(Some((&ctx.transport.0, &ctx.transport.1)))?;
    let token = |client_id: &str| -> Result<reqwest::RequestBuilder> {
        let assertion = ctx.sandbox.client_assertion(
            client_id,
            &format!("{}/token", ctx.env.issuer()),
            "PS256",
        )?;
        Ok(http.post(ctx.env.url("/token")).form(&[
            ("grant_type", "client_credentials".to_string()),
            (
                "client_assertion_type",
                dcr_server::oauth::client_auth::CLIENT_ASSERTION_TYPE.to_string(),
            ),
            ("client_assertion", assertion),
        ]))
    };
    let (status, _, body) = send(token(&id)?).await?;
    ensure!(status == 200, "first token: {status} {body}");
    let (status, headers, body) = send(token(&id)?).await?;
    ensure_429(status, &headers, &body)?;
    let (status, _, body) = send(token("someone-else")?).await?;
    ensure!(status == 401, "another claimed client: {status} {body}");
    ctx.server.stop().await
}

/// Any endpoint, per certificate: the third GET in a row is 429; discovery without a
/// certificate is never limited.
async fn requests_are_limited_per_certificate_only(_: Backend) -> Result<()> {
    let ctx = limited(
        "rate_limit.enable = true\nrate_limit.requests_per_second = 1\nrate_limit.burst = 2.0",
    )
    .await?;
    let http = ctx.env.client(Some((&ctx.transport.0, &ctx.transport.1)))?;
    let url = ctx.env.url("/.well-known/openid-configuration");
    for _ in 0..2 {
        let (status, _, _) = send(http.get(&url)).await?;
        ensure_eq!(status, 200);
    }
    let (status, headers, body) = send(http.get(&url)).await?;
    ensure_429(status, &headers, &body)?;
    let anonymous = ctx.env.client(None)?;
    for _ in 0..10 {
        let (status, _, _) = send(anonymous.get(&url)).await?;
        ensure_eq!(status, 200);
    }
    ctx.server.stop().await
}

/// `max_pending_requests = 1`: while one registration waits on a slow JWKS, a second gets 503
/// `temporarily_unavailable` with `Retry-After` at once.
async fn pending_requests_beyond_the_bound_are_shed(_: Backend) -> Result<()> {
    let ctx = limited("max_pending_requests = 1").await?;
    let mut slow = Doc::json(ctx.tpp_jwks.to_string());
    slow.delay = Duration::from_millis(1500);
    ctx.jwks.set("slow.jwks", slow);
    let url = ctx.jwks.url("slow.jwks");
    let waiting = ctx.request_with_ssa(|s| s["software_jwks_endpoint"] = json!(url))?;
    let first = ctx.post(&waiting, true);
    let second = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let http = ctx.env.client(Some((&ctx.transport.0, &ctx.transport.1)))?;
        let started = std::time::Instant::now();
        let answer = send(
            http.post(ctx.env.url(dcr_server::REGISTER_PATH))
                .header("content-type", "application/jwt")
                .body(ctx.request(|_| {})?.body),
        )
        .await?;
        anyhow::Ok((answer, started.elapsed()))
    };
    let (first, second) = tokio::join!(first, second);
    let (status, body) = first?;
    ensure!(status == 201, "the waiting request: {status} {body}");
    let ((status, headers, body), took) = second?;
    ensure!(status == 503, "the shed request: {status} {body}");
    ensure_eq!(body["error"], json!("temporarily_unavailable"));
    ensure!(headers.contains_key("retry-after"));
    ensure!(
        took < Duration::from_millis(1000),
        "shed at once, not queued: {took:?}"
    );
    // Once the first is done, registrations go through again.
    let (status, body) = ctx.post(&ctx.request(|_| {})?, true).await?;
    ensure!(status == 201, "after: {status} {body}");
    ctx.server.stop().await
}
