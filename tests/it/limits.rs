//! Rate limits per client certificate and load shedding, over real mTLS: a certificate that
//! reaches a limit gets 429 with `Retry-After` before any signature work (its software JWKS is
//! never fetched), while another certificate's requests still succeed; requests without a
//! certificate are not limited; more pending requests than `max_pending_requests` get 503; a
//! request takes its slot only once its body is in, and a body that is not complete by
//! `body_timeout_ms` gets 408 and its connection closed.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::fixtures::{Ctx, eidas_cert};
use crate::support::{Backend, Case, Doc, SQLITE, token_request_with_assertion};
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
        case!(slow_bodies_hold_no_slot_and_are_cut_off, SQLITE),
        case!(anonymous_requests_have_slots_of_their_own, SQLITE),
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
        Ok(token_request_with_assertion(
            &http,
            ctx.env.url("/token"),
            &assertion,
        ))
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

/// Twelve connections without a certificate trickle `POST /token` bodies, more than all the
/// pipeline's slots. A registration meanwhile succeeds (the slow requests hold no slot), and
/// each slow request gets 408 `invalid_request` after `body_timeout_ms`, its connection
/// closed.
async fn slow_bodies_hold_no_slot_and_are_cut_off(_: Backend) -> Result<()> {
    let ctx = limited("max_pending_requests = 4\nbody_timeout_ms = 1500").await?;
    let connector = crate::support::tls_connector(&ctx.env.ca_pem()?, None)?;
    let mut slow = Vec::new();
    for _ in 0..12 {
        let tcp = tokio::net::TcpStream::connect(ctx.server.addr).await?;
        let name = rustls::pki_types::ServerName::try_from("localhost")?.to_owned();
        let mut tls = connector.connect(name, tcp).await?;
        tls.write_all(
            b"POST /token HTTP/1.1\r\nHost: localhost\r\n\
              Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 200\r\n\r\n",
        )
        .await?;
        slow.push(tokio::spawn(async move {
            let started = std::time::Instant::now();
            let mut answer = Vec::new();
            let mut buf = [0u8; 1024];
            loop {
                // One byte every 100 ms, for as long as the server listens.
                let _ = tls.write_all(b"a").await;
                match tokio::time::timeout(Duration::from_millis(100), tls.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => break,
                    Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
                    Err(_) => {}
                }
                if started.elapsed() > Duration::from_secs(10) {
                    break;
                }
            }
            (
                String::from_utf8_lossy(&answer).into_owned(),
                started.elapsed(),
            )
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body) = ctx.post(&ctx.request(|_| {})?, true).await?;
    ensure!(
        status == 201,
        "a registration while slow bodies trickle: {status} {body}"
    );
    for task in slow {
        let (answer, took) = task.await?;
        ensure!(
            answer.starts_with("HTTP/1.1 408"),
            "the slow request's answer: {answer:?}"
        );
        ensure!(answer.contains(r#""error":"invalid_request""#), "{answer}");
        ensure!(
            took < Duration::from_secs(5),
            "the connection was closed after the 408, not kept open: {took:?}"
        );
    }
    slow_http2_body_closes_its_connection(&ctx).await?;
    let metrics = ctx.env.metrics().await?;
    ensure!(metrics.has("dcr_body_timeouts_total", &[]), "{}", metrics.0);
    ctx.server.stop().await
}

/// Over HTTP/2 a slow body's 408 closes the whole connection (GOAWAY), not only its stream.
async fn slow_http2_body_closes_its_connection(ctx: &Ctx) -> Result<()> {
    use http_body_util::BodyExt;
    let ca = ctx.env.ca_pem()?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(ca.as_bytes()) {
        roots.add(cert?)?;
    }
    let mut config =
        rustls::ClientConfig::builder_with_provider(dcr_server::pki::tls::crypto_provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(ctx.server.addr).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost")?.to_owned();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await?;
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await?;
    let connection = tokio::spawn(connection);
    // One byte of the body, then nothing.
    let (frames, rx) = tokio::sync::mpsc::channel::<
        Result<hyper::body::Frame<axum::body::Bytes>, std::io::Error>,
    >(1);
    frames
        .send(Ok(hyper::body::Frame::data(
            axum::body::Bytes::from_static(b"a"),
        )))
        .await?;
    let body = http_body_util::StreamBody::new(tokio_stream_of(rx));
    let request = hyper::Request::post(ctx.env.url("/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)?;
    let response = sender.send_request(request).await?;
    ensure_eq!(response.status().as_u16(), 408);
    let answer = response.into_body().collect().await?.to_bytes();
    let answer: Value = serde_json::from_slice(&answer)?;
    ensure_eq!(answer["error"], json!("invalid_request"));
    let closed = tokio::time::timeout(Duration::from_secs(3), connection).await;
    ensure!(
        closed.is_ok(),
        "the HTTP/2 connection stayed open after the 408"
    );
    drop(frames);
    Ok(())
}

/// The receiving half of a channel as a stream of body frames.
fn tokio_stream_of<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// `max_pending_anonymous = 0`: a token request without a certificate is shed (503 with
/// `Retry-After`); one with a certificate still reaches the grant (here: 401 for an unknown
/// client, not 503).
async fn anonymous_requests_have_slots_of_their_own(_: Backend) -> Result<()> {
    let ctx = limited("max_pending_anonymous = 0").await?;
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", "nobody"),
        ("client_secret", "nothing"),
    ];
    let anonymous = ctx.env.client(None)?;
    let (status, headers, body) = send(anonymous.post(ctx.env.url("/token")).form(&form)).await?;
    ensure!(status == 503, "anonymous: {status} {body}");
    ensure_eq!(body["error"], json!("temporarily_unavailable"));
    ensure!(headers.contains_key("retry-after"));
    let http = ctx.env.client(Some((&ctx.transport.0, &ctx.transport.1)))?;
    let (status, _, body) = send(http.post(ctx.env.url("/token")).form(&form)).await?;
    ensure!(status == 401, "with a certificate: {status} {body}");
    let metrics = ctx.env.metrics().await?;
    ensure!(
        metrics.has("dcr_shed_requests_total", &["pool=\"anonymous\""]),
        "{}",
        metrics.0
    );
    ctx.server.stop().await
}
