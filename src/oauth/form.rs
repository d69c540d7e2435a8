//! `application/x-www-form-urlencoded` request bodies (RFC 6749 §3.2).

use std::collections::HashMap;

use crate::text::printable;

/// Why a form body was refused: both are `invalid_request`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormError {
    #[error("the body is not a valid form")]
    Malformed,
    /// RFC 6749 §3.2: parameters must not be included more than once.
    #[error("parameter `{0}` is repeated")]
    Repeated(String),
    /// No parameter holds NUL (PostgreSQL's `text` cannot, and no OAuth value has one).
    #[error("parameter `{0}` contains a NUL character")]
    Nul(String),
}

/// A parsed form: each parameter once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Form(HashMap<String, String>);

impl Form {
    pub fn parse(body: &[u8]) -> Result<Self, FormError> {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_bytes(body).map_err(|_| FormError::Malformed)?;
        let mut form = HashMap::with_capacity(pairs.len());
        for (k, v) in pairs {
            if k.contains('\0') || v.contains('\0') {
                return Err(FormError::Nul(printable(&k, 40)));
            }
            if form.contains_key(&k) {
                return Err(FormError::Repeated(printable(&k, 40)));
            }
            form.insert(k, v);
        }
        Ok(Self(form))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// A parameter that is present and not empty.
    pub fn non_empty(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }
}

impl<const N: usize> From<[(&str, &str); N]> for Form {
    fn from(pairs: [(&str, &str); N]) -> Self {
        Self(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_refuse_repeated_parameters() {
        let f = Form::parse(b"grant_type=client_credentials&scope=").unwrap();
        assert_eq!(f.get("grant_type"), Some("client_credentials"));
        assert_eq!(f.non_empty("scope"), None);
        assert_eq!(
            Form::parse(b"grant_type=a&grant_type=b"),
            Err(FormError::Repeated("grant_type".into()))
        );
    }
}
