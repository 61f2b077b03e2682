//! Every enum label warden prints, written out: metrics, the admin API's JSON and logs
//! are contracts, and the labels now come from derives (strum for `as_str`/`ALL`, serde
//! for JSON), so this pins each derive's output to the text it has always had.

use std::fmt::Debug;

use serde::Serialize;
use serde::de::DeserializeOwned;
use warden_config::{ErrorKind, Role, Scheme, TlsDetail, Verdict};
use warden_health::{CircuitState, EventType, GrantType, OutcomeSource, State};
use warden_policy::Event;

/// `as_str` of each of `all`, in order, is `labels`; the JSON form is the same label and
/// reads back as the same variant.
fn check<T>(all: &[T], as_str: fn(T) -> &'static str, labels: &[&str])
where
    T: Copy + Debug + PartialEq + Serialize + DeserializeOwned,
{
    let got: Vec<&str> = all.iter().map(|v| as_str(*v)).collect();
    assert_eq!(got, labels);
    for (value, label) in all.iter().zip(labels) {
        let json = serde_json::to_string(value).unwrap();
        assert_eq!(json, format!("\"{label}\""), "{value:?}");
        assert_eq!(serde_json::from_str::<T>(&json).unwrap(), *value, "{label}");
    }
}

#[test]
fn config_labels() {
    check(&Role::ALL, Role::as_str, &["mcp", "api", "oauth"]);
    check(
        &Verdict::ALL,
        Verdict::as_str,
        &["ok", "transient", "terminal", "auth", "client_error"],
    );
    check(
        &ErrorKind::ALL,
        ErrorKind::as_str,
        &["connect", "timeout", "reset", "tls", "dns"],
    );
    check(
        &TlsDetail::ALL,
        TlsDetail::as_str,
        &[
            "unknown_ca",
            "name_mismatch",
            "expired",
            "not_yet_valid",
            "client_cert_rejected",
            "handshake",
        ],
    );
    assert_eq!(Scheme::Http.as_str(), "http");
    assert_eq!(Scheme::Https.as_str(), "https");
    assert_eq!("oauth".parse::<Role>(), Ok(Role::Oauth));
    assert_eq!(
        "proxy".parse::<Role>(),
        Err("unknown role `proxy` (expected mcp, api or oauth)".to_owned())
    );
}

#[test]
fn policy_labels() {
    let got: Vec<&str> = Event::ALL.iter().map(|e| e.as_str()).collect();
    assert_eq!(
        got,
        [
            "connect_completed",
            "refresh_succeeded",
            "refresh_failed_revoked",
            "refresh_failed_transient",
        ]
    );
}

#[test]
fn health_labels() {
    check(
        &State::ALL,
        State::as_str,
        &["healthy", "degraded", "circuit_open", "needs_reauth"],
    );
    check(
        &CircuitState::ALL,
        CircuitState::as_str,
        &["closed", "open"],
    );
    check(
        &[OutcomeSource::TokenResponse, OutcomeSource::Upstream],
        OutcomeSource::as_str,
        &["token_response", "upstream"],
    );
    check(
        &EventType::ALL,
        EventType::as_str,
        &[
            "connect_completed",
            "refresh_succeeded",
            "refresh_failed_revoked",
            "refresh_failed_transient",
            "upstream_failed_transient",
            "upstream_failed_terminal",
            "upstream_recovered",
            "circuit_opened",
            "probe_failed",
            "circuit_closed",
            "reset_admin",
        ],
    );
    check(
        &GrantType::ALL,
        GrantType::as_str,
        &[
            "authorization_code",
            "refresh_token",
            "client_credentials",
            "password",
            "urn:ietf:params:oauth:grant-type:device_code",
            "urn:ietf:params:oauth:grant-type:jwt-bearer",
            "urn:ietf:params:oauth:grant-type:token-exchange",
            "urn:ietf:params:oauth:grant-type:saml2-bearer",
            "other",
        ],
    );
    // Display is the label too: logs print it.
    assert_eq!(State::CircuitOpen.to_string(), "circuit_open");
    assert_eq!(EventType::ResetAdmin.to_string(), "reset_admin");
    assert_eq!(Role::Oauth.to_string(), "oauth");
}
