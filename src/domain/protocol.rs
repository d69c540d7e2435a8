//! How a closed list of protocol names becomes a type: the [`protocol_enum`] declaration,
//! its error ([`UnknownValue`]) and the serde-as-text glue that `domain/` and `config/` share.
//! A file of its own, so that the value types beside it import it without importing their
//! parent.

/// A value that is not one of a closed list; `Display` names the list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not {what}; choose from {choices}")]
pub struct UnknownValue {
    pub value: String,
    pub what: &'static str,
    pub choices: String,
}

/// A value of one of the closed lists below.
pub trait ProtocolValue: Copy + Eq + std::str::FromStr + 'static {
    /// The protocol name.
    fn name(self) -> &'static str;
}

/// serde for a value type as its text: deserialised through `FromStr` (whose error becomes
/// the message, named at the key by the config loader), serialised through `Display`. Every
/// value type of `domain/` and `config/` uses this, so a value reads and prints one way.
macro_rules! serde_as_text {
    ($t:ty) => {
        $crate::domain::protocol::deserialize_from_str!($t);
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    };
}
pub(crate) use serde_as_text;

/// The `Deserialize` half of [`serde_as_text`], for a type that prints itself differently.
macro_rules! deserialize_from_str {
    ($t:ty) => {
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use deserialize_from_str;

/// Declares a closed list of protocol names as an enum with `ALL`, `as_str`, `FromStr`,
/// `Display` and serde (as the protocol string), so that the list is written once.
macro_rules! protocol_enum {
    (
        $(#[$meta:meta])*
        $name:ident, $what:literal {
            $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every value, in the order the documentation lists them.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The protocol name.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// The names, comma-separated, for messages.
            pub fn choices() -> String {
                Self::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
            }
        }

        impl $crate::domain::protocol::ProtocolValue for $name {
            fn name(self) -> &'static str {
                self.as_str()
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::domain::protocol::UnknownValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err($crate::domain::protocol::UnknownValue {
                        value: $crate::text::printable(s, 40),
                        what: $what,
                        choices: Self::choices(),
                    }),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        $crate::domain::protocol::serde_as_text!($name);
    };
}
pub(crate) use protocol_enum;

/// Values of one closed list in their order, as a row or a token holds them: the names
/// space-separated. The text is kept beside the list so that neither is rebuilt per request
/// (`GrantTypes`, `Scopes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names<T> {
    list: Vec<T>,
    text: String,
}

impl<T> Default for Names<T> {
    fn default() -> Self {
        Self {
            list: Vec::new(),
            text: String::new(),
        }
    }
}

impl<T: ProtocolValue> Names<T> {
    pub fn new(list: Vec<T>) -> Self {
        let text = list.iter().map(|v| v.name()).collect::<Vec<_>>().join(" ");
        Self { list, text }
    }

    /// As a row holds them, the text kept as written. Rows migrated from registrations older
    /// than the column may name what is not a value of the list: such a name stays in the text
    /// and counts for nothing.
    pub fn from_stored(text: &str) -> Self {
        Self {
            list: text
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect(),
            text: text.to_string(),
        }
    }

    pub fn contains(&self, value: T) -> bool {
        self.list.contains(&value)
    }

    pub fn as_slice(&self) -> &[T] {
        &self.list
    }

    /// The names, space-separated.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl<T: ProtocolValue<Err = UnknownValue>> std::str::FromStr for Names<T> {
    type Err = UnknownValue;
    /// Names separated by white space, each a value of the list.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let list = s
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<Vec<T>, _>>()?;
        Ok(Self::new(list))
    }
}

impl<T> std::fmt::Display for Names<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl<T> serde::Serialize for Names<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}
