//! Hostile input corpus: generated inputs against POST and PUT /register, /token and the
//! management endpoints, plus transport-level abuse. Every input must get a 4xx JSON error (or,
//! for transport abuse, a closed connection), never a 5xx or a panic, and must add no row: the
//! test reads the database after every input.

// The shared fixtures of tests/it, of which this binary uses only a part.
#[allow(dead_code)]
#[path = "it/fixtures.rs"]
mod fixtures;
#[allow(dead_code)]
#[path = "it/support.rs"]
mod support;

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fixtures::{Ctx, MANY_CLIENTS_PER_SOFTWARE, raw_jws};
use jsonwebtoken::{Algorithm, EncodingKey};
use libtest_mimic::{Arguments, Trial};
use serde_json::{Value, json};
use support::{Backend, count_rows, token_request_with_assertion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What one hostile input is.
enum Probe {
    /// POST /register with this body and content type.
    Register(Vec<u8>, &'static str),
    /// PUT /register/{the test client} with this body, with a valid token.
    Put(Vec<u8>),
    /// POST /token with this raw form body and optional Authorization header.
    Token(Vec<u8>, Option<String>),
    /// A management call on this path suffix with this Authorization header.
    Manage(reqwest::Method, String, Option<String>),
}

fn b64(s: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(s)
}

/// The claims of a valid registration, with `f` applied, signed with the TPP's real key.
fn signed(c: &Ctx, f: impl FnOnce(&mut Value)) -> Result<Vec<u8>> {
    Ok(c.request(f)?.body.into_bytes())
}

fn corpus(c: &Ctx) -> Result<Vec<(String, Probe)>> {
    let mut out: Vec<(String, Probe)> = Vec::new();
    let mut add = |name: String, p: Probe| out.push((name, p));
    let valid = c.request(|_| {})?.body;
    let parts: Vec<&str> = valid.split('.').collect();
    let reg = |b: Vec<u8>| Probe::Register(b, "application/jwt");

    // --- structure: truncation, overlong parts, bad base64, non-UTF-8, nesting ---
    for cut in [
        1,
        7,
        20,
        parts[0].len(),
        parts[0].len() + 1,
        valid.len() / 2,
        valid.len() - 40,
        valid.len() - 1,
    ] {
        add(
            format!("truncated at {cut}"),
            reg(valid.as_bytes()[..cut].to_vec()),
        );
    }
    add(
        "overlong header".into(),
        reg(format!(
            "{}.{}.{}",
            b64(format!(
                "{{\"alg\":\"PS256\",\"x\":\"{}\"}}",
                "a".repeat(40_000)
            )),
            parts[1],
            parts[2]
        )
        .into_bytes()),
    );
    add(
        "overlong signature".into(),
        reg(format!("{}.{}.{}", parts[0], parts[1], "A".repeat(50_000)).into_bytes()),
    );
    for (i, bad) in ["!!!!", "a=b=", "+/+/", "\u{1F600}", "%41%41"]
        .iter()
        .enumerate()
    {
        add(
            format!("bad base64 in header #{i}"),
            reg(format!("{bad}.{}.{}", parts[1], parts[2]).into_bytes()),
        );
        add(
            format!("bad base64 in payload #{i}"),
            reg(format!("{}.{bad}.{}", parts[0], parts[2]).into_bytes()),
        );
        add(
            format!("bad base64 in signature #{i}"),
            reg(format!("{}.{}.{bad}", parts[0], parts[1]).into_bytes()),
        );
    }
    for (i, bytes) in [
        vec![0xff, 0xfe, 0xfd],
        vec![0xc3, 0x28],
        b"eyJ\x00.a.b".to_vec(),
        vec![0x80; 100],
        b"\xed\xa0\x80".to_vec(),
    ]
    .into_iter()
    .enumerate()
    {
        add(format!("non-UTF-8 body #{i}"), reg(bytes));
    }
    for body in [
        "",
        ".",
        "..",
        "...",
        "a.b.c.d.e",
        "   ",
        "\n\n",
        "null",
        "{}",
        "[]",
    ] {
        add(
            format!("degenerate body {body:?}"),
            reg(body.as_bytes().to_vec()),
        );
    }
    let key = c.tpp_rsa_key()?;
    let kid = c.sandbox.tpp.kid_ps256.clone();
    let header = json!({"alg": "PS256", "kid": kid});
    let sign_raw = |payload: &str| -> Result<Vec<u8>> {
        let input = format!("{}.{}", b64(header.to_string()), b64(payload));
        let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &key, Algorithm::PS256)?;
        Ok(format!("{input}.{sig}").into_bytes())
    };
    add(
        "deeply nested JSON".into(),
        reg(sign_raw(&format!(
            "{{\"a\":{}{}}}",
            "[".repeat(5000),
            "]".repeat(5000)
        ))?),
    );
    add("payload a JSON array".into(), reg(sign_raw("[1,2,3]")?));
    add("payload a JSON string".into(), reg(sign_raw("\"claims\"")?));
    add("payload not JSON".into(), reg(sign_raw("iss=x&exp=1")?));
    let mut claims = c.claims("private_key_jwt")?;
    let iss = claims["iss"].as_str().context("iss")?.to_string();
    claims.as_object_mut().context("obj")?.remove("iss");
    let text = claims.to_string();
    let dup = format!(
        "{{\"iss\":\"{iss}\",\"iss\":\"AnotherSoftware\",{}",
        &text[1..]
    );
    add("duplicate iss keys".into(), reg(sign_raw(&dup)?));
    add("duplicate keys in the header".into(), {
        let input = format!(
            "{}.{}",
            b64(format!(
                "{{\"alg\":\"PS256\",\"kid\":\"{kid}\",\"alg\":\"none\"}}"
            )),
            parts[1]
        );
        let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &key, Algorithm::PS256)?;
        reg(format!("{input}.{sig}").into_bytes())
    });

    // --- wrong JSON types for every claim ---
    let claims_list = [
        "iss",
        "exp",
        "iat",
        "aud",
        "jti",
        "redirect_uris",
        "token_endpoint_auth_method",
        "grant_types",
        "response_types",
        "scope",
        "software_statement",
        "application_type",
        "id_token_signed_response_alg",
        "request_object_signing_alg",
        "token_endpoint_auth_signing_alg",
        "software_id",
    ];
    // Optional claims may be null (treated as absent); numbers are right for exp and iat.
    let optional = ["response_types", "software_id"];
    for claim in claims_list {
        for (label, value) in [
            ("a number", json!(12345)),
            ("an array", json!([1])),
            ("an object", json!({"a": 1})),
            ("null", Value::Null),
            ("true", json!(true)),
        ] {
            if (value.is_null() && optional.contains(&claim))
                || (value.is_number() && (claim == "exp" || claim == "iat"))
            {
                continue;
            }
            add(
                format!("{claim} is {label}"),
                reg(signed(c, |r| r[claim] = value)?),
            );
        }
    }
    for claim in ["exp", "iat"] {
        add(
            format!("{claim} is a huge number"),
            reg(signed(c, |r| r[claim] = json!(1e300))?),
        );
        add(
            format!("{claim} is negative"),
            reg(signed(c, |r| r[claim] = json!(-1))?),
        );
        add(
            format!("{claim} is a numeric string"),
            reg(signed(c, |r| r[claim] = json!("1795713215"))?),
        );
    }

    // --- huge arrays and strings ---
    add(
        "100000 redirect URIs".into(),
        reg(signed(c, |r| {
            r["redirect_uris"] = json!(vec!["https://tpp.example.com/callback"; 100_000])
        })?),
    );
    add(
        "1000 redirect URIs".into(),
        reg(signed(c, |r| {
            r["redirect_uris"] = json!(vec!["https://tpp.example.com/x"; 1000])
        })?),
    );
    add(
        "a 60 KB jti".into(),
        reg(signed(c, |r| r["jti"] = json!("j".repeat(30_000)))?),
    );
    add(
        "a 30 KB scope".into(),
        reg(signed(c, |r| r["scope"] = json!("accounts ".repeat(3000)))?),
    );
    add("1 MB body".into(), reg(vec![b'a'; 1 << 20]));
    add(
        "500 distinct unknown grant types".into(),
        reg(signed(c, |r| {
            r["grant_types"] = json!((0..500).map(|i| format!("grant-{i}")).collect::<Vec<_>>())
        })?),
    );

    // --- alg confusion, crit, kid injection ---
    let claims = c.claims("private_key_jwt")?;
    let dir_secret = std::fs::read(c.env.sandbox_dir.join("directory.jwks"))?;
    let hs = EncodingKey::from_secret(&dir_secret);
    for (name, header, signer) in [
        ("alg none", json!({"alg": "none", "kid": kid}), None),
        ("alg NONE", json!({"alg": "NONE", "kid": kid}), None),
        (
            "alg HS256 keyed with the directory JWKS",
            json!({"alg": "HS256", "kid": kid}),
            Some((&hs, Algorithm::HS256)),
        ),
        (
            "alg HS512",
            json!({"alg": "HS512", "kid": kid}),
            Some((&hs, Algorithm::HS512)),
        ),
        (
            "alg RS256",
            json!({"alg": "RS256", "kid": kid}),
            Some((&key, Algorithm::RS256)),
        ),
        (
            "alg lower-case ps256",
            json!({"alg": "ps256", "kid": kid}),
            Some((&key, Algorithm::PS256)),
        ),
        (
            "alg with a space",
            json!({"alg": "PS256 ", "kid": kid}),
            Some((&key, Algorithm::PS256)),
        ),
        (
            "alg a number",
            json!({"alg": 256, "kid": kid}),
            Some((&key, Algorithm::PS256)),
        ),
        (
            "alg missing",
            json!({"kid": kid}),
            Some((&key, Algorithm::PS256)),
        ),
        (
            "alg an array",
            json!({"alg": ["PS256"], "kid": kid}),
            Some((&key, Algorithm::PS256)),
        ),
        (
            "crit b64",
            json!({"alg": "PS256", "kid": kid, "crit": ["b64"], "b64": false}),
            Some((&key, Algorithm::PS256)),
        ),
        (
            "crit empty",
            json!({"alg": "PS256", "kid": kid, "crit": []}),
            Some((&key, Algorithm::PS256)),
        ),
        (
            "crit exp",
            json!({"alg": "PS256", "kid": kid, "crit": ["exp"]}),
            Some((&key, Algorithm::PS256)),
        ),
        (
            "kid path traversal",
            json!({"alg": "PS256", "kid": "../../../../etc/passwd"}),
            Some((&key, Algorithm::PS256)),
        ),
        (
            "kid SQL injection",
            json!({"alg": "PS256", "kid": "' OR '1'='1"}),
            Some((&key, Algorithm::PS256)),
        ),
        (
            "kid with NUL",
            json!({"alg": "PS256", "kid": "a\u{0}b"}),
            Some((&key, Algorithm::PS256)),
        ),
        (
            "kid of 20 KB",
            json!({"alg": "PS256", "kid": "k".repeat(20_000)}),
            Some((&key, Algorithm::PS256)),
        ),
        (
            "kid a number",
            json!({"alg": "PS256", "kid": 7}),
            Some((&key, Algorithm::PS256)),
        ),
        (
            "kid an object",
            json!({"alg": "PS256", "kid": {"k": 1}}),
            Some((&key, Algorithm::PS256)),
        ),
        (
            "jku to the attacker",
            json!({"alg": "PS256", "kid": kid, "jku": "https://attacker.example/jwks"}),
            Some((&key, Algorithm::PS256)),
        ),
        (
            "x5u to the attacker",
            json!({"alg": "PS256", "kid": kid, "x5u": "https://attacker.example/c.pem"}),
            Some((&key, Algorithm::PS256)),
        ),
        (
            "embedded jwk",
            json!({"alg": "PS256", "kid": kid, "jwk": c.tpp_public_jwk("PS256")?}),
            Some((&key, Algorithm::PS256)),
        ),
    ] {
        add(
            name.to_string(),
            reg(raw_jws(header, &claims, signer)?.into_bytes()),
        );
    }

    // --- control characters and injections in values ---
    for (i, uri) in [
        "https://tpp.example.com/callback\r\nSet-Cookie: a=b",
        "https://tpp.example.com/call\u{0}back",
        "https://tpp.example.com/\tcb",
        "https://tpp.example.com/\u{202e}kcabllac",
        "javascript:alert(1)",
        "https://tpp.example.com:99999/cb",
        "https://user:pass@tpp.example.com/callback",
        "HTTPS://TPP.EXAMPLE.COM/CALLBACK",
    ]
    .iter()
    .enumerate()
    {
        add(
            format!("redirect URI with control or odd characters #{i}"),
            reg(signed(c, |r| r["redirect_uris"] = json!([uri]))?),
        );
    }
    for (i, s) in [
        "'; DROP TABLE clients; --",
        "\" OR 1=1 --",
        "$(reboot)",
        "{{7*7}}",
        "%00",
    ]
    .iter()
    .enumerate()
    {
        add(
            format!("injection in jti #{i}"),
            reg(signed(c, |r| {
                r["jti"] = json!(s);
                r["iss"] = json!(s);
            })?),
        );
        add(
            format!("injection in the SSA software_id #{i}"),
            reg(c
                .request_with_ssa(|x| x["software_id"] = json!(s))?
                .body
                .into_bytes()),
        );
    }
    add(
        "SSA org_id of 10 KB".into(),
        reg(c
            .request_with_ssa(|x| x["org_id"] = json!("o".repeat(10_000)))?
            .body
            .into_bytes()),
    );
    add(
        "SSA roles a string".into(),
        reg(c
            .request_with_ssa(|x| x["software_roles"] = json!("AISP"))?
            .body
            .into_bytes()),
    );
    add(
        "SSA redirect URIs numbers".into(),
        reg(c
            .request_with_ssa(|x| x["software_redirect_uris"] = json!([1, 2]))?
            .body
            .into_bytes()),
    );

    // --- content types ---
    for ct in [
        "application/json",
        "text/plain",
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
        "application/jwt\r\nX: y",
    ] {
        out.push((
            format!("content type {ct:?}"),
            Probe::Register(valid.clone().into_bytes(), ct),
        ));
    }

    // --- PUT ---
    out.push((
        "PUT with a truncated JWS".into(),
        Probe::Put(valid.as_bytes()[..valid.len() / 2].to_vec()),
    ));
    out.push(("PUT with non-UTF-8".into(), Probe::Put(vec![0xff; 64])));
    out.push((
        "PUT with another client_id".into(),
        Probe::Put(signed(c, |r| r["client_id"] = json!("x"))?),
    ));
    out.push((
        "PUT with client_id a number".into(),
        Probe::Put(signed(c, |r| r["client_id"] = json!(5))?),
    ));
    out.push(("PUT with 1 MB".into(), Probe::Put(vec![b'x'; 1 << 20])));
    out.push((
        "PUT with alg none".into(),
        Probe::Put(
            raw_jws(json!({"alg": "none"}), &c.claims("private_key_jwt")?, None)?.into_bytes(),
        ),
    ));

    // --- token endpoint ---
    let tok = |s: &str| Probe::Token(s.as_bytes().to_vec(), None);
    for (name, body) in [
        ("empty form", ""),
        ("no grant_type", "scope=openid"),
        (
            "grant_type password",
            "grant_type=password&username=a&password=b",
        ),
        (
            "grant_type authorization_code",
            "grant_type=authorization_code&code=x",
        ),
        (
            "client_id SQL injection",
            "grant_type=client_credentials&client_id=%27%20OR%201%3D1%20--",
        ),
        (
            "client_id of 20 KB",
            &format!(
                "grant_type=client_credentials&client_id={}",
                "c".repeat(20_000)
            ),
        ),
        (
            "garbage assertion",
            "grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=garbage",
        ),
        (
            "assertion without type",
            "grant_type=client_credentials&client_assertion=a.b.c",
        ),
        (
            "wrong assertion type",
            "grant_type=client_credentials&client_assertion_type=saml&client_assertion=a.b.c",
        ),
        (
            "repeated grant_type",
            "grant_type=client_credentials&grant_type=password",
        ),
        (
            "scope injection",
            "grant_type=client_credentials&client_id=x&scope=%00%0d%0a",
        ),
        ("bad percent-encoding", "grant_type=%zz"),
        (
            "secret for an unknown client",
            "grant_type=client_credentials&client_id=nobody&client_secret=s",
        ),
        (
            "two auth methods",
            "grant_type=client_credentials&client_id=x&client_secret=s&client_assertion=a.b.c",
        ),
    ] {
        out.push((format!("token: {name}"), tok(body)));
    }
    out.push((
        "token: non-UTF-8 form".into(),
        Probe::Token(vec![0xff, 0xfe, b'=', 0x80], None),
    ));
    let claims = json!({"iss": "x", "sub": "x", "aud": "y", "exp": 9_999_999_999i64, "jti": "j"});
    out.push(("token: assertion alg none".into(), Probe::Token(format!("grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={}", raw_jws(json!({"alg": "none"}), &claims, None)?).into_bytes(), None)));
    out.push(("token: assertion HS256".into(), Probe::Token(format!("grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={}", raw_jws(json!({"alg": "HS256"}), &claims, Some((&hs, Algorithm::HS256)))?).into_bytes(), None)));
    for (name, header) in [
        ("Basic garbage", "Basic !!!"),
        (
            "Basic without colon",
            &format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("nocolon")
            ),
        ),
        (
            "Basic with SQL",
            &format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("' OR 1=1 --:x")
            ),
        ),
        ("Bearer on the token endpoint", "Bearer abc"),
        ("Digest", "Digest username=x"),
    ] {
        out.push((
            format!("token: {name}"),
            Probe::Token(
                b"grant_type=client_credentials".to_vec(),
                Some(header.to_string()),
            ),
        ));
    }

    // --- management paths and tokens ---
    let bearer = |t: &str| Some(format!("Bearer {t}"));
    for (name, path, auth) in [
        ("id SQL injection", "%27%20OR%20%271%27%3D%271", bearer("x")),
        ("id path traversal", "..%2F..%2Fetc%2Fpasswd", bearer("x")),
        ("id of 8 KB", &"i".repeat(8000), bearer("x")),
        ("id with NUL", "a%00b", bearer("x")),
        ("id unicode", "%E2%80%AE%F0%9F%98%80", bearer("x")),
        (
            "token garbage",
            "00000000-0000-4000-8000-000000000000",
            bearer("not a token"),
        ),
        (
            "token of 10 KB",
            "00000000-0000-4000-8000-000000000000",
            bearer(&"t".repeat(10_000)),
        ),
        (
            "token with quotes",
            "00000000-0000-4000-8000-000000000000",
            bearer("\"x\""),
        ),
        ("no token", "00000000-0000-4000-8000-000000000000", None),
        (
            "bare Bearer",
            "00000000-0000-4000-8000-000000000000",
            Some("Bearer".to_string()),
        ),
        (
            "Basic instead of Bearer",
            "00000000-0000-4000-8000-000000000000",
            Some("Basic YTpi".to_string()),
        ),
    ] {
        for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
            out.push((
                format!("{method} {name}"),
                Probe::Manage(method.clone(), path.to_string(), auth.clone()),
            ));
        }
    }
    Ok(out)
}

async fn send(
    c: &Ctx,
    client_id: &str,
    token: &str,
    probe: &Probe,
) -> Result<Option<(u16, Value)>> {
    let client = c.tpp_client()?;
    let register = c.env.url(support_path());
    let builder = match probe {
        Probe::Register(body, ct) => {
            let mut b = client.post(register).body(body.clone());
            if let Ok(v) = reqwest::header::HeaderValue::from_str(ct) {
                b = b.header("content-type", v);
            }
            b
        }
        Probe::Put(body) => client
            .put(format!("{register}/{client_id}"))
            .header("content-type", "application/jwt")
            .bearer_auth(token)
            .body(body.clone()),
        Probe::Token(body, auth) => {
            let mut b = client
                .post(c.env.url("/token"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body.clone());
            if let Some(a) = auth {
                b = b.header("authorization", a);
            }
            b
        }
        Probe::Manage(method, path, auth) => {
            let mut b = client.request(method.clone(), format!("{register}/{path}"));
            if let Some(a) = auth {
                if let Ok(v) = reqwest::header::HeaderValue::from_str(a) {
                    b = b.header("authorization", v);
                }
            }
            b
        }
    };
    let response = match builder.send().await {
        Ok(r) => r,
        // The server may close the connection on transport-level abuse.
        Err(e) if e.is_connect() || e.is_request() || e.is_body() => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    let body: Value = serde_json::from_str(&text)
        .with_context(|| format!("status {status}, not JSON: {text:.120}"))?;
    Ok(Some((status, body)))
}

fn support_path() -> &'static str {
    dcr_server::REGISTER_PATH
}

async fn corpus_gets_4xx_and_writes_nothing() -> Result<()> {
    let c = Ctx::start(Backend::Sqlite, MANY_CLIENTS_PER_SOFTWARE, "").await?;
    // One real client, for PUT.
    let created: Value = {
        let (status, body) = c.post(&c.request(|_| {})?, true).await?;
        ensure!(status == 201, "{body}");
        body
    };
    let client_id = created["client_id"].as_str().context("id")?.to_string();
    let token = c.pkj_token(&client_id).await?;

    let corpus = corpus(&c)?;
    ensure!(corpus.len() >= 150, "only {} inputs", corpus.len());
    let tables = ["clients", "tokens", "jtis"];
    let mut baseline = Vec::new();
    for t in tables {
        baseline.push(count_rows(&c.store, t).await?);
    }
    let mut failures = Vec::new();
    let mut closed = 0;
    for (name, probe) in &corpus {
        match send(&c, &client_id, &token, probe).await {
            Ok(Some((status, body))) => {
                if !(400..500).contains(&status) || !body["error"].is_string() {
                    failures.push(format!("{name}: {status} {body}"));
                }
            }
            Ok(None) => closed += 1,
            Err(e) => failures.push(format!("{name}: {e:#}")),
        }
        let mut now = Vec::new();
        for t in tables {
            now.push(count_rows(&c.store, t).await?);
        }
        if now != baseline {
            failures.push(format!("{name}: rows changed {baseline:?} -> {now:?}"));
            baseline = now;
        }
    }
    // The test client and its token still work: nothing above broke the server.
    let get = c
        .env
        .client(Some((&c.transport.0, &c.transport.1)))?
        .get(
            c.env
                .url(&format!("{}/{client_id}", dcr_server::REGISTER_PATH)),
        )
        .bearer_auth(&token)
        .send()
        .await?;
    ensure!(
        get.status().as_u16() == 200,
        "the server stopped working: {}",
        get.status()
    );
    if !failures.is_empty() {
        bail!(
            "{} of {} inputs misbehaved:\n{}",
            failures.len(),
            corpus.len(),
            failures.join("\n")
        );
    }
    println!(
        "{} hostile inputs: all refused with a 4xx JSON error ({closed} closed connections), 0 rows written",
        corpus.len()
    );
    c.server.stop().await
}

/// What a claim is replaced by in the type-confusion pass (`None`: dropped).
fn confusions() -> Vec<(&'static str, Option<Value>)> {
    vec![
        ("dropped", None),
        ("null", Some(Value::Null)),
        ("true", Some(json!(true))),
        ("false", Some(json!(false))),
        ("0", Some(json!(0))),
        ("-1", Some(json!(-1))),
        ("i64::MAX", Some(json!(i64::MAX))),
        ("u64::MAX", Some(json!(u64::MAX))),
        ("1e308", Some(json!(1e308))),
        ("empty string", Some(json!(""))),
        ("5000 characters", Some(json!("a".repeat(5000)))),
        ("control characters", Some(json!("a\u{1}\u{1f}\u{7f}b"))),
        ("NUL", Some(json!("a\u{0}b"))),
        ("emoji", Some(json!("\u{1f600}"))),
        ("empty array", Some(json!([]))),
        ("array", Some(json!(["a\u{0}b", 1, null]))),
        ("empty object", Some(json!({}))),
        ("object", Some(json!({"a": 1}))),
    ]
}

/// Sets (or, for `None`, removes) `key` in `claims`.
fn confuse(claims: &mut Value, key: &str, value: &Option<Value>) {
    if let Some(m) = claims.as_object_mut() {
        match value {
            Some(v) => {
                m.insert(key.to_string(), v.clone());
            }
            None => {
                m.remove(key);
            }
        }
    }
}

/// Every claim of the request, of the SSA and of the client assertion replaced in turn by each
/// of [`confusions`], validly signed so that it reaches the validators: never a 5xx, always a
/// JSON error, and every client that is registered can be read back with a token.
async fn type_confusion_pass(backend: Backend) -> Result<()> {
    let c = Ctx::start(
        backend,
        &format!("{MANY_CLIENTS_PER_SOFTWARE}\nssa_jti_validation.enable = true"),
        "",
    )
    .await?;
    let http = c.tpp_client()?;
    let token_url = c.env.url("/token");
    let assertion_aud = format!("{}/token", c.env.issuer());
    let mut failures = Vec::new();
    let mut registered = Vec::new();
    let mut sent = 0;

    let request_keys: Vec<String> = c
        .claims("private_key_jwt")?
        .as_object()
        .context("claims")?
        .keys()
        .cloned()
        .collect();
    let ssa_keys: Vec<String> = c
        .sandbox
        .ssa_claims()
        .as_object()
        .context("ssa")?
        .keys()
        .cloned()
        .collect();
    for (what, value) in confusions() {
        let mut bodies: Vec<(String, String)> = Vec::new();
        for key in &request_keys {
            let mut claims = c.claims("private_key_jwt")?;
            confuse(&mut claims, key, &value);
            bodies.push((
                format!("request {key}: {what}"),
                c.sandbox.sign_as_tpp(&claims, "PS256")?,
            ));
        }
        let mut tls = c.claims("tls_client_auth")?;
        confuse(&mut tls, "tls_client_auth_subject_dn", &value);
        bodies.push((
            format!("request tls_client_auth_subject_dn: {what}"),
            c.sandbox.sign_as_tpp(&tls, "PS256")?,
        ));
        for key in &ssa_keys {
            let mut ssa = c.sandbox.ssa_claims();
            confuse(&mut ssa, key, &value);
            let ssa = c.sandbox.sign_ssa(&ssa)?;
            let mut claims = c.claims("private_key_jwt")?;
            claims["software_statement"] = json!(ssa);
            bodies.push((
                format!("SSA {key}: {what}"),
                c.sandbox.sign_as_tpp(&claims, "PS256")?,
            ));
        }
        for (name, body) in bodies {
            sent += 1;
            let answer = http
                .post(c.env.url(support_path()))
                .header("content-type", "application/jwt")
                .body(body)
                .send()
                .await?;
            let status = answer.status().as_u16();
            let body: Value = answer.json().await.unwrap_or(Value::Null);
            match status {
                201 => registered.push((
                    name,
                    body["client_id"].as_str().unwrap_or_default().to_string(),
                )),
                400..=499 if body["error"].is_string() => {}
                _ => failures.push(format!("{name}: {status} {body:.200}")),
            }
        }
        // The client assertion at /token, for the first registered client.
        if let Some((_, id)) = registered.first() {
            for key in ["iss", "sub", "aud", "jti", "iat", "exp"] {
                let now = dcr_server::clock::now();
                let mut claims = json!({"iss": id, "sub": id, "aud": assertion_aud,
                    "jti": uuid::Uuid::new_v4().to_string(), "iat": now, "exp": now + 300});
                confuse(&mut claims, key, &value);
                let assertion = c.sandbox.sign_as_tpp(&claims, "PS256")?;
                sent += 1;
                let answer = token_request_with_assertion(&http, &token_url, &assertion)
                    .send()
                    .await?;
                let status = answer.status().as_u16();
                let body: Value = answer.json().await.unwrap_or(Value::Null);
                if !((200..300).contains(&status)
                    || (400..500).contains(&status) && body["error"].is_string())
                {
                    failures.push(format!("assertion {key}: {what}: {status} {body:.200}"));
                }
            }
        }
    }
    // Identifiers that are not claims: a form's client_id, a path's ClientId.
    let some_token = match registered.first() {
        Some((_, id)) => c.pkj_token(id).await?,
        None => String::new(),
    };
    for id in ["a\u{0}b", &"x".repeat(5000), "\u{1f600}"] {
        let printable: String = id.chars().take(20).collect();
        sent += 2;
        let answer = http
            .post(&token_url)
            .form(&[("grant_type", "client_credentials"), ("client_id", id)])
            .send()
            .await?;
        let status = answer.status().as_u16();
        if !(400..500).contains(&status) {
            failures.push(format!("/token client_id {printable:?}: {status}"));
        }
        let path = format!("{}/{}", support_path(), id.replace('\u{0}', "%00"));
        let answer = http
            .get(c.env.url(&path))
            .bearer_auth(&some_token)
            .send()
            .await?;
        let status = answer.status().as_u16();
        if !(400..500).contains(&status) {
            failures.push(format!("GET ClientId {printable:?}: {status}"));
        }
    }
    // Every registered client reads back with a token of its own.
    for (name, id) in &registered {
        let token = match c.pkj_token(id).await {
            Ok(token) => token,
            Err(e) => {
                failures.push(format!("{name}: registered, but {e:#}"));
                continue;
            }
        };
        let get = http
            .get(c.env.url(&format!("{}/{id}", support_path())))
            .bearer_auth(token)
            .send()
            .await?;
        if get.status() != 200 {
            failures.push(format!(
                "{name}: registered, but GET answers {}",
                get.status()
            ));
        }
    }
    if !failures.is_empty() {
        bail!(
            "{} of {sent} inputs misbehaved:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
    println!(
        "{sent} type-confused inputs on {backend:?}: no 5xx; {} registered clients read back",
        registered.len()
    );
    c.server.stop().await
}

/// Header floods, a huge header, and a slowloris client: refused or disconnected, and the
/// server keeps serving.
async fn transport_abuse_is_cut_off() -> Result<()> {
    let c = Ctx::start_custom(Backend::Sqlite, "request_timeout_ms = 2000", "", "", "").await?;
    let client = c.env.client(None)?;
    // 300 headers of 1 KB, and one header of 100 KB: over the 16 KiB head limit.
    let mut flood = client.get(c.env.url("/health"));
    for i in 0..300 {
        flood = flood.header(format!("x-flood-{i}"), "v".repeat(1000));
    }
    let r = flood.send().await;
    ensure!(
        r.as_ref()
            .map(|r| r.status().is_client_error())
            .unwrap_or(true),
        "header flood: {:?}",
        r.map(|r| r.status())
    );
    let r = client
        .get(c.env.url("/health"))
        .header("x-big", "b".repeat(100_000))
        .send()
        .await;
    ensure!(
        r.as_ref()
            .map(|r| r.status().is_client_error())
            .unwrap_or(true),
        "huge header: {:?}",
        r.map(|r| r.status())
    );

    // Slowloris over TLS + HTTP/1.1: a request head that never finishes is cut off.
    let connector = support::tls_connector(&c.env.ca_pem()?, None)?;
    let tcp = tokio::net::TcpStream::connect(c.server.addr).await?;
    let mut tls = connector
        .connect(
            rustls::pki_types::ServerName::try_from("localhost")?.to_owned(),
            tcp,
        )
        .await?;
    tls.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n")
        .await?;
    let started = std::time::Instant::now();
    let mut buf = [0u8; 256];
    let mut cut_off = false;
    for _ in 0..40 {
        // One header line every 500 ms: never completes.
        if tls.write_all(b"X-Slow: 1\r\n").await.is_err() {
            cut_off = true;
            break;
        }
        match tokio::time::timeout(Duration::from_millis(500), tls.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                cut_off = true;
                break;
            }
            Ok(Ok(_)) => {
                // A 408 or similar answer is also a cut-off.
                cut_off = true;
                break;
            }
            Err(_) => {}
        }
    }
    ensure!(
        cut_off,
        "a slowloris connection was kept open for {:?}",
        started.elapsed()
    );
    ensure!(started.elapsed() < Duration::from_secs(20));
    let ok = client.get(c.env.url("/health")).send().await?;
    ensure_eq(ok.status().as_u16(), 200)?;
    c.server.stop().await
}

fn ensure_eq(a: u16, b: u16) -> Result<()> {
    ensure!(a == b, "{a} != {b}");
    Ok(())
}

fn main() {
    let args = Arguments::from_args();
    let trials = vec![
        Trial::test("hostile_corpus_gets_4xx_and_writes_nothing", || {
            support::runtime()
                .block_on(corpus_gets_4xx_and_writes_nothing())
                .map_err(|e| format!("{e:#}").into())
        }),
        Trial::test("type_confusion_pass::sqlite", || {
            support::runtime()
                .block_on(type_confusion_pass(Backend::Sqlite))
                .map_err(|e| format!("{e:#}").into())
        }),
        {
            let postgres = std::env::var(support::POSTGRES_ENV).is_ok_and(|u| !u.is_empty());
            Trial::test("type_confusion_pass::postgres", || {
                support::runtime()
                    .block_on(type_confusion_pass(Backend::Postgres))
                    .map_err(|e| format!("{e:#}").into())
            })
            .with_ignored_flag(!postgres)
        },
        Trial::test("transport_abuse_is_cut_off", || {
            support::runtime()
                .block_on(transport_abuse_is_cut_off())
                .map_err(|e| format!("{e:#}").into())
        }),
    ];
    libtest_mimic::run(&args, trials).exit();
}
