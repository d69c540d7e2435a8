//! The admin API on its own listener: an allowed, a not-allowed and an untrusted certificate;
//! every endpoint; audit records and events of its actions; `/metrics` moved there.

use anyhow::{Context, Result, ensure};
use dcr_server::store::{AuditLog, ClientStore, EventFilter, EventStore};
use rcgen::{DnType, ExtendedKeyUsagePurpose};
use serde_json::{Value, json};

use crate::registration::Ctx;
use crate::support::{BOTH, Backend, Case, SQLITE, TestEnv, https_client};
use crate::{case, ensure_eq};

pub fn cases() -> Vec<Case> {
    vec![
        case!(the_admin_api_does_what_the_cli_does, BOTH),
        case!(the_admin_api_is_documented, SQLITE),
    ]
}

/// A server with an admin listener whose CA is a second sandbox's; the allowed admin's and
/// another admin-CA certificate's identities.
struct Admin {
    ctx: Ctx,
    base: String,
    ca_pem: String,
    allowed: (String, String),
    not_allowed: (String, String),
}

impl Admin {
    fn client(&self, identity: &(String, String)) -> Result<reqwest::Client> {
        https_client(&self.ca_pem, Some((&identity.0, &identity.1)))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `method path` as the allowed admin: status and JSON body.
    async fn call(&self, method: reqwest::Method, path: &str) -> Result<(u16, Value)> {
        let answer = self
            .client(&self.allowed)?
            .request(method, self.url(path))
            .send()
            .await?;
        let status = answer.status().as_u16();
        let body: Value = answer.json().await?;
        Ok((status, body))
    }
}

/// An admin CA in `env`'s directory: the `[admin]` table that trusts it (allowing
/// `CN=service desk`), that allowed admin's identity and another certificate of the CA.
pub struct AdminPki {
    pub table: String,
    pub allowed: (String, String),
    pub not_allowed: (String, String),
}

pub fn admin_pki(env: &TestEnv) -> Result<AdminPki> {
    let admin_dir = env.dir.path().join("admin-pki");
    dcr_server::sandbox::init(&admin_dir, "https://localhost")?;
    let admin_ca = dcr_server::sandbox::SandboxCa::load(&admin_dir)?;
    let issue = |cn: &str| {
        admin_ca.issue(
            &[(DnType::CommonName, cn.into())],
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
        )
    };
    Ok(AdminPki {
        table: format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\nclient_ca = [\"{}\"]\nallowed_subjects = [\"CN=service desk\"]\nmetrics = true\n",
            admin_dir.join("ca.pem").display()
        ),
        allowed: issue("service desk")?,
        not_allowed: issue("someone else")?,
    })
}

/// The base URL of `ctx`'s admin listener.
pub fn admin_base(ctx: &Ctx) -> Result<String> {
    let addr = ctx.server.admin_addr.context("no admin listener")?;
    Ok(format!("https://localhost:{}", addr.port()))
}

async fn admin(backend: Backend) -> Result<Admin> {
    let env = TestEnv::new(backend).await?;
    let AdminPki {
        table: tables,
        allowed,
        not_allowed,
    } = admin_pki(&env)?;
    let ca_pem = env.ca_pem()?;
    let ctx = Ctx::start_in(
        env,
        "",
        "",
        "software_id_as_application_name.enable = false",
        "",
        &tables,
    )
    .await?;
    Ok(Admin {
        base: admin_base(&ctx)?,
        ctx,
        ca_pem,
        allowed,
        not_allowed,
    })
}

async fn the_admin_api_does_what_the_cli_does(backend: Backend) -> Result<()> {
    let a = admin(backend).await?;
    let ctx = &a.ctx;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let created = ctx.register(ctx.request(|_| {})?).await?;
        ids.push(created["client_id"].as_str().context("id")?.to_string());
    }
    ids.sort();
    let get = reqwest::Method::GET;
    let post = reqwest::Method::POST;

    // Lists, filtered and paged.
    let (status, page) = a.call(get.clone(), "/admin/clients").await?;
    ensure_eq!(status, 200);
    let listed: Vec<&str> = page["clients"]
        .as_array()
        .context("clients")?
        .iter()
        .filter_map(|c| c["client_id"].as_str())
        .collect();
    ensure_eq!(listed, ids.iter().map(String::as_str).collect::<Vec<_>>());
    ensure_eq!(page["next_cursor"], Value::Null);
    let (_, first) = a.call(get.clone(), "/admin/clients?limit=2").await?;
    ensure_eq!(first["clients"].as_array().map(Vec::len), Some(2));
    let cursor = first["next_cursor"].as_str().context("cursor")?;
    let (_, rest) = a
        .call(
            get.clone(),
            &format!("/admin/clients?limit=2&cursor={cursor}"),
        )
        .await?;
    ensure_eq!(rest["clients"][0]["client_id"], json!(ids[2]));
    let software = &ctx.sandbox.tpp.software_id;
    let (_, by_software) = a
        .call(
            get.clone(),
            &format!("/admin/clients?software_id={software}&version=3.2&enabled=true"),
        )
        .await?;
    ensure_eq!(by_software["clients"].as_array().map(Vec::len), Some(3));
    let (_, none) = a.call(get.clone(), "/admin/clients?enabled=false").await?;
    ensure_eq!(none["clients"], json!([]));
    for bad in [
        "/admin/clients?limit=0",
        "/admin/clients?enabled=maybe",
        "/admin/clients?colour=red",
    ] {
        let (status, body) = a.call(get.clone(), bad).await?;
        ensure!(
            status == 400 && body["error"] == "invalid_request",
            "{bad}: {status} {body}"
        );
    }

    // One client; an unknown one.
    let id = &ids[0];
    let (status, one) = a.call(get.clone(), &format!("/admin/clients/{id}")).await?;
    ensure_eq!(status, 200);
    ensure_eq!(one["client_id"], json!(id));
    ensure_eq!(one["metadata"]["client_id"], json!(id));
    ensure!(one["metadata"].get("client_secret").is_none());
    let (status, body) = a.call(get.clone(), "/admin/clients/nobody").await?;
    ensure!(
        status == 404 && body["error"] == "not_found",
        "{status} {body}"
    );

    // Disable, enable, delete: as the CLI, audited with the admin's subject, with events.
    let (status, body) = a
        .call(post.clone(), &format!("/admin/clients/{id}/disable"))
        .await?;
    ensure_eq!(
        (status, body),
        (200, json!({"client_id": id, "result": "disabled"}))
    );
    ensure!(!ctx.store.get_client(id).await?.context("client")?.enabled);
    let (status, _) = a
        .call(post.clone(), &format!("/admin/clients/{id}/enable"))
        .await?;
    ensure_eq!(status, 200);
    ensure!(ctx.store.get_client(id).await?.context("client")?.enabled);
    let (status, body) = a
        .call(reqwest::Method::DELETE, &format!("/admin/clients/{id}"))
        .await?;
    ensure_eq!((status, body["result"].clone()), (200, json!("deleted")));
    ensure!(ctx.store.get_client(id).await?.is_none());
    let (status, _) = a
        .call(post.clone(), &format!("/admin/clients/{id}/disable"))
        .await?;
    ensure_eq!(status, 404);
    let audit = ctx.store.list_audit(Some(id), None).await?;
    let by_admin: Vec<_> = audit
        .iter()
        .filter(|r| r.detail.as_deref().is_some_and(|d| d.contains("admin api")))
        .collect();
    ensure_eq!(by_admin.len(), 3);
    for r in &by_admin {
        let detail: Value = serde_json::from_str(r.detail.as_deref().unwrap_or("{}"))?;
        ensure_eq!(detail["subject"], "CN=service desk");
        ensure!(r.cert_thumbprint.is_some());
    }
    let types: Vec<String> = ctx
        .store
        .list_events(&EventFilter {
            client_id: Some(id),
            limit: 10,
            ..EventFilter::default()
        })
        .await?
        .into_iter()
        .map(|(e, _)| e.event_type)
        .collect();
    ensure_eq!(
        types,
        [
            "client.registered",
            "client.disabled",
            "client.enabled",
            "client.deleted"
        ]
    );

    // The audit trail and the events, paged.
    let (status, trail) = a
        .call(get.clone(), &format!("/admin/audit?client_id={id}&limit=2"))
        .await?;
    ensure_eq!(status, 200);
    ensure_eq!(trail["records"][0]["action"], "register");
    ensure_eq!(trail["records"][1]["action"], "client.disable");
    ensure_eq!(trail["records"][1]["detail"]["by"], "admin api");
    let cursor = trail["next_cursor"].as_i64().context("cursor")?;
    let (_, more) = a
        .call(
            get.clone(),
            &format!("/admin/audit?client_id={id}&cursor={cursor}"),
        )
        .await?;
    ensure_eq!(more["records"].as_array().map(Vec::len), Some(2));
    let (status, events) = a
        .call(get.clone(), &format!("/admin/events?client_id={id}"))
        .await?;
    ensure_eq!(status, 200);
    ensure_eq!(events["events"].as_array().map(Vec::len), Some(4));
    let (_, failed) = a.call(get.clone(), "/admin/events?failed=true").await?;
    ensure_eq!(failed["events"], json!([]));
    let event_id = events["events"][0]["event_id"]
        .as_str()
        .context("event_id")?;
    let (status, body) = a
        .call(post.clone(), &format!("/admin/events/{event_id}/retry"))
        .await?;
    ensure!(
        status == 404 && body["error"] == "not_found",
        "{status} {body}"
    );

    // /metrics moved here; the public listener says 404, and serves no admin path.
    let metrics = a.client(&a.allowed)?.get(a.url("/metrics")).send().await?;
    ensure_eq!(metrics.status().as_u16(), 200);
    ensure!(metrics.text().await?.contains("dcr_http_requests_total"));
    let public = ctx.env.client(None)?;
    ensure_eq!(
        public
            .get(ctx.env.url("/metrics"))
            .send()
            .await?
            .status()
            .as_u16(),
        404
    );
    ensure_eq!(
        public
            .get(ctx.env.url("/admin/clients"))
            .send()
            .await?
            .status()
            .as_u16(),
        404
    );

    // Another certificate of the admin CA: 403, and nothing changes.
    let other = a.client(&a.not_allowed)?;
    let answer = other.get(a.url("/admin/clients")).send().await?;
    ensure_eq!(answer.status().as_u16(), 403);
    let body: Value = answer.json().await?;
    ensure_eq!(body["error"], "access_denied");
    let answer = other
        .post(a.url(&format!("/admin/clients/{}/disable", ids[1])))
        .send()
        .await?;
    ensure_eq!(answer.status().as_u16(), 403);
    ensure!(
        ctx.store
            .get_client(&ids[1])
            .await?
            .context("client")?
            .enabled
    );

    // A TPP's certificate (not of the admin CA), and none: no handshake.
    let tpp = https_client(&a.ca_pem, Some((&ctx.transport.0, &ctx.transport.1)))?;
    ensure!(
        tpp.get(a.url("/admin/clients")).send().await.is_err(),
        "a TPP certificate was accepted"
    );
    let anonymous = https_client(&a.ca_pem, None)?;
    ensure!(
        anonymous.get(a.url("/admin/clients")).send().await.is_err(),
        "no certificate was accepted"
    );
    a.ctx.server.stop().await
}

/// docs/openapi-admin.json is what `/admin/openapi.json` serves and documents exactly the
/// admin routes.
async fn the_admin_api_is_documented(backend: Backend) -> Result<()> {
    let a = admin(backend).await?;
    let (status, served) = a.call(reqwest::Method::GET, "/admin/openapi.json").await?;
    ensure_eq!(status, 200);
    let file: Value = serde_json::from_str(&std::fs::read_to_string("docs/openapi-admin.json")?)?;
    ensure_eq!(served, file);
    let mut documented = std::collections::BTreeSet::new();
    for (path, item) in served["paths"].as_object().context("paths")? {
        for method in ["get", "put", "post", "delete", "patch"] {
            if item.get(method).is_some() {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    let routes: std::collections::BTreeSet<(String, String)> = dcr_server::http::admin::ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    ensure_eq!(documented, routes);
    a.ctx.server.stop().await
}
