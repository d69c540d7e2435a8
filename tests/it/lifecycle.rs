//! The token endpoint and GET/PUT/DELETE /register/{ClientId}: the life cycle with both
//! authentication methods, every authorisation rule, token errors, a delete racing token
//! issuance, and introspection.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use dcr_server::store::{AuditLog, AuditRecord, TokenRecord, TokenStore};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};

use crate::fixtures::{Ctx, Req, eidas_cert, raw_jws};
use crate::support::{BOTH, Backend, Case, SQLITE, count_rows, run_binary};
use crate::{case, ensure_eq};

pub fn cases() -> Vec<Case> {
    vec![
        case!(life_cycle_private_key_jwt, BOTH),
        case!(life_cycle_tls_client_auth, BOTH),
        case!(authorisation_rules, BOTH),
        case!(token_endpoint_errors, SQLITE),
        case!(invalid_client_reveals_nothing, SQLITE),
        case!(client_secret_methods_only_when_enabled, SQLITE),
        case!(put_keeps_identity, SQLITE),
        case!(delete_racing_token_issuance_leaves_no_live_token, BOTH),
        case!(introspection_for_listed_gateways, SQLITE),
        case!(operator_disables_and_enables_a_client, BOTH),
        case!(interaction_id_and_metrics, SQLITE),
    ]
}

const POLICY_OFF: &str = "software_id_as_application_name.enable = false";

/// An HTTP answer: status, headers, JSON body (Null when empty).
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Ctx {
    fn identity(&self, cert: Option<&(String, String)>) -> Option<(String, String)> {
        cert.cloned().or_else(|| Some(self.transport.clone()))
    }

    async fn send(&self, builder: reqwest::RequestBuilder) -> Result<Answer> {
        let response = builder.send().await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await?;
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .with_context(|| format!("{status}: not JSON: {text:.200}"))?
        };
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    fn http(&self, cert: Option<&(String, String)>) -> Result<reqwest::Client> {
        let id = self.identity(cert);
        self.env
            .client(id.as_ref().map(|(c, k)| (c.as_str(), k.as_str())))
    }

    /// Registers and returns the 201 body.
    pub async fn register(&self, req: Req) -> Result<Value> {
        let (status, body) = self.post(&req, true).await?;
        ensure!(status == 201, "registration: {status} {body}");
        Ok(body)
    }

    async fn token_form(
        &self,
        form: &[(&str, &str)],
        cert: Option<&(String, String)>,
    ) -> Result<Answer> {
        let builder = self.http(cert)?.post(self.env.url("/token")).form(form);
        self.send(builder).await
    }

    /// The token endpoint's answer to a `private_key_jwt` request with a fresh assertion.
    async fn token_pkj_answer(&self, client_id: &str, scope: &str) -> Result<Answer> {
        let assertion = self.sandbox.client_assertion(
            client_id,
            &format!("{}/token", self.env.issuer()),
            "PS256",
        )?;
        self.token_form(
            &[
                ("grant_type", "client_credentials"),
                ("scope", scope),
                (
                    "client_assertion_type",
                    dcr_server::oauth::client_auth::CLIENT_ASSERTION_TYPE,
                ),
                ("client_assertion", &assertion),
            ],
            None,
        )
        .await
    }

    /// A client-credentials token with `private_key_jwt`.
    async fn token_pkj(&self, client_id: &str, scope: &str) -> Result<String> {
        let a = self.token_pkj_answer(client_id, scope).await?;
        ensure!(a.status == 200, "token: {} {}", a.status, a.body);
        a.body["access_token"]
            .as_str()
            .map(str::to_string)
            .context("no access_token")
    }

    /// `method` on `/register/{client_id}`, with a bearer token, a JWT body and a client
    /// certificate (the sandbox transport certificate when `None`) as given.
    pub async fn manage(
        &self,
        method: reqwest::Method,
        client_id: &str,
        token: Option<&str>,
        body: Option<String>,
        cert: Option<&(String, String)>,
    ) -> Result<Answer> {
        let url = self
            .env
            .url(&format!("{}/{client_id}", dcr_server::REGISTER_PATH));
        let mut b = self.http(cert)?.request(method, url);
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        if let Some(body) = body {
            b = b.header("content-type", "application/jwt").body(body);
        }
        self.send(b).await
    }

    async fn get(&self, client_id: &str, token: &str) -> Result<Answer> {
        self.manage(reqwest::Method::GET, client_id, Some(token), None, None)
            .await
    }
}

fn ensure_invalid_token(a: &Answer, what: &str) -> Result<()> {
    ensure!(a.status == 401, "{what}: status {} {}", a.status, a.body);
    let www = a
        .headers
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    ensure!(
        www.starts_with("Bearer") && www.contains("invalid_token"),
        "{what}: WWW-Authenticate {www:?}"
    );
    ensure_eq!(a.body["error"], json!("invalid_token"));
    Ok(())
}

async fn life_cycle_private_key_jwt(backend: Backend) -> Result<()> {
    let ctx = Ctx::start(backend, "", "").await?;
    let created = ctx.register(ctx.request(|_| {})?).await?;
    let client_id = created["client_id"]
        .as_str()
        .context("client_id")?
        .to_string();

    // An empty scope= means the registered scopes.
    let token = ctx.token_pkj(&client_id, "").await?;
    let got = ctx.get(&client_id, &token).await?;
    ensure_eq!(got.status, 200);
    ensure_eq!(
        got.headers
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    let mut expected = created.clone();
    expected
        .as_object_mut()
        .context("object")?
        .remove("client_secret");
    ensure_eq!(got.body, expected);

    // PUT with a freshly signed JWS and a narrower scope.
    let update = ctx.request(|r| r["scope"] = json!("openid accounts"))?;
    let put = ctx
        .manage(
            reqwest::Method::PUT,
            &client_id,
            Some(&token),
            Some(update.body),
            None,
        )
        .await?;
    ensure!(put.status == 200, "PUT: {} {}", put.status, put.body);
    ensure_eq!(put.body["scope"], json!("openid accounts"));
    ensure_eq!(put.body["client_id"], json!(client_id));
    ensure_eq!(
        put.body["client_id_issued_at"],
        created["client_id_issued_at"]
    );
    ensure!(put.body.get("client_secret").is_none());
    // The token still works, and GET shows the update.
    let got = ctx.get(&client_id, &token).await?;
    ensure_eq!(got.body, put.body);

    let deleted = ctx
        .manage(
            reqwest::Method::DELETE,
            &client_id,
            Some(&token),
            None,
            None,
        )
        .await?;
    ensure_eq!(deleted.status, 204);
    ensure_eq!(deleted.body, Value::Null);
    ensure_invalid_token(&ctx.get(&client_id, &token).await?, "GET after DELETE")?;
    let again = ctx.request(|_| {})?;
    ensure_invalid_token(
        &ctx.manage(
            reqwest::Method::PUT,
            &client_id,
            Some(&token),
            Some(again.body),
            None,
        )
        .await?,
        "PUT after DELETE",
    )?;
    ensure_eq!(count_rows(&ctx.store, "tokens").await?, 0);
    ensure_eq!(count_rows(&ctx.store, "clients").await?, 0);
    // The software may register again.
    ctx.register(ctx.request(|_| {})?).await?;
    ctx.server.stop().await
}

async fn life_cycle_tls_client_auth(backend: Backend) -> Result<()> {
    let ctx = Ctx::start(backend, "", "").await?;
    let req = Req::jwt(
        ctx.sandbox
            .request(&ctx.options("tls_client_auth", "ES256"))?,
    );
    let created = ctx.register(req).await?;
    let client_id = created["client_id"]
        .as_str()
        .context("client_id")?
        .to_string();
    let a = ctx
        .token_form(
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &client_id),
                ("scope", "accounts"),
            ],
            None,
        )
        .await?;
    ensure!(a.status == 200, "token: {} {}", a.status, a.body);
    ensure_eq!(a.body["scope"], json!("accounts"));
    ensure_eq!(a.body["token_type"], json!("Bearer"));
    ensure!(a.body["expires_in"].is_i64());
    let token = a.body["access_token"]
        .as_str()
        .context("token")?
        .to_string();
    ensure_eq!(ctx.get(&client_id, &token).await?.status, 200);

    // Another certificate of the same TPP (same subject) cannot use the bound token.
    let (cert, key) = ctx
        .env
        .ca()?
        .issue_ob_transport(&ctx.sandbox.tpp.org_id, &ctx.sandbox.tpp.software_id)?;
    let other = (cert, key);
    let replayed = ctx
        .manage(
            reqwest::Method::GET,
            &client_id,
            Some(&token),
            None,
            Some(&other),
        )
        .await?;
    ensure_invalid_token(&replayed, "token over another certificate")?;
    // ...but it is still a valid tls_client_auth certificate for a new token.
    let a = ctx
        .token_form(
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &client_id),
            ],
            Some(&other),
        )
        .await?;
    ensure_eq!(a.status, 200);

    // A certificate with another subject is refused at the token endpoint.
    let (c2, k2) = ctx
        .env
        .ca()?
        .issue_ob_transport(&ctx.sandbox.tpp.org_id, "AnotherSoftware")?;
    let a = ctx
        .token_form(
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &client_id),
            ],
            Some(&(c2, k2)),
        )
        .await?;
    ensure_eq!(a.status, 401);
    ensure_eq!(a.body["error"], json!("invalid_client"));

    let deleted = ctx
        .manage(
            reqwest::Method::DELETE,
            &client_id,
            Some(&token),
            None,
            None,
        )
        .await?;
    ensure_eq!(deleted.status, 204);
    ensure_invalid_token(&ctx.get(&client_id, &token).await?, "GET after DELETE")?;
    ctx.server.stop().await
}

async fn authorisation_rules(backend: Backend) -> Result<()> {
    let ctx = Ctx::start(backend, POLICY_OFF, "").await?;
    let a_id = ctx.register(ctx.request(|_| {})?).await?["client_id"]
        .as_str()
        .context("a")?
        .to_string();
    let b_id = ctx.register(ctx.request(|_| {})?).await?["client_id"]
        .as_str()
        .context("b")?
        .to_string();
    let token_a = ctx.token_pkj(&a_id, "").await?;

    // Missing, bare, malformed and unknown tokens.
    let url = ctx
        .env
        .url(&format!("{}/{a_id}", dcr_server::REGISTER_PATH));
    for header in [
        None,
        Some("Bearer"),
        Some("Bearer "),
        Some("Basic abc"),
        Some("Bearer not-a-token"),
    ] {
        let mut b = ctx.http(None)?.get(&url);
        if let Some(h) = header {
            b = b.header("authorization", h);
        }
        ensure_invalid_token(&ctx.send(b).await?, &format!("Authorization {header:?}"))?;
    }
    // No client certificate.
    let no_cert = ctx
        .env
        .client(None)?
        .get(&url)
        .header("authorization", format!("Bearer {token_a}"));
    let a = ctx.send(no_cert).await?;
    ensure_eq!(a.status, 401);
    ensure_eq!(a.body["error"], json!("invalid_client"));

    // A's token on B's ClientId: 401, and the token is revoked at once.
    ensure_invalid_token(&ctx.get(&b_id, &token_a).await?, "token of another client")?;
    ensure_invalid_token(
        &ctx.get(&a_id, &token_a).await?,
        "revoked token on its own client",
    )?;

    // An unknown ClientId: 401, and the token is revoked.
    let token_a2 = ctx.token_pkj(&a_id, "").await?;
    ensure_eq!(ctx.get(&a_id, &token_a2).await?.status, 200);
    ensure_invalid_token(
        &ctx.get("00000000-0000-4000-8000-000000000000", &token_a2)
            .await?,
        "unknown ClientId",
    )?;
    ensure_invalid_token(
        &ctx.get(&a_id, &token_a2).await?,
        "token revoked after unknown ClientId",
    )?;
    // The revocations are in the audit log.
    let revocations = ctx.store.list_audit(Some(&a_id), None).await?;
    ensure_eq!(
        revocations
            .iter()
            .filter(|r| r.action.as_str() == "token.revoke")
            .count(),
        2
    );

    // Expired and revoked tokens, written straight into the store.
    let now = dcr_server::clock::now();
    let audit = AuditRecord::new(
        now,
        dcr_server::domain::AuditAction::TokenIssue,
        dcr_server::domain::AuditOutcome::Success,
    );
    for (name, expires_at, revoke) in [("expired", now - 1, false), ("revoked", now + 600, true)] {
        let raw = format!("{name}-token-value");
        let record = TokenRecord {
            token_hash: dcr_server::domain::secret::hash(&raw),
            client_id: b_id.clone(),
            scope: "openid".parse()?,
            cert_thumbprint: None,
            issued_at: now - 10,
            expires_at,
            revoked: false,
        };
        ctx.store.insert_token(&record, &[], &audit).await?;
        if revoke {
            ctx.store.revoke_token(&record.token_hash, &audit).await?;
        }
        ensure_invalid_token(&ctx.get(&b_id, &raw).await?, name)?;
    }
    // A token that is fine works, proving the rows above failed for their own reason.
    let token_b = ctx.token_pkj(&b_id, "").await?;
    ensure_eq!(ctx.get(&b_id, &token_b).await?.status, 200);
    ctx.server.stop().await
}

async fn token_endpoint_errors(backend: Backend) -> Result<()> {
    let ctx = Ctx::start(backend, "", "").await?;
    let client_id = ctx.register(ctx.request(|_| {})?).await?["client_id"]
        .as_str()
        .context("id")?
        .to_string();
    let token_url = format!("{}/token", ctx.env.issuer());
    let now = dcr_server::clock::now();
    let assertion_claims = |patch: Value| {
        let mut c = json!({"iss": client_id, "sub": client_id, "aud": token_url, "jti": uuid::Uuid::new_v4().to_string(), "iat": now, "exp": now + 300});
        for (k, v) in patch.as_object().into_iter().flatten() {
            if v.is_null() {
                c.as_object_mut().map(|m| m.remove(k));
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    let key = ctx.tpp_rsa_key()?;
    let kid = ctx.sandbox.tpp.kid_ps256.clone();
    let sign = |claims: &Value, kid: Option<&str>, key: &EncodingKey| -> Result<String> {
        let mut header = json!({"alg": "PS256", "typ": "JWT"});
        if let Some(k) = kid {
            header["kid"] = json!(k);
        }
        raw_jws(header, claims, Some((key, Algorithm::PS256)))
    };
    let with_assertion = |a: &str, grant: &str, scope: &str| -> Vec<(String, String)> {
        vec![
            ("grant_type".into(), grant.into()),
            ("scope".into(), scope.into()),
            (
                "client_assertion_type".into(),
                dcr_server::oauth::client_auth::CLIENT_ASSERTION_TYPE.into(),
            ),
            ("client_assertion".into(), a.into()),
        ]
    };
    let c = &ctx;
    let post = |form: Vec<(String, String)>| async move {
        let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        c.token_form(&pairs, None).await
    };

    // Accepted variants: no kid (every signing key is tried), a 30-minute lifetime, aud = issuer.
    for (name, claims, kid) in [
        ("no kid", assertion_claims(json!({})), None),
        (
            "30-minute lifetime",
            assertion_claims(json!({"exp": now + 1800})),
            Some(kid.as_str()),
        ),
        (
            "aud is the issuer",
            assertion_claims(json!({"aud": ctx.env.issuer()})),
            Some(kid.as_str()),
        ),
        (
            "aud as an array",
            assertion_claims(json!({"aud": ["x", token_url]})),
            Some(kid.as_str()),
        ),
    ] {
        let a = post(with_assertion(
            &sign(&claims, kid, &key)?,
            "client_credentials",
            "",
        ))
        .await?;
        ensure!(a.status == 200, "{name}: {} {}", a.status, a.body);
        ensure_eq!(
            a.headers.get("cache-control").and_then(|v| v.to_str().ok()),
            Some("no-store")
        );
    }

    // Refused with invalid_client (401).
    let replayed = sign(&assertion_claims(json!({})), Some(&kid), &key)?;
    ensure_eq!(
        post(with_assertion(&replayed, "client_credentials", ""))
            .await?
            .status,
        200
    );
    for (name, assertion) in [
        ("replayed jti", replayed.clone()),
        (
            "expired",
            sign(
                &assertion_claims(json!({"iat": now - 7200, "exp": now - 3600})),
                Some(&kid),
                &key,
            )?,
        ),
        (
            "two-hour lifetime",
            sign(
                &assertion_claims(json!({"exp": now + 7200})),
                Some(&kid),
                &key,
            )?,
        ),
        (
            "wrong aud",
            sign(
                &assertion_claims(json!({"aud": "https://elsewhere.example.com/token"})),
                Some(&kid),
                &key,
            )?,
        ),
        (
            "no exp",
            sign(&assertion_claims(json!({"exp": null})), Some(&kid), &key)?,
        ),
        (
            "no jti",
            sign(&assertion_claims(json!({"jti": null})), Some(&kid), &key)?,
        ),
        (
            "sub differs",
            sign(
                &assertion_claims(json!({"sub": "someone"})),
                Some(&kid),
                &key,
            )?,
        ),
        (
            "unknown client",
            sign(
                &assertion_claims(json!({"iss": "nobody", "sub": "nobody"})),
                Some(&kid),
                &key,
            )?,
        ),
        (
            "rogue key with the client's kid",
            sign(&assertion_claims(json!({})), Some(&kid), &ctx.rogue_rsa)?,
        ),
        (
            "rogue key without kid",
            sign(&assertion_claims(json!({})), None, &ctx.rogue_rsa)?,
        ),
        (
            "HS256",
            raw_jws(
                json!({"alg": "HS256"}),
                &assertion_claims(json!({})),
                Some((&EncodingKey::from_secret(b"s"), Algorithm::HS256)),
            )?,
        ),
    ] {
        let a = post(with_assertion(&assertion, "client_credentials", "")).await?;
        ensure!(
            a.status == 401 && a.body["error"] == json!("invalid_client"),
            "{name}: {} {}",
            a.status,
            a.body
        );
        ensure_eq!(
            a.headers.get("cache-control").and_then(|v| v.to_str().ok()),
            Some("no-store")
        );
    }

    // tls_client_auth for a private_key_jwt client.
    let a = ctx
        .token_form(
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &client_id),
            ],
            None,
        )
        .await?;
    ensure_eq!(
        (a.status, a.body["error"].clone()),
        (401, json!("invalid_client"))
    );
    // Nothing at all.
    let a = ctx
        .token_form(&[("grant_type", "client_credentials")], None)
        .await?;
    ensure_eq!(
        (a.status, a.body["error"].clone()),
        (401, json!("invalid_client"))
    );

    // 400s.
    let fresh = || {
        sign(
            &assertion_claims(json!({"jti": uuid::Uuid::new_v4().to_string()})),
            Some(&kid),
            &key,
        )
    };
    let a = post(with_assertion(&fresh()?, "password", "")).await?;
    ensure_eq!(
        (a.status, a.body["error"].clone()),
        (400, json!("unsupported_grant_type"))
    );
    let a = post(with_assertion(
        &fresh()?,
        "client_credentials",
        "openid fundsconfirmations",
    ))
    .await?;
    ensure_eq!(
        (a.status, a.body["error"].clone()),
        (400, json!("invalid_scope"))
    );
    let mut no_grant = with_assertion(&fresh()?, "x", "");
    no_grant.remove(0);
    let a = post(no_grant).await?;
    ensure_eq!(
        (a.status, a.body["error"].clone()),
        (400, json!("invalid_request"))
    );
    let raw = ctx
        .http(None)?
        .post(ctx.env.url("/token"))
        .header("content-type", "application/json")
        .body("{}");
    let a = ctx.send(raw).await?;
    ensure_eq!(
        (a.status, a.body["error"].clone()),
        (400, json!("invalid_request"))
    );
    let dup = ctx
        .http(None)?
        .post(ctx.env.url("/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&grant_type=client_credentials");
    let a = ctx.send(dup).await?;
    ensure_eq!(
        (a.status, a.body["error"].clone()),
        (400, json!("invalid_request"))
    );
    // A subset of the registered scopes is granted as asked.
    let a = post(with_assertion(&fresh()?, "client_credentials", "payments")).await?;
    ensure_eq!(
        (a.status, a.body["scope"].clone()),
        (200, json!("payments"))
    );
    ctx.server.stop().await
}

/// `/token` answers every failed client authentication alike: an unknown client, another
/// method than the registered one, a wrong secret and a replayed assertion all get the same
/// 401 body, so that nobody can tell which client_ids exist or what they registered. What it
/// was goes to the log and to the `reason` label of `dcr_token_requests_refused_total`. A body
/// over the limit is 413 `invalid_request`.
async fn invalid_client_reveals_nothing(backend: Backend) -> Result<()> {
    let ctx = Ctx::start(
        backend,
        "token_endpoint_auth_methods = [\"private_key_jwt\", \"tls_client_auth\", \"client_secret_post\"]\nsoftware_id_as_application_name.enable = false",
        "",
    )
    .await?;
    let pkj = ctx.register(ctx.request(|_| {})?).await?;
    let pkj_id = pkj["client_id"].as_str().context("id")?.to_string();
    let pkj_secret = pkj["client_secret"].as_str().context("secret")?.to_string();
    let post = ctx
        .register(ctx.request(|r| {
            r["token_endpoint_auth_method"] = json!("client_secret_post");
            r.as_object_mut()
                .map(|m| m.remove("token_endpoint_auth_signing_alg"));
        })?)
        .await?;
    let post_id = post["client_id"].as_str().context("id")?.to_string();
    let post_secret = post["client_secret"]
        .as_str()
        .context("secret")?
        .to_string();
    let secret_form = |id: &str, secret: &str| {
        vec![
            ("grant_type".to_string(), "client_credentials".to_string()),
            ("client_id".to_string(), id.to_string()),
            ("client_secret".to_string(), secret.to_string()),
        ]
    };
    let assertion =
        ctx.sandbox
            .client_assertion(&pkj_id, &format!("{}/token", ctx.env.issuer()), "PS256")?;
    let assertion_form = vec![
        ("grant_type".to_string(), "client_credentials".to_string()),
        (
            "client_assertion_type".to_string(),
            dcr_server::oauth::client_auth::CLIENT_ASSERTION_TYPE.to_string(),
        ),
        ("client_assertion".to_string(), assertion),
    ];
    let send = |form: Vec<(String, String)>| {
        let cx = &ctx;
        async move {
            let pairs: Vec<(&str, &str)> =
                form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            cx.token_form(&pairs, None).await
        }
    };
    // The assertion works once; its replay is one of the refusals below.
    ensure_eq!(send(assertion_form.clone()).await?.status, 200);
    let cases = [
        (
            "unknown client",
            secret_form("11111111-1111-4111-8111-111111111111", "x"),
            "unknown_client",
        ),
        (
            "another method",
            secret_form(&pkj_id, &pkj_secret),
            "wrong_method",
        ),
        (
            "wrong secret",
            secret_form(&post_id, &format!("{post_secret}x")),
            "wrong_secret",
        ),
        ("replayed assertion", assertion_form, "replayed_assertion"),
    ];
    let want =
        json!({"error": "invalid_client", "error_description": "client authentication failed"});
    for (name, form, _) in &cases {
        let a = send(form.clone()).await?;
        ensure!(
            a.status == 401 && a.body == want,
            "{name}: {} {}",
            a.status,
            a.body
        );
    }
    let metrics = ctx.env.metrics().await?;
    for (name, _, reason) in &cases {
        let reason_label = format!("reason=\"{reason}\"");
        ensure!(
            metrics.has(
                "dcr_token_requests_refused_total",
                &["error=\"invalid_client\"", &reason_label]
            ),
            "{name}: no {reason} in the metrics"
        );
    }
    // 413, not 400, for a body over server.max_body_bytes.
    let big = secret_form(&post_id, &"x".repeat(70 * 1024));
    let a = send(big).await?;
    ensure_eq!(
        (a.status, a.body["error"].clone()),
        (413, json!("invalid_request"))
    );
    ctx.server.stop().await
}

async fn client_secret_methods_only_when_enabled(backend: Backend) -> Result<()> {
    // Off by default: a client cannot even register them.
    let ctx = Ctx::start(backend, "", "").await?;
    let req = ctx.request(|r| {
        r["token_endpoint_auth_method"] = json!("client_secret_post");
        r.as_object_mut()
            .map(|m| m.remove("token_endpoint_auth_signing_alg"));
    })?;
    ensure_eq!(ctx.post(&req, true).await?.0, 400);
    ctx.server.stop().await?;

    let ctx = Ctx::start(
        backend,
        "token_endpoint_auth_methods = [\"private_key_jwt\", \"tls_client_auth\", \"client_secret_post\", \"client_secret_basic\"]\nsoftware_id_as_application_name.enable = false",
        "",
    )
    .await?;
    let cx = &ctx;
    for method in ["client_secret_post", "client_secret_basic"] {
        let created = ctx
            .register(ctx.request(|r| {
                r["token_endpoint_auth_method"] = json!(method);
                r.as_object_mut()
                    .map(|m| m.remove("token_endpoint_auth_signing_alg"));
            })?)
            .await?;
        let id = created["client_id"].as_str().context("id")?;
        let secret = created["client_secret"].as_str().context("secret")?;
        let send = |secret: String| {
            let b = ctx.http(None).map(|c| c.post(ctx.env.url("/token")));
            async move {
                let b = b?;
                let b = if method == "client_secret_post" {
                    b.form(&[
                        ("grant_type", "client_credentials"),
                        ("client_id", id),
                        ("client_secret", &secret),
                    ])
                } else {
                    b.basic_auth(id, Some(secret))
                        .form(&[("grant_type", "client_credentials")])
                };
                cx.send(b).await
            }
        };
        let ok = send(secret.to_string()).await?;
        ensure!(ok.status == 200, "{method}: {} {}", ok.status, ok.body);
        let bad = send(format!("{secret}x")).await?;
        ensure_eq!(
            (bad.status, bad.body["error"].clone()),
            (401, json!("invalid_client"))
        );
        if method == "client_secret_basic" {
            ensure!(
                bad.headers
                    .get("www-authenticate")
                    .is_some_and(|v| v.to_str().unwrap_or("").starts_with("Basic"))
            );
        }
    }
    ctx.server.stop().await
}

async fn put_keeps_identity(backend: Backend) -> Result<()> {
    let ctx = Ctx::start(backend, POLICY_OFF, "").await?;
    // eIDAS certificates bind to the organisation, so a PUT can name another software or org
    // and still pass every other check; the update rules must refuse it.
    let cert = eidas_cert(&ctx, "PSDGB-FCA-123456")?;
    let mut req = ctx.request(|_| {})?;
    req.identity = Some(cert.clone());
    let created = ctx.register(req).await?;
    let id = created["client_id"].as_str().context("id")?.to_string();
    let assertion =
        ctx.sandbox
            .client_assertion(&id, &format!("{}/token", ctx.env.issuer()), "PS256")?;
    let t = ctx
        .token_form(
            &[
                ("grant_type", "client_credentials"),
                (
                    "client_assertion_type",
                    dcr_server::oauth::client_auth::CLIENT_ASSERTION_TYPE,
                ),
                ("client_assertion", &assertion),
            ],
            Some(&cert),
        )
        .await?;
    let token = t.body["access_token"]
        .as_str()
        .context("token")?
        .to_string();
    let put = |body: String| {
        ctx.manage(
            reqwest::Method::PUT,
            &id,
            Some(&token),
            Some(body),
            Some(&cert),
        )
    };

    let other_client =
        ctx.request(|r| r["client_id"] = json!("11111111-1111-4111-8111-111111111111"))?;
    let a = put(other_client.body).await?;
    ensure_eq!(
        (a.status, a.body["error"].clone()),
        (400, json!("invalid_client_metadata"))
    );

    let other_software = {
        let ssa = ctx.ssa(|s| {
            s["software_id"] = json!("OtherSoftware22");
        })?;
        let mut claims = ctx.claims("private_key_jwt")?;
        claims["software_statement"] = json!(ssa);
        claims["iss"] = json!("OtherSoftware22");
        claims["software_id"] = json!("OtherSoftware22");
        ctx.sandbox.sign_as_tpp(&claims, "PS256")?
    };
    let a = put(other_software).await?;
    ensure!(
        a.status == 400
            && a.body["error_description"]
                .as_str()
                .unwrap_or("")
                .contains("software_id"),
        "{} {}",
        a.status,
        a.body
    );

    let other_org = ctx.request_with_ssa(|s| s["org_id"] = json!("0015800001OTHERORG"))?;
    let a = put(other_org.body).await?;
    ensure!(
        a.status == 400
            && a.body["error_description"]
                .as_str()
                .unwrap_or("")
                .contains("org"),
        "{} {}",
        a.status,
        a.body
    );

    // The same client_id in the body is fine.
    let same = ctx.request(|r| r["client_id"] = json!(id))?;
    ensure_eq!(put(same.body).await?.status, 200);
    // A replayed PUT body is refused like a replayed POST.
    let once = ctx.request(|_| {})?;
    ensure_eq!(put(once.body.clone()).await?.status, 200);
    ensure_eq!(put(once.body).await?.status, 400);
    ctx.server.stop().await
}

/// Tokens issued while the client is being deleted never outlive it.
async fn delete_racing_token_issuance_leaves_no_live_token(backend: Backend) -> Result<()> {
    let ctx = std::sync::Arc::new(Ctx::start(backend, "", "").await?);
    let id = ctx.register(ctx.request(|_| {})?).await?["client_id"]
        .as_str()
        .context("id")?
        .to_string();
    let admin_token = ctx.token_pkj(&id, "").await?;
    let mut issuers = Vec::new();
    for _ in 0..4 {
        let (ctx, id) = (ctx.clone(), id.clone());
        issuers.push(tokio::spawn(async move {
            let mut issued = Vec::new();
            for _ in 0..10 {
                let a = ctx.token_pkj_answer(&id, "").await?;
                match a.status {
                    200 => issued.push(
                        a.body["access_token"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                    ),
                    401 => {}
                    other => bail!("token endpoint answered {other}: {}", a.body),
                }
            }
            Ok::<_, anyhow::Error>(issued)
        }));
    }
    tokio::time::sleep(Duration::from_millis(30)).await;
    let deleted = ctx
        .manage(reqwest::Method::DELETE, &id, Some(&admin_token), None, None)
        .await?;
    ensure_eq!(deleted.status, 204);
    let mut all = Vec::new();
    for t in issuers {
        all.extend(t.await??);
    }
    ensure_eq!(count_rows(&ctx.store, "tokens").await?, 0);
    for token in &all {
        ensure_invalid_token(
            &ctx.get(&id, token).await?,
            "token issued around the delete",
        )?;
    }
    Ok(())
}

async fn introspection_for_listed_gateways(backend: Backend) -> Result<()> {
    let ctx = Ctx::start_full(
        backend,
        "",
        "",
        "[oauth.introspection]\nallowed_subjects = [\"CN=api-gateway,O=Bank\"]\n",
    )
    .await?;
    let id = ctx.register(ctx.request(|_| {})?).await?["client_id"]
        .as_str()
        .context("id")?
        .to_string();
    let token = ctx.token_pkj(&id, "").await?;
    let gateway = ctx.env.ca()?.issue(
        &[
            (rcgen::DnType::OrganizationName, "Bank".into()),
            (rcgen::DnType::CommonName, "api-gateway".into()),
        ],
        &[],
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    )?;
    let cx = &ctx;
    let introspect = |token: String, cert: Option<(String, String)>| {
        let c = cx.http(cert.as_ref());
        async move {
            cx.send(c?.post(cx.env.url("/introspect")).form(&[("token", token)]))
                .await
        }
    };
    let a = introspect(token.clone(), Some(gateway.clone())).await?;
    ensure_eq!(a.status, 200);
    ensure_eq!(a.body["active"], json!(true));
    ensure_eq!(a.body["client_id"], json!(id));
    ensure!(a.body["exp"].is_i64() && a.body["scope"].is_string());
    let transport_der = {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::CertificateDer::from_pem_slice(ctx.transport.0.as_bytes())?
    };
    let x5t = {
        use base64::Engine;
        use sha2::Digest;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(&transport_der))
    };
    ensure_eq!(a.body["cnf"]["x5t#S256"], json!(x5t));
    ensure_eq!(
        introspect("unknown".into(), Some(gateway.clone()))
            .await?
            .body,
        json!({"active": false})
    );
    // Callers not listed are refused: the TPP itself, and no certificate.
    let a = introspect(token.clone(), None).await?;
    ensure_eq!(
        (a.status, a.body["error"].clone()),
        (401, json!("invalid_client"))
    );
    let no_cert = ctx
        .env
        .client(None)?
        .post(ctx.env.url("/introspect"))
        .form(&[("token", token.as_str())]);
    ensure_eq!(ctx.send(no_cert).await?.status, 401);
    // A body over server.max_body_bytes (64 KiB) is 413 invalid_request, like on /token.
    let big = "x".repeat(70 * 1024);
    let a = introspect(big, Some(gateway.clone())).await?;
    ensure_eq!(
        (a.status, a.body["error"].clone()),
        (413, json!("invalid_request"))
    );
    // After DELETE the token is inactive.
    ensure_eq!(
        ctx.manage(reqwest::Method::DELETE, &id, Some(&token), None, None)
            .await?
            .status,
        204
    );
    ensure_eq!(
        introspect(token, Some(gateway)).await?.body,
        json!({"active": false})
    );
    ctx.server.stop().await
}

/// `clients disable|enable|list|show` and `audit`, run as the operator would, against the
/// database of a running server.
async fn operator_disables_and_enables_a_client(backend: Backend) -> Result<()> {
    let ctx = Ctx::start(backend, "", "").await?;
    let created = ctx.register(ctx.request(|_| {})?).await?;
    let id = created["client_id"]
        .as_str()
        .context("client_id")?
        .to_string();
    let token = ctx.token_pkj(&id, "accounts").await?;
    ensure_eq!(ctx.get(&id, &token).await?.status, 200);

    let config = ctx.env.write_config(&ctx.env.config_toml(""))?;
    let config = config.to_string_lossy().into_owned();
    let cli = |args: &[&str]| -> Result<(bool, String, String)> {
        let mut all = vec!["--config", config.as_str(), "--log-format", "text"];
        all.extend_from_slice(args);
        run_binary(&all, ctx.env.dir.path())
    };
    let json_of = |out: &str| -> Result<Value> {
        serde_json::from_str(out).with_context(|| format!("not JSON: {out}"))
    };

    let (ok, out, err) = cli(&["clients", "disable", &id, "--json"])?;
    ensure!(ok, "disable failed: {err}");
    ensure_eq!(
        json_of(&out)?,
        json!({"client_id": id, "result": "disabled"})
    );
    // Its token stops working, and it gets no new one.
    ensure_invalid_token(&ctx.get(&id, &token).await?, "token of a disabled client")?;
    let refused = ctx.token_pkj_answer(&id, "accounts").await?;
    ensure_eq!(refused.status, 401);
    ensure_eq!(refused.body["error"], json!("invalid_client"));
    let (_, out, _) = cli(&["clients", "list", "--json"])?;
    ensure_eq!(json_of(&out)?[0]["enabled"], json!(false));
    let (_, out, _) = cli(&["clients", "list"])?;
    ensure!(
        out.lines()
            .any(|l| l.starts_with(id.as_str()) && l.contains(" no ")),
        "{out}"
    );

    let (ok, out, err) = cli(&["clients", "enable", &id])?;
    ensure!(ok, "enable failed: {err}");
    ensure_eq!(out.trim(), format!("enabled {id}"));
    // The old token stays revoked; a new one works.
    ensure_invalid_token(
        &ctx.get(&id, &token).await?,
        "token from before the disable",
    )?;
    let fresh = ctx.token_pkj(&id, "accounts").await?;
    ensure_eq!(ctx.get(&id, &fresh).await?.status, 200);

    let (ok, out, _) = cli(&["clients", "show", &id])?;
    ensure!(
        ok && out
            .lines()
            .any(|l| l.starts_with("enabled") && l.ends_with("true")),
        "{out}"
    );
    let (_, out, _) = cli(&["clients", "show", &id, "--json"])?;
    let shown = json_of(&out)?;
    ensure_eq!(shown["metadata"]["client_id"], json!(id));
    ensure!(shown["metadata"].get("client_secret").is_none());

    let (ok, out, err) = cli(&["audit", "--client", &id, "--json"])?;
    ensure!(ok, "audit failed: {err}");
    let actions: Vec<String> = json_of(&out)?
        .as_array()
        .context("array")?
        .iter()
        .filter_map(|r| r["action"].as_str().map(str::to_string))
        .collect();
    ensure_eq!(
        actions,
        [
            "register",
            "token.issue",
            "client.disable",
            "client.enable",
            "token.issue"
        ]
    );
    let (_, out, _) = cli(&["audit", "--since", "2100-01-01T00:00:00Z", "--json"])?;
    ensure_eq!(json_of(&out)?, json!([]));
    let (ok, _, err) = cli(&["audit", "--since", "yesterday"])?;
    ensure!(!ok && err.contains("--since"), "{err}");
    let (_, out, _) = cli(&["audit", "--client", &id])?;
    ensure!(
        out.lines()
            .any(|l| l.contains("client.disable") && l.contains(id.as_str())),
        "{out}"
    );

    let (ok, out, _) = cli(&["clients", "disable", "no-such-client", "--json"])?;
    ensure!(!ok);
    ensure_eq!(json_of(&out)?["result"], json!("not_found"));
    Ok(())
}

/// Every response carries an `x-fapi-interaction-id` (the TPP's, or a new UUID that the audit
/// record also gets), and `/metrics` counts what happened.
async fn interaction_id_and_metrics(backend: Backend) -> Result<()> {
    let ctx = Ctx::start(backend, "", "").await?;
    let http = ctx.http(None)?;
    // The TPP's JWKS from a server of its own: the sandbox's is answered without a fetch,
    // and the fetch metrics below must see one.
    let ssa = ctx.ssa_with_served_tpp_jwks()?;
    let req = ctx.request(|c| c["software_statement"] = json!(ssa))?;
    let answer = ctx
        .send(
            http.post(ctx.env.url(dcr_server::REGISTER_PATH))
                .header("content-type", "application/jwt")
                .body(req.body.clone()),
        )
        .await?;
    ensure_eq!(answer.status, 201);
    let generated = answer
        .headers
        .get("x-fapi-interaction-id")
        .and_then(|v| v.to_str().ok())
        .context("no interaction id on the 201")?
        .to_string();
    ensure!(uuid::Uuid::parse_str(&generated).is_ok(), "{generated}");
    let id = answer.body["client_id"].as_str().context("client_id")?;
    let audit = ctx.store.list_audit(Some(id), None).await?;
    ensure_eq!(audit[0].interaction_id.as_deref(), Some(generated.as_str()));

    let echoed = ctx
        .send(http.get(ctx.env.url("/no/such/route")).header(
            "x-fapi-interaction-id",
            "93bac548-d2de-4546-b106-880a5018460d",
        ))
        .await?;
    ensure_eq!(echoed.status, 404);
    ensure_eq!(
        echoed
            .headers
            .get("x-fapi-interaction-id")
            .and_then(|v| v.to_str().ok()),
        Some("93bac548-d2de-4546-b106-880a5018460d")
    );
    // A refusal is counted by its error code.
    let (status, _) = ctx
        .post(
            &ctx.request(|c| c["aud"] = json!("https://elsewhere"))?,
            true,
        )
        .await?;
    ensure_eq!(status, 400);
    // The refusal is audited with what it tried.
    let refusal = ctx
        .store
        .list_audit(None, None)
        .await?
        .into_iter()
        .find(|r| r.outcome.as_str() == "refused")
        .context("no audit record for the refusal")?;
    ensure_eq!(refusal.action.as_str(), "register");
    ensure_eq!(
        refusal.error_code.map(|c| c.as_str()),
        Some("invalid_client_metadata")
    );
    ensure_eq!(
        refusal.software_id.as_deref(),
        answer.body["software_id"].as_str()
    );
    ensure!(refusal.org_id.is_some() && refusal.cert_thumbprint.is_some());
    ensure!(refusal.client_id.is_none());

    // A token and a read, for the token and database metrics.
    let token = ctx.token_pkj(id, "accounts").await?;
    ensure_eq!(ctx.get(id, &token).await?.status, 200);

    let metrics = http.get(ctx.env.url("/metrics")).send().await?;
    ensure_eq!(metrics.status().as_u16(), 200);
    let text = metrics.text().await?;
    let has = |needles: &[&str]| {
        text.lines()
            .any(|l| !l.starts_with('#') && needles.iter().all(|n| l.contains(n)))
    };
    for needles in [
        &["dcr_registrations_total{", "outcome=\"success\""][..],
        &[
            "dcr_registrations_total{",
            "outcome=\"refused\"",
            "error=\"invalid_client_metadata\"",
        ],
        &[
            "dcr_http_requests_total{",
            "route=\"/open-banking/v3.2/register\"",
            "status=\"201\"",
        ],
        &[
            "dcr_http_requests_total{",
            "route=\"unmatched\"",
            "status=\"404\"",
        ],
        &["dcr_http_request_duration_seconds_bucket{"],
        &["dcr_tls_handshakes_total{", "outcome=\"ok\""],
        &["dcr_jwks_cache_total{"],
        &["dcr_jwks_fetches_total{", "outcome=\"ok\""],
        &["dcr_db_pool_connections{", "state=\"idle\""],
        &["dcr_db_wait_seconds_count"],
        &["dcr_tokens_issued_total{", "method=\"private_key_jwt\""],
    ] {
        ensure!(has(needles), "no metric line with {needles:?} in:\n{text}");
    }
    Ok(())
}
