//! A refused registration or update goes to the audit log with its error code and reason
//! (never a secret), and to the metrics. Server-side failures are not the TPP's doing: no
//! audit record.

use serde_json::json;

use super::error::RegistrationError;
use crate::domain::{AuditOutcome, SpecVersion};
use crate::jose::jws::unverified_claims;
use crate::store::{AuditLog, AuditRecord};
use crate::text::printable;

/// Records the refusal `e` on the path of `version`; `audit` (its action a register or an
/// update, its outcome refused) says who tried.
pub async fn record<S: AuditLog>(
    store: &S,
    e: &RegistrationError,
    version: SpecVersion,
    mut audit: AuditRecord,
) {
    let action = audit.action;
    let code = e.error_code().as_str();
    let reason = e.to_string();
    crate::metrics::registration(
        action.as_str(),
        AuditOutcome::Refused.as_str(),
        code,
        version,
    );
    tracing::info!(action = action.as_str(), dcr_version = version.as_str(), client_id = audit.client_id.as_deref(), error = code, reason = %reason, "request refused");
    if matches!(
        e,
        RegistrationError::Unavailable | RegistrationError::Internal(_)
    ) {
        return;
    }
    audit.outcome = AuditOutcome::Refused;
    audit.error_code = Some(e.error_code());
    let audit = audit.detail(json!({ "reason": reason })).version(version);
    if let Err(e) = store.append_audit(&audit).await {
        tracing::warn!(error = %e, "could not audit a refusal");
    }
}

/// The `software_id` and `org_id` that a refused request's SSA claims, read without any
/// verification, for the audit trail only (cut to 100 printable characters).
pub fn claimed_identity(body: &[u8]) -> (Option<String>, Option<String>) {
    let ssa = std::str::from_utf8(body)
        .ok()
        .and_then(|body| unverified_claims(body.trim()))
        .and_then(|claims| {
            claims
                .get("software_statement")
                .and_then(|s| s.as_str())
                .and_then(unverified_claims)
        });
    let claim = |name: &str| {
        ssa.as_ref()
            .and_then(|c| c.get(name))
            .and_then(|v| v.as_str())
            .map(|v| printable(v, 100))
    };
    (claim("software_id"), claim("org_id"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn jwt(claims: serde_json::Value) -> String {
        let b64 = |v: &serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
        format!("{}.{}.c2ln", b64(&json!({"alg": "PS256"})), b64(&claims))
    }

    #[test]
    fn the_claimed_software_and_org_are_read_unverified() {
        let ssa = jwt(json!({"software_id": "sw\n1", "org_id": "org"}));
        let body = jwt(json!({ "software_statement": ssa }));
        assert_eq!(
            claimed_identity(format!(" {body}\n").as_bytes()),
            (Some("sw?1".into()), Some("org".into()))
        );
        assert_eq!(claimed_identity(b"not a jwt"), (None, None));
        assert_eq!(
            claimed_identity(jwt(json!({"software_statement": 3})).as_bytes()),
            (None, None)
        );
    }
}
