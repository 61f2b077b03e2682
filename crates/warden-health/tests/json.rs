//! The admin API's JSON (README › Admin listener): exactly the field names and value forms it promises.
#![allow(unused_must_use)]

mod support;

use serde_json::{Value, json};
use warden_config::{ErrorKind, Role};
use warden_health::ConnectionHealth;

use support::*;

fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<_> = value
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

fn sorted<const N: usize>(mut names: [&'static str; N]) -> Vec<&'static str> {
    names.sort_unstable();
    names.to_vec()
}

const ROW_FIELDS: [&str; 11] = [
    "name",
    "state",
    "has_oauth",
    "needs_reauth",
    "token_acquired",
    "idp_error_code",
    "circuit",
    "routes",
    "reason",
    "last_event",
    "degraded_by",
];

const EVENT_FIELDS: [&str; 8] = [
    "at",
    "type",
    "role",
    "status",
    "idp_error_code",
    "verdict",
    "error_kind",
    "grant_type",
];

#[test]
fn an_event_has_exactly_the_spec_fields() {
    let mut h = crm(5);
    h.record_token(
        warden_health::TokenOutcome {
            verdict: warden_config::Verdict::Terminal,
            event: warden_policy::Event::RefreshFailedRevoked,
            code: Some("invalid_client"),
            status: Some(401),
            error_kind: None,
            tls_detail: None,
            has_access_token: false,
            grant_type: Some(warden_health::GrantType::ClientCredentials),
        },
        at_ms(123),
    );
    let event = serde_json::to_value(h.last_event().unwrap()).unwrap();
    assert_eq!(keys(&event), sorted(EVENT_FIELDS));
    assert_eq!(
        event,
        json!({
            "at": "2023-11-14T22:13:20.123Z",
            "type": "refresh_failed_revoked",
            "role": "oauth",
            "status": 401,
            "idp_error_code": "invalid_client",
            "verdict": "terminal",
            "error_kind": null,
            "grant_type": "client_credentials",
        })
    );
}

#[test]
fn absent_event_values_are_null() {
    let mut h = crm(5);
    h.reset(at_ms(1_000));
    assert_eq!(
        serde_json::to_value(h.last_event().unwrap()).unwrap(),
        json!({
            "at": "2023-11-14T22:13:21.000Z",
            "type": "reset_admin",
            "role": null,
            "status": null,
            "idp_error_code": null,
            "verdict": null,
            "error_kind": null,
            "grant_type": null,
        })
    );
    fault(&mut h, Role::Mcp, ErrorKind::Timeout);
    let e = serde_json::to_value(h.last_event().unwrap()).unwrap();
    assert_eq!(e["type"], "upstream_failed_transient");
    assert_eq!(e["status"], Value::Null);
    assert_eq!(e["error_kind"], "timeout");
    assert_eq!(e["verdict"], "transient");
}

#[test]
fn a_row_has_exactly_the_spec_fields() {
    let mut h = crm(1);
    login_ok(&mut h);
    h.record_token(
        warden_health::TokenOutcome {
            verdict: warden_config::Verdict::Terminal,
            event: warden_policy::Event::RefreshFailedRevoked,
            code: Some("invalid_client"),
            status: Some(400),
            error_kind: None,
            tls_detail: None,
            has_access_token: false,
            grant_type: None,
        },
        at_ms(5),
    );
    h.record_token(
        warden_health::TokenOutcome {
            verdict: warden_config::Verdict::Transient,
            event: warden_policy::Event::RefreshFailedTransient,
            code: None,
            status: None,
            error_kind: Some(ErrorKind::Connect),
            tls_detail: None,
            has_access_token: false,
            grant_type: None,
        },
        at_ms(7),
    );
    let row = serde_json::to_value(h.snapshot()).unwrap();
    assert_eq!(keys(&row), sorted(ROW_FIELDS));
    assert_eq!(
        row,
        json!({
            "name": "crm",
            "state": "needs_reauth",
            "has_oauth": true,
            "needs_reauth": true,
            "token_acquired": false,
            "idp_error_code": null,
            "circuit": {"mcp": "closed", "oauth": "open"},
            "routes": {
                "mcp": {"failing": false, "since": null, "last_failure": null},
                "oauth": {
                    "failing": true,
                    "since": "2023-11-14T22:13:20.007Z",
                    "last_failure": {
                        "at": "2023-11-14T22:13:20.007Z",
                        "type": "refresh_failed_transient",
                        "role": "oauth",
                        "status": null,
                        "idp_error_code": null,
                        "verdict": "transient",
                        "error_kind": "connect",
                        "grant_type": null,
                    },
                },
            },
            "reason": {
                "at": "2023-11-14T22:13:20.005Z",
                "type": "refresh_failed_revoked",
                "role": "oauth",
                "status": 400,
                "idp_error_code": "invalid_client",
                "verdict": "terminal",
                "error_kind": null,
                "grant_type": null,
            },
            "last_event": {
                "at": "2023-11-14T22:13:20.007Z",
                "type": "circuit_opened",
                "role": "oauth",
                "status": null,
                "idp_error_code": null,
                "verdict": "transient",
                "error_kind": "connect",
                "grant_type": null,
            },
            "degraded_by": "token_response",
        })
    );
    // The circuit map is in route order, as text too.
    let text = serde_json::to_string(&h.snapshot()).unwrap();
    assert!(
        text.contains(r#""circuit":{"mcp":"closed","oauth":"open"}"#),
        "{text}"
    );
}

#[test]
fn a_fresh_row() {
    let h = health(&[Role::Api], 5, 50);
    assert_eq!(
        serde_json::to_value(h.snapshot()).unwrap(),
        json!({
            "name": "crm",
            "state": "healthy",
            "has_oauth": false,
            "needs_reauth": false,
            "token_acquired": false,
            "idp_error_code": null,
            "circuit": {"api": "closed"},
            "routes": {"api": {"failing": false, "since": null, "last_failure": null}},
            "reason": null,
            "last_event": null,
            "degraded_by": null,
        })
    );
}

#[test]
fn the_field_order_is_the_spec_order() {
    let mut h = crm(5);
    refresh_err(&mut h, 400, Some("invalid_grant"));
    let text = serde_json::to_string(&h.detail()).unwrap();
    let mut fields: Vec<&str> = ROW_FIELDS.to_vec();
    fields.push("events");
    let positions: Vec<_> = fields
        .iter()
        .map(|f| {
            text.find(&format!(r#""{f}":"#))
                .unwrap_or_else(|| panic!("{f}"))
        })
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");
    let event = &text[text.find(r#""events":"#).unwrap()..];
    let positions: Vec<_> = EVENT_FIELDS
        .iter()
        .map(|f| event.find(&format!(r#""{f}":"#)).unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{event}");
}

#[test]
fn the_detail_is_the_row_plus_events_newest_first() {
    let mut h: ConnectionHealth = crm(2);
    login_ok(&mut h);
    answer(&mut h, Role::Mcp, 503);
    answer(&mut h, Role::Mcp, 503);
    let detail = serde_json::to_value(h.detail()).unwrap();
    let mut want: Vec<&str> = ROW_FIELDS.to_vec();
    want.push("events");
    want.sort_unstable();
    assert_eq!(
        keys(&detail),
        want,
        "the row's fields and events, nothing else"
    );
    assert_eq!(detail["degraded_by"], "upstream");
    let types: Vec<_> = detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "circuit_opened",
            "upstream_failed_transient",
            "connect_completed"
        ]
    );
    assert_eq!(detail["events"][0], detail["last_event"]);
    assert_eq!(detail["state"], "circuit_open");
    assert_eq!(detail["token_acquired"], true);
    for event in detail["events"].as_array().unwrap() {
        assert_eq!(keys(event), sorted(EVENT_FIELDS));
    }
}

/// `warden status` reads the API with the types that wrote it: every field comes back.
#[test]
fn rows_and_details_read_back_as_they_were_written() {
    let mut h = crm(1);
    refresh_err(&mut h, 400, Some("invalid_grant"));
    h.record_upstream(
        Role::Mcp,
        warden_health::UpstreamOutcome {
            verdict: warden_config::Verdict::Transient,
            status: None,
            error_kind: Some(ErrorKind::Tls),
            tls_detail: Some(warden_config::TlsDetail::Expired),
        },
        at_ms(8),
    );
    h.record_token(
        warden_health::TokenOutcome {
            verdict: warden_config::Verdict::Transient,
            event: warden_policy::Event::RefreshFailedTransient,
            code: None,
            status: Some(503),
            error_kind: None,
            tls_detail: None,
            has_access_token: false,
            grant_type: Some(warden_health::GrantType::TokenExchange),
        },
        at_ms(9),
    );
    let detail = h.detail();
    assert!(detail.row.routes.iter().any(|(_, r)| r.since.is_some()));
    assert!(detail.events.iter().any(|e| e.tls_detail.is_some()));
    let text = serde_json::to_string(&detail).unwrap();
    let back: warden_health::HealthDetail = serde_json::from_str(&text).unwrap();
    assert_eq!(back, detail);

    let report = warden_health::HealthReport {
        connections: vec![h.snapshot(), health(&[Role::Api], 5, 50).snapshot()],
    };
    let text = serde_json::to_string(&report).unwrap();
    assert!(
        text.starts_with(r#"{"connections":[{"name":"crm","state":"#),
        "{text}"
    );
    assert_eq!(
        serde_json::from_str::<warden_health::HealthReport>(&text).unwrap(),
        report
    );
}

/// Only `name` and `state` are required to read a row: an older warden's rows still show.
#[test]
fn a_minimal_row_reads_with_defaults() {
    let row: warden_health::HealthRow =
        serde_json::from_str(r#"{"name":"crm","state":"degraded"}"#).unwrap();
    assert_eq!(row.name, "crm");
    assert_eq!(row.state, warden_health::State::Degraded);
    assert!(!row.needs_reauth && row.circuit.iter().next().is_none());
    assert!(
        serde_json::from_str::<warden_health::HealthRow>(r#"{"name":1,"state":"healthy"}"#)
            .is_err()
    );
}
