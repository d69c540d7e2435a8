//! A claim's value checked against a closed list (the whole list, a version's part of it, or
//! the configured part), shared by the metadata steps.

use crate::domain::ProtocolValue;
use crate::text::printable;

/// A value outside the allowed set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{claim}` value `{value}` is not supported; supported: {allowed}")]
pub struct NotAllowed {
    pub claim: &'static str,
    /// The value sent, cut and made printable.
    pub value: String,
    /// The allowed values, comma-separated.
    pub allowed: String,
}

/// `value` if it is one of `allowed`.
pub fn one_of<T: ProtocolValue>(
    claim: &'static str,
    value: &str,
    allowed: &[T],
) -> Result<T, NotAllowed> {
    match allowed.iter().find(|a| a.name() == value) {
        Some(v) => Ok(*v),
        None => Err(NotAllowed {
            claim,
            value: printable(value, 60),
            allowed: allowed
                .iter()
                .map(|a| a.name())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}
