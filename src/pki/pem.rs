//! PEM errors in words, for every PEM file the config names and every PEM CRL fetched: its
//! own file, so that the TLS material (`tls.rs`) and the CRLs (`crl.rs`) can both use it
//! without importing each other.

/// A PEM parse error in words: a truncated file names the END line it lacks (the PEM
/// library's own message lists it as bytes).
pub fn pem_problem(e: &rustls::pki_types::pem::Error, label: &str) -> String {
    use rustls::pki_types::pem::Error as E;
    match e {
        E::MissingSectionEnd { end_marker } => format!(
            "truncated PEM: no \"-----END {}-----\" line",
            String::from_utf8_lossy(end_marker).trim()
        ),
        E::IllegalSectionStart { line } => format!(
            "not valid PEM: a malformed BEGIN line \"{}\"",
            String::from_utf8_lossy(line).trim()
        ),
        E::Base64Decode(e) => format!("not valid PEM: bad base64 ({e})"),
        E::Io(e) => format!("cannot read: {e}"),
        E::NoItemsFound => format!("holds no PEM {label}"),
        other => format!("not valid PEM: {other}"),
    }
}
