//! `rfc7591` mode against a real authorization server: node-oidc-provider
//! (`tests/it/test_as.rs`'s [`TestAs`]) behind dcr-server. Every case checks both systems: what
//! the TPP is told, what this server stored, and which clients live at the AS
//! (`GET /test/live-clients`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use dcr_server::domain::SpecVersion;
use dcr_server::store::CompensationStore;
use serde_json::{Value, json};

use crate::fixtures::{Ctx, MANY_CLIENTS_PER_SOFTWARE, Req};
use crate::support::{
    BOTH, Backend, Case, SQLITE, STANDALONE, TestDb, TestEnv, ThrowawayPostgres, count_rows,
    https_client, token_request_with_assertion,
};
use crate::test_as::{AsOptions, TestAs};
use crate::{case, ensure_eq};

pub fn cases() -> Vec<Case> {
    vec![
        case!(behind_the_as_a_client_lives_there_and_is_managed_here, BOTH),
        case!(
            behind_the_as_its_refusals_and_failures_change_nothing_here,
            BOTH
        ),
        case!(behind_the_as_management_tokens_are_its_own, BOTH),
        case!(
            behind_the_as_concurrent_copies_leave_one_client_in_each,
            BOTH
        ),
        case!(behind_the_as_ciba_and_v3_4_registrations_are_mapped, BOTH),
        case!(
            behind_the_as_operators_delete_there_and_cannot_disable,
            SQLITE
        ),
        case!(behind_the_as_an_undo_it_refuses_is_retried_until_done, BOTH),
        case!(behind_the_as_logs_hold_none_of_its_secrets, SQLITE),
        case!(
            behind_the_as_it_waits_for_the_discovery_and_reads_it_again_on_reload,
            SQLITE
        ),
        case!(
            behind_the_as_a_database_failing_after_the_as_leaves_nothing_there,
            STANDALONE
        ),
    ]
}

/// The server behind a test AS.
struct Behind {
    ctx: Ctx,
    test_as: TestAs,
    /// The AS's discovery document.
    as_discovery: Value,
}

/// How a case sets the server up besides the AS's own options.
#[derive(Default)]
struct Setup<'a> {
    extra_dcr: &'a str,
    /// More lines of `[authorization_server]`.
    extra_as: &'a str,
    /// Another initial access token than the AS's.
    initial_access_token: Option<&'a str>,
    /// More tables at the end of the config.
    extra_tables: String,
}

impl Behind {
    async fn start(backend: Backend, options: AsOptions, extra_dcr: &str) -> Result<Self> {
        let setup = Setup {
            extra_dcr,
            ..Setup::default()
        };
        Self::start_in(TestEnv::new(backend).await?, options, setup).await
    }

    async fn start_in(env: TestEnv, options: AsOptions, setup: Setup<'_>) -> Result<Self> {
        TestAs::check_available()?;
        let ca = env.ca()?;
        let test_as = TestAs::start_with(&ca, &env.sandbox_dir.join("ca.pem"), &options).await?;
        let (key, _) = storage_key(&env)?;
        let iat = match setup.initial_access_token {
            Some(token) => {
                let path = env.dir.path().join("wrong-initial-access-token");
                std::fs::write(&path, token)?;
                path
            }
            None => test_as.initial_access_token_file(),
        };
        let table = format!(
            "{}{}\n\n{}",
            as_table(
                &env,
                &test_as.issuer,
                &iat,
                &test_as.introspection_client_id,
                &test_as.introspection_secret_file(),
                Some(&key),
            ),
            setup.extra_as,
            setup.extra_tables,
        );
        let ctx = Ctx::start_in(env, "", "", setup.extra_dcr, "", &table).await?;
        let http = https_client(&ctx.env.ca_pem()?, None)?;
        let as_discovery: Value = http
            .get(test_as.url("/.well-known/openid-configuration"))
            .send()
            .await?
            .json()
            .await?;
        let behind = Self {
            ctx,
            test_as,
            as_discovery,
        };
        behind.wait_ready().await?;
        Ok(behind)
    }

    /// Until `/ready` answers 200 (the AS's discovery document has been read).
    async fn wait_ready(&self) -> Result<()> {
        let http = self.ctx.env.client(None)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let status = http.get(self.ctx.env.url("/ready")).send().await?.status();
            if status == 200 {
                return Ok(());
            }
            ensure!(Instant::now() < deadline, "/ready stayed {status}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn as_endpoint(&self, name: &str) -> Result<String> {
        self.as_discovery[name]
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("the AS names no {name}"))
    }

    /// The clients alive at the AS.
    async fn live_at_as(&self) -> Result<Vec<String>> {
        let http = https_client(&self.ctx.env.ca_pem()?, None)?;
        Ok(http
            .get(self.test_as.url("/test/live-clients"))
            .send()
            .await?
            .json()
            .await?)
    }

    /// A client-credentials token from the AS for `client_id` (`private_key_jwt` over the
    /// sandbox transport certificate): status and body.
    async fn as_token(&self, client_id: &str) -> Result<(u16, Value)> {
        let endpoint = self.as_endpoint("token_endpoint")?;
        let assertion = self
            .ctx
            .sandbox
            .client_assertion(client_id, &endpoint, "PS256")?;
        let answer = token_request_with_assertion(&self.ctx.tpp_client()?, &endpoint, &assertion)
            .send()
            .await?;
        let status = answer.status().as_u16();
        Ok((status, answer.json().await?))
    }

    async fn as_access_token(&self, client_id: &str) -> Result<String> {
        let (status, body) = self.as_token(client_id).await?;
        ensure!(status == 200, "AS token for {client_id}: {status} {body}");
        body["access_token"]
            .as_str()
            .map(str::to_string)
            .context("no access_token")
    }

    /// A management call on `client_id` with `token` over the sandbox transport certificate:
    /// status, `WWW-Authenticate`, body (Null when empty).
    async fn manage(
        &self,
        method: reqwest::Method,
        client_id: &str,
        token: Option<&str>,
        body: Option<String>,
    ) -> Result<(u16, String, Value)> {
        let mut request = self.ctx.tpp_client()?.request(
            method,
            self.ctx
                .env
                .url(&format!("/open-banking/v3.2/register/{client_id}")),
        );
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.header("content-type", "application/jwt").body(body);
        }
        let answer = request.send().await?;
        let status = answer.status().as_u16();
        let www = answer
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let text = answer.text().await?;
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).with_context(|| format!("{status}: {text:.200}"))?
        };
        Ok((status, www, body))
    }

    async fn stored_link(&self, client_id: &str) -> Result<Vec<String>> {
        // Client ids here are 1-36 unreserved characters: safe inside a literal.
        let sql = format!(
            "SELECT registration_access_token FROM as_registrations WHERE client_id = '{client_id}'"
        );
        Ok(self.ctx.store.raw_strings(&sql).await?)
    }

    /// The client as the AS holds it (RFC 7592 GET with the registration access token this
    /// server keeps, opened with the test's storage key).
    async fn read_at_as(&self, client_id: &str) -> Result<Value> {
        let key = std::fs::read(self.ctx.env.dir.path().join("as-storage.key"))?;
        let key = dcr_server::authorization_server::sealed::StorageKey::new(&key)?;
        let sealed = self.stored_link(client_id).await?;
        let token = key.open(client_id, sealed.first().context("no link")?)?;
        let uri = self.ctx.store.raw_strings(&format!(
            "SELECT registration_client_uri FROM as_registrations WHERE client_id = '{client_id}'"
        )).await?;
        let http = https_client(&self.ctx.env.ca_pem()?, None)?;
        let answer = http
            .get(uri.first().context("no uri")?)
            .bearer_auth(token)
            .send()
            .await?;
        ensure_eq!(answer.status().as_u16(), 200);
        Ok(answer.json().await?)
    }

    /// Until no compensation is pending, or 15 s.
    async fn compensations_done(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let pending = count_rows(&self.ctx.store, "as_compensations").await?;
            if pending == 0 {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "{pending} compensations still pending"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A fresh storage key for `env`'s server: its file, and its bytes.
fn storage_key(env: &TestEnv) -> Result<(PathBuf, [u8; 32])> {
    let path = env.dir.path().join("as-storage.key");
    let bytes = rand::random::<[u8; 32]>();
    std::fs::write(&path, bytes)?;
    Ok((path, bytes))
}

/// The `[authorization_server]` table that puts `env`'s server behind the AS at `issuer`
/// (its TLS trusted through the sandbox CA).
fn as_table(
    env: &TestEnv,
    issuer: &str,
    initial_access_token_file: &Path,
    client_id: &str,
    client_secret_file: &Path,
    storage_key_file: Option<&Path>,
) -> String {
    let key = storage_key_file
        .map(|k| format!("storage_key_file = \"{}\"\n", k.display()))
        .unwrap_or_default();
    format!(
        r#"
[authorization_server]
mode = "rfc7591"
issuer = "{issuer}"
initial_access_token_file = "{iat}"
client_id = "{client_id}"
client_secret_file = "{secret}"
ca = "{ca}"
{key}"#,
        iat = initial_access_token_file.display(),
        secret = client_secret_file.display(),
        ca = env.sandbox_dir.join("ca.pem").display(),
    )
}

fn client_id_of(body: &Value) -> Result<String> {
    body["client_id"]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("no client_id in {body}"))
}

/// Register here → the client exists at the AS (tokens by `private_key_jwt` and
/// `tls_client_auth` there) → GET, PUT (the rotated registration access token kept), DELETE
/// here with the AS's token → the AS refuses the client afterwards.
async fn behind_the_as_a_client_lives_there_and_is_managed_here(backend: Backend) -> Result<()> {
    let b = Behind::start(backend, AsOptions::default(), MANY_CLIENTS_PER_SOFTWARE).await?;
    let http = b.ctx.env.client(None)?;

    // Discovery is the AS's, with this server as its registration endpoint.
    let discovery: Value = http
        .get(b.ctx.env.url("/.well-known/openid-configuration"))
        .send()
        .await?
        .json()
        .await?;
    ensure_eq!(discovery["issuer"], json!(b.test_as.issuer));
    ensure_eq!(
        discovery["token_endpoint"],
        b.as_discovery["token_endpoint"]
    );
    let ours = b.ctx.env.url("/open-banking/v3.2/register");
    ensure_eq!(discovery["registration_endpoint"], json!(ours));
    // This server's own token and introspection endpoints are gone.
    for path in ["/token", "/introspect"] {
        let answer = b.ctx.tpp_client()?.post(b.ctx.env.url(path)).send().await?;
        ensure_eq!(answer.status().as_u16(), 404);
        let body: Value = answer.json().await?;
        ensure_eq!(body["error"], json!("not_found"));
    }

    let (status, created) = b.ctx.post(&b.ctx.request(|_| {})?, true).await?;
    ensure!(status == 201, "register: {status} {created}");
    let client_id = client_id_of(&created)?;
    ensure_eq!(b.live_at_as().await?, vec![client_id.clone()]);
    ensure!(
        created.get("registration_access_token").is_none()
            && created.get("registration_client_uri").is_none(),
        "the AS's management secrets leaked: {created}"
    );
    ensure_eq!(
        count_rows(&b.ctx.store, "clients").await?,
        1,
        "one client here"
    );
    let sealed = b.stored_link(&client_id).await?;
    ensure!(
        sealed.len() == 1 && sealed[0].starts_with("sealed.v1."),
        "the registration access token is not stored sealed: {sealed:?}"
    );

    // The TPP's client works at the AS, with both of its authentication methods.
    let token = b.as_access_token(&client_id).await?;
    let tls_claims = b.ctx.claims("tls_client_auth")?;
    let tls_req = Req::jwt(b.ctx.sandbox.sign_as_tpp(&tls_claims, "PS256")?);
    let (status, tls) = b.ctx.post(&tls_req, true).await?;
    ensure!(status == 201, "tls_client_auth register: {status} {tls}");
    let tls_id = client_id_of(&tls)?;
    let answer = b
        .ctx
        .tpp_client()?
        .post(b.as_endpoint("token_endpoint")?)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", tls_id.as_str()),
        ])
        .send()
        .await?;
    ensure_eq!(
        answer.status().as_u16(),
        200,
        "tls_client_auth token at the AS"
    );

    // GET here with the AS's token.
    let (status, _, read) = b
        .manage(reqwest::Method::GET, &client_id, Some(&token), None)
        .await?;
    ensure!(status == 200, "GET: {status} {read}");
    ensure_eq!(read["client_id"], json!(client_id));
    ensure!(read.get("client_secret").is_none(), "GET shows a secret");

    // PUT twice: the AS rotates the registration access token each time, so the second works
    // only if the first one's new token was kept.
    for round in 0..2 {
        let before = b.stored_link(&client_id).await?;
        let put = b.ctx.request(|c| c["client_id"] = json!(client_id))?;
        let (status, _, updated) = b
            .manage(
                reqwest::Method::PUT,
                &client_id,
                Some(&token),
                Some(put.body),
            )
            .await?;
        ensure!(status == 200, "PUT {round}: {status} {updated}");
        ensure_eq!(updated["client_id"], json!(client_id));
        ensure!(
            b.stored_link(&client_id).await? != before,
            "PUT {round}: the rotated registration access token was not kept"
        );
    }

    // DELETE here: gone in both systems; the AS refuses the client afterwards.
    let (status, _, _) = b
        .manage(reqwest::Method::DELETE, &client_id, Some(&token), None)
        .await?;
    ensure_eq!(status, 204);
    ensure_eq!(b.live_at_as().await?, vec![tls_id.clone()]);
    ensure_eq!(b.stored_link(&client_id).await?.len(), 0);
    let (status, body) = b.as_token(&client_id).await?;
    ensure!(
        status == 400 || status == 401,
        "a deleted client got a token: {status} {body}"
    );
    Ok(())
}

/// The AS refusing, the AS answering 401 to the initial access token, the AS down, and an AS
/// whose `client_id`s are too long: the TPP gets the contract's answer, nothing is stored
/// here, the `jti` stays unused and nothing is left at the AS.
async fn behind_the_as_its_refusals_and_failures_change_nothing_here(
    backend: Backend,
) -> Result<()> {
    // An AS that refuses this software: 400 with its code and its reason.
    let env = TestEnv::new(backend).await?;
    let software_id = env.sandbox()?.tpp.software_id;
    let options = AsOptions {
        refuse_software_id: Some(software_id),
        ..AsOptions::default()
    };
    let b = Behind::start_in(env, options, Setup::default()).await?;
    let (status, body) = b.ctx.post(&b.ctx.request(|_| {})?, true).await?;
    ensure!(status == 400, "refused at the AS: {status} {body}");
    ensure_eq!(body["error"], json!("invalid_client_metadata"));
    ensure!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| d.contains("not welcome")),
        "the AS's reason is not named: {body}"
    );
    ensure_eq!(
        b.ctx.counts().await?,
        [0, 0, 0],
        "nothing stored, no jti used"
    );
    ensure_eq!(b.live_at_as().await?, Vec::<String>::new());
    drop(b);

    // A wrong initial access token: 401 at the AS, 503 here.
    let setup = Setup {
        initial_access_token: Some("not-the-initial-access-token"),
        ..Setup::default()
    };
    let b = Behind::start_in(TestEnv::new(backend).await?, AsOptions::default(), setup).await?;
    let (status, body) = b.ctx.post(&b.ctx.request(|_| {})?, true).await?;
    ensure!(
        status == 503,
        "a refused initial access token: {status} {body}"
    );
    ensure_eq!(body["error"], json!("temporarily_unavailable"));
    ensure_eq!(b.ctx.counts().await?, [0, 0, 0]);
    drop(b);

    // Client ids of 43 characters: the AS client is deleted again, 503 here.
    let options = AsOptions {
        client_id_length: Some(43),
        ..AsOptions::default()
    };
    let b = Behind::start(backend, options, "").await?;
    let (status, body) = b.ctx.post(&b.ctx.request(|_| {})?, true).await?;
    ensure!(status == 503, "a 43-character client_id: {status} {body}");
    ensure_eq!(b.ctx.counts().await?, [0, 0, 0]);
    ensure_eq!(
        b.live_at_as().await?,
        Vec::<String>::new(),
        "left at the AS"
    );
    drop(b);

    // The AS stopped mid-test: 503 with Retry-After; the same request registers once it is
    // back? It is not (a new AS would be another issuer): nothing stored is what counts.
    let mut b = Behind::start(backend, AsOptions::default(), "").await?;
    let req = b.ctx.request(|_| {})?;
    b.test_as.stop().await?;
    let answer = b
        .ctx
        .tpp_client()?
        .post(b.ctx.env.url("/open-banking/v3.2/register"))
        .header("content-type", "application/jwt")
        .body(req.body.clone())
        .send()
        .await?;
    ensure_eq!(answer.status().as_u16(), 503);
    ensure!(
        answer.headers().contains_key("retry-after"),
        "503 without Retry-After"
    );
    let body: Value = answer.json().await?;
    ensure_eq!(body["error"], json!("temporarily_unavailable"));
    ensure_eq!(
        b.ctx.counts().await?,
        [0, 0, 0],
        "nothing stored, no jti used"
    );
    Ok(())
}

/// Introspection decides: no token, a token the AS does not know (inactive), another client's
/// token, a token bound to another certificate → 401 `invalid_token`; the AS down → 503.
async fn behind_the_as_management_tokens_are_its_own(backend: Backend) -> Result<()> {
    let setup = Setup {
        extra_dcr: MANY_CLIENTS_PER_SOFTWARE,
        extra_as: "introspection_cache_secs = 0",
        ..Setup::default()
    };
    let mut b = Behind::start_in(TestEnv::new(backend).await?, AsOptions::default(), setup).await?;
    let (status, one) = b.ctx.post(&b.ctx.request(|_| {})?, true).await?;
    ensure_eq!(status, 201);
    let (status, two) = b.ctx.post(&b.ctx.request(|_| {})?, true).await?;
    ensure_eq!(status, 201);
    let (one, two) = (client_id_of(&one)?, client_id_of(&two)?);
    let token_one = b.as_access_token(&one).await?;

    for (token, why) in [
        (None, "no token"),
        (Some("not-a-token-the-as-knows"), "inactive"),
        (Some(token_one.as_str()), "another client's token"),
    ] {
        let (status, www, body) = b.manage(reqwest::Method::GET, &two, token, None).await?;
        ensure!(status == 401, "{why}: {status} {body}");
        ensure!(
            www.contains("invalid_token"),
            "{why}: WWW-Authenticate {www:?}"
        );
    }

    // The same token over another certificate of the same CA.
    let (cert, key) = b.ctx.env.ca()?.issue(
        &[(rcgen::DnType::CommonName, "another transport".into())],
        &[],
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    )?;
    let other = https_client(&b.ctx.env.ca_pem()?, Some((&cert, &key)))?;
    let answer = other
        .get(b.ctx.env.url(&format!("/open-banking/v3.2/register/{one}")))
        .bearer_auth(&token_one)
        .send()
        .await?;
    ensure_eq!(
        answer.status().as_u16(),
        401,
        "a token bound to another certificate"
    );

    let (status, _, _) = b
        .manage(reqwest::Method::GET, &one, Some(&token_one), None)
        .await?;
    ensure_eq!(status, 200);

    // The AS down: introspection cannot answer.
    b.test_as.stop().await?;
    let (status, _, body) = b
        .manage(reqwest::Method::GET, &one, Some(&token_one), None)
        .await?;
    ensure!(status == 503, "introspection down: {status} {body}");
    Ok(())
}

/// 20 concurrent copies of one registration: one client here, one at the AS once the
/// compensations are done.
async fn behind_the_as_concurrent_copies_leave_one_client_in_each(backend: Backend) -> Result<()> {
    let b = Behind::start(backend, AsOptions::default(), MANY_CLIENTS_PER_SOFTWARE).await?;
    let req = b.ctx.request(|_| {})?;
    let posts = (0..20).map(|_| b.ctx.post(&req, true));
    let answers = futures_util::future::join_all(posts).await;
    let mut created = 0;
    for answer in answers {
        let (status, body) = answer?;
        match status {
            201 => created += 1,
            400 => ensure_eq!(body["error"], json!("invalid_client_metadata")),
            other => anyhow::bail!("a copy got {other}: {body}"),
        }
    }
    ensure_eq!(created, 1, "copies registered");
    b.compensations_done().await?;
    ensure_eq!(count_rows(&b.ctx.store, "clients").await?, 1);
    ensure_eq!(b.live_at_as().await?.len(), 1, "clients left at the AS");
    Ok(())
}

/// v3.3 with CIBA and v3.4: what the AS receives is what the contract maps.
async fn behind_the_as_ciba_and_v3_4_registrations_are_mapped(backend: Backend) -> Result<()> {
    let b = Behind::start(backend, AsOptions::default(), MANY_CLIENTS_PER_SOFTWARE).await?;
    for (version, ciba) in [(SpecVersion::V3_3, true), (SpecVersion::V3_4, false)] {
        let mut options = b.ctx.options("private_key_jwt", "PS256");
        options.version = version;
        options.ciba = ciba;
        let claims = b.ctx.sandbox.request_claims(&options)?;
        let req = Req::jwt(b.ctx.sandbox.sign_as_tpp(&claims, "PS256")?);
        let (status, body) = b.ctx.post_on(version, &req, true).await?;
        ensure!(status == 201, "{version:?}: {status} {body}");
        let client_id = client_id_of(&body)?;
        ensure!(
            b.live_at_as().await?.contains(&client_id),
            "{version:?}: not at the AS"
        );
        b.as_access_token(&client_id).await?;
        // What the AS holds, read by RFC 7592 with the token this server keeps sealed.
        let at_as = b.read_at_as(&client_id).await?;
        let mut mapped = vec![
            ("software_id", "software_id"),
            ("redirect_uris", "redirect_uris"),
            ("token_endpoint_auth_method", "token_endpoint_auth_method"),
            ("request_object_signing_alg", "request_object_signing_alg"),
        ];
        if ciba {
            mapped.extend([
                (
                    "backchannel_token_delivery_mode",
                    "backchannel_token_delivery_mode",
                ),
                (
                    "backchannel_authentication_request_signing_alg",
                    "backchannel_authentication_request_signing_alg",
                ),
                (
                    "backchannel_user_code_parameter",
                    "backchannel_user_code_parameter_supported",
                ),
            ]);
        }
        for (theirs, ours) in mapped {
            ensure!(
                at_as[theirs] == claims[ours],
                "{version:?}: {theirs} at the AS is {} for {}",
                at_as[theirs],
                claims[ours]
            );
        }
        ensure_eq!(
            at_as["tls_client_certificate_bound_access_tokens"],
            json!(true)
        );
        ensure_eq!(
            at_as["jwks_uri"],
            b.ctx.sandbox.ssa_claims()["software_jwks_endpoint"]
        );
        if ciba {
            ensure!(
                at_as["grant_types"]
                    .as_array()
                    .is_some_and(|g| g.contains(&json!("urn:openid:params:grant-type:ciba"))),
                "no CIBA grant at the AS: {at_as}"
            );
        }
    }
    Ok(())
}

/// `clients delete` and the admin API's delete reach the AS (through a compensation);
/// `clients disable` (exit 1) and the admin API's disable and enable (409) are refused.
async fn behind_the_as_operators_delete_there_and_cannot_disable(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend).await?;
    let pki = crate::admin::admin_pki(&env)?;
    let setup = Setup {
        extra_dcr: MANY_CLIENTS_PER_SOFTWARE,
        extra_tables: pki.table.clone(),
        ..Setup::default()
    };
    let b = Behind::start_in(env, AsOptions::default(), setup).await?;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (status, body) = b.ctx.post(&b.ctx.request(|_| {})?, true).await?;
        ensure_eq!(status, 201);
        ids.push(client_id_of(&body)?);
    }
    let config = b.ctx.env.write_config(&b.ctx.config_text)?;
    let config = config.display().to_string();
    let (ok, _, err) = crate::support::run_binary(
        &["clients", "disable", &ids[0], "--config", &config],
        b.ctx.env.dir.path(),
    )?;
    ensure!(!ok, "disable was not refused");
    ensure!(err.contains("rfc7591"), "disable's refusal: {err}");

    let admin_ca = std::fs::read_to_string(b.ctx.env.sandbox_dir.join("ca.pem"))?;
    let admin = https_client(&admin_ca, Some((&pki.allowed.0, &pki.allowed.1)))?;
    let base = crate::admin::admin_base(&b.ctx)?;
    for action in ["disable", "enable"] {
        let answer = admin
            .post(format!("{base}/admin/clients/{}/{action}", ids[1]))
            .send()
            .await?;
        ensure_eq!(answer.status().as_u16(), 409);
        let body: Value = answer.json().await?;
        ensure_eq!(body["error"], json!("conflict"));
    }

    let (ok, out, err) = crate::support::run_binary(
        &["clients", "delete", &ids[0], "--config", &config],
        b.ctx.env.dir.path(),
    )?;
    ensure!(ok, "delete: {out} {err}");
    let answer = admin
        .delete(format!("{base}/admin/clients/{}", ids[1]))
        .send()
        .await?;
    ensure_eq!(answer.status().as_u16(), 200);
    b.compensations_done().await?;
    ensure_eq!(b.live_at_as().await?, Vec::<String>::new());
    ensure_eq!(count_rows(&b.ctx.store, "clients").await?, 0);
    Ok(())
}

/// A replayed registration the AS created: its delete there fails once, so it is kept as a
/// compensation in the database and retried until the AS has deleted it.
async fn behind_the_as_an_undo_it_refuses_is_retried_until_done(backend: Backend) -> Result<()> {
    let options = AsOptions {
        fail_deletes: 1,
        ..AsOptions::default()
    };
    let b = Behind::start(backend, options, MANY_CLIENTS_PER_SOFTWARE).await?;
    let req = b.ctx.request(|_| {})?;
    let (status, first) = b.ctx.post(&req, true).await?;
    ensure_eq!(status, 201);
    let (status, replayed) = b.ctx.post(&req, true).await?;
    ensure!(status == 400, "the replay: {status} {replayed}");
    ensure_eq!(b.live_at_as().await?.len(), 2);
    let kept = b.ctx.store.list_compensations().await?;
    ensure!(kept.len() == 1, "compensations kept: {kept:?}");
    ensure!(
        kept[0].registration_access_token.starts_with("sealed.v1."),
        "a kept registration access token is not sealed"
    );
    b.compensations_done().await?;
    ensure_eq!(b.live_at_as().await?, vec![client_id_of(&first)?]);
    let metrics = b.ctx.env.metrics().await?;
    for (name, labels) in [
        (
            "dcr_as_calls_total",
            &["endpoint=\"register\"", "outcome=\"ok\""][..],
        ),
        (
            "dcr_as_calls_total",
            &["endpoint=\"delete\"", "outcome=\"unavailable\""],
        ),
        ("dcr_as_compensations_total", &["outcome=\"done\""]),
    ] {
        ensure!(
            metrics.sum(name, labels) >= 1.0,
            "{name} {labels:?}: {}",
            metrics.0
        );
    }
    Ok(())
}

/// The database goes away between the AS's answer and the commit (a PostgreSQL of the test's
/// own, stopped): 503, and the client the AS created is deleted there again.
async fn behind_the_as_a_database_failing_after_the_as_leaves_nothing_there(
    _: Backend,
) -> Result<()> {
    TestAs::check_available()?;
    let pg = ThrowawayPostgres::start_new()?;
    let mut env = TestEnv::new(Backend::Sqlite).await?;
    env.db = TestDb::from_url(pg.url());
    let setup = Setup {
        extra_dcr: MANY_CLIENTS_PER_SOFTWARE,
        ..Setup::default()
    };
    let b = Behind::start_in(env, AsOptions::default(), setup).await?;
    let (status, _) = b.ctx.post(&b.ctx.request(|_| {})?, true).await?;
    ensure_eq!(status, 201);
    pg.stop()?;
    let (status, body) = b.ctx.post(&b.ctx.request(|_| {})?, true).await?;
    ensure!(status == 503, "with the database down: {status} {body}");
    let live = b.live_at_as().await?;
    ensure!(live.len() == 1, "clients at the AS: {live:?}");
    pg.start()?;
    // A fresh connection: the test's own pool lost its connections with the database.
    let store = b.ctx.env.db.connect().await?;
    ensure_eq!(count_rows(&store, "clients").await?, 1);
    Ok(())
}

/// Until the AS's discovery has been read, `/ready`, registrations and discovery answer 503;
/// once the AS is up they work. A reload reads the initial access token file and the
/// discovery again.
async fn behind_the_as_it_waits_for_the_discovery_and_reads_it_again_on_reload(
    backend: Backend,
) -> Result<()> {
    TestAs::check_available()?;
    let env = TestEnv::new(backend).await?;
    let port = crate::support::free_port();
    let issuer = format!("https://127.0.0.1:{port}");
    let iat = env.dir.path().join("initial-access-token");
    let secret = env.dir.path().join("introspection-secret");
    std::fs::write(&iat, "not-yet-known")?;
    std::fs::write(&secret, "not-yet-known")?;
    let table = as_table(
        &env,
        &issuer,
        &iat,
        "dcr-server-introspection",
        &secret,
        None,
    );
    let ctx = Ctx::start_in(env, "", "", MANY_CLIENTS_PER_SOFTWARE, "", &table).await?;
    let http = ctx.env.client(None)?;
    for path in ["/ready", "/.well-known/openid-configuration"] {
        let status = http.get(ctx.env.url(path)).send().await?.status();
        ensure!(status == 503, "{path} before the AS answered: {status}");
    }
    let (status, body) = ctx.post(&ctx.request(|_| {})?, true).await?;
    ensure!(
        status == 503,
        "a registration before the AS answered: {status} {body}"
    );
    ensure_eq!(body["error"], json!("temporarily_unavailable"));

    let options = AsOptions {
        port: Some(port),
        ..AsOptions::default()
    };
    let test_as = TestAs::start_with(
        &ctx.env.ca()?,
        &ctx.env.sandbox_dir.join("ca.pem"),
        &options,
    )
    .await?;
    std::fs::copy(test_as.initial_access_token_file(), &iat)?;
    std::fs::copy(test_as.introspection_secret_file(), &secret)?;
    let config = ctx.env.write_config(&ctx.config_text)?;
    // The copied files are read by a reload; the discovery is read by the retry loop.
    ctx.server.reloader.reload_and_log(config.clone()).await;
    let registers = |want: u16| {
        let ctx = &ctx;
        async move {
            let deadline = Instant::now() + Duration::from_secs(40);
            loop {
                let (status, body) = ctx.post(&ctx.request(|_| {})?, true).await?;
                if status == want {
                    return Ok::<_, anyhow::Error>(body);
                }
                ensure!(
                    Instant::now() < deadline,
                    "still {status} {body}, want {want}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    registers(201).await?;
    ensure_eq!(
        http.get(ctx.env.url("/ready"))
            .send()
            .await?
            .status()
            .as_u16(),
        200
    );

    // Another initial access token, read by a reload: the AS refuses it (503 here).
    std::fs::write(&iat, "a-token-the-as-does-not-know")?;
    ctx.server.reloader.reload_and_log(config.clone()).await;
    registers(503).await?;
    std::fs::copy(test_as.initial_access_token_file(), &iat)?;
    ctx.server.reloader.reload_and_log(config).await;
    registers(201).await?;
    Ok(())
}

/// The server as its own process at `RUST_LOG=trace` through a whole life cycle behind the
/// AS: its log holds no registration access token (the first or the rotated one), no
/// registration client URI, no initial access token, no introspection secret and no AS token.
async fn behind_the_as_logs_hold_none_of_its_secrets(backend: Backend) -> Result<()> {
    TestAs::check_available()?;
    let env = TestEnv::new(backend).await?;
    let test_as = TestAs::start(&env.ca()?, &env.sandbox_dir.join("ca.pem")).await?;
    let (key_path, key_bytes) = storage_key(&env)?;
    let table = as_table(
        &env,
        &test_as.issuer,
        &test_as.initial_access_token_file(),
        &test_as.introspection_client_id,
        &test_as.introspection_secret_file(),
        Some(&key_path),
    );
    let issuer = env.issuer();
    let text = env.config_toml_full(
        "",
        &format!("audience = [\"{issuer}\"]\n{MANY_CLIENTS_PER_SOFTWARE}"),
        "allowed_hosts = [\"localhost\"]",
        &table,
    );
    let config = env.write_config(&text)?;
    let log = env.dir.path().join("trace.log");
    let _server =
        crate::support::SpawnedServer::start(&config, env.port, &[("RUST_LOG", "trace")], &log)
            .await?;
    let http = env.client(None)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while http.get(env.url("/ready")).send().await?.status() != 200 {
        ensure!(Instant::now() < deadline, "not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sandbox = env.sandbox()?;
    let (cert, key) = env.transport_pem()?;
    let tpp = env.client(Some((&cert, &key)))?;
    let options = dcr_server::sandbox::RequestOptions {
        aud: issuer.clone(),
        ..dcr_server::sandbox::RequestOptions::default()
    };
    let request =
        || -> Result<String> { sandbox.sign_as_tpp(&sandbox.request_claims(&options)?, "PS256") };
    let register_path = env.url("/open-banking/v3.2/register");
    let created: Value = tpp
        .post(&register_path)
        .header("content-type", "application/jwt")
        .body(request()?)
        .send()
        .await?
        .json()
        .await?;
    let client_id = client_id_of(&created)?;
    let store = env.db.connect().await?;
    let storage_key = dcr_server::authorization_server::sealed::StorageKey::new(&key_bytes)?;
    let link = |sql: String| {
        let store = &store;
        async move { Ok::<_, anyhow::Error>(store.raw_strings(&sql).await?) }
    };
    let mut secrets = vec![
        std::fs::read_to_string(test_as.initial_access_token_file())?,
        test_as.introspection_client_secret.clone(),
    ];
    let uri_sql = format!(
        "SELECT registration_client_uri FROM as_registrations WHERE client_id = '{client_id}'"
    );
    let token_sql = format!(
        "SELECT registration_access_token FROM as_registrations WHERE client_id = '{client_id}'"
    );
    secrets.extend(link(uri_sql).await?);
    for sealed in link(token_sql.clone()).await? {
        secrets.push(storage_key.open(&client_id, &sealed)?);
    }

    let discovery: Value = http
        .get(test_as.url("/.well-known/openid-configuration"))
        .send()
        .await?
        .json()
        .await?;
    let token_endpoint = discovery["token_endpoint"]
        .as_str()
        .context("token_endpoint")?;
    let assertion = sandbox.client_assertion(&client_id, token_endpoint, "PS256")?;
    let token: Value = token_request_with_assertion(&tpp, token_endpoint, &assertion)
        .send()
        .await?
        .json()
        .await?;
    let token = token["access_token"]
        .as_str()
        .context("AS token")?
        .to_string();
    secrets.push(token.clone());
    let manage = format!("{register_path}/{client_id}");
    ensure_eq!(
        tpp.get(&manage)
            .bearer_auth(&token)
            .send()
            .await?
            .status()
            .as_u16(),
        200
    );
    let mut claims = sandbox.request_claims(&options)?;
    claims["client_id"] = json!(client_id);
    let put = tpp
        .put(&manage)
        .bearer_auth(&token)
        .header("content-type", "application/jwt")
        .body(sandbox.sign_as_tpp(&claims, "PS256")?)
        .send()
        .await?;
    ensure_eq!(put.status().as_u16(), 200);
    for sealed in link(token_sql).await? {
        secrets.push(storage_key.open(&client_id, &sealed)?);
    }
    ensure_eq!(
        tpp.delete(&manage)
            .bearer_auth(&token)
            .send()
            .await?
            .status()
            .as_u16(),
        204
    );

    let text = std::fs::read_to_string(&log)?;
    ensure!(
        text.contains("authorization server discovered"),
        "the log is not the server's"
    );
    for secret in &secrets {
        ensure!(
            secret.len() >= 16,
            "a secret too short to look for: {secret:?}"
        );
        ensure!(
            !text.contains(secret.as_str()),
            "the log holds a secret ({} bytes)",
            secret.len()
        );
    }
    Ok(())
}
