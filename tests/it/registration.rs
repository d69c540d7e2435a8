//! POST /register over real mTLS, with a real HTTPS JWKS server on loopback: one case per
//! rule, hostile inputs, replay, duplicates, and concurrency. Every refusal is checked in the
//! database too: no client, `jti` or token row may appear.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dcr_server::domain::SpecVersion;
use dcr_server::store::ClientStore;
use jsonwebtoken::{Algorithm, EncodingKey};
use rcgen::{DnType, ExtendedKeyUsagePurpose, KeyPair};
use serde_json::{Value, json};

use crate::fixtures::{Ctx, MANY_CLIENTS_PER_SOFTWARE, Req, eidas_cert, raw_jws};
use crate::support::{BOTH, Backend, Case, Doc, SQLITE, count_rows};
use crate::{case, ensure_eq};

pub fn cases() -> Vec<Case> {
    vec![
        case!(every_rule_has_a_case, BOTH),
        case!(strict_subject_dn_length_applies_128_on_v3_2_and_v3_3, BOTH),
        case!(replayed_request_jti_is_refused, BOTH),
        case!(replayed_ssa_jti_is_refused_when_enabled, SQLITE),
        case!(one_client_per_software_id, BOTH),
        case!(concurrent_same_jti_registers_once, BOTH),
        case!(uri_validation_fetches_the_pages, SQLITE),
        case!(unknown_kids_do_not_amplify_jwks_fetches, SQLITE),
        case!(jwks_outage_is_bridged_by_the_stale_cache, SQLITE),
        case!(slow_jwks_times_out, SQLITE),
        case!(ssa_issuer_keys_from_an_https_url, SQLITE),
        case!(transport_certificate_in_the_software_jwks, SQLITE),
        case!(revoked_keys_refuse_registrations_and_updates, BOTH),
        case!(revoked_keys_refuse_tokens_and_management, BOTH),
    ]
}

/// The dcr settings of the table's server: every optional check on.
const TABLE_DCR: &str = r#"
software_id_as_application_name.enable = false
ssa_jti_validation.enable = true
hostname_validation.enable = true
ssa_max_age = 3600
"#;

type Build = Box<dyn Fn(&Ctx) -> Result<Req> + Send + Sync>;

/// One rule: a request, the versions whose path it is sent to, and the answer expected there.
struct Row {
    name: &'static str,
    versions: &'static [SpecVersion],
    status: u16,
    code: &'static str,
    /// Text the `error_description` must contain (where the code alone does not say which
    /// rule refused), or "".
    why: &'static str,
    build: Build,
}

/// A rule of every version.
fn row(
    name: &'static str,
    status: u16,
    code: &'static str,
    build: impl Fn(&Ctx) -> Result<Req> + Send + Sync + 'static,
) -> Row {
    Row {
        name,
        versions: SpecVersion::ALL,
        status,
        code,
        why: "",
        build: Box::new(build),
    }
}

impl Row {
    /// Only on these versions (another row says what the others answer).
    fn on(self, versions: &'static [SpecVersion]) -> Self {
        Self { versions, ..self }
    }

    fn why(self, why: &'static str) -> Self {
        Self { why, ..self }
    }
}

/// The version column's values.
const V32: &[SpecVersion] = &[SpecVersion::V3_2];
const V34: &[SpecVersion] = &[SpecVersion::V3_4];
const V32_V33: &[SpecVersion] = &[SpecVersion::V3_2, SpecVersion::V3_3];
const V33_V34: &[SpecVersion] = &[SpecVersion::V3_3, SpecVersion::V3_4];

const CIBA: &str = "urn:openid:params:grant-type:ciba";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// Sets each key of `patch` (a null removes it).
fn apply(claims: &mut Value, patch: &Value) {
    for (k, v) in patch.as_object().into_iter().flatten() {
        if v.is_null() {
            remove(claims, k);
        } else {
            claims[k] = v.clone();
        }
    }
}

impl Ctx {
    /// A CIBA registration (mode `ping`, every claim), with `patch` applied.
    pub fn ciba_request(&self, patch: Value) -> Result<Req> {
        self.request(|r| {
            r["grant_types"] = json!(["client_credentials", CIBA]);
            apply(
                r,
                &json!({
                    "backchannel_token_delivery_mode": "ping",
                    "backchannel_client_notification_endpoint": "https://tpp.example.com/ciba/notify",
                    "backchannel_authentication_request_signing_alg": "PS256",
                    "backchannel_user_code_parameter_supported": false,
                }),
            );
            apply(r, &patch);
        })
    }

    /// A `tls_client_auth` registration with a transport certificate whose subject DN, as
    /// sent, is exactly `len` characters long.
    pub fn dn_of_length(&self, len: usize) -> Result<Req> {
        let t = &self.sandbox.tpp;
        let head = format!("CN={},OU={},C=GB,O=", t.software_id, t.org_id);
        let pad = "a".repeat(len.checked_sub(head.len()).context("too short")?);
        let (cert, key) = self.env.ca()?.issue(
            &[
                (DnType::CommonName, t.software_id.clone()),
                (DnType::OrganizationalUnitName, t.org_id.clone()),
                (DnType::CountryName, "GB".into()),
                (DnType::OrganizationName, pad.clone()),
            ],
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
        )?;
        let mut claims = self.claims("tls_client_auth")?;
        let dn = format!("{head}{pad}");
        ensure_eq!(dn.len(), len);
        claims["tls_client_auth_subject_dn"] = json!(dn);
        let mut req = Req::jwt(self.sandbox.sign_as_tpp(&claims, "PS256")?);
        req.identity = Some((cert, key));
        Ok(req)
    }
}

/// The subject DN rows (lengths at each limit), shared by the default and the strict table.
fn dn_length_rows(strict: bool) -> Vec<Row> {
    let long = "longer than";
    let mut rows = vec![
        row("subject DN of 128 characters", 201, "", |c| {
            c.dn_of_length(128)
        }),
        row("subject DN of 512 characters", 201, "", |c| {
            c.dn_of_length(512)
        })
        .on(V34),
        row("subject DN of 513 characters", 400, ICM, |c| {
            c.dn_of_length(513)
        })
        .why(long),
        row("subject DN of 129 characters", 201, "", |c| {
            c.dn_of_length(129)
        })
        .on(V34),
    ];
    if strict {
        rows.push(
            row("subject DN of 129, strict", 400, ICM, |c| {
                c.dn_of_length(129)
            })
            .on(V32_V33)
            .why("longer than 128"),
        );
        rows.push(
            row("subject DN of 512, strict", 400, ICM, |c| {
                c.dn_of_length(512)
            })
            .on(V32_V33)
            .why("longer than 128"),
        );
    } else {
        rows.push(
            row("subject DN of 129 characters", 201, "", |c| {
                c.dn_of_length(129)
            })
            .on(V32_V33),
        );
        rows.push(
            row("subject DN of 512 characters", 201, "", |c| {
                c.dn_of_length(512)
            })
            .on(V32_V33),
        );
    }
    rows
}

/// The rows of what differs between versions: each delta where it applies and where it must
/// be refused.
#[allow(clippy::too_many_lines)]
fn version_rows() -> Vec<Row> {
    let mut rows = vec![
        // --- application_type ---
        row("application_type mobile", 201, "", |c| c.request(|r| r["application_type"] = json!("mobile"))).on(V32_V33),
        row("application_type mobile", 400, ICM, |c| c.request(|r| r["application_type"] = json!("mobile"))).on(V34).why("not part of DCR v3.4"),
        row("application_type native", 201, "", |c| c.request(|r| r["application_type"] = json!("native"))).on(V34),
        row("application_type native", 400, ICM, |c| c.request(|r| r["application_type"] = json!("native"))).on(V32_V33).why("/open-banking/v3.4/register"),
        // --- jwt-bearer ---
        row("jwt-bearer grant type", 201, "", |c| c.request(|r| r["grant_types"] = json!(["client_credentials", JWT_BEARER]))).on(V34),
        row("jwt-bearer grant type", 400, ICM, |c| c.request(|r| r["grant_types"] = json!(["client_credentials", JWT_BEARER]))).on(V32_V33).why("/open-banking/v3.4/register"),
        // --- CIBA ---
        row("CIBA ping with every claim", 201, "", |c| c.ciba_request(json!({}))).on(V33_V34),
        row("CIBA ping with every claim", 400, ICM, |c| c.ciba_request(json!({}))).on(V32).why("/open-banking/v3.3/register"),
        row("CIBA poll without a notification endpoint", 201, "", |c| {
            c.ciba_request(json!({"backchannel_token_delivery_mode": "poll", "backchannel_client_notification_endpoint": null}))
        }).on(V33_V34),
        row("CIBA poll with an ES256 request signing alg", 201, "", |c| {
            c.ciba_request(json!({"backchannel_token_delivery_mode": "poll", "backchannel_authentication_request_signing_alg": "ES256"}))
        }).on(V33_V34),
        row("CIBA push", 400, ICM, |c| c.ciba_request(json!({"backchannel_token_delivery_mode": "push"}))).on(V33_V34).why("push"),
        row("CIBA without a delivery mode", 400, ICM, |c| c.ciba_request(json!({"backchannel_token_delivery_mode": null}))).on(V33_V34).why("backchannel_token_delivery_mode"),
        row("CIBA ping without a notification endpoint", 400, ICM, |c| {
            c.ciba_request(json!({"backchannel_client_notification_endpoint": null}))
        }).on(V33_V34).why("backchannel_client_notification_endpoint"),
        row("CIBA notification endpoint over http", 400, ICM, |c| {
            c.ciba_request(json!({"backchannel_client_notification_endpoint": "http://tpp.example.com/ciba"}))
        }).on(V33_V34).why("backchannel_client_notification_endpoint"),
        row("CIBA notification endpoint of 256 characters", 201, "", |c| {
            c.ciba_request(json!({"backchannel_client_notification_endpoint": format!("https://tpp.example.com/{}", "a".repeat(232))}))
        }).on(V33_V34),
        row("CIBA notification endpoint of 257 characters", 400, ICM, |c| {
            c.ciba_request(json!({"backchannel_client_notification_endpoint": format!("https://tpp.example.com/{}", "a".repeat(233))}))
        }).on(V33_V34).why("at most 256"),
        row("CIBA request signing alg RS256", 400, ICM, |c| {
            c.ciba_request(json!({"backchannel_authentication_request_signing_alg": "RS256"}))
        }).on(V33_V34).why("backchannel_authentication_request_signing_alg"),
        row("CIBA without a request signing alg", 400, ICM, |c| {
            c.ciba_request(json!({"backchannel_authentication_request_signing_alg": null}))
        }).on(V33_V34).why("backchannel_authentication_request_signing_alg"),
        row("CIBA with user codes", 400, ICM, |c| {
            c.ciba_request(json!({"backchannel_user_code_parameter_supported": true}))
        }).on(V33_V34).why("must be false"),
        row("CIBA without backchannel_user_code_parameter_supported", 400, ICM, |c| {
            c.ciba_request(json!({"backchannel_user_code_parameter_supported": null}))
        }).on(V33_V34).why("backchannel_user_code_parameter_supported"),
        row("backchannel claims without the CIBA grant", 400, ICM, |c| {
            c.ciba_request(json!({"grant_types": ["client_credentials"]}))
        }).on(V33_V34).why("only allowed with the grant type"),
        // v3.2 ignores them (not stored: see versions::v3_2_ignores_backchannel_claims).
        row("backchannel claims without the CIBA grant", 201, "", |c| {
            c.ciba_request(json!({"grant_types": ["client_credentials"]}))
        }).on(V32),
        // --- subject DN pattern (v3.4) ---
        row("subject DN not starting with CN=", 400, ICM, |c| {
            let mut claims = c.claims("tls_client_auth")?;
            let t = &c.sandbox.tpp;
            claims["tls_client_auth_subject_dn"] = json!(format!("OU={},CN={},O=OpenBanking,C=GB", t.org_id, t.software_id));
            Ok(Req::jwt(c.sandbox.sign_as_tpp(&claims, "PS256")?))
        }).on(V34).why("must start with CN="),
    ];
    rows.extend(dn_length_rows(false));
    rows
}

const ICM: &str = "invalid_client_metadata";
const IRU: &str = "invalid_redirect_uri";
const ISS: &str = "invalid_software_statement";
const USS: &str = "unapproved_software_statement";

fn remove(c: &mut Value, key: &str) {
    if let Some(m) = c.as_object_mut() {
        m.remove(key);
    }
}

fn another_order(c: &Ctx) -> Result<Req> {
    let mut claims = c.claims("tls_client_auth")?;
    let t = &c.sandbox.tpp;
    claims["tls_client_auth_subject_dn"] = json!(format!(
        "C=GB, O=OpenBanking, OU={}, CN={}",
        t.org_id, t.software_id
    ));
    Ok(Req::jwt(c.sandbox.sign_as_tpp(&claims, "PS256")?))
}

/// Every rule, with the versions it is checked on: the v3.2 rules hold on every version, and
/// [`version_rows`] hold what differs.
fn table() -> Vec<Row> {
    let mut rows = rules();
    rows.extend(version_rows());
    rows
}

#[allow(clippy::too_many_lines)]
fn rules() -> Vec<Row> {
    vec![
        // --- happy paths ---
        row("private_key_jwt PS256, OB certificate", 201, "", |c| {
            c.request(|_| {})
        }),
        row("private_key_jwt ES256", 201, "", |c| {
            Ok(Req::jwt(
                c.sandbox.request(&c.options("private_key_jwt", "ES256"))?,
            ))
        }),
        row("tls_client_auth, DN as in the certificate", 201, "", |c| {
            Ok(Req::jwt(
                c.sandbox.request(&c.options("tls_client_auth", "PS256"))?,
            ))
        }),
        row(
            "tls_client_auth, DN in another order and spacing",
            201,
            "",
            another_order,
        )
        .on(V32_V33),
        // v3.4's pattern wants CN= first and no spaces before attribute names.
        row(
            "tls_client_auth, DN in another order and spacing",
            400,
            ICM,
            another_order,
        )
        .on(V34)
        .why("must start with CN="),
        row(
            "eIDAS certificate, PSDGB-OB-<org_id>, tls_client_auth",
            201,
            "",
            |c| {
                let (cert, key) = eidas_cert(c, &format!("PSDGB-OB-{}", c.sandbox.tpp.org_id))?;
                let mut claims = c.claims("tls_client_auth")?;
                claims["tls_client_auth_subject_dn"] = json!(format!(
                    "CN=tpp.example.com,2.5.4.97=PSDGB-OB-{},O=Sandbox TPP Ltd,C=GB",
                    c.sandbox.tpp.org_id
                ));
                let mut req = Req::jwt(c.sandbox.sign_as_tpp(&claims, "PS256")?);
                req.identity = Some((cert, key));
                Ok(req)
            },
        ),
        row(
            "eIDAS certificate, competent authority registration",
            201,
            "",
            |c| {
                let (cert, key) = eidas_cert(c, "PSDGB-FCA-123456")?;
                let mut req = c.request(|_| {})?;
                req.identity = Some((cert, key));
                Ok(req)
            },
        ),
        row("content type with charset", 201, "", |c| {
            let mut r = c.request(|_| {})?;
            r.content_type = Some("application/jwt; charset=ISO-8859-1");
            Ok(r)
        }),
        row("application/jose", 201, "", |c| {
            let mut r = c.request(|_| {})?;
            r.content_type = Some("application/jose");
            Ok(r)
        }),
        row("second redirect URI and a subset of scopes", 201, "", |c| {
            c.request(|r| {
                r["redirect_uris"] = json!([
                    "https://tpp.example.com/callback2",
                    "https://tpp.example.com/callback"
                ]);
                r["scope"] = json!("accounts");
            })
        }),
        row(
            "response_types absent (defaults to code id_token)",
            201,
            "",
            |c| c.request(|r| remove(r, "response_types")),
        ),
        row(
            "aud as an array holding the configured audience",
            201,
            "",
            |c| c.request(|r| r["aud"] = json!(["someone-else", "0015800001BANKAAA"])),
        ),
        // --- transport ---
        // (no certificate: see every_rule_has_a_case)
        // --- envelope ---
        row("content type application/json", 400, ICM, |c| {
            let mut r = c.request(|_| {})?;
            r.content_type = Some("application/json");
            Ok(r)
        }),
        row("no content type", 400, ICM, |c| {
            let mut r = c.request(|_| {})?;
            r.content_type = None;
            Ok(r)
        }),
        row("body is not a JWS", 400, ICM, |_| {
            Ok(Req::jwt("hello".into()))
        }),
        row("body is JSON", 400, ICM, |_| {
            Ok(Req::jwt(r#"{"redirect_uris":[]}"#.into()))
        }),
        row("truncated JWS", 400, ICM, |c| {
            let r = c.request(|_| {})?;
            Ok(Req::jwt(r.body[..r.body.len() - 20].to_string()))
        }),
        row("JWS with two parts", 400, ICM, |c| {
            let r = c.request(|_| {})?;
            let two: Vec<&str> = r.body.split('.').take(2).collect();
            Ok(Req::jwt(two.join(".")))
        }),
        row("payload not JSON", 400, ICM, |c| {
            let h = URL_SAFE_NO_PAD
                .encode(json!({"alg": "PS256", "kid": c.sandbox.tpp.kid_ps256}).to_string());
            Ok(Req::jwt(format!(
                "{h}.{}.c2ln",
                URL_SAFE_NO_PAD.encode("not json")
            )))
        }),
        row("payload a JSON array", 400, ICM, |c| {
            let h = URL_SAFE_NO_PAD.encode(json!({"alg": "PS256"}).to_string());
            let _ = c;
            Ok(Req::jwt(format!(
                "{h}.{}.c2ln",
                URL_SAFE_NO_PAD.encode("[1,2]")
            )))
        }),
        row("alg none", 400, ICM, |c| {
            let claims = c.claims("private_key_jwt")?;
            let jws = raw_jws(
                json!({"alg": "none", "kid": c.sandbox.tpp.kid_ps256}),
                &claims,
                None,
            )?;
            Ok(Req::jwt(
                jws.rsplit_once('.')
                    .map(|(a, _)| format!("{a}."))
                    .unwrap_or(jws),
            ))
        }),
        row("alg none with a junk signature", 400, ICM, |c| {
            let claims = c.claims("private_key_jwt")?;
            Ok(Req::jwt(raw_jws(
                json!({"alg": "none", "kid": c.sandbox.tpp.kid_ps256}),
                &claims,
                None,
            )?))
        }),
        row(
            "HS256 keyed with the directory's public JWKS",
            400,
            ICM,
            |c| {
                let claims = c.claims("private_key_jwt")?;
                let secret = std::fs::read(c.env.sandbox_dir.join("directory.jwks"))?;
                let key = EncodingKey::from_secret(&secret);
                Ok(Req::jwt(raw_jws(
                    json!({"alg": "HS256", "kid": c.directory_kid}),
                    &claims,
                    Some((&key, Algorithm::HS256)),
                )?))
            },
        ),
        row("RS256 with the TPP's real key", 400, ICM, |c| {
            let claims = c.claims("private_key_jwt")?;
            let pem = std::fs::read(c.env.sandbox_dir.join("tpp/signing-ps256.key"))?;
            let key = EncodingKey::from_rsa_pem(&pem)?;
            Ok(Req::jwt(raw_jws(
                json!({"alg": "RS256", "kid": c.sandbox.tpp.kid_ps256}),
                &claims,
                Some((&key, Algorithm::RS256)),
            )?))
        }),
        // Header keys are refused even when the signature itself is valid.
        row("jwk header on an otherwise valid request", 400, ICM, |c| {
            let claims = c.claims("private_key_jwt")?;
            let key = c.tpp_rsa_key()?;
            let jwk = c.tpp_public_jwk("PS256")?;
            Ok(Req::jwt(raw_jws(
                json!({"alg": "PS256", "kid": c.sandbox.tpp.kid_ps256, "jwk": jwk}),
                &claims,
                Some((&key, Algorithm::PS256)),
            )?))
        }),
        row("jku header on an otherwise valid request", 400, ICM, |c| {
            let claims = c.claims("private_key_jwt")?;
            let key = c.tpp_rsa_key()?;
            Ok(Req::jwt(raw_jws(
                json!({"alg": "PS256", "kid": c.sandbox.tpp.kid_ps256, "jku": c.jwks.url("rogue.jwks")}),
                &claims,
                Some((&key, Algorithm::PS256)),
            )?))
        }),
        row("x5u header on an otherwise valid request", 400, ICM, |c| {
            let claims = c.claims("private_key_jwt")?;
            let key = c.tpp_rsa_key()?;
            Ok(Req::jwt(raw_jws(
                json!({"alg": "PS256", "kid": c.sandbox.tpp.kid_ps256, "x5u": c.jwks.url("rogue.pem")}),
                &claims,
                Some((&key, Algorithm::PS256)),
            )?))
        }),
        row("x5c header on an otherwise valid request", 400, ICM, |c| {
            let claims = c.claims("private_key_jwt")?;
            let key = c.tpp_rsa_key()?;
            Ok(Req::jwt(raw_jws(
                json!({"alg": "PS256", "kid": c.sandbox.tpp.kid_ps256, "x5c": ["MIIB"]}),
                &claims,
                Some((&key, Algorithm::PS256)),
            )?))
        }),
        row("key in the header and a rogue signature", 400, ICM, |c| {
            let claims = c.claims("private_key_jwt")?;
            let jwk = json!({"kty": "RSA", "n": "x", "e": "AQAB"});
            Ok(Req::jwt(raw_jws(
                json!({"alg": "PS256", "kid": "rogue", "jwk": jwk}),
                &claims,
                Some((&c.rogue_rsa, Algorithm::PS256)),
            )?))
        }),
        row("RS256 with a key whose JWK names no alg", 400, ICM, |c| {
            let mut jwk = c.tpp_public_jwk("PS256")?;
            if let Some(m) = jwk.as_object_mut() {
                m.remove("alg");
            }
            let url = c
                .jwks
                .serve("no-alg.jwks", Doc::json(json!({"keys": [jwk]}).to_string()));
            let ssa = c.ssa(|s| s["software_jwks_endpoint"] = json!(url))?;
            let mut claims = c.claims("private_key_jwt")?;
            claims["software_statement"] = json!(ssa);
            let key = c.tpp_rsa_key()?;
            Ok(Req::jwt(raw_jws(
                json!({"alg": "RS256", "kid": c.sandbox.tpp.kid_ps256}),
                &claims,
                Some((&key, Algorithm::RS256)),
            )?))
        }),
        row("PS256 with an alg-less key", 201, "", |c| {
            let mut jwk = c.tpp_public_jwk("PS256")?;
            if let Some(m) = jwk.as_object_mut() {
                m.remove("alg");
            }
            let url = c.jwks.serve(
                "no-alg-2.jwks",
                Doc::json(json!({"keys": [jwk]}).to_string()),
            );
            let ssa = c.ssa(|s| s["software_jwks_endpoint"] = json!(url))?;
            let mut claims = c.claims("private_key_jwt")?;
            claims["software_statement"] = json!(ssa);
            let key = c.tpp_rsa_key()?;
            Ok(Req::jwt(raw_jws(
                json!({"alg": "PS256", "kid": c.sandbox.tpp.kid_ps256}),
                &claims,
                Some((&key, Algorithm::PS256)),
            )?))
        }),
        row("crit header", 400, ICM, |c| {
            let claims = c.claims("private_key_jwt")?;
            let pem = std::fs::read(c.env.sandbox_dir.join("tpp/signing-ps256.key"))?;
            let key = EncodingKey::from_rsa_pem(&pem)?;
            Ok(Req::jwt(raw_jws(
                json!({"alg": "PS256", "kid": c.sandbox.tpp.kid_ps256, "crit": ["b64"], "b64": false}),
                &claims,
                Some((&key, Algorithm::PS256)),
            )?))
        }),
        // --- SSA ---
        row("software_statement missing", 400, ISS, |c| {
            c.request(|r| remove(r, "software_statement"))
        }),
        row("software_statement a number", 400, ISS, |c| {
            c.request(|r| r["software_statement"] = json!(42))
        }),
        row("software_statement garbage", 400, ISS, |c| {
            c.request(|r| r["software_statement"] = json!("garbage"))
        }),
        row("SSA from an untrusted issuer", 400, USS, |c| {
            c.request_with_ssa(|s| s["iss"] = json!("Evil Directory Ltd"))
        }),
        row("SSA re-signed by another key", 400, ISS, |c| {
            let claims = c.sandbox.ssa_claims();
            let ssa = raw_jws(
                json!({"alg": "PS256", "kid": c.directory_kid, "typ": "JWT"}),
                &claims,
                Some((&c.rogue_rsa, Algorithm::PS256)),
            )?;
            c.request_carrying(&ssa)
        }),
        row("SSA signed by an unknown key", 400, ISS, |c| {
            let claims = c.sandbox.ssa_claims();
            let ssa = raw_jws(
                json!({"alg": "PS256", "kid": "unknown-directory-key"}),
                &claims,
                Some((&c.rogue_rsa, Algorithm::PS256)),
            )?;
            c.request_carrying(&ssa)
        }),
        row("SSA with alg none", 400, ISS, |c| {
            let claims = c.sandbox.ssa_claims();
            let ssa = raw_jws(json!({"alg": "none"}), &claims, None)?;
            c.request_carrying(&ssa)
        }),
        row("SSA org_status Revoked", 400, USS, |c| {
            c.request_with_ssa(|s| s["org_status"] = json!("Revoked"))
        }),
        row("SSA without software_roles", 400, USS, |c| {
            c.request_with_ssa(|s| remove(s, "software_roles"))
        }),
        row("SSA older than ssa_max_age", 400, ISS, |c| {
            c.request_with_ssa(|s| s["iat"] = json!(dcr_server::clock::now() - 7200))
        }),
        row("SSA without software_jwks_endpoint", 400, ISS, |c| {
            c.request_with_ssa(|s| remove(s, "software_jwks_endpoint"))
        }),
        // --- request signature ---
        row("no kid", 400, ICM, |c| {
            let claims = c.claims("private_key_jwt")?;
            let pem = std::fs::read(c.env.sandbox_dir.join("tpp/signing-ps256.key"))?;
            let key = EncodingKey::from_rsa_pem(&pem)?;
            Ok(Req::jwt(raw_jws(
                json!({"alg": "PS256"}),
                &claims,
                Some((&key, Algorithm::PS256)),
            )?))
        }),
        row("unknown kid", 400, ICM, |c| {
            let claims = c.claims("private_key_jwt")?;
            Ok(Req::jwt(raw_jws(
                json!({"alg": "PS256", "kid": "no-such-kid"}),
                &claims,
                Some((&c.rogue_rsa, Algorithm::PS256)),
            )?))
        }),
        row("TPP's kid, another key's signature", 400, ICM, |c| {
            let claims = c.claims("private_key_jwt")?;
            Ok(Req::jwt(raw_jws(
                json!({"alg": "PS256", "kid": c.sandbox.tpp.kid_ps256}),
                &claims,
                Some((&c.rogue_rsa, Algorithm::PS256)),
            )?))
        }),
        row("ES256 header naming the RSA key", 400, ICM, |c| {
            let claims = c.claims("private_key_jwt")?;
            let pem = std::fs::read(c.env.sandbox_dir.join("tpp/signing-es256.key"))?;
            let key = EncodingKey::from_ec_pem(&pem)?;
            Ok(Req::jwt(raw_jws(
                json!({"alg": "ES256", "kid": c.sandbox.tpp.kid_ps256}),
                &claims,
                Some((&key, Algorithm::ES256)),
            )?))
        }),
        row("key published for encryption (use=enc)", 400, ICM, |c| {
            let mut enc = c.tpp_public_jwk("PS256")?;
            enc["use"] = json!("enc");
            enc["kid"] = json!("enc-key");
            let url = c
                .jwks
                .serve("enc.jwks", Doc::json(json!({"keys": [enc]}).to_string()));
            let ssa = c.ssa(|s| s["software_jwks_endpoint"] = json!(url))?;
            let mut claims = c.claims("private_key_jwt")?;
            claims["software_statement"] = json!(ssa);
            let pem = std::fs::read(c.env.sandbox_dir.join("tpp/signing-ps256.key"))?;
            let key = EncodingKey::from_rsa_pem(&pem)?;
            Ok(Req::jwt(raw_jws(
                json!({"alg": "PS256", "kid": "enc-key"}),
                &claims,
                Some((&key, Algorithm::PS256)),
            )?))
        }),
        row("RSA key shorter than 2048 bits", 400, ICM, |c| {
            let n = URL_SAFE_NO_PAD.encode([0xC5u8; 128]);
            let url = c.jwks.serve(
                "short.jwks",
                Doc::json(
                    json!({"keys": [{"kty": "RSA", "kid": "short", "n": n, "e": "AQAB"}]})
                        .to_string(),
                ),
            );
            let ssa = c.ssa(|s| s["software_jwks_endpoint"] = json!(url))?;
            let mut claims = c.claims("private_key_jwt")?;
            claims["software_statement"] = json!(ssa);
            Ok(Req::jwt(raw_jws(
                json!({"alg": "PS256", "kid": "short"}),
                &claims,
                Some((&c.rogue_rsa, Algorithm::PS256)),
            )?))
        }),
        row("JWKS endpoint over http", 400, ICM, |c| {
            c.request_with_ssa(|s| s["software_jwks_endpoint"] = json!("http://localhost/x.jwks"))
        }),
        row("JWKS host not in allowed_hosts", 400, ICM, |c| {
            let url = format!("https://127.0.0.1:{}/x.jwks", c.jwks.port);
            c.request_with_ssa(|s| s["software_jwks_endpoint"] = json!(url))
        }),
        row("JWKS endpoint answers 404", 400, ICM, |c| {
            let url = c.jwks.url("missing.jwks");
            c.request_with_ssa(|s| s["software_jwks_endpoint"] = json!(url))
        }),
        row("JWKS endpoint answers garbage", 400, ICM, |c| {
            let url = c.jwks.serve("garbage.jwks", Doc::json("<html>"));
            c.request_with_ssa(|s| s["software_jwks_endpoint"] = json!(url))
        }),
        row("JWKS larger than 256 KiB", 400, ICM, |c| {
            let big = json!({"keys": [], "pad": "x".repeat(300 * 1024)}).to_string();
            let url = c.jwks.serve("huge.jwks", Doc::json(big));
            c.request_with_ssa(|s| s["software_jwks_endpoint"] = json!(url))
        }),
        // --- request claims ---
        row("iss missing", 400, ICM, |c| c.request(|r| remove(r, "iss"))),
        row("iss empty", 400, ICM, |c| {
            c.request(|r| r["iss"] = json!(""))
        }),
        row("iss of 30 characters", 400, ICM, |c| {
            c.request(|r| r["iss"] = json!("a".repeat(30)))
        }),
        row("iss foo.is/invalid", 400, ICM, |c| {
            c.request(|r| r["iss"] = json!("foo.is/invalid"))
        }),
        row("iss another software", 400, ICM, |c| {
            c.request(|r| r["iss"] = json!("AnotherSoftware1"))
        }),
        row("iss a number", 400, ICM, |c| {
            c.request(|r| r["iss"] = json!(12345))
        }),
        row("exp an hour ago", 400, ICM, |c| {
            c.request(|r| {
                r["iat"] = json!(dcr_server::clock::now() - 7200);
                r["exp"] = json!(dcr_server::clock::now() - 3600);
            })
        }),
        row("exp missing", 400, ICM, |c| c.request(|r| remove(r, "exp"))),
        row("exp a string", 400, ICM, |c| {
            c.request(|r| r["exp"] = json!("tomorrow"))
        }),
        row("iat an hour ahead", 400, ICM, |c| {
            c.request(|r| {
                r["iat"] = json!(dcr_server::clock::now() + 3600);
                r["exp"] = json!(dcr_server::clock::now() + 7200);
            })
        }),
        row("aud missing", 400, ICM, |c| c.request(|r| remove(r, "aud"))),
        row("aud another bank", 400, ICM, |c| {
            c.request(|r| r["aud"] = json!("0015800001OTHERBK"))
        }),
        row("jti missing", 400, ICM, |c| c.request(|r| remove(r, "jti"))),
        row("jti a number", 400, ICM, |c| {
            c.request(|r| r["jti"] = json!(7))
        }),
        // --- metadata ---
        row("redirect_uris missing", 400, ICM, |c| {
            c.request(|r| remove(r, "redirect_uris"))
        }),
        row("redirect_uris a string", 400, ICM, |c| {
            c.request(|r| r["redirect_uris"] = json!("https://tpp.example.com/callback"))
        }),
        row("token_endpoint_auth_method missing", 400, ICM, |c| {
            c.request(|r| remove(r, "token_endpoint_auth_method"))
        }),
        row("token_endpoint_auth_method not enabled", 400, ICM, |c| {
            c.request(|r| r["token_endpoint_auth_method"] = json!("client_secret_basic"))
        }),
        row("grant_types missing", 400, ICM, |c| {
            c.request(|r| remove(r, "grant_types"))
        }),
        row("grant_types unknown", 400, ICM, |c| {
            c.request(|r| r["grant_types"] = json!(["password"]))
        }),
        row("response_types id_token token", 400, ICM, |c| {
            c.request(|r| r["response_types"] = json!(["id_token", "token"]))
        }),
        row("scope missing", 400, ICM, |c| {
            c.request(|r| remove(r, "scope"))
        }),
        row("scope an array", 400, ICM, |c| {
            c.request(|r| r["scope"] = json!(["accounts"]))
        }),
        row("application_type missing", 400, ICM, |c| {
            c.request(|r| remove(r, "application_type"))
        }),
        row("application_type desktop", 400, ICM, |c| {
            c.request(|r| r["application_type"] = json!("desktop"))
        }),
        row("id_token_signed_response_alg missing", 400, ICM, |c| {
            c.request(|r| remove(r, "id_token_signed_response_alg"))
        }),
        row("id_token_signed_response_alg RS256", 400, ICM, |c| {
            c.request(|r| r["id_token_signed_response_alg"] = json!("RS256"))
        }),
        row("request_object_signing_alg missing", 400, ICM, |c| {
            c.request(|r| remove(r, "request_object_signing_alg"))
        }),
        row("request_object_signing_alg none", 400, ICM, |c| {
            c.request(|r| r["request_object_signing_alg"] = json!("none"))
        }),
        row(
            "token_endpoint_auth_signing_alg missing for private_key_jwt",
            400,
            ICM,
            |c| c.request(|r| remove(r, "token_endpoint_auth_signing_alg")),
        ),
        row("token_endpoint_auth_signing_alg RS256", 400, ICM, |c| {
            c.request(|r| r["token_endpoint_auth_signing_alg"] = json!("RS256"))
        }),
        row("tls_client_auth without subject DN", 400, ICM, |c| {
            let mut claims = c.claims("tls_client_auth")?;
            remove(&mut claims, "tls_client_auth_subject_dn");
            Ok(Req::jwt(c.sandbox.sign_as_tpp(&claims, "PS256")?))
        }),
        row("subject DN with private_key_jwt", 400, ICM, |c| {
            c.request(|r| r["tls_client_auth_subject_dn"] = json!("CN=x"))
        }),
        row("software_id differs from the SSA", 400, ICM, |c| {
            c.request(|r| r["software_id"] = json!("OtherSoftware"))
        }),
        // --- redirect URIs ---
        row("redirect URI over http", 400, IRU, |c| {
            let uri = "http://tpp.example.com/callback";
            c.request_with_ssa_and(
                |s| s["software_redirect_uris"] = json!([uri]),
                |r| r["redirect_uris"] = json!([uri]),
            )
        }),
        row("redirect URI on localhost", 400, IRU, |c| {
            let uri = "https://localhost/callback";
            c.request_with_ssa_and(
                |s| s["software_redirect_uris"] = json!([uri]),
                |r| r["redirect_uris"] = json!([uri]),
            )
        }),
        row("redirect URI with a fragment", 400, IRU, |c| {
            let uri = "https://tpp.example.com/callback#x";
            c.request_with_ssa_and(
                |s| s["software_redirect_uris"] = json!([uri]),
                |r| r["redirect_uris"] = json!([uri]),
            )
        }),
        row("redirect URI longer than 256", 400, IRU, |c| {
            let uri = format!("https://tpp.example.com/{}", "a".repeat(250));
            let u2 = uri.clone();
            c.request_with_ssa_and(
                move |s| s["software_redirect_uris"] = json!([uri]),
                move |r| r["redirect_uris"] = json!([u2]),
            )
        }),
        row("redirect URI not in the SSA", 400, IRU, |c| {
            c.request(|r| r["redirect_uris"] = json!(["https://tpp.example.com/other"]))
        }),
        row("second redirect URI not in the SSA", 400, IRU, |c| {
            c.request(|r| {
                r["redirect_uris"] = json!([
                    "https://tpp.example.com/callback",
                    "https://evil.example.com/cb"
                ])
            })
        }),
        // --- URI policies ---
        row(
            "tos URI on another host (hostname_validation)",
            400,
            ICM,
            |c| {
                c.request_with_ssa(|s| {
                    s["software_tos_uri"] = json!("https://elsewhere.example.org/tos")
                })
            },
        ),
        // --- scopes ---
        row("payments without PISP", 400, ICM, |c| {
            c.request_with_ssa_and(
                |s| s["software_roles"] = json!(["AISP"]),
                |r| r["scope"] = json!("openid payments"),
            )
        }),
        row("unknown scope", 400, ICM, |c| {
            c.request(|r| r["scope"] = json!("openid admin"))
        }),
        // --- transport certificate binding ---
        row("OB certificate of another software", 400, USS, |c| {
            let (cert, key) = c
                .env
                .ca()?
                .issue_ob_transport(&c.sandbox.tpp.org_id, "SomeOtherSoftware")?;
            let mut r = c.request(|_| {})?;
            r.identity = Some((cert, key));
            Ok(r)
        }),
        row("OB certificate of another organisation", 400, USS, |c| {
            let (cert, key) = c
                .env
                .ca()?
                .issue_ob_transport("0015800001OTHERORG", &c.sandbox.tpp.software_id)?;
            let mut r = c.request(|_| {})?;
            r.identity = Some((cert, key));
            Ok(r)
        }),
        row("eIDAS certificate of another organisation", 400, USS, |c| {
            let (cert, key) = eidas_cert(c, "PSDGB-FCA-999999")?;
            let mut r = c.request(|_| {})?;
            r.identity = Some((cert, key));
            Ok(r)
        }),
        // --- subject DN ---
        row("subject DN of another certificate", 400, ICM, |c| {
            let mut claims = c.claims("tls_client_auth")?;
            claims["tls_client_auth_subject_dn"] = json!("CN=someone,OU=else,O=OpenBanking,C=GB");
            Ok(Req::jwt(c.sandbox.sign_as_tpp(&claims, "PS256")?))
        }),
        row("subject DN that does not parse", 400, ICM, |c| {
            let mut claims = c.claims("tls_client_auth")?;
            claims["tls_client_auth_subject_dn"] = json!("not a DN");
            Ok(Req::jwt(c.sandbox.sign_as_tpp(&claims, "PS256")?))
        }),
        // --- sizes and types ---
        row("1 MB body", 413, ICM, |_| {
            Ok(Req::jwt("a".repeat(1024 * 1024)))
        }),
        row("claims of the wrong JSON type everywhere", 400, ICM, |c| {
            c.request(|r| {
                r["grant_types"] = json!({"a": 1});
                r["redirect_uris"] = json!([1, 2]);
            })
        }),
    ]
}

impl Ctx {
    /// A request with both the SSA and the request claims changed.
    pub fn request_with_ssa_and(
        &self,
        ssa_f: impl FnOnce(&mut Value),
        req_f: impl FnOnce(&mut Value),
    ) -> Result<Req> {
        let ssa = self.ssa(ssa_f)?;
        self.request(|c| {
            c["software_statement"] = json!(ssa);
            req_f(c);
        })
    }
}

fn check_client_body(body: &Value, sent_ssa: Option<&str>) -> Result<()> {
    ensure!(
        body["client_id"]
            .as_str()
            .is_some_and(|s| !s.is_empty() && s.len() <= 36)
    );
    ensure!(
        body["client_id_issued_at"].is_i64(),
        "client_id_issued_at must be an integer"
    );
    ensure!(
        body["client_secret"]
            .as_str()
            .is_some_and(|s| s.len() == 36)
    );
    ensure_eq!(body["client_secret_expires_at"], json!(0));
    for key in ["redirect_uris", "grant_types", "response_types"] {
        ensure!(body[key].is_array(), "{key} must be an array");
    }
    for key in [
        "token_endpoint_auth_method",
        "scope",
        "software_id",
        "software_statement",
        "application_type",
        "id_token_signed_response_alg",
        "request_object_signing_alg",
    ] {
        ensure!(body[key].is_string(), "{key} must be a string");
    }
    if let Some(ssa) = sent_ssa {
        ensure_eq!(body["software_statement"].as_str(), Some(ssa));
    }
    Ok(())
}

fn sent_ssa(req: &Req) -> Option<String> {
    let payload = req.body.split('.').nth(1)?;
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    claims["software_statement"].as_str().map(str::to_string)
}

async fn every_rule_has_a_case(backend: Backend) -> Result<()> {
    let ctx = Ctx::start(backend, TABLE_DCR, "").await?;
    let rows = table();
    let (mut failures, total) = run_rows(&ctx, &rows).await?;
    // No client certificate at all.
    let req = ctx.request(|_| {})?;
    let before = ctx.counts().await?;
    let (status, body) = ctx.post(&req, false).await?;
    if status != 401 || body["error"] != json!("invalid_client") {
        failures.push(format!("no certificate: {status} {body}"));
    }
    ensure_eq!(ctx.counts().await?, before);
    if !failures.is_empty() {
        bail!(
            "{} of {} cases failed:\n{}",
            failures.len(),
            total + 1,
            failures.join("\n")
        );
    }
    // The secret is stored only as its hash.
    for client in ctx.store.list_clients().await? {
        ensure!(client.client_secret_hash.len() == 64);
    }
    ctx.server.stop().await
}

/// Sends each row to each of its versions' paths; the failures, and how many were sent.
async fn run_rows(ctx: &Ctx, rows: &[Row]) -> Result<(Vec<String>, usize)> {
    let mut failures = Vec::new();
    let mut total = 0;
    for r in rows {
        for &version in r.versions {
            total += 1;
            let name = format!("{} [v{version}]", r.name);
            let req = (r.build)(ctx).with_context(|| format!("building `{name}`"))?;
            if let Err(e) = run_row(ctx, r, version, &req).await {
                failures.push(format!("{name}: {e}"));
            }
        }
    }
    Ok((failures, total))
}

async fn run_row(ctx: &Ctx, r: &Row, version: SpecVersion, req: &Req) -> Result<()> {
    let before = ctx.counts().await?;
    let (status, body) = ctx.post_on(version, req, true).await?;
    let after = ctx.counts().await?;
    ensure!(
        status == r.status,
        "status {status}, want {}: {:.300}",
        r.status,
        body.to_string()
    );
    if r.status == 201 {
        check_client_body(&body, sent_ssa(req).as_deref())?;
        ensure!(
            after[0] == before[0] + 1,
            "201 but clients went {} -> {}",
            before[0],
            after[0]
        );
        let id = body["client_id"].as_str().unwrap_or_default();
        let stored = ctx.store.get_client(id).await?.context("no row")?;
        ensure_eq!(stored.dcr_version.as_str(), version.as_str());
        return Ok(());
    }
    ensure!(
        body["error"] == json!(r.code),
        "error {}, want {}",
        body["error"],
        r.code
    );
    let description = body["error_description"].as_str().unwrap_or_default();
    ensure!(
        !description.is_empty()
            && !description.contains("sqlx")
            && !description.contains("panicked"),
        "bad error_description {description:?}"
    );
    ensure!(
        description.contains(r.why),
        "error_description {description:?} does not say {:?}",
        r.why
    );
    ensure!(
        after == before,
        "refused but rows changed {before:?} -> {after:?}"
    );
    Ok(())
}

/// With `strict_subject_dn_length`, v3.2 and v3.3 apply the spec's 128; v3.4 keeps 512.
async fn strict_subject_dn_length_applies_128_on_v3_2_and_v3_3(backend: Backend) -> Result<()> {
    let dcr = format!("{TABLE_DCR}strict_subject_dn_length.enable = true\n");
    let ctx = Ctx::start(backend, &dcr, "").await?;
    let (failures, total) = run_rows(&ctx, &dn_length_rows(true)).await?;
    ensure!(
        failures.is_empty(),
        "{} of {total} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    ctx.server.stop().await
}

async fn replayed_request_jti_is_refused(backend: Backend) -> Result<()> {
    let ctx = Ctx::start(backend, TABLE_DCR, "").await?;
    let req = ctx.request(|_| {})?;
    let (status, body) = ctx.post(&req, true).await?;
    ensure_eq!(status, 201);
    let secret = body["client_secret"]
        .as_str()
        .context("secret")?
        .to_string();
    let before = ctx.counts().await?;
    let (status, body) = ctx.post(&req, true).await?;
    ensure_eq!(status, 400);
    ensure_eq!(body["error"], json!(ICM));
    ensure!(
        body["error_description"]
            .as_str()
            .unwrap_or_default()
            .contains("jti")
    );
    ensure_eq!(ctx.counts().await?, before);
    // The jti row lives at least until the JWT's exp.
    let client = ctx.store.list_clients().await?.pop().context("client")?;
    ensure!(client.client_secret_hash != secret);
    ensure_eq!(
        client.client_secret_hash,
        dcr_server::domain::secret::hash(&secret)
    );
    ctx.server.stop().await
}

async fn replayed_ssa_jti_is_refused_when_enabled(backend: Backend) -> Result<()> {
    let ctx = Ctx::start(backend, TABLE_DCR, "").await?;
    let ssa = ctx.ssa(|_| {})?;
    let first = ctx.request_carrying(&ssa)?;
    ensure_eq!(ctx.post(&first, true).await?.0, 201);
    let second = ctx.request_carrying(&ssa)?;
    let (status, body) = ctx.post(&second, true).await?;
    ensure_eq!(status, 400);
    ensure_eq!(body["error"], json!(ISS));
    ctx.server.stop().await?;

    // Off (the default): the same SSA may be used again.
    let ctx = Ctx::start(backend, MANY_CLIENTS_PER_SOFTWARE, "").await?;
    let ssa = ctx.ssa(|_| {})?;
    for _ in 0..2 {
        let req = ctx.request_carrying(&ssa)?;
        ensure_eq!(ctx.post(&req, true).await?.0, 201);
    }
    ctx.server.stop().await
}

async fn one_client_per_software_id(backend: Backend) -> Result<()> {
    let ctx = Ctx::start(backend, "", "").await?;
    let (status, body) = ctx.post(&ctx.request(|_| {})?, true).await?;
    ensure_eq!(status, 201);
    let client_id = body["client_id"].as_str().context("client_id")?.to_string();
    let (status, body) = ctx.post(&ctx.request(|_| {})?, true).await?;
    ensure_eq!(status, 400);
    ensure_eq!(body["error"], json!(ICM));
    ensure_eq!(count_rows(&ctx.store, "clients").await?, 1);
    // Once the client is deleted, the software may register again.
    let audit = dcr_server::store::AuditRecord::new(
        dcr_server::clock::now(),
        dcr_server::domain::AuditAction::Delete,
        dcr_server::domain::AuditOutcome::Success,
    );
    ensure!(ctx.store.delete_client(&client_id, &audit).await?);
    ensure_eq!(ctx.post(&ctx.request(|_| {})?, true).await?.0, 201);
    ctx.server.stop().await
}

async fn concurrent_same_jti_registers_once(backend: Backend) -> Result<()> {
    let ctx = std::sync::Arc::new(Ctx::start(backend, MANY_CLIENTS_PER_SOFTWARE, "").await?);
    let req = std::sync::Arc::new(ctx.request(|_| {})?);
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (ctx, req) = (ctx.clone(), req.clone());
        tasks.push(tokio::spawn(async move { ctx.post(&req, true).await }));
    }
    let mut created = 0;
    for t in tasks {
        let (status, body) = t.await??;
        match status {
            201 => created += 1,
            400 => ensure_eq!(body["error"], json!(ICM)),
            other => bail!("unexpected status {other}: {body}"),
        }
    }
    ensure_eq!(created, 1);
    ensure_eq!(count_rows(&ctx.store, "clients").await?, 1);
    Ok(())
}

async fn uri_validation_fetches_the_pages(backend: Backend) -> Result<()> {
    let ctx = Ctx::start(
        backend,
        "uri_validation.enable = true\nsoftware_id_as_application_name.enable = false",
        "",
    )
    .await?;
    let policy = ctx.jwks.serve("policy", Doc::json("<html>policy</html>"));
    let logo = ctx.jwks.serve("logo.png", Doc::json("png"));
    let missing = ctx.jwks.url("tos-missing");
    let set_uris = |s: &mut Value, tos: &str| {
        remove(s, "software_client_uri");
        s["software_policy_uri"] = json!(policy);
        s["software_logo_uri"] = json!(logo);
        s["software_tos_uri"] = json!(tos);
    };
    let ok = ctx.request_with_ssa(|s| set_uris(s, &policy))?;
    let (status, body) = ctx.post(&ok, true).await?;
    ensure_eq!(status, 201,);
    let _ = body;
    let bad = ctx.request_with_ssa(|s| set_uris(s, &missing))?;
    let (status, body) = ctx.post(&bad, true).await?;
    ensure_eq!(status, 400);
    ensure_eq!(body["error"], json!(ICM));
    ensure!(
        body["error_description"]
            .as_str()
            .unwrap_or_default()
            .contains("software_tos_uri")
    );
    ensure_eq!(ctx.jwks.hits("tos-missing"), 1);
    ctx.server.stop().await
}

/// Requests naming random kids cause at most one refetch per source every few seconds.
async fn unknown_kids_do_not_amplify_jwks_fetches(backend: Backend) -> Result<()> {
    let ctx = std::sync::Arc::new(Ctx::start(backend, MANY_CLIENTS_PER_SOFTWARE, "").await?);
    let ssa = ctx.ssa_with_served_tpp_jwks()?;
    let mut tasks = Vec::new();
    for i in 0..30 {
        let ctx = ctx.clone();
        let ssa = ssa.clone();
        tasks.push(tokio::spawn(async move {
            let mut claims = ctx.claims("private_key_jwt")?;
            claims["software_statement"] = json!(ssa);
            let jws = raw_jws(
                json!({"alg": "PS256", "kid": format!("random-{i}")}),
                &claims,
                Some((&ctx.rogue_rsa, Algorithm::PS256)),
            )?;
            ctx.post(&Req::jwt(jws), true).await
        }));
    }
    for t in tasks {
        let (status, _) = t.await??;
        ensure_eq!(status, 400);
    }
    let hits = ctx.jwks.hits("tpp.jwks");
    ensure!(hits <= 2, "30 unknown kids caused {hits} JWKS fetches");
    // A valid request still works from the cache.
    let good = ctx.request_carrying(&ssa)?;
    ensure_eq!(ctx.post(&good, true).await?.0, 201);
    ensure!(ctx.jwks.hits("tpp.jwks") <= 2);
    Ok(())
}

/// A JWKS source that goes down is answered from the stale cache.
async fn jwks_outage_is_bridged_by_the_stale_cache(backend: Backend) -> Result<()> {
    let ctx = Ctx::start(
        backend,
        MANY_CLIENTS_PER_SOFTWARE,
        "cache_ttl = 1\nmax_stale = 600",
    )
    .await?;
    let ssa = ctx.ssa_with_served_tpp_jwks()?;
    ensure_eq!(ctx.post(&ctx.request_carrying(&ssa)?, true).await?.0, 201);
    ctx.jwks.set(
        "tpp.jwks",
        Doc {
            status: 503,
            body: "down".into(),
            delay: Duration::ZERO,
        },
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, body) = ctx.post(&ctx.request_carrying(&ssa)?, true).await?;
    ensure!(status == 201, "stale cache not used: {status} {body}");
    ensure!(
        ctx.jwks.hits("tpp.jwks") >= 2,
        "the expired entry was not refetched"
    );
    // Without a cache, the outage is a clear 400.
    let url2 = ctx.jwks.serve(
        "never-up.jwks",
        Doc {
            status: 503,
            body: "down".into(),
            delay: Duration::ZERO,
        },
    );
    let ssa2 = ctx.ssa(|s| s["software_jwks_endpoint"] = json!(url2))?;
    let (status, body) = ctx.post(&ctx.request_carrying(&ssa2)?, true).await?;
    ensure_eq!(status, 400);
    ensure!(
        body["error_description"]
            .as_str()
            .unwrap_or_default()
            .contains("could not be fetched")
    );
    let _ = &ctx.rogue_rsa_pem;
    ctx.server.stop().await
}

/// A JWKS host that does not answer within `jwks.timeout_ms` gives a prompt 400.
async fn slow_jwks_times_out(backend: Backend) -> Result<()> {
    let ctx = Ctx::start(backend, "", "timeout_ms = 300").await?;
    let url = ctx.jwks.serve(
        "slow.jwks",
        Doc {
            status: 200,
            body: ctx.tpp_jwks.to_string(),
            delay: Duration::from_secs(3),
        },
    );
    let started = std::time::Instant::now();
    let (status, body) = ctx
        .post(
            &ctx.request_with_ssa(|s| s["software_jwks_endpoint"] = json!(url))?,
            true,
        )
        .await?;
    ensure_eq!(status, 400);
    ensure_eq!(body["error"], json!(ICM));
    ensure!(
        body["error_description"]
            .as_str()
            .unwrap_or_default()
            .contains("timed out"),
        "{body}"
    );
    ensure!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    ctx.server.stop().await
}

/// An SSA issuer whose JWKS is an https URL (fetched and cached like TPP JWKS).
async fn ssa_issuer_keys_from_an_https_url(backend: Backend) -> Result<()> {
    let tables = "[[open_banking.dcr.ssa_issuer]]\nname = \"Second Directory Ltd\"\njwks = \"https://localhost:{jwks_port}/directory2.jwks\"\n";
    let ctx = Ctx::start_full(backend, MANY_CLIENTS_PER_SOFTWARE, "", tables).await?;
    // The second directory signs with the "rogue" key; publish its public half.
    let rogue = KeyPair::from_pem(&ctx.rogue_rsa_pem)?;
    let jwk = dcr_server::sandbox::public_jwk(&rogue, "PS256")?;
    let kid = jwk["kid"].as_str().context("kid")?.to_string();
    ctx.jwks.set(
        "directory2.jwks",
        Doc::json(json!({"keys": [jwk]}).to_string()),
    );
    let mut claims = ctx.sandbox.ssa_claims();
    claims["iss"] = json!("Second Directory Ltd");
    let ssa = raw_jws(
        json!({"alg": "PS256", "kid": kid}),
        &claims,
        Some((&ctx.rogue_rsa, Algorithm::PS256)),
    )?;
    let (status, body) = ctx.post(&ctx.request_carrying(&ssa)?, true).await?;
    ensure!(status == 201, "{status} {body}");
    ensure_eq!(ctx.jwks.hits("directory2.jwks"), 1);
    // The same SSA claimed by the first directory does not verify with its keys.
    claims["iss"] = json!("OpenBanking Ltd");
    let forged = raw_jws(
        json!({"alg": "PS256", "kid": kid}),
        &claims,
        Some((&ctx.rogue_rsa, Algorithm::PS256)),
    )?;
    let (status, body) = ctx.post(&ctx.request_carrying(&forged)?, true).await?;
    ensure_eq!((status, body["error"].clone()), (400, json!(ISS)));
    ctx.server.stop().await
}

/// `transport_cert_in_jwks`: the transport certificate must be a `use: tls` key of the
/// software JWKS, by its `x5t#S256` or its `x5c[0]`; otherwise 400
/// `unapproved_software_statement`, and nothing is written.
async fn transport_certificate_in_the_software_jwks(backend: Backend) -> Result<()> {
    use base64::engine::general_purpose::STANDARD;
    let dcr = format!("{MANY_CLIENTS_PER_SOFTWARE}\ntransport_cert_in_jwks.enable = true");
    let ctx = Ctx::start(backend, &dcr, "").await?;
    let (der, thumbprint) = ctx.transport_der_and_x5t()?;
    let with_keys = |name: &str, extra: Value| -> Result<Req> {
        let mut jwks = ctx.tpp_jwks.clone();
        jwks["keys"].as_array_mut().context("keys")?.push(extra);
        let url = ctx.jwks.serve(name, Doc::json(jwks.to_string()));
        ctx.request_with_ssa(|s| s["software_jwks_endpoint"] = json!(url))
    };
    let cases = [
        (
            "the sandbox JWKS, without a tls key",
            ctx.request(|_| {})?,
            400,
        ),
        (
            "a tls key with the certificate's x5t#S256",
            with_keys(
                "t1.jwks",
                json!({"kty": "RSA", "use": "tls", "x5t#S256": thumbprint}),
            )?,
            201,
        ),
        (
            "a tls key with the certificate as x5c[0]",
            with_keys(
                "t2.jwks",
                json!({"kty": "RSA", "use": "tls", "x5c": [STANDARD.encode(&der)]}),
            )?,
            201,
        ),
        (
            "a tls key of another certificate",
            with_keys(
                "t3.jwks",
                json!({"kty": "RSA", "use": "tls", "x5t#S256": "b3RoZXI"}),
            )?,
            400,
        ),
        (
            "the certificate's thumbprint on a signing key",
            with_keys(
                "t4.jwks",
                json!({"kty": "RSA", "use": "sig", "x5t#S256": thumbprint}),
            )?,
            400,
        ),
    ];
    post_each(&ctx, cases.map(|(name, req, want)| (name, req, want, USS))).await?;
    ctx.server.stop().await
}

/// POSTs each named request (with the transport certificate): its status must be the one
/// wanted, and a 400 must carry the error code given and write no row.
async fn post_each(
    ctx: &Ctx,
    cases: impl IntoIterator<Item = (&str, Req, u16, &str)>,
) -> Result<()> {
    for (name, req, want, code) in cases {
        let before = ctx.counts().await?;
        let (status, body) = ctx.post(&req, true).await?;
        ensure!(status == want, "{name}: {status} {body}");
        if want == 400 {
            ensure_eq!(body["error"], json!(code));
            ensure_eq!(ctx.counts().await?, before);
        }
    }
    Ok(())
}

/// The directory's revoked keys (`software_jwks_revoked_endpoint`): a request signed with a
/// revoked `kid` is 400 `invalid_client_metadata`, a revoked transport certificate (by
/// `x5t#S256` or `x5c[0]`) 400 `unapproved_software_statement`, on POST and PUT alike, writing
/// nothing; an unreachable set lets the request through (counted); a location that breaks the
/// JWKS rules is refused.
async fn revoked_keys_refuse_registrations_and_updates(backend: Backend) -> Result<()> {
    use base64::engine::general_purpose::STANDARD;
    let ctx = Ctx::start(backend, MANY_CLIENTS_PER_SOFTWARE, "").await?;
    let (der, thumbprint) = ctx.transport_der_and_x5t()?;
    let kid = ctx.sandbox.tpp.kid_ps256.clone();
    // Each case its own location, so that no cached set is reused.
    let revoked = |name: &str, keys: Value| -> Result<Req> {
        let url = ctx
            .jwks
            .serve(name, Doc::json(json!({ "keys": keys }).to_string()));
        ctx.request_with_ssa(|s| s["software_jwks_revoked_endpoint"] = json!(url))
    };
    let (status, created) = ctx.post(&revoked("r0.jwks", json!([]))?, true).await?;
    ensure!(status == 201, "empty revoked set: {status} {created}");
    let cases = [
        (
            "the request's kid",
            revoked("r1.jwks", json!([{"kty": "RSA", "kid": kid}]))?,
            400,
            ICM,
        ),
        (
            "the transport certificate's x5t#S256",
            revoked(
                "r2.jwks",
                json!([{"kty": "RSA", "kid": "old-transport", "use": "tls", "x5t#S256": thumbprint}]),
            )?,
            400,
            USS,
        ),
        (
            "the transport certificate as x5c[0]",
            revoked(
                "r3.jwks",
                json!([{"kty": "RSA", "kid": "old", "x5c": [STANDARD.encode(&der)]}]),
            )?,
            400,
            USS,
        ),
        (
            "other keys only",
            revoked(
                "r4.jwks",
                json!([{"kty": "RSA", "kid": "someone-else", "x5t#S256": "b3RoZXI"}]),
            )?,
            201,
            "",
        ),
        (
            "an unreachable set",
            ctx.request_with_ssa(|s| {
                s["software_jwks_revoked_endpoint"] = json!(ctx.jwks.url("missing.jwks"))
            })?,
            201,
            "",
        ),
        (
            "a set over http",
            ctx.request_with_ssa(|s| {
                s["software_jwks_revoked_endpoint"] =
                    json!("http://keystore.example.com/revoked.jwks")
            })?,
            400,
            ICM,
        ),
    ];
    post_each(&ctx, cases).await?;
    // An update signed with a key the directory has revoked since: refused, nothing changes.
    let id = created["client_id"]
        .as_str()
        .context("client_id")?
        .to_string();
    let stored = ctx.store.get_client(&id).await?;
    let token = ctx.pkj_token(&id).await?;
    let http = ctx.tpp_client()?;
    let put = revoked("r5.jwks", json!([{"kty": "RSA", "kid": kid}]))?;
    let answer = http
        .put(ctx.env.url(&format!("{}/{id}", dcr_server::REGISTER_PATH)))
        .bearer_auth(&token)
        .header("content-type", "application/jwt")
        .body(put.body)
        .send()
        .await?;
    ensure_eq!(answer.status().as_u16(), 400);
    ensure_eq!(ctx.store.get_client(&id).await?, stored);
    let metrics = ctx.env.metrics().await?;
    for outcome in [
        "clean",
        "signing_key_revoked",
        "transport_key_revoked",
        "unavailable",
    ] {
        let label = format!("outcome=\"{outcome}\"");
        ensure!(
            metrics.has("dcr_revoked_keys_checks_total", &[&label]),
            "{outcome}: {metrics}"
        );
    }
    ctx.server.stop().await
}

/// The directory revokes keys after registration: the revoked-keys URL kept in the client's
/// row refuses a `private_key_jwt` assertion by the revoked key and `tls_client_auth` (and
/// GET/DELETE) over a revoked transport certificate, once the cached set expires.
async fn revoked_keys_refuse_tokens_and_management(backend: Backend) -> Result<()> {
    let ctx = Ctx::start(backend, MANY_CLIENTS_PER_SOFTWARE, "cache_ttl = 1").await?;
    let (_, thumbprint) = ctx.transport_der_and_x5t()?;
    let kid = ctx.sandbox.tpp.kid_ps256.clone();
    let url = ctx.jwks.serve("rk.jwks", Doc::json(r#"{"keys": []}"#));
    let ssa = ctx.ssa(|s| s["software_jwks_revoked_endpoint"] = json!(url))?;
    let register = |method: &str| -> Result<Req> {
        let mut claims = ctx.claims(method)?;
        claims["software_statement"] = json!(ssa);
        Ok(Req::jwt(ctx.sandbox.sign_as_tpp(&claims, "PS256")?))
    };
    let (status, pkj) = ctx.post(&register("private_key_jwt")?, true).await?;
    ensure!(status == 201, "{status} {pkj}");
    let (status, tls) = ctx.post(&register("tls_client_auth")?, true).await?;
    ensure!(status == 201, "{status} {tls}");
    let pkj_id = pkj["client_id"].as_str().context("client_id")?.to_string();
    let tls_id = tls["client_id"].as_str().context("client_id")?.to_string();
    let stored: Option<String> = ctx
        .store
        .get_client(&pkj_id)
        .await?
        .context("stored")?
        .jwks_revoked_uri;
    ensure_eq!(stored.as_deref(), Some(url.as_str()));
    let token = ctx.pkj_token(&pkj_id).await?;
    ensure_eq!(ctx.tls_token(&tls_id).await?.0, 200);

    // The signing key is revoked: assertions by it are refused; the transport is still fine.
    ctx.jwks.set(
        "rk.jwks",
        Doc::json(json!({"keys": [{"kty": "RSA", "kid": kid}]}).to_string()),
    );
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let refused = ctx.pkj_token(&pkj_id).await;
    ensure!(refused.is_err(), "a token by a revoked key: {refused:?}");
    ensure_eq!(ctx.tls_token(&tls_id).await?.0, 200);
    let http = ctx.tpp_client()?;
    let manage = |method: reqwest::Method| {
        http.request(
            method,
            ctx.env
                .url(&format!("{}/{pkj_id}", dcr_server::REGISTER_PATH)),
        )
        .bearer_auth(&token)
        .send()
    };
    ensure_eq!(manage(reqwest::Method::GET).await?.status().as_u16(), 200);

    // The transport certificate is revoked: tls_client_auth, GET and DELETE are refused.
    ctx.jwks.set(
        "rk.jwks",
        Doc::json(
            json!({"keys": [{"kty": "RSA", "kid": "t", "use": "tls", "x5t#S256": thumbprint}]})
                .to_string(),
        ),
    );
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let (status, body) = ctx.tls_token(&tls_id).await?;
    ensure!(
        status == 401 && body["error"] == "invalid_client",
        "{status} {body}"
    );
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let answer = manage(method.clone()).await?;
        let status = answer.status().as_u16();
        let body: Value = answer.json().await?;
        ensure!(
            status == 401 && body["error"] == "invalid_client",
            "{method}: {status} {body}"
        );
    }
    ensure!(
        ctx.store.get_client(&pkj_id).await?.is_some(),
        "DELETE was refused"
    );
    ctx.server.stop().await
}
