//! DCR v3.2, v3.3 and v3.4 side by side: a client read on every path as it was registered,
//! upgraded by PUT on another version's path (keeping its client_id, secret, tokens and
//! binding), a refused upgrade changing nothing, versions switched off answering 404, and the
//! version in the audit trail, the metrics, the CLI and the sandbox. The per-rule matrix is
//! the registration table's version column (`registration.rs`).

use anyhow::{Context, Result, ensure};
use dcr_server::domain::SpecVersion;
use dcr_server::domain::SpecVersion::{V3_2, V3_3, V3_4};
use dcr_server::sandbox::RequestOptions;
use dcr_server::store::{AuditLog, ClientStore};
use serde_json::{Value, json};

use crate::fixtures::{Ctx, Req};
use crate::support::{BOTH, Backend, Case, SQLITE, count_rows, run_binary};
use crate::{case, ensure_eq};

pub fn cases() -> Vec<Case> {
    vec![
        case!(upgrade_by_put_keeps_client_id_tokens_and_binding, BOTH),
        case!(refused_upgrade_changes_nothing, BOTH),
        case!(clients_read_back_as_registered_on_every_path, BOTH),
        case!(versions_not_served_answer_404, BOTH),
        case!(metrics_cli_and_sandbox_name_the_version, SQLITE),
    ]
}

const POLICY_OFF: &str = "software_id_as_application_name.enable = false";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const CIBA: &str = "urn:openid:params:grant-type:ciba";

impl Ctx {
    /// A management call on the path of `version` (the sandbox transport certificate).
    async fn on(
        &self,
        method: reqwest::Method,
        version: SpecVersion,
        client_id: &str,
        token: &str,
        body: Option<&Req>,
    ) -> Result<(u16, Value)> {
        let client = self
            .env
            .client(Some((&self.transport.0, &self.transport.1)))?;
        let url = self
            .env
            .url(&format!("{}/{client_id}", version.profile().register_path));
        let mut b = client
            .request(method, url)
            .header("authorization", format!("Bearer {token}"));
        if let Some(req) = body {
            b = b
                .header("content-type", "application/jwt")
                .body(req.body.clone());
        }
        let response = b.send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).with_context(|| format!("{status}: {text:.200}"))?
        };
        Ok((status, body))
    }

    /// Registers on `version`'s path; the 201 body.
    async fn register_on(&self, version: SpecVersion, req: &Req) -> Result<Value> {
        let (status, body) = self.post_on(version, req, true).await?;
        ensure!(status == 201, "register on v{version}: {status} {body}");
        Ok(body)
    }
}

impl Ctx {
    /// A client registered on the v3.2 path as `mobile`, and a token of it.
    async fn mobile_v3_2_client(&self) -> Result<(String, String)> {
        let created = self
            .register_on(
                V3_2,
                &self.request(|r| r["application_type"] = json!("mobile"))?,
            )
            .await?;
        let id = id_of(&created)?;
        let token = self.pkj_token(&id).await?;
        Ok((id, token))
    }
}

fn id_of(body: &Value) -> Result<String> {
    body["client_id"]
        .as_str()
        .map(str::to_string)
        .context("client_id")
}

/// A v3.2 client moves to v3.4 by PUT on the v3.4 path: same client_id, secret, tokens and
/// certificate binding, v3.4 values; the audit trail says where it came from. It can move on
/// to v3.3 (CIBA), and v3.2 refuses what v3.4 allowed.
async fn upgrade_by_put_keeps_client_id_tokens_and_binding(backend: Backend) -> Result<()> {
    use reqwest::Method;
    let ctx = Ctx::start(backend, POLICY_OFF, "").await?;
    let (id, token) = ctx.mobile_v3_2_client().await?;
    let before = ctx.store.get_client(&id).await?.context("row")?;
    ensure_eq!(before.dcr_version.as_str(), "3.2");

    let upgrade = ctx.request(|r| {
        r["application_type"] = json!("native");
        r["grant_types"] = json!(["client_credentials", JWT_BEARER]);
    })?;
    let (status, body) = ctx
        .on(Method::PUT, V3_4, &id, &token, Some(&upgrade))
        .await?;
    ensure!(status == 200, "upgrade: {status} {body}");
    ensure_eq!(body["client_id"], json!(id));
    ensure_eq!(body["application_type"], json!("native"));
    ensure!(body.get("client_secret").is_none());

    // The same token reads it on the old path, with its new values.
    let (status, read) = ctx.on(Method::GET, V3_2, &id, &token, None).await?;
    ensure_eq!(status, 200);
    ensure_eq!(read["application_type"], json!("native"));
    ensure_eq!(
        read["grant_types"],
        json!(["client_credentials", JWT_BEARER])
    );
    let after = ctx.store.get_client(&id).await?.context("row")?;
    ensure_eq!(after.dcr_version.as_str(), "3.4");
    ensure_eq!(after.client_secret_hash, before.client_secret_hash);
    ensure_eq!(after.cert_thumbprint, before.cert_thumbprint);
    ensure_eq!(after.created_at, before.created_at);
    ensure_eq!(count_rows(&ctx.store, "tokens").await?, 1);
    // /token still serves client_credentials to it, whatever else it registered.
    ctx.pkj_token(&id).await?;

    let trail = ctx.store.list_audit(Some(&id), None).await?;
    let steps: Vec<(&str, Option<&str>)> = trail
        .iter()
        .filter(|a| !a.action.as_str().starts_with("token"))
        .map(|a| (a.action.as_str(), a.dcr_version.map(|v| v.as_str())))
        .collect();
    ensure_eq!(steps, [("register", Some("3.2")), ("update", Some("3.4"))]);
    let update = trail
        .iter()
        .find(|a| a.action.as_str() == "update")
        .context("update")?;
    ensure_eq!(
        update.detail.as_deref(),
        Some(r#"{"previous_version":"3.2"}"#)
    );

    // Back on v3.2, `native` is refused (and nothing changes); on v3.3, CIBA is allowed.
    let native = ctx.request(|r| r["application_type"] = json!("native"))?;
    let (status, body) = ctx
        .on(Method::PUT, V3_2, &id, &token, Some(&native))
        .await?;
    ensure!(status == 400, "native on v3.2: {status} {body}");
    ensure_eq!(ctx.store.get_client(&id).await?, Some(after));
    let ciba = ctx.ciba_request(json!({}))?;
    let (status, body) = ctx.on(Method::PUT, V3_3, &id, &token, Some(&ciba)).await?;
    ensure!(status == 200, "CIBA on v3.3: {status} {body}");
    ensure_eq!(body["backchannel_token_delivery_mode"], json!("ping"));
    ensure_eq!(
        ctx.store.get_client(&id).await?.map(|c| c.dcr_version),
        Some(dcr_server::domain::SpecVersion::V3_3)
    );

    // DELETE on any served path.
    let (status, _) = ctx.on(Method::DELETE, V3_4, &id, &token, None).await?;
    ensure_eq!(status, 204);
    ensure_eq!(ctx.store.get_client(&id).await?, None);
    ctx.server.stop().await
}

/// A PUT that would leave the client with values the new version forbids is refused with
/// the usual error and changes nothing: the row read back from the database is the same, the
/// token still works, and the refusal is audited under the version tried.
async fn refused_upgrade_changes_nothing(backend: Backend) -> Result<()> {
    use reqwest::Method;
    let ctx = Ctx::start(backend, POLICY_OFF, "").await?;
    let (id, token) = ctx.mobile_v3_2_client().await?;
    let before = ctx.store.get_client(&id).await?.context("row")?;
    let rows_before = [
        count_rows(&ctx.store, "clients").await?,
        count_rows(&ctx.store, "tokens").await?,
        count_rows(&ctx.store, "jtis").await?,
    ];

    for (what, req) in [
        (
            "mobile on v3.4",
            ctx.request(|r| r["application_type"] = json!("mobile"))?,
        ),
        ("a DN not starting with CN= on v3.4", {
            let mut claims = ctx.claims("tls_client_auth")?;
            let t = &ctx.sandbox.tpp;
            claims["tls_client_auth_subject_dn"] = json!(format!(
                "OU={},CN={},O=OpenBanking,C=GB",
                t.org_id, t.software_id
            ));
            Req::jwt(ctx.sandbox.sign_as_tpp(&claims, "PS256")?)
        }),
        (
            "CIBA without its claims on v3.4",
            ctx.request(|r| r["grant_types"] = json!([CIBA]))?,
        ),
    ] {
        let (status, body) = ctx.on(Method::PUT, V3_4, &id, &token, Some(&req)).await?;
        ensure!(status == 400, "{what}: {status} {body}");
        ensure_eq!(body["error"], json!("invalid_client_metadata"));
        ensure_eq!(ctx.store.get_client(&id).await?, Some(before.clone()));
        ensure_eq!(
            [
                count_rows(&ctx.store, "clients").await?,
                count_rows(&ctx.store, "tokens").await?,
                count_rows(&ctx.store, "jtis").await?,
            ],
            rows_before
        );
    }
    let (status, read) = ctx.on(Method::GET, V3_4, &id, &token, None).await?;
    ensure_eq!(status, 200);
    ensure_eq!(read["application_type"], json!("mobile"));
    let refusals: Vec<_> = ctx
        .store
        .list_audit(Some(&id), None)
        .await?
        .into_iter()
        .filter(|a| a.outcome.as_str() == "refused")
        .map(|a| (a.action.to_string(), a.dcr_version.map(|v| v.to_string())))
        .collect();
    ensure_eq!(refusals.len(), 3);
    ensure!(
        refusals
            .iter()
            .all(|r| r == &("update".to_string(), Some("3.4".to_string()))),
        "{refusals:?}"
    );
    ctx.server.stop().await
}

/// GET on any served path answers the registration in its own version's terms: a v3.4
/// `native` client says `native` on v3.2, a v3.3 CIBA client shows its `backchannel_*` claims
/// there; v3.2 ignores `backchannel_*` claims (they are not stored).
async fn clients_read_back_as_registered_on_every_path(backend: Backend) -> Result<()> {
    use reqwest::Method;
    let ctx = Ctx::start(backend, POLICY_OFF, "").await?;
    let native = ctx
        .register_on(
            V3_4,
            &ctx.request(|r| r["application_type"] = json!("native"))?,
        )
        .await?;
    let ciba = ctx.register_on(V3_3, &ctx.ciba_request(json!({}))?).await?;
    ensure_eq!(
        ciba["backchannel_client_notification_endpoint"],
        json!("https://tpp.example.com/ciba/notify")
    );
    ensure_eq!(
        ciba["backchannel_user_code_parameter_supported"],
        json!(false)
    );
    for (created, field, want) in [
        (&native, "application_type", json!("native")),
        (&ciba, "backchannel_token_delivery_mode", json!("ping")),
        (
            &ciba,
            "backchannel_authentication_request_signing_alg",
            json!("PS256"),
        ),
    ] {
        let id = id_of(created)?;
        let token = ctx.pkj_token(&id).await?;
        for version in SpecVersion::ALL {
            let (status, read) = ctx.on(Method::GET, *version, &id, &token, None).await?;
            ensure!(status == 200, "GET v{version}: {status} {read}");
            ensure_eq!(read[field], want);
        }
    }

    // v3.2 ignores the CIBA claims without the CIBA grant: not echoed, not stored.
    let ignored = ctx
        .register_on(
            V3_2,
            &ctx.ciba_request(json!({"grant_types": ["client_credentials"]}))?,
        )
        .await?;
    let row = ctx
        .store
        .get_client(&id_of(&ignored)?)
        .await?
        .context("row")?;
    for body in [ignored.to_string(), row.metadata] {
        ensure!(!body.contains("backchannel"), "{body}");
    }
    ctx.server.stop().await
}

/// `open_banking.dcr.versions = ["3.4"]`: the v3.2 and v3.3 paths answer 404 JSON for every
/// method, before any certificate or token is looked at, and change nothing; discovery
/// advertises the v3.4 path.
async fn versions_not_served_answer_404(backend: Backend) -> Result<()> {
    use reqwest::Method;
    let ctx = Ctx::start(backend, &format!("{POLICY_OFF}\nversions = [\"3.4\"]"), "").await?;
    let created = ctx.register_on(V3_4, &ctx.request(|_| {})?).await?;
    let id = id_of(&created)?;
    let token = ctx.pkj_token(&id).await?;
    let rows = count_rows(&ctx.store, "clients").await?;
    for version in [V3_2, V3_3] {
        for with_cert in [true, false] {
            let (status, body) = ctx
                .post_on(version, &ctx.request(|_| {})?, with_cert)
                .await?;
            ensure!(status == 404, "POST v{version}: {status} {body}");
            ensure_eq!(body["error"], json!("not_found"));
        }
        for method in [Method::GET, Method::PUT, Method::DELETE] {
            let req = ctx.request(|_| {})?;
            let (status, body) = ctx
                .on(method.clone(), version, &id, &token, Some(&req))
                .await?;
            ensure!(status == 404, "{method} v{version}: {status} {body}");
            ensure_eq!(body["error"], json!("not_found"));
        }
    }
    // Other methods: 404 on a path not served, 405 on one that is.
    for (version, want) in [(V3_2, 404), (V3_4, 405)] {
        let (status, body) = ctx.on(Method::PATCH, version, &id, &token, None).await?;
        ensure!(status == want, "PATCH v{version}: {status} {body}");
        let answer = ctx
            .env
            .client(None)?
            .get(ctx.env.url(version.profile().register_path))
            .send()
            .await?;
        ensure_eq!(answer.status().as_u16(), want);
    }
    ensure_eq!(count_rows(&ctx.store, "clients").await?, rows);
    let (status, _) = ctx.on(Method::GET, V3_4, &id, &token, None).await?;
    ensure_eq!(status, 200);
    let discovery: Value = ctx
        .env
        .client(None)?
        .get(ctx.env.url("/.well-known/openid-configuration"))
        .send()
        .await?
        .json()
        .await?;
    ensure_eq!(
        discovery["registration_endpoint"],
        json!(ctx.env.url(V3_4.profile().register_path))
    );
    ensure!(
        discovery["grant_types_supported"]
            .as_array()
            .is_some_and(|g| g.contains(&json!(JWT_BEARER))),
        "{discovery}"
    );
    ctx.server.stop().await
}

/// The registration metrics carry the version; `clients list` and `show` print it; the
/// sandbox signs a valid v3.4 CIBA request and refuses CIBA for v3.2.
async fn metrics_cli_and_sandbox_name_the_version(backend: Backend) -> Result<()> {
    let ctx = Ctx::start(backend, POLICY_OFF, "").await?;
    let options = RequestOptions {
        version: V3_4,
        ciba: true,
        ..ctx.options("private_key_jwt", "PS256")
    };
    let created = ctx
        .register_on(V3_4, &Req::jwt(ctx.sandbox.request(&options)?))
        .await?;
    ensure_eq!(created["grant_types"][3], json!(CIBA));
    ensure!(
        ctx.sandbox
            .request(&RequestOptions {
                version: V3_2,
                ..options.clone()
            })
            .is_err()
    );
    let id = id_of(&created)?;
    let (status, _) = ctx
        .post_on(
            V3_3,
            &ctx.request(|r| r["application_type"] = json!("native"))?,
            true,
        )
        .await?;
    ensure_eq!(status, 400);

    let metrics = ctx.env.metrics().await?;
    let series = |labels: &[&str]| metrics.has("dcr_registrations_total", labels);
    ensure!(
        series(&["outcome=\"success\"", "version=\"3.4\""]),
        "{metrics}"
    );
    ensure!(
        series(&["outcome=\"refused\"", "version=\"3.3\""]),
        "{metrics}"
    );

    let config = ctx.env.write_config(&ctx.config_text)?;
    let config = config.to_string_lossy().into_owned();
    let cli = |args: &[&str]| -> Result<String> {
        let mut all = vec!["--config", config.as_str(), "--log-format", "text"];
        all.extend_from_slice(args);
        let (ok, out, err) = run_binary(&all, ctx.env.dir.path())?;
        ensure!(ok, "{args:?}: {err}");
        Ok(out)
    };
    let shown: Value = serde_json::from_str(&cli(&["clients", "show", &id, "--json"])?)?;
    ensure_eq!(shown["dcr_version"], json!("3.4"));
    let listed: Value = serde_json::from_str(&cli(&["clients", "list", "--json"])?)?;
    ensure_eq!(listed[0]["dcr_version"], json!("3.4"));
    let table = cli(&["clients", "list"])?;
    ensure!(
        table.lines().next().is_some_and(|h| h.contains("version"))
            && table.lines().any(|l| l.contains(&id) && l.contains("3.4")),
        "{table}"
    );
    let audit = cli(&["audit", "--client", &id])?;
    ensure!(
        audit.lines().next().is_some_and(|h| h.contains("version"))
            && audit
                .lines()
                .any(|l| l.contains("register") && l.contains("3.4")),
        "{audit}"
    );
    // The CLI's own sandbox request for v3.4 with CIBA registers there.
    let sandbox_dir = ctx.env.sandbox_dir.to_string_lossy().into_owned();
    let issuer = ctx.env.issuer();
    let jwt = cli(&[
        "sandbox",
        "request",
        "--dir",
        &sandbox_dir,
        "--aud",
        &issuer,
        "--version",
        "3.4",
        "--ciba",
    ])?;
    let created = ctx
        .register_on(V3_4, &Req::jwt(jwt.trim().to_string()))
        .await?;
    ensure_eq!(created["backchannel_token_delivery_mode"], json!("ping"));
    let mut all = vec!["--config", config.as_str(), "sandbox", "request"];
    all.extend_from_slice(&["--dir", &sandbox_dir, "--version", "3.2", "--ciba"]);
    let (ok, _, err) = run_binary(&all, ctx.env.dir.path())?;
    ensure!(!ok && err.contains("v3.3"), "{err}");
    ctx.server.stop().await
}
