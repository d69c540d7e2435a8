//! Distinguished names (X.501): the model that certificates, the config and registration
//! metadata share, with an RFC 4514 parser and printer.

use std::fmt;

/// OID of `organizationIdentifier` (X.520, used by eIDAS QWACs and OBWACs).
pub const OID_ORGANIZATION_IDENTIFIER: &str = "2.5.4.97";

/// The kind of one attribute of a distinguished name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AttributeKind {
    Country,
    Organization,
    OrganizationalUnit,
    CommonName,
    /// `organizationIdentifier`, OID 2.5.4.97.
    OrganizationIdentifier,
    /// Any other attribute, by dotted OID.
    Other(String),
}

impl AttributeKind {
    /// From a dotted OID.
    pub fn from_oid(oid: &str) -> Self {
        match oid {
            "2.5.4.6" => Self::Country,
            "2.5.4.10" => Self::Organization,
            "2.5.4.11" => Self::OrganizationalUnit,
            "2.5.4.3" => Self::CommonName,
            OID_ORGANIZATION_IDENTIFIER => Self::OrganizationIdentifier,
            other => Self::Other(other.to_string()),
        }
    }

    /// Short names this server knows (RFC 4514 and common certificate attributes).
    const NAMES: &[&str] = &[
        "C",
        "O",
        "OU",
        "CN",
        "ORGANIZATIONIDENTIFIER",
        "L",
        "ST",
        "S",
        "STREET",
        "SERIALNUMBER",
        "SN",
        "SURNAME",
        "GIVENNAME",
        "GN",
        "TITLE",
        "POSTALCODE",
        "DC",
        "UID",
        "E",
        "EMAIL",
        "EMAILADDRESS",
    ];

    /// Whether `name` is a known short name or a dotted OID (optionally `OID.`-prefixed).
    pub fn is_valid_name(name: &str) -> bool {
        if Self::NAMES.contains(&name.to_ascii_uppercase().as_str()) {
            return true;
        }
        let oid = name
            .strip_prefix("OID.")
            .or_else(|| name.strip_prefix("oid."))
            .unwrap_or(name);
        let mut arcs = 0;
        for arc in oid.split('.') {
            if arc.is_empty() || !arc.bytes().all(|b| b.is_ascii_digit()) {
                return false;
            }
            arcs += 1;
        }
        arcs >= 2
    }

    /// From an RFC 4514 attribute type: a short name (case-insensitive) or a dotted OID.
    pub fn from_name(name: &str) -> Self {
        let upper = name.to_ascii_uppercase();
        let oid = match upper.as_str() {
            "C" => return Self::Country,
            "O" => return Self::Organization,
            "OU" => return Self::OrganizationalUnit,
            "CN" => return Self::CommonName,
            "ORGANIZATIONIDENTIFIER" => return Self::OrganizationIdentifier,
            "L" => "2.5.4.7",
            "ST" | "S" => "2.5.4.8",
            "STREET" => "2.5.4.9",
            "SERIALNUMBER" => "2.5.4.5",
            "SN" | "SURNAME" => "2.5.4.4",
            "GIVENNAME" | "GN" => "2.5.4.42",
            "TITLE" => "2.5.4.12",
            "POSTALCODE" => "2.5.4.17",
            "DC" => "0.9.2342.19200300.100.1.25",
            "UID" => "0.9.2342.19200300.100.1.1",
            "E" | "EMAIL" | "EMAILADDRESS" => "1.2.840.113549.1.9.1",
            _ => name
                .strip_prefix("OID.")
                .or_else(|| name.strip_prefix("oid."))
                .unwrap_or(name),
        };
        Self::from_oid(oid)
    }

    fn label(&self) -> &str {
        match self {
            Self::Country => "C",
            Self::Organization => "O",
            Self::OrganizationalUnit => "OU",
            Self::CommonName => "CN",
            Self::OrganizationIdentifier => "organizationIdentifier",
            Self::Other(oid) => oid,
        }
    }
}

/// A distinguished name as the list of its attributes, in certificate order.
///
/// Equality ([`DistinguishedName::same_rdn_set`]) ignores order, because ASPSPs and TPPs
/// write DNs in both RFC 2253 (reversed) and X.500 order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DistinguishedName {
    pub attributes: Vec<(AttributeKind, String)>,
}

impl DistinguishedName {
    /// The first value of an attribute kind.
    pub fn get(&self, kind: &AttributeKind) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == kind)
            .map(|(_, v)| v.as_str())
    }

    pub fn common_name(&self) -> Option<&str> {
        self.get(&AttributeKind::CommonName)
    }

    pub fn organizational_unit(&self) -> Option<&str> {
        self.get(&AttributeKind::OrganizationalUnit)
    }

    pub fn organization(&self) -> Option<&str> {
        self.get(&AttributeKind::Organization)
    }

    pub fn country(&self) -> Option<&str> {
        self.get(&AttributeKind::Country)
    }

    pub fn organization_identifier(&self) -> Option<&str> {
        self.get(&AttributeKind::OrganizationIdentifier)
    }

    /// Whether both names hold the same attributes, in any order. Values compare as LDAP's
    /// caseIgnoreMatch does: ASCII case and repeated inner spaces do not matter.
    pub fn same_rdn_set(&self, other: &Self) -> bool {
        let normalise = |attrs: &[(AttributeKind, String)]| {
            let mut v: Vec<(AttributeKind, String)> = attrs
                .iter()
                .map(|(k, val)| {
                    let val = val.split_whitespace().collect::<Vec<_>>().join(" ");
                    (k.clone(), val.to_ascii_lowercase())
                })
                .collect();
            v.sort();
            v
        };
        normalise(&self.attributes) == normalise(&other.attributes)
    }

    /// Parses an RFC 4514 (or RFC 2253) string such as `CN=x,OU=y,O=OpenBanking,C=GB`.
    ///
    /// Accepts `,` or `;` between RDNs, `+` inside multi-valued RDNs, spaces around separators,
    /// backslash escapes (`\,` and `\2C`), and quoted values. Attributes are returned in
    /// certificate order (the reverse of the string).
    pub fn parse(s: &str) -> Result<Self, DnParseError> {
        let mut attributes = Vec::new();
        let mut chars = s.chars().peekable();
        loop {
            // Attribute type.
            let mut ty = String::new();
            let mut has_eq = false;
            for c in chars.by_ref() {
                if c == '=' {
                    has_eq = true;
                    break;
                }
                ty.push(c);
            }
            let ty = ty.trim();
            if !has_eq || !AttributeKind::is_valid_name(ty) {
                return Err(DnParseError(crate::text::printable(s, 80)));
            }
            // Attribute value.
            while chars.peek() == Some(&' ') {
                chars.next();
            }
            let mut bytes: Vec<u8> = Vec::new();
            let mut trailing_spaces = 0usize;
            let mut ended = false;
            if chars.peek() == Some(&'"') {
                chars.next();
                let mut closed = false;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => {
                            closed = true;
                            break;
                        }
                        '\\' => match chars.next() {
                            Some(n) => push_char(&mut bytes, n),
                            None => return Err(DnParseError(crate::text::printable(s, 80))),
                        },
                        c => push_char(&mut bytes, c),
                    }
                }
                if !closed {
                    return Err(DnParseError(crate::text::printable(s, 80)));
                }
                while chars.peek() == Some(&' ') {
                    chars.next();
                }
            } else {
                while let Some(c) = chars.next() {
                    match c {
                        ',' | ';' | '+' => {
                            ended = true;
                            break;
                        }
                        '\\' => {
                            trailing_spaces = 0;
                            let Some(n) = chars.next() else {
                                return Err(DnParseError(crate::text::printable(s, 80)));
                            };
                            if n.is_ascii_hexdigit() {
                                let Some(m) = chars.next().filter(char::is_ascii_hexdigit) else {
                                    return Err(DnParseError(crate::text::printable(s, 80)));
                                };
                                let hex = format!("{n}{m}");
                                bytes.push(u8::from_str_radix(&hex, 16).unwrap_or(b'?'));
                            } else {
                                push_char(&mut bytes, n);
                            }
                        }
                        ' ' => {
                            trailing_spaces += 1;
                            bytes.push(b' ');
                        }
                        c => {
                            trailing_spaces = 0;
                            push_char(&mut bytes, c);
                        }
                    }
                }
                bytes.truncate(bytes.len() - trailing_spaces);
            }
            let value = String::from_utf8(bytes)
                .map_err(|_| DnParseError(crate::text::printable(s, 80)))?;
            attributes.push((AttributeKind::from_name(ty), value));
            if !ended {
                match chars.next() {
                    None => break,
                    Some(',' | ';' | '+') => {}
                    Some(_) => return Err(DnParseError(crate::text::printable(s, 80))),
                }
            }
            while chars.peek() == Some(&' ') {
                chars.next();
            }
            if ended && chars.peek().is_none() {
                return Err(DnParseError(crate::text::printable(s, 80)));
            }
        }
        attributes.reverse();
        Ok(Self { attributes })
    }
}

fn push_char(bytes: &mut Vec<u8>, c: char) {
    let mut buf = [0u8; 4];
    bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
}

/// A distinguished-name string that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a distinguished name (RFC 4514)")]
pub struct DnParseError(pub String);

impl fmt::Display for DistinguishedName {
    /// RFC 4514 order (most specific first), with values escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (kind, value)) in self.attributes.iter().rev().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}=", kind.label())?;
            for (j, c) in value.chars().enumerate() {
                let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=')
                    || (j == 0 && (c == ' ' || c == '#'))
                    || (j + 1 == value.chars().count() && c == ' ');
                if special {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

impl std::str::FromStr for DistinguishedName {
    type Err = DnParseError;
    fn from_str(s: &str) -> Result<Self, DnParseError> {
        Self::parse(s)
    }
}

// Config files name DNs as RFC 4514 strings.
super::protocol::serde_as_text!(DistinguishedName);

#[cfg(test)]
mod tests {
    use super::*;

    fn dn(pairs: &[(&str, &str)]) -> DistinguishedName {
        DistinguishedName {
            attributes: pairs
                .iter()
                .map(|(k, v)| (AttributeKind::from_name(k), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn rdn_sets_ignore_order_and_oid_spelling() {
        let a = dn(&[
            ("C", "GB"),
            ("organizationIdentifier", "PSDGB-OB-1"),
            ("CN", "x"),
        ]);
        let b = dn(&[("CN", "x"), ("2.5.4.97", "PSDGB-OB-1"), ("c", "GB")]);
        assert!(a.same_rdn_set(&b));
        let c = dn(&[("CN", "x"), ("2.5.4.97", "PSDGB-OB-2"), ("C", "GB")]);
        assert!(!a.same_rdn_set(&c));
    }

    #[test]
    fn displays_rfc4514_with_escapes() {
        let d = dn(&[("C", "GB"), ("O", "Acme, Ltd"), ("CN", "a+b")]);
        assert_eq!(d.to_string(), "CN=a\\+b,O=Acme\\, Ltd,C=GB");
    }

    #[test]
    fn parses_rfc4514_strings() {
        let want = dn(&[
            ("C", "GB"),
            ("O", "OpenBanking"),
            ("OU", "0015800001"),
            ("CN", "abc"),
        ]);
        for s in [
            "CN=abc,OU=0015800001,O=OpenBanking,C=GB",
            "CN=abc, OU=0015800001, O=OpenBanking, C=GB",
            "C=GB;O=OpenBanking;OU=0015800001;CN=abc",
            "cn = abc , ou=0015800001,o=\"OpenBanking\",c=gb",
            "CN=abc,OID.2.5.4.11=0015800001,O=OpenBanking,2.5.4.6=GB",
        ] {
            let parsed = DistinguishedName::parse(s).unwrap();
            assert!(parsed.same_rdn_set(&want), "{s}: {parsed:?}");
        }
        let escaped =
            DistinguishedName::parse("CN=a\\+b,O=Acme\\2C Ltd,2.5.4.97=PSDGB-OB-1").unwrap();
        assert_eq!(escaped.common_name(), Some("a+b"));
        assert_eq!(escaped.organization(), Some("Acme, Ltd"));
        assert_eq!(escaped.organization_identifier(), Some("PSDGB-OB-1"));
        let round = DistinguishedName::parse(&escaped.to_string()).unwrap();
        assert!(round.same_rdn_set(&escaped));
        // The last ones were found by the subject_dn fuzzer: they used not to survive a
        // Display round trip.
        for bad in [
            "",
            "CN",
            "=x",
            "CN=x,",
            "CN=\\",
            "CN=\"open",
            "C N=x",
            "OID.=",
            "OID.= ",
            ".1=X",
            "oid.L=x",
            "2.5.4..3=x",
            "XYZ=1",
        ] {
            assert!(DistinguishedName::parse(bad).is_err(), "{bad}");
        }
        let multi = DistinguishedName::parse("CN=a+UID=b,O=c").unwrap();
        assert_eq!(multi.attributes.len(), 3);
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "CN=a+UID=b,O=Acme\\2C Ltd",
            "CN=\\ x\\ ",
            "CN=\\#x",
            "O=a\\\\b",
            "2.5.4.11=X,o=a@b.c",
        ] {
            let dn = DistinguishedName::parse(s).unwrap();
            let again = DistinguishedName::parse(&dn.to_string()).unwrap();
            assert!(again.same_rdn_set(&dn), "{s} -> {dn} -> {again:?}");
        }
    }
}
