//! What warden reads out of a token exchange: `grant_type` from the request's form body and
//! `error` / `access_token` from the response's JSON body. Both bodies are small; they are
//! read ahead (bounded) and re-emitted byte for byte.

use serde::Deserialize;

/// How much of a token request or response body is read ahead to look at. Token bodies
/// are a few hundred bytes; anything larger is forwarded untouched and classified by
/// status alone.
pub const TOKEN_BODY_LIMIT: usize = 64 * 1024;

/// The `grant_type` of an `application/x-www-form-urlencoded` body, percent-decoded. Other
/// fields (the refresh token, the client secret) are skipped without being decoded.
pub fn grant_type(form: &[u8]) -> Option<String> {
    form_field(form, b"grant_type").map(|v| String::from_utf8_lossy(&v).into_owned())
}

/// One field of a form body, percent-decoded. Used for the refresh token only to hash it
/// at once; the caller must not keep or log the value.
pub fn form_field(form: &[u8], name: &[u8]) -> Option<Vec<u8>> {
    form.split(|&b| b == b'&').find_map(|pair| {
        let value = pair.strip_prefix(name)?.strip_prefix(b"=")?;
        Some(percent_decode(value))
    })
}

fn percent_decode(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < raw.len() => match (hex(raw[i + 1]), hex(raw[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The two fields of a token response that classification needs.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TokenAnswer {
    /// The raw `error` string, when the body is a JSON object with a string `error`.
    pub error: Option<String>,
    /// Whether the body carries a non-empty string `access_token`. The token itself is
    /// never kept.
    pub has_access_token: bool,
}

impl TokenAnswer {
    /// Never fails: a body that is not JSON, or whose fields have other types, yields the
    /// default (no error, no token), which classification treats as an unusable answer.
    pub fn parse(body: &[u8]) -> TokenAnswer {
        #[derive(Deserialize)]
        struct Fields<'a> {
            #[serde(default)]
            error: Option<serde_json::Value>,
            #[serde(default, borrow)]
            access_token: Option<&'a serde_json::value::RawValue>,
        }
        let Ok(fields) = serde_json::from_slice::<Fields<'_>>(body) else {
            return TokenAnswer::default();
        };
        TokenAnswer {
            error: fields.error.and_then(|e| match e {
                serde_json::Value::String(s) => Some(s),
                _ => None,
            }),
            // `""` (two quote characters) is an empty string; anything longer that starts
            // with a quote is a non-empty string.
            has_access_token: fields
                .access_token
                .is_some_and(|raw| raw.get().starts_with('"') && raw.get().len() > 2),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_type_is_found_and_decoded() {
        assert_eq!(
            grant_type(b"grant_type=refresh_token&refresh_token=abc").as_deref(),
            Some("refresh_token")
        );
        assert_eq!(
            grant_type(
                b"client_id=x&grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"
            )
            .as_deref(),
            Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
        );
        assert_eq!(grant_type(b"code=abc").as_deref(), None);
        assert_eq!(grant_type(b"xgrant_type=a").as_deref(), None);
        assert_eq!(
            grant_type(b"grant_type=a+b%zz%4").as_deref(),
            Some("a b%zz%4")
        );
    }

    #[test]
    fn token_answers() {
        let ok = TokenAnswer::parse(br#"{"access_token":"t","token_type":"Bearer"}"#);
        assert!(ok.has_access_token);
        assert_eq!(ok.error, None);
        let err = TokenAnswer::parse(br#"{"error":"invalid_grant","error_description":"x"}"#);
        assert_eq!(err.error.as_deref(), Some("invalid_grant"));
        assert!(!err.has_access_token);
        assert_eq!(TokenAnswer::parse(br#"{"error":42}"#).error, None);
        assert!(!TokenAnswer::parse(br#"{"access_token":""}"#).has_access_token);
        assert!(!TokenAnswer::parse(br#"{"access_token":7}"#).has_access_token);
        assert_eq!(
            TokenAnswer::parse(b"<html>bad gateway</html>"),
            TokenAnswer::default()
        );
        assert_eq!(TokenAnswer::parse(b"[1,2]"), TokenAnswer::default());
    }
}
