//! Validated identifiers: user names, display names, call and message ids.
//!
//! Every type here validates on construction *and* on deserialization, so a value that made
//! it through the decoder is known to be well formed.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("user name must be 3 to 32 characters long")]
    UserNameLength,
    #[error("user name must start with a lowercase letter")]
    UserNameStart,
    #[error("user name may only contain lowercase letters, digits, '.', '_' and '-'")]
    UserNameCharacter,
    #[error("display name must be at most 64 characters long")]
    DisplayNameLength,
    #[error("display name must not contain control, formatting or line-separator characters")]
    DisplayNameControl,
}

/// An account name: 3 to 32 characters of `a-z 0-9 . _ -`, starting with a letter.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserName(String);

impl UserName {
    pub const MIN_LEN: usize = 3;
    pub const MAX_LEN: usize = 32;

    pub fn new(name: impl Into<String>) -> Result<Self, NameError> {
        let name = name.into();
        if !(Self::MIN_LEN..=Self::MAX_LEN).contains(&name.len()) {
            return Err(NameError::UserNameLength);
        }
        if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
            return Err(NameError::UserNameStart);
        }
        let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c);
        if !name.chars().all(allowed) {
            return Err(NameError::UserNameCharacter);
        }
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for UserName {
    type Error = NameError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<UserName> for String {
    fn from(value: UserName) -> Self {
        value.0
    }
}

impl FromStr for UserName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserName({})", self.0)
    }
}

/// A human-readable name: at most 64 characters, no control characters. May be empty.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DisplayName(String);

impl DisplayName {
    pub const MAX_CHARS: usize = 64;

    pub fn new(name: impl Into<String>) -> Result<Self, NameError> {
        let name = name.into();
        if name.chars().count() > Self::MAX_CHARS {
            return Err(NameError::DisplayNameLength);
        }
        if name
            .chars()
            .any(|c| c.is_control() || is_invisible_format(c))
        {
            return Err(NameError::DisplayNameControl);
        }
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Case-insensitive prefix match, as used by display-name search.
    pub fn matches_prefix(&self, prefix: &str) -> bool {
        let mut name = self.0.chars().flat_map(char::to_lowercase);
        prefix
            .chars()
            .flat_map(char::to_lowercase)
            .all(|p| name.next() == Some(p))
    }
}

/// Unicode format characters (category Cf) and line/paragraph separators (Zl, Zp): they are
/// invisible or reorder text (bidi overrides), so a display name holding them could pass
/// for another.
fn is_invisible_format(c: char) -> bool {
    matches!(c,
        '\u{00AD}'
        | '\u{0600}'..='\u{0605}'
        | '\u{061C}'
        | '\u{06DD}'
        | '\u{070F}'
        | '\u{0890}'..='\u{0891}'
        | '\u{08E2}'
        | '\u{180E}'
        | '\u{200B}'..='\u{200F}'
        | '\u{2028}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{206F}'
        | '\u{FEFF}'
        | '\u{FFF9}'..='\u{FFFB}'
        | '\u{110BD}'
        | '\u{110CD}'
        | '\u{13430}'..='\u{1343F}'
        | '\u{1BCA0}'..='\u{1BCA3}'
        | '\u{1D173}'..='\u{1D17A}'
        | '\u{E0001}'
        | '\u{E0020}'..='\u{E007F}'
    )
}

impl TryFrom<String> for DisplayName {
    type Error = NameError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<DisplayName> for String {
    fn from(value: DisplayName) -> Self {
        value.0
    }
}

impl FromStr for DisplayName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Display for DisplayName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for DisplayName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DisplayName({:?})", self.0)
    }
}

macro_rules! random_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub struct $name(pub [u8; 16]);

        impl $name {
            /// A fresh random id.
            pub fn random<R: rand::Rng + ?Sized>(rng: &mut R) -> Self {
                let mut bytes = [0u8; 16];
                rng.fill_bytes(&mut bytes);
                Self(bytes)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                for b in self.0 {
                    write!(f, "{b:02x}")?;
                }
                Ok(())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self)
            }
        }

        impl FromStr for $name {
            type Err = IdParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(IdParseError);
                }
                let mut bytes = [0u8; 16];
                for (i, byte) in bytes.iter_mut().enumerate() {
                    *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| IdParseError)?;
                }
                Ok(Self(bytes))
            }
        }
    };
}

/// An id was not 32 hexadecimal digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected 32 hexadecimal digits")]
pub struct IdParseError;

random_id!(
    /// Identifies one call (or conference) across all its participants and devices.
    CallId
);
random_id!(
    /// Identifies one chat message end to end; the unit of de-duplication.
    MessageId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_follow_the_rules() {
        for ok in [
            "abc",
            "alice",
            "a.b_c-9",
            "z2345678901234567890123456789012",
        ] {
            assert!(UserName::new(ok).is_ok(), "{ok}");
        }
        assert_eq!(UserName::new("ab"), Err(NameError::UserNameLength));
        assert_eq!(
            UserName::new("a".repeat(33)),
            Err(NameError::UserNameLength)
        );
        assert_eq!(UserName::new("1abc"), Err(NameError::UserNameStart));
        assert_eq!(UserName::new("Alice"), Err(NameError::UserNameStart));
        assert_eq!(UserName::new("alIce"), Err(NameError::UserNameCharacter));
        assert_eq!(UserName::new("al ice"), Err(NameError::UserNameCharacter));
        assert_eq!(UserName::new("alé"), Err(NameError::UserNameCharacter));
    }

    #[test]
    fn decoding_validates_user_names() {
        let bytes = postcard::to_allocvec(&"Bad Name".to_string()).expect("encode");
        assert!(postcard::from_bytes::<UserName>(&bytes).is_err());
        let bytes = postcard::to_allocvec(&"good".to_string()).expect("encode");
        assert_eq!(
            postcard::from_bytes::<UserName>(&bytes)
                .expect("decode")
                .as_str(),
            "good"
        );
    }

    #[test]
    fn display_names_allow_unicode_but_not_control_characters() {
        assert!(DisplayName::new("Zoë Müller 🎧").is_ok());
        assert!(DisplayName::new("é".repeat(64)).is_ok());
        assert_eq!(
            DisplayName::new("é".repeat(65)),
            Err(NameError::DisplayNameLength)
        );
        assert_eq!(DisplayName::new("a\nb"), Err(NameError::DisplayNameControl));
        assert_eq!(
            DisplayName::new("\u{1b}[31m"),
            Err(NameError::DisplayNameControl)
        );
        for spoof in [
            "evil\u{202E}gnp.exe",
            "al\u{200B}ice",
            "a\u{2028}b",
            "\u{FEFF}bob",
        ] {
            assert_eq!(
                DisplayName::new(spoof),
                Err(NameError::DisplayNameControl),
                "{spoof:?}"
            );
        }
    }

    #[test]
    fn display_name_prefix_is_case_insensitive() {
        let name = DisplayName::new("Alice Liddell").expect("valid");
        assert!(name.matches_prefix("ali"));
        assert!(name.matches_prefix("ALICE L"));
        assert!(name.matches_prefix(""));
        assert!(!name.matches_prefix("bob"));
        assert!(!name.matches_prefix("Alice Liddell and more"));
    }

    #[test]
    fn ids_round_trip_through_text() {
        let id = CallId([0xab; 16]);
        assert_eq!(id.to_string().parse::<CallId>(), Ok(id));
        assert!("xyz".parse::<MessageId>().is_err());
        assert!(format!("+{}", "0".repeat(31)).parse::<MessageId>().is_err());
        assert!("é".repeat(16).parse::<MessageId>().is_err());
    }
}
