//! The bank's authorization server the `rfc7591` mode is tested against: node-oidc-provider
//! (`tests/as/server.mjs`, installed by `npm ci --prefix tests/as`) as a process of its own on
//! loopback ([`TestAs`]), and cases that check it directly over reqwest: that it takes what
//! dcr-server will send it, from every DCR version, and answers as the tests expect.
//!
//! Without `node` or `tests/as/node_modules`, these cases (and every case that starts a
//! [`TestAs`]) report "ignored" with the reason.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use dcr_server::domain::SpecVersion;
use dcr_server::sandbox::{RequestOptions, SandboxCa};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::support::{
    Backend, Case, Doc, JwksServer, SQLITE, Skip, TestEnv, free_port, https_client,
    token_request_with_assertion,
};
use crate::{case, ensure_eq};

pub fn cases() -> Vec<Case> {
    vec![
        case!(test_as_registers_reads_updates_and_deletes, SQLITE),
        case!(test_as_takes_every_versions_registration, SQLITE),
        case!(our_rfc7591_client_speaks_to_the_test_as, SQLITE),
    ]
}

const AS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/as");
/// How long node may take to load the provider and print its `listening` line. It takes about
/// a second alone; a clean-clone CI run once saw it take over 20 s with the suite's other
/// cases loading both cores.
const START_TIMEOUT: Duration = Duration::from_secs(45);

/// How a test AS misbehaves (`tests/as/server.mjs`'s optional settings).
#[derive(Debug, Clone, Default)]
pub struct AsOptions {
    /// Registrations of this software_id are refused (400 `invalid_client_metadata`).
    pub refuse_software_id: Option<String>,
    /// Its client_ids have this many characters (default: 36, a UUID).
    pub client_id_length: Option<usize>,
    /// The first this many RFC 7592 DELETEs answer 503.
    pub fail_deletes: usize,
    /// Listen on this port (default: a free one).
    pub port: Option<u16>,
}

/// node-oidc-provider running as a child process on a loopback port, killed on drop.
pub struct TestAs {
    /// `https://127.0.0.1:{port}`, as its discovery document says.
    pub issuer: String,
    /// The Bearer token its RFC 7591 endpoint wants.
    pub initial_access_token: String,
    /// The pre-configured client (`client_secret_basic`) that may introspect.
    pub introspection_client_id: String,
    pub introspection_client_secret: String,
    dir: TempDir,
    child: Child,
}

impl TestAs {
    /// `Err(Skip)` when this machine cannot run it: no `node`, or the npm packages not installed.
    pub fn check_available() -> Result<()> {
        let provider = Path::new(AS_DIR).join("node_modules/oidc-provider/package.json");
        if !provider.is_file() {
            return Err(Skip(
                "the test authorization server is not installed (run `npm ci --prefix tests/as`)"
                    .into(),
            )
            .into());
        }
        let node = Command::new("node")
            .arg("--version")
            .stdin(Stdio::null())
            .output();
        if !node.is_ok_and(|o| o.status.success()) {
            return Err(Skip("the test authorization server needs Node.js (`node`)".into()).into());
        }
        Ok(())
    }

    /// Starts it with a server certificate from `ca` for 127.0.0.1 and localhost, trusting
    /// `client_ca` (PEM) for client certificates and, when it fetches a TPP's JWKS, `ca` too.
    pub async fn start(ca: &SandboxCa, client_ca: &Path) -> Result<Self> {
        Self::start_with(ca, client_ca, &AsOptions::default()).await
    }

    /// As [`Self::start`], refusing or misbehaving as `options` say. A start that does not
    /// listen in time is tried once more on another port (node was once seen to stall).
    pub async fn start_with(ca: &SandboxCa, client_ca: &Path, options: &AsOptions) -> Result<Self> {
        match Self::start_once(ca, client_ca, options).await {
            Err(e) if options.port.is_none() && e.to_string().contains("did not listen") => {
                eprintln!("{e}\nstarting the test AS once more");
                Self::start_once(ca, client_ca, options).await
            }
            other => other,
        }
    }

    async fn start_once(ca: &SandboxCa, client_ca: &Path, options: &AsOptions) -> Result<Self> {
        Self::check_available()?;
        let dir = TempDir::new()?;
        let port = options.port.unwrap_or_else(free_port);
        let issuer = format!("https://127.0.0.1:{port}");
        let (cert, key) = ca.issue(
            &[(rcgen::DnType::CommonName, "127.0.0.1".into())],
            &["127.0.0.1", "localhost"],
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        )?;
        let write = |name: &str, text: &str| -> Result<PathBuf> {
            let path = dir.path().join(name);
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            Ok(path)
        };
        let cert_path = write("as.pem", &cert)?;
        let key_path = write("as.key", &key)?;
        let ca_path = write("ca.pem", &ca.cert_pem)?;
        let initial_access_token = uuid::Uuid::new_v4().simple().to_string();
        let introspection_client_id = "dcr-server-introspection".to_string();
        let introspection_client_secret = uuid::Uuid::new_v4().simple().to_string();
        write("initial_access_token", &initial_access_token)?;
        write("introspection_secret", &introspection_client_secret)?;
        let log = dir.path().join("as.log");
        let out = std::fs::File::create(&log)?;
        let mut command = Command::new("node");
        if let Some(software_id) = &options.refuse_software_id {
            command.env("AS_REFUSE_SOFTWARE_ID", software_id);
        }
        if let Some(length) = options.client_id_length {
            command.env("AS_CLIENT_ID_LENGTH", length.to_string());
        }
        command.env("AS_FAIL_DELETES", options.fail_deletes.to_string());
        let child = command
            .arg(Path::new(AS_DIR).join("server.mjs"))
            .env("AS_PORT", port.to_string())
            .env("AS_ISSUER", &issuer)
            .env("AS_TLS_CERT", &cert_path)
            .env("AS_TLS_KEY", &key_path)
            .env("AS_CLIENT_CA", client_ca)
            .env("AS_INITIAL_ACCESS_TOKEN", &initial_access_token)
            .env("AS_INTROSPECTION_CLIENT_ID", &introspection_client_id)
            .env(
                "AS_INTROSPECTION_CLIENT_SECRET",
                &introspection_client_secret,
            )
            .env("NODE_EXTRA_CA_CERTS", &ca_path)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("starting node tests/as/server.mjs")?;
        let mut test_as = Self {
            issuer,
            initial_access_token,
            introspection_client_id,
            introspection_client_secret,
            dir,
            child,
        };
        let ready = format!("listening {}", test_as.issuer);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if test_as.log().lines().any(|l| l == ready) {
                return Ok(test_as);
            }
            if let Some(status) = test_as.child.try_wait()? {
                bail!(
                    "the test AS exited ({status}) before it listened:\n{}",
                    test_as.log()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "the test AS did not listen within {START_TIMEOUT:?} at {}:\n{}",
                    test_as.issuer,
                    test_as.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `{issuer}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    /// A file holding the initial access token (for `authorization_server.initial_access_token_file`).
    pub fn initial_access_token_file(&self) -> PathBuf {
        self.dir.path().join("initial_access_token")
    }

    /// A file holding the introspection client's secret (for `authorization_server.client_secret_file`).
    pub fn introspection_secret_file(&self) -> PathBuf {
        self.dir.path().join("introspection_secret")
    }

    /// What it printed so far (stdout and stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("as.log")).unwrap_or_default()
    }

    /// Stops it with SIGTERM (as an operator would) and waits for its exit; a test that needs
    /// the AS down mid-test calls this, and every later call to it fails to connect.
    pub async fn stop(&mut self) -> Result<()> {
        if self.child.try_wait()?.is_some() {
            return Ok(());
        }
        let pid = libc::pid_t::try_from(self.child.id())?;
        // SAFETY: kill(2) on our own child's pid, which has not been reaped yet.
        if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
            bail!(
                "SIGTERM to the test AS: {}",
                std::io::Error::last_os_error()
            );
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(status) = self.child.try_wait()? {
                ensure!(
                    status.success(),
                    "the test AS exited with {status}:\n{}",
                    self.log()
                );
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the test AS did not exit within 5 s of SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for TestAs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A registration request of the sandbox TPP (its claims, as dcr-server checks them) in the
/// RFC 7591/8705/OIDC names the contract maps them to, with `jwks_uri` for the SSA's
/// `software_jwks_endpoint`.
pub fn rfc7591_metadata(claims: &Value, client_name: &str, jwks_uri: &str) -> Value {
    let mut grant_types = claims["grant_types"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let implicit = claims["response_types"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .any(|t| t.split(' ').any(|part| part == "id_token"));
    if implicit {
        grant_types.push(json!("implicit"));
    }
    let application_type = match claims["application_type"].as_str() {
        Some("mobile") => "native",
        Some(other) => other,
        None => "web",
    };
    let mut body = json!({
        "client_name": client_name,
        "redirect_uris": claims["redirect_uris"],
        "grant_types": grant_types,
        "response_types": claims["response_types"],
        "application_type": application_type,
        "scope": claims["scope"],
        "token_endpoint_auth_method": claims["token_endpoint_auth_method"],
        "jwks_uri": jwks_uri,
        "id_token_signed_response_alg": claims["id_token_signed_response_alg"],
        "request_object_signing_alg": claims["request_object_signing_alg"],
        "tls_client_certificate_bound_access_tokens": true,
        "software_id": claims["software_id"],
    });
    // Sent when the request has them, under the same name but for the CIBA user code flag.
    for (ours, theirs) in [
        ("token_endpoint_auth_signing_alg", None),
        ("tls_client_auth_subject_dn", None),
        ("backchannel_token_delivery_mode", None),
        ("backchannel_client_notification_endpoint", None),
        ("backchannel_authentication_request_signing_alg", None),
        (
            "backchannel_user_code_parameter_supported",
            Some("backchannel_user_code_parameter"),
        ),
    ] {
        if !claims[ours].is_null() {
            body[theirs.unwrap_or(ours)] = claims[ours].clone();
        }
    }
    body
}

/// An answer: status and JSON body (Null when empty).
async fn answer(request: reqwest::RequestBuilder) -> Result<(u16, Value)> {
    let response = request.send().await?;
    let status = response.status().as_u16();
    let text = response.text().await?;
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).with_context(|| format!("{status}: not JSON: {text:.300}"))?
    };
    Ok((status, body))
}

/// What the smoke cases share: the sandbox, a JWKS server serving the TPP's keys, the AS.
struct Smoke {
    env: TestEnv,
    jwks: JwksServer,
    jwks_uri: String,
    test_as: TestAs,
    /// No client certificate.
    http: reqwest::Client,
    /// The sandbox TPP's transport certificate.
    mtls: reqwest::Client,
    discovery: Value,
}

impl Smoke {
    async fn start() -> Result<Self> {
        TestAs::check_available()?;
        let env = TestEnv::new(Backend::Sqlite).await?;
        let ca = env.ca()?;
        let jwks = JwksServer::start(&ca).await?;
        let tpp_jwks = std::fs::read_to_string(env.sandbox_dir.join("tpp/signing.jwks"))?;
        let jwks_uri = jwks.serve("tpp.jwks", Doc::json(tpp_jwks));
        let test_as = TestAs::start(&ca, &env.sandbox_dir.join("ca.pem")).await?;
        let ca_pem = env.ca_pem()?;
        let (cert, key) = env.transport_pem()?;
        let http = https_client(&ca_pem, None)?;
        let mtls = https_client(&ca_pem, Some((&cert, &key)))?;
        let (status, discovery) =
            answer(http.get(test_as.url("/.well-known/openid-configuration"))).await?;
        ensure_eq!(status, 200);
        Ok(Self {
            env,
            jwks,
            jwks_uri,
            test_as,
            http,
            mtls,
            discovery,
        })
    }

    fn endpoint(&self, name: &str) -> Result<String> {
        self.discovery[name]
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("discovery has no {name}: {}", self.discovery))
    }

    /// The sandbox TPP's registration claims under `version`, `auth_method`, CIBA or not.
    fn claims(&self, version: SpecVersion, auth_method: &str, ciba: bool) -> Result<Value> {
        self.env.sandbox()?.request_claims(&RequestOptions {
            auth_method: auth_method.into(),
            aud: self.test_as.issuer.clone(),
            version,
            ciba,
            ..RequestOptions::default()
        })
    }

    fn metadata(&self, claims: &Value) -> Result<Value> {
        let name = self.env.sandbox()?.tpp.software_client_name;
        Ok(rfc7591_metadata(claims, &name, &self.jwks_uri))
    }

    /// An RFC 7591 POST with the initial access token (read from its file, as dcr-server
    /// will): the 201 body.
    async fn register(&self, metadata: &Value) -> Result<Value> {
        let token = std::fs::read_to_string(self.test_as.initial_access_token_file())?;
        let (status, body) = answer(
            self.http
                .post(self.endpoint("registration_endpoint")?)
                .bearer_auth(token)
                .json(metadata),
        )
        .await?;
        ensure!(status == 201, "registration: {status} {body}");
        let id = body["client_id"].as_str().context("no client_id")?;
        ensure!(
            id.len() <= 36
                && !id.is_empty()
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._~-".contains(&b)),
            "client_id {id:?} is not 1-36 characters of [A-Za-z0-9._~-]"
        );
        ensure!(
            body["registration_access_token"].is_string(),
            "no registration_access_token: {body}"
        );
        Ok(body)
    }

    /// RFC 7662 by the introspection client (its secret read from its file, as dcr-server will).
    async fn introspect(&self, token: &str) -> Result<Value> {
        let secret = std::fs::read_to_string(self.test_as.introspection_secret_file())?;
        let (status, body) = answer(
            self.http
                .post(self.endpoint("introspection_endpoint")?)
                .basic_auth(&self.test_as.introspection_client_id, Some(secret))
                .form(&[("token", token)]),
        )
        .await?;
        ensure_eq!(status, 200);
        Ok(body)
    }
}

fn text<'a>(body: &'a Value, name: &str) -> Result<&'a str> {
    body[name]
        .as_str()
        .with_context(|| format!("no {name} in {body}"))
}

/// RFC 7591 with the initial access token and RFC 7592 with a rotating registration access
/// token; client-credentials tokens by `private_key_jwt` (the TPP's JWKS fetched from loopback)
/// and by `tls_client_auth`, bound to the certificate as introspection says.
async fn test_as_registers_reads_updates_and_deletes(_: Backend) -> Result<()> {
    let s = Smoke::start().await?;
    let d = &s.discovery;
    ensure_eq!(d["issuer"], json!(s.test_as.issuer));
    for grant in [
        "client_credentials",
        "urn:openid:params:grant-type:ciba",
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
    ] {
        ensure!(
            d["grant_types_supported"]
                .as_array()
                .is_some_and(|g| g.contains(&json!(grant))),
            "{grant} not in grant_types_supported: {d}"
        );
    }
    ensure!(
        d["mtls_endpoint_aliases"]["token_endpoint"].is_string(),
        "no mtls_endpoint_aliases: {d}"
    );
    ensure_eq!(d["tls_client_certificate_bound_access_tokens"], json!(true));

    let pkj = s.metadata(&s.claims(SpecVersion::V3_2, "private_key_jwt", false)?)?;
    let registration = s.endpoint("registration_endpoint")?;

    // Without the initial access token (or with another one): 401.
    let (status, _) = answer(s.http.post(&registration).json(&pkj)).await?;
    ensure_eq!(status, 401);
    let wrong = format!("{}-not", s.test_as.initial_access_token);
    let (status, _) = answer(s.http.post(&registration).bearer_auth(wrong).json(&pkj)).await?;
    ensure_eq!(status, 401);

    let created = s.register(&pkj).await?;
    let client_id = text(&created, "client_id")?.to_string();
    for (name, value) in [
        ("software_id", &pkj["software_id"]),
        ("request_object_signing_alg", &json!("PS256")),
        ("id_token_signed_response_alg", &json!("PS256")),
        ("token_endpoint_auth_signing_alg", &json!("PS256")),
        ("tls_client_certificate_bound_access_tokens", &json!(true)),
        ("jwks_uri", &json!(s.jwks_uri)),
    ] {
        ensure!(&created[name] == value, "{name} not kept: {created}");
    }
    let client_uri = text(&created, "registration_client_uri")?.to_string();
    let first_token = text(&created, "registration_access_token")?.to_string();

    // RFC 7592 GET.
    let (status, read) = answer(s.http.get(&client_uri).bearer_auth(&first_token)).await?;
    ensure!(status == 200, "GET: {status} {read}");
    ensure_eq!(read["client_id"], json!(client_id));
    ensure_eq!(read["software_id"], pkj["software_id"]);

    // PUT rotates the registration access token: the old one is dead, the new one reads.
    let mut update = pkj.clone();
    update["client_id"] = json!(client_id);
    update["client_name"] = json!("Renamed by PUT");
    let (status, updated) = answer(
        s.http
            .put(&client_uri)
            .bearer_auth(&first_token)
            .json(&update),
    )
    .await?;
    ensure!(status == 200, "PUT: {status} {updated}");
    let second_token = text(&updated, "registration_access_token")?.to_string();
    ensure!(second_token != first_token, "PUT did not rotate the token");
    let (status, _) = answer(s.http.get(&client_uri).bearer_auth(&first_token)).await?;
    ensure_eq!(status, 401);
    let (status, read) = answer(s.http.get(&client_uri).bearer_auth(&second_token)).await?;
    ensure_eq!(status, 200);
    ensure_eq!(read["client_name"], json!("Renamed by PUT"));

    // private_key_jwt over mTLS: the AS fetches the TPP's JWKS from the loopback server.
    let token_endpoint = s.endpoint("token_endpoint")?;
    let assertion = s
        .env
        .sandbox()?
        .client_assertion(&client_id, &token_endpoint, "PS256")?;
    let (status, token) = answer(token_request_with_assertion(
        &s.mtls,
        &token_endpoint,
        &assertion,
    ))
    .await?;
    ensure!(status == 200, "private_key_jwt token: {status} {token}");
    ensure!(
        s.jwks.hits("tpp.jwks") >= 1,
        "the AS never fetched the TPP's JWKS"
    );
    let x5t = transport_x5t(&s.env)?;
    let seen = s.introspect(text(&token, "access_token")?).await?;
    ensure_eq!(seen["active"], json!(true));
    ensure_eq!(seen["client_id"], json!(client_id));
    ensure_eq!(seen["cnf"]["x5t#S256"], json!(x5t));

    // tls_client_auth: a client-credentials token over mTLS, bound to that certificate.
    let tls = s.metadata(&s.claims(SpecVersion::V3_2, "tls_client_auth", false)?)?;
    let tls_client = s.register(&tls).await?;
    let tls_id = text(&tls_client, "client_id")?;
    ensure!(tls_id != client_id, "the AS gave one id twice");
    let cc = [
        ("grant_type", "client_credentials"),
        ("client_id", tls_id),
        ("scope", "accounts"),
    ];
    let (status, _) = answer(s.http.post(&token_endpoint).form(&cc)).await?;
    ensure!(
        status == 401,
        "tls_client_auth without a certificate: {status}"
    );
    let (status, token) = answer(s.mtls.post(&token_endpoint).form(&cc)).await?;
    ensure!(status == 200, "tls_client_auth token: {status} {token}");
    let seen = s.introspect(text(&token, "access_token")?).await?;
    ensure_eq!(seen["active"], json!(true));
    ensure_eq!(seen["client_id"], json!(tls_id));
    ensure_eq!(seen["cnf"]["x5t#S256"], json!(x5t));
    ensure_eq!(s.introspect("not-a-token").await?["active"], json!(false));
    let (status, _) = answer(
        s.http
            .post(s.endpoint("introspection_endpoint")?)
            .basic_auth(
                &s.test_as.introspection_client_id,
                Some(format!("{}-not", s.test_as.introspection_client_secret)),
            )
            .form(&[("token", text(&token, "access_token")?)]),
    )
    .await?;
    ensure!(status == 401, "introspection with a wrong secret: {status}");

    // DELETE: 204, then the registration access token reads nothing.
    let (status, _) = answer(s.http.delete(&client_uri).bearer_auth(&second_token)).await?;
    ensure_eq!(status, 204);
    let (status, _) = answer(s.http.get(&client_uri).bearer_auth(&second_token)).await?;
    ensure_eq!(status, 401);

    // SIGTERM: it exits 0, and nothing answers there any more.
    let mut s = s;
    s.test_as.stop().await?;
    ensure!(
        s.http.get(&registration).send().await.is_err(),
        "the stopped AS still answers"
    );
    Ok(())
}

/// The sandbox TPP's registrations under v3.2, v3.3 with CIBA and v3.4 with CIBA and the
/// jwt-bearer grant, mapped as the contract says, are all taken and kept as sent.
async fn test_as_takes_every_versions_registration(_: Backend) -> Result<()> {
    let s = Smoke::start().await?;
    let mut v34 = s.claims(SpecVersion::V3_4, "tls_client_auth", true)?;
    v34["grant_types"]
        .as_array_mut()
        .context("grant_types")?
        .push(json!("urn:ietf:params:oauth:grant-type:jwt-bearer"));
    let cases = [
        (
            "v3.2",
            s.claims(SpecVersion::V3_2, "tls_client_auth", false)?,
        ),
        (
            "v3.3 CIBA",
            s.claims(SpecVersion::V3_3, "private_key_jwt", true)?,
        ),
        ("v3.4 CIBA + jwt-bearer", v34),
    ];
    for (what, claims) in cases {
        let metadata = s.metadata(&claims)?;
        let created = s
            .register(&metadata)
            .await
            .with_context(|| format!("{what}: {metadata}"))?;
        for (name, sent) in metadata.as_object().context("metadata")? {
            let kept = &created[name];
            let same = match (sent, kept) {
                // The AS may order a list its own way.
                (Value::Array(a), Value::Array(b)) => {
                    a.len() == b.len() && a.iter().all(|x| b.contains(x))
                }
                _ => sent == kept,
            };
            ensure!(same, "{what}: {name} sent {sent}, kept {kept}");
        }
    }
    Ok(())
}

/// `x5t#S256` of the sandbox TPP's transport certificate.
fn transport_x5t(env: &TestEnv) -> Result<String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let (cert, _) = env.transport_pem()?;
    let der = CertificateDer::from_pem_slice(cert.as_bytes())?;
    Ok(dcr_server::pki::ClientCertificate::from_der(&der)?
        .x5t_s256()
        .to_string())
}

/// `dcr_server::authorization_server` (issue 27's wire, not yet wired into the server) against
/// the real AS: each call, and each answer judged as the contract says.
async fn our_rfc7591_client_speaks_to_the_test_as(_: Backend) -> Result<()> {
    use dcr_server::authorization_server::{
        AsError, AuthorizationServer, Introspector, Registration, Settings, discover,
    };
    use dcr_server::domain::OAuthErrorCode;
    let mut s = Smoke::start().await?;
    let ca_pem = s.env.ca_pem()?;
    let issuer = url::Url::parse(&s.test_as.issuer)?;
    let found = discover(
        &https_client(&ca_pem, None)?,
        &issuer,
        Duration::from_secs(5),
    )
    .await?;
    let token_endpoint = s.endpoint("token_endpoint")?;
    ensure_eq!(
        found.token_endpoint.as_ref().map(url::Url::as_str),
        Some(token_endpoint.as_str())
    );
    // Served behind it, our discovery is the AS's with us for registration.
    let ours = "https://dcr.example/open-banking/v3.2/register";
    let served = dcr_server::oauth::discovery::behind(&found.document, ours);
    ensure_eq!(served["registration_endpoint"], json!(ours));
    ensure_eq!(
        served["introspection_endpoint"],
        s.discovery["introspection_endpoint"]
    );
    let settings = Settings {
        issuer,
        registration_endpoint: found
            .registration_endpoint
            .context("registration_endpoint")?,
        initial_access_token: Some(std::fs::read_to_string(
            s.test_as.initial_access_token_file(),
        )?),
        introspection: Some(Introspector {
            endpoint: found
                .introspection_endpoint
                .context("introspection_endpoint")?,
            client_id: s.test_as.introspection_client_id.clone(),
            client_secret: std::fs::read_to_string(s.test_as.introspection_secret_file())?,
        }),
        token_endpoint: found.token_endpoint,
        timeout: Duration::from_secs(5),
    };
    let the_as = AuthorizationServer::new(https_client(&ca_pem, None)?, settings.clone());
    let tls = s.metadata(&s.claims(SpecVersion::V3_2, "tls_client_auth", false)?)?;
    let tls = tls.as_object().cloned().context("metadata")?;

    let created = the_as.register(&tls).await?;
    ensure!(created.client_id.len() <= 36, "{created:?}");
    let uri = created.registration_client_uri.clone();
    let registration = Registration {
        client_id: &created.client_id,
        uri: &uri,
        access_token: &created.registration_access_token,
    };

    // PUT: the AS rotates the registration access token, and the answer carries the new one.
    let mut renamed = tls.clone();
    renamed.insert("client_name".into(), json!("Renamed"));
    let updated = the_as.update(&registration, &renamed).await?;
    let rotated = updated
        .registration_access_token
        .context("the AS did not rotate the registration access token")?;
    ensure!(rotated != created.registration_access_token);
    let old = the_as.update(&registration, &renamed).await;
    ensure!(
        matches!(old, Err(AsError::Unavailable(_))),
        "the old token still updates: {old:?}"
    );
    let registration = Registration {
        access_token: &rotated,
        ..registration
    };

    // A client-credentials token of that client over mTLS, as our introspection sees it.
    let cc = [
        ("grant_type", "client_credentials"),
        ("client_id", created.client_id.as_str()),
        ("scope", "accounts"),
    ];
    let (status, token) = answer(s.mtls.post(s.endpoint("token_endpoint")?).form(&cc)).await?;
    ensure!(status == 200, "token: {status} {token}");
    let seen = the_as.introspect(text(&token, "access_token")?).await?;
    ensure!(seen.active, "{seen:?}");
    ensure_eq!(seen.client_id.as_deref(), Some(created.client_id.as_str()));
    ensure_eq!(seen.x5t_s256, Some(transport_x5t(&s.env)?));
    ensure!(seen.exp.is_some(), "{seen:?}");
    ensure!(!the_as.introspect("not-a-token").await?.active);

    // DELETE, and DELETE again: gone either way (the AS answers 401 the second time).
    the_as.delete(&registration).await?;
    the_as.delete(&registration).await?;

    // The AS refusing metadata: 400 with its code, kept when it is a registration code.
    let mut bad = tls.clone();
    bad.insert("redirect_uris".into(), json!(["not a url"]));
    let refused = the_as.register(&bad).await;
    ensure!(
        matches!(
            &refused,
            Err(AsError::Refused { error, .. })
                if [OAuthErrorCode::InvalidRedirectUri, OAuthErrorCode::InvalidClientMetadata]
                    .contains(error)
        ),
        "{refused:?}"
    );
    // Our initial access token refused (401): unavailable, not the TPP's fault.
    let wrong = AuthorizationServer::new(
        https_client(&ca_pem, None)?,
        Settings {
            initial_access_token: Some("wrong".into()),
            ..settings.clone()
        },
    );
    ensure!(matches!(
        wrong.register(&tls).await,
        Err(AsError::Unavailable(_))
    ));
    // The AS down: unavailable.
    s.test_as.stop().await?;
    ensure!(matches!(
        the_as.register(&tls).await,
        Err(AsError::Unavailable(_))
    ));
    Ok(())
}
