//! Certificates and TLS: the client certificate of a connection, the server's TLS material and
//! client-certificate verifier, and the https client for outbound fetches.

pub mod certificate;
pub mod crl;
pub mod crl_check;
pub mod crl_fetch;
pub mod ocsp;
pub mod outbound;
pub mod pem;
pub mod tls;

pub use certificate::{CertificateError, ClientCertificate, PeerIdentity, RevocationFacts};
