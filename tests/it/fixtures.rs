//! The fixture most integration cases (and tests/hostile.rs) start from: the real server with
//! the sandbox TPP, its keys and a loopback JWKS server ([`Ctx`]); the requests it POSTs
//! ([`Req`]); and hand-made JWSs ([`raw_jws`]).

use anyhow::{Context, Result};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dcr_server::domain::SpecVersion;
use dcr_server::sandbox::{RequestOptions, Sandbox};
use dcr_server::store::Database;
use jsonwebtoken::{Algorithm, EncodingKey};
use rcgen::{DnType, ExtendedKeyUsagePurpose, KeyPair};
use serde_json::{Value, json};

use crate::support::{
    Backend, Doc, JwksServer, RunningServer, TestEnv, count_rows, token_request_with_assertion,
};

/// The `[open_banking.dcr]` line that lets the sandbox TPP's one software register many
/// clients (the default is one client per software_id).
pub const MANY_CLIENTS_PER_SOFTWARE: &str = "software_id_as_application_name.enable = false";

/// A request to POST.
pub struct Req {
    pub body: String,
    pub content_type: Option<&'static str>,
    pub identity: Option<(String, String)>,
}

impl Req {
    pub fn jwt(body: String) -> Self {
        Self {
            body,
            content_type: Some("application/jwt"),
            identity: None,
        }
    }
}

/// A running server, its sandbox TPP, and the keys hostile cases need.
pub struct Ctx {
    pub env: TestEnv,
    pub sandbox: Sandbox,
    pub server: RunningServer,
    pub jwks: JwksServer,
    pub store: Database,
    pub rogue_rsa: EncodingKey,
    pub rogue_rsa_pem: String,
    pub tpp_jwks: Value,
    pub directory_kid: String,
    pub transport: (String, String),
    /// The config the server was started with, as TOML.
    pub config_text: String,
}

impl Ctx {
    pub async fn start(backend: Backend, extra_dcr: &str, extra_jwks: &str) -> Result<Self> {
        Self::start_full(backend, extra_dcr, extra_jwks, "").await
    }

    /// Starts with extra `[open_banking.dcr]` and `[open_banking.dcr.jwks]` lines and extra
    /// tables at the end of the config.
    pub async fn start_full(
        backend: Backend,
        extra_dcr: &str,
        extra_jwks: &str,
        extra_tables: &str,
    ) -> Result<Self> {
        Self::start_custom(backend, "", extra_dcr, extra_jwks, extra_tables).await
    }

    /// As [`Self::start_full`], plus lines for `[server]`.
    pub async fn start_custom(
        backend: Backend,
        extra_server: &str,
        extra_dcr: &str,
        extra_jwks: &str,
        extra_tables: &str,
    ) -> Result<Self> {
        Self::start_tls(
            backend,
            "",
            extra_server,
            extra_dcr,
            extra_jwks,
            extra_tables,
        )
        .await
    }

    /// As [`Self::start_custom`], plus lines for `[server.tls]`.
    pub async fn start_tls(
        backend: Backend,
        extra_tls: &str,
        extra_server: &str,
        extra_dcr: &str,
        extra_jwks: &str,
        extra_tables: &str,
    ) -> Result<Self> {
        let env = TestEnv::new(backend).await?;
        Self::start_in(
            env,
            extra_tls,
            extra_server,
            extra_dcr,
            extra_jwks,
            extra_tables,
        )
        .await
    }

    /// As [`Ctx::start_tls`], in an environment (and sandbox) the test prepared first: a test
    /// may then serve what the server fetches at start-up, signed by the sandbox CA.
    pub async fn start_in(
        env: TestEnv,
        extra_tls: &str,
        extra_server: &str,
        extra_dcr: &str,
        extra_jwks: &str,
        extra_tables: &str,
    ) -> Result<Self> {
        let issuer = env.issuer();
        let dcr = format!("audience = [\"{issuer}\", \"0015800001BANKAAA\"]\n{extra_dcr}");
        let jwks_extra = format!("allowed_hosts = [\"localhost\"]\n{extra_jwks}");
        // The JWKS server starts first, so that the config may point at it (`{jwks_port}`).
        let jwks = JwksServer::start(&env.ca()?).await?;
        let tables = extra_tables.replace("{jwks_port}", &jwks.port.to_string());
        let text = env
            .config_toml_full(extra_tls, &dcr, &jwks_extra, &tables)
            .replace(
                "shutdown_grace_secs = 2",
                &format!("shutdown_grace_secs = 2\n{extra_server}"),
            );
        // A test that sets the rate limits replaces the suite's default (off).
        let text = if extra_server.contains("rate_limit.enable") {
            text.replace("rate_limit.enable = false\n", "")
        } else {
            text
        };
        let config = dcr_server::config::Config::parse(&text, std::path::Path::new("test.toml"))?;
        let server = env.start_with(config, axum::Router::new()).await?;
        let config_text = text;
        let sandbox = env.sandbox()?;
        let rogue = KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)?;
        let rogue_rsa_pem = rogue.serialize_pem();
        let tpp_jwks: Value = serde_json::from_str(&std::fs::read_to_string(
            env.sandbox_dir.join("tpp/signing.jwks"),
        )?)?;
        let directory: Value = serde_json::from_str(&std::fs::read_to_string(
            env.sandbox_dir.join("directory.jwks"),
        )?)?;
        let store = env.db.connect().await?;
        Ok(Self {
            transport: env.transport_pem()?,
            directory_kid: directory["keys"][0]["kid"]
                .as_str()
                .context("kid")?
                .to_string(),
            rogue_rsa: EncodingKey::from_rsa_pem(rogue_rsa_pem.as_bytes())?,
            rogue_rsa_pem,
            tpp_jwks,
            sandbox,
            server,
            jwks,
            store,
            config_text,
            env,
        })
    }

    pub fn options(&self, method: &str, alg: &str) -> RequestOptions {
        RequestOptions {
            auth_method: method.into(),
            alg: alg.into(),
            aud: self.env.issuer(),
            lifetime: 300,
            ..RequestOptions::default()
        }
    }

    /// Fresh request claims for the sandbox TPP.
    pub fn claims(&self, method: &str) -> Result<Value> {
        self.sandbox.request_claims(&self.options(method, "PS256"))
    }

    /// A signed request with the claims changed by `f`.
    pub fn request(&self, f: impl FnOnce(&mut Value)) -> Result<Req> {
        let mut claims = self.claims("private_key_jwt")?;
        f(&mut claims);
        Ok(Req::jwt(self.sandbox.sign_as_tpp(&claims, "PS256")?))
    }

    /// An SSA with its claims changed by `f`, signed by the directory.
    pub fn ssa(&self, f: impl FnOnce(&mut Value)) -> Result<String> {
        let mut claims = self.sandbox.ssa_claims();
        f(&mut claims);
        self.sandbox.sign_ssa(&claims)
    }

    /// An SSA whose `software_jwks_endpoint` is `tpp.jwks` on the test's JWKS server, which
    /// serves the sandbox TPP's keys there (and counts the fetches).
    pub fn ssa_with_served_tpp_jwks(&self) -> Result<String> {
        let url = self
            .jwks
            .serve("tpp.jwks", Doc::json(self.tpp_jwks.to_string()));
        self.ssa(|s| s["software_jwks_endpoint"] = json!(url))
    }

    /// A signed request carrying `ssa`.
    pub fn request_carrying(&self, ssa: &str) -> Result<Req> {
        self.request(|c| c["software_statement"] = json!(ssa))
    }

    /// A signed request carrying an SSA changed by `f`.
    pub fn request_with_ssa(&self, f: impl FnOnce(&mut Value)) -> Result<Req> {
        let ssa = self.ssa(f)?;
        self.request(|c| c["software_statement"] = json!(ssa))
    }

    /// The sandbox TPP's RSA signing key.
    pub fn tpp_rsa_key(&self) -> Result<EncodingKey> {
        let pem = std::fs::read(self.env.sandbox_dir.join("tpp/signing-ps256.key"))?;
        Ok(EncodingKey::from_rsa_pem(&pem)?)
    }

    pub fn tpp_public_jwk(&self, alg: &str) -> Result<Value> {
        self.tpp_jwks["keys"]
            .as_array()
            .context("keys")?
            .iter()
            .find(|k| k["alg"] == alg)
            .cloned()
            .context("no such key")
    }

    /// A client-credentials token for `client_id` (`private_key_jwt`, the sandbox TPP's key, its
    /// transport certificate).
    pub async fn pkj_token(&self, client_id: &str) -> Result<String> {
        let assertion = self.sandbox.client_assertion(
            client_id,
            &format!("{}/token", self.env.issuer()),
            "PS256",
        )?;
        let body: Value =
            token_request_with_assertion(&self.tpp_client()?, self.env.url("/token"), &assertion)
                .send()
                .await?
                .json()
                .await?;
        body["access_token"]
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("no token for {client_id}: {body}"))
    }

    /// `/token` for a `tls_client_auth` client, over the sandbox transport certificate: the
    /// status and body.
    pub async fn tls_token(&self, client_id: &str) -> Result<(u16, Value)> {
        let answer = self
            .tpp_client()?
            .post(self.env.url("/token"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
            ])
            .send()
            .await?;
        let status = answer.status().as_u16();
        Ok((status, answer.json().await?))
    }

    /// An HTTPS client that presents the sandbox TPP's transport certificate.
    pub fn tpp_client(&self) -> Result<reqwest::Client> {
        self.env
            .client(Some((&self.transport.0, &self.transport.1)))
    }

    /// The sandbox transport certificate: its DER and its `x5t#S256`.
    pub fn transport_der_and_x5t(&self) -> Result<(Vec<u8>, String)> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let der = CertificateDer::from_pem_slice(self.transport.0.as_bytes())?.to_vec();
        let x5t = dcr_server::pki::ClientCertificate::from_der(&der)?
            .x5t_s256()
            .to_string();
        Ok((der, x5t))
    }

    /// POSTs a request to the v3.2 path; the sandbox transport certificate unless the request
    /// names another.
    pub async fn post(&self, req: &Req, with_cert: bool) -> Result<(u16, Value)> {
        self.post_on(SpecVersion::V3_2, req, with_cert).await
    }

    /// As [`Self::post`], to the path of `version`.
    pub async fn post_on(
        &self,
        version: SpecVersion,
        req: &Req,
        with_cert: bool,
    ) -> Result<(u16, Value)> {
        let identity = match (&req.identity, with_cert) {
            (Some((c, k)), _) => Some((c.as_str(), k.as_str())),
            (None, true) => Some((self.transport.0.as_str(), self.transport.1.as_str())),
            (None, false) => None,
        };
        let client = self.env.client(identity)?;
        let mut builder = client
            .post(self.env.url(version.profile().register_path))
            .body(req.body.clone());
        if let Some(ct) = req.content_type {
            builder = builder.header("content-type", ct);
        }
        let response = builder.send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        let body = serde_json::from_str(&text)
            .with_context(|| format!("status {status}: body is not JSON: {text:.200}"))?;
        Ok((status, body))
    }

    pub async fn counts(&self) -> Result<[i64; 3]> {
        Ok([
            count_rows(&self.store, "clients").await?,
            count_rows(&self.store, "jtis").await?,
            count_rows(&self.store, "tokens").await?,
        ])
    }
}

/// A JWS with any header, signed by `key` (or with a junk signature).
pub fn raw_jws(
    header: Value,
    claims: &Value,
    key: Option<(&EncodingKey, Algorithm)>,
) -> Result<String> {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = match key {
        Some((key, alg)) => jsonwebtoken::crypto::sign(input.as_bytes(), key, alg)?,
        None => URL_SAFE_NO_PAD.encode(b"not a signature"),
    };
    Ok(format!("{input}.{signature}"))
}

/// An eIDAS-style certificate for the sandbox TPP's organisation.
pub fn eidas_cert(c: &Ctx, org_identifier: &str) -> Result<(String, String)> {
    c.env.ca()?.issue(
        &[
            (DnType::CountryName, "GB".into()),
            (DnType::OrganizationName, "Sandbox TPP Ltd".into()),
            (
                DnType::CustomDnType(vec![2, 5, 4, 97]),
                org_identifier.into(),
            ),
            (DnType::CommonName, "tpp.example.com".into()),
        ],
        &[],
        ExtendedKeyUsagePurpose::ClientAuth,
    )
}
