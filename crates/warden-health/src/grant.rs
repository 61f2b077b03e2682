//! The grant type of a token request, as health events show it.
//!
//! The `grant_type` comes from the client's form body, so it is mapped onto a closed set
//! before it is kept: an event can never carry (or grow) text a client made up.

use std::fmt;

use strum::{EnumCount as _, VariantArray as _};
use warden_config::variant_array;

/// RFC 6749's grant types and the registered extension grants people meet in practice;
/// anything else is `Other`.
///
/// Serialized as its label, read back through [`GrantType::from_form_value`]: the labels
/// are written once, in the strum attributes.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    strum::IntoStaticStr,
    strum::VariantArray,
    strum::EnumCount,
)]
#[serde(into = "&'static str", from = "String")]
#[strum(serialize_all = "snake_case")]
pub enum GrantType {
    /// RFC 6749 §4.1: a user's login finishing.
    AuthorizationCode,
    /// RFC 6749 §6: the grant coalescing and the reauth short-circuit care about.
    RefreshToken,
    /// RFC 6749 §4.4: a machine's own credentials, no user involved.
    ClientCredentials,
    /// RFC 6749 §4.3: a user's password sent directly.
    Password,
    /// RFC 8628.
    #[strum(serialize = "urn:ietf:params:oauth:grant-type:device_code")]
    DeviceCode,
    /// RFC 7523.
    #[strum(serialize = "urn:ietf:params:oauth:grant-type:jwt-bearer")]
    JwtBearer,
    /// RFC 8693.
    #[strum(serialize = "urn:ietf:params:oauth:grant-type:token-exchange")]
    TokenExchange,
    /// RFC 7522.
    #[strum(serialize = "urn:ietf:params:oauth:grant-type:saml2-bearer")]
    Saml2Bearer,
    /// Anything else, unnamed so a client cannot put its own text into events.
    Other,
}

impl GrantType {
    /// Every grant type, for labels that must be pre-registered and for exhaustive tests.
    pub const ALL: [GrantType; GrantType::COUNT] = variant_array(GrantType::VARIANTS);

    /// The form value (trimmed, ASCII case-insensitive, as the classifier compares it).
    pub fn from_form_value(value: &str) -> GrantType {
        let value = value.trim();
        GrantType::ALL
            .into_iter()
            .find(|g| *g != GrantType::Other && g.as_str().eq_ignore_ascii_case(value))
            .unwrap_or(GrantType::Other)
    }

    /// The registered name, as the form carries it.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl From<String> for GrantType {
    fn from(value: String) -> Self {
        GrantType::from_form_value(&value)
    }
}

impl fmt::Display for GrantType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_names_round_trip_and_the_rest_is_other() {
        for g in GrantType::ALL {
            if g != GrantType::Other {
                assert_eq!(GrantType::from_form_value(g.as_str()), g);
            }
        }
        assert_eq!(
            GrantType::from_form_value(" Refresh_Token "),
            GrantType::RefreshToken
        );
        for odd in ["", "other", "refresh_token2", "<script>", "a\u{0}b"] {
            assert_eq!(GrantType::from_form_value(odd), GrantType::Other, "{odd:?}");
        }
    }
}
