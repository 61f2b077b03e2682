//! The effective config as JSON (`GET /api/v1/config`): what a running warden uses, every
//! default filled in and every route override merged, in proxy.yaml's own key names and
//! spellings (durations as `2s`), so it can be compared with the file.
//!
//! Secrets never leave: paths to secret files (`admin.token_file`, `tls.client_key`) show
//! as [`REDACTED`] (or `null` when unset, so "is it set?" stays answerable), userinfo in an
//! upstream cannot appear (the origin is rebuilt from host and port), and rule regexes on
//! credential-bearing headers are redacted, as a rule matching `authorization` may embed
//! a token. Every struct is destructured in full: a field added to the model fails to
//! compile here until someone decides whether it is secret.

use serde_json::{Value, json};

use crate::duration::format_duration;
use crate::model::{
    Admin, Backoff, Budget, Circuit, Config, Connection, Limits, Policy, Probe, Retry, RetryMode,
    Route, Rule, Shutdown, Then, Timeouts, Tls, Upstream, When,
};

/// What a redacted value reads as.
pub const REDACTED: &str = "<redacted>";

/// Request and response headers whose values are credentials; regexes on them are not shown.
const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
];

/// The effective config, secrets redacted.
pub fn effective_json(config: &Config) -> Value {
    let Config {
        admin,
        limits,
        events_per_connection,
        shutdown,
        log,
        connections,
        policy,
    } = config;
    json!({
        "version": 1,
        "admin": admin_json(admin),
        "limits": limits_json(limits),
        "events_per_connection": events_per_connection,
        "shutdown": shutdown_json(shutdown),
        "log": { "access": log.access },
        "connections": connections.iter().map(connection_json).collect::<Vec<_>>(),
        "policy": policy_json(policy),
    })
}

fn secret_path<T>(path: &Option<T>) -> Value {
    match path {
        Some(_) => Value::from(REDACTED),
        None => Value::Null,
    }
}

fn admin_json(admin: &Admin) -> Value {
    let Admin { listen, token_file } = admin;
    json!({ "listen": listen.to_string(), "token_file": secret_path(token_file) })
}

fn limits_json(limits: &Limits) -> Value {
    let Limits {
        max_concurrent_retries,
        max_concurrent_probes,
        max_request_body_bytes,
        max_header_bytes,
        max_connections,
        max_idle_upstream_per_route,
        max_upstream_per_route,
    } = limits;
    json!({
        "max_connections": max_connections,
        "max_idle_upstream_per_route": max_idle_upstream_per_route,
        "max_upstream_per_route": max_upstream_per_route,
        "max_concurrent_retries": max_concurrent_retries,
        "max_concurrent_probes": max_concurrent_probes,
        "max_request_body_bytes": max_request_body_bytes,
        "max_header_bytes": max_header_bytes,
    })
}

fn shutdown_json(shutdown: &Shutdown) -> Value {
    let Shutdown { drain_timeout } = shutdown;
    json!({ "drain_timeout": format_duration(*drain_timeout) })
}

fn connection_json(connection: &Connection) -> Value {
    let Connection { name, routes } = connection;
    let mut out = serde_json::Map::new();
    out.insert("name".into(), Value::from(name.as_str()));
    for route in routes {
        out.insert(route.role.as_str().into(), route_json(route));
    }
    Value::Object(out)
}

fn route_json(route: &Route) -> Value {
    let Route {
        role: _,
        listen,
        upstream,
        tls,
        token_path,
        timeouts,
        retry,
        circuit,
    } = route;
    let mut out = json!({
        "listen": listen.to_string(),
        "upstream": upstream_json(upstream),
        "tls": tls_json(tls),
        "timeouts": timeouts_json(timeouts),
        "retry": retry_json(retry),
        "circuit": circuit_json(circuit),
    });
    if let (Some(path), Some(map)) = (token_path, out.as_object_mut()) {
        map.insert("token_path".into(), Value::from(path.as_str()));
    }
    out
}

/// Rebuilt from scheme, host and port: whatever else the authority held stays out.
fn upstream_json(upstream: &Upstream) -> Value {
    let Upstream {
        scheme,
        host,
        port,
        authority: _,
    } = upstream;
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.clone()
    };
    Value::from(format!("{}://{host}:{port}", scheme.as_str()))
}

fn tls_json(tls: &Tls) -> Value {
    let Tls {
        ca_file,
        client_cert,
        client_key,
        server_name,
    } = tls;
    json!({
        // Certificates are public; only the key is a secret.
        "ca_file": ca_file.as_ref().map(|p| p.display().to_string()),
        "client_cert": client_cert.as_ref().map(|p| p.display().to_string()),
        "client_key": secret_path(client_key),
        "server_name": server_name,
    })
}

fn timeouts_json(timeouts: &Timeouts) -> Value {
    let Timeouts {
        connect,
        request,
        client_idle,
    } = timeouts;
    json!({
        "connect": format_duration(*connect),
        "request": format_duration(*request),
        "client_idle": format_duration(*client_idle),
    })
}

fn retry_json(retry: &Retry) -> Value {
    let Retry {
        max_attempts,
        backoff: Backoff { base, max },
        budget: Budget {
            ratio,
            min_per_second,
        },
        max_body_bytes,
    } = retry;
    json!({
        "max_attempts": max_attempts,
        "backoff": { "base": format_duration(*base), "max": format_duration(*max) },
        "budget": { "ratio": ratio, "min_per_second": min_per_second },
        "max_body_bytes": max_body_bytes,
    })
}

fn circuit_json(circuit: &Circuit) -> Value {
    let Circuit {
        consecutive_failures,
        probe: Probe {
            path,
            interval,
            max_interval,
        },
    } = circuit;
    json!({
        "consecutive_failures": consecutive_failures,
        "probe": {
            "path": path,
            "interval": format_duration(*interval),
            "max_interval": format_duration(*max_interval),
        },
    })
}

fn policy_json(policy: &Policy) -> Value {
    let Policy { rules } = policy;
    json!({ "rules": rules.iter().map(rule_json).collect::<Vec<_>>() })
}

fn rule_json(rule: &Rule) -> Value {
    let Rule { name, when, then } = rule;
    let Then { verdict, retry } = then;
    let mut then = json!({ "verdict": verdict.as_str() });
    if *retry == RetryMode::Never
        && let Some(map) = then.as_object_mut()
    {
        map.insert("retry".into(), Value::from("never"));
    }
    json!({ "name": name, "when": when_json(when), "then": then })
}

fn when_json(when: &When) -> Value {
    let When {
        role,
        method,
        path_prefix,
        status,
        oauth_error,
        grant_type,
        jsonrpc_error,
        mcp_tool_error,
        error_kind,
        header,
        request_header,
    } = when;
    let ranges = |r: &Vec<(i64, i64)>| -> Vec<Value> {
        r.iter()
            .map(|(lo, hi)| {
                // proxy.yaml's own spellings: a single value, or `{from, to}`.
                if lo == hi {
                    json!(lo)
                } else {
                    json!({ "from": lo, "to": hi })
                }
            })
            .collect()
    };
    let statuses = status.as_ref().map(|s| {
        ranges(
            &s.iter()
                .map(|(lo, hi)| (i64::from(*lo), i64::from(*hi)))
                .collect(),
        )
    });
    let headers = |h: &Vec<(String, String)>| -> Value {
        let map: serde_json::Map<String, Value> = h
            .iter()
            .map(|(name, regex)| {
                let shown = if SECRET_HEADERS.contains(&name.as_str()) {
                    REDACTED.to_owned()
                } else {
                    regex.clone()
                };
                (name.clone(), Value::from(shown))
            })
            .collect();
        Value::Object(map)
    };
    let mut out = serde_json::Map::new();
    let mut put = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            out.insert(key.into(), value);
        }
    };
    put("role", role.map(|r| Value::from(r.as_str())));
    put("method", method.as_ref().map(|m| json!(m)));
    put("path_prefix", path_prefix.as_ref().map(|p| json!(p)));
    put("status", statuses.map(Value::from));
    put("oauth_error", oauth_error.as_ref().map(|c| json!(c)));
    put("grant_type", grant_type.as_ref().map(|g| json!(g)));
    put(
        "jsonrpc_error",
        jsonrpc_error.as_ref().map(|r| Value::from(ranges(r))),
    );
    put("mcp_tool_error", mcp_tool_error.map(Value::from));
    put(
        "error_kind",
        error_kind
            .as_ref()
            .map(|k| json!(k.iter().map(|k| k.as_str()).collect::<Vec<_>>())),
    );
    put("header", (!header.is_empty()).then(|| headers(header)));
    put(
        "request_header",
        (!request_header.is_empty()).then(|| headers(request_header)),
    );
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"version: 1
admin:
  listen: 127.0.0.1:9901
  token_file: /var/run/secrets/warden/admin-token
connections:
  - name: crm
    mcp:
      listen: 127.0.0.1:15001
      upstream: https://mcp.crm.example.com
      tls:
        ca_file: /etc/warden/ca.pem
        client_cert: /etc/warden/client.pem
        client_key: /var/run/secrets/warden/client.key
    oauth:
      listen: 127.0.0.1:15002
      upstream: https://idp.example.com
      token_path: /oauth2/token
policy:
  rules:
    - name: gateway-says-reauth
      when: { request_header: { authorization: "Bearer sk-live-123" }, status: 401 }
      then: { verdict: terminal }
"#;

    #[test]
    fn secrets_and_secret_paths_are_redacted() {
        let config = crate::parse(YAML, "test").expect("valid");
        let json = effective_json(&config);
        let text = json.to_string();
        for secret in [
            "/var/run/secrets/warden/admin-token",
            "/var/run/secrets/warden/client.key",
            "sk-live-123",
        ] {
            assert!(!text.contains(secret), "{secret} shown: {text}");
        }
        assert_eq!(json["admin"]["token_file"], REDACTED);
        let mcp = &json["connections"][0]["mcp"];
        assert_eq!(mcp["tls"]["client_key"], REDACTED);
        assert_eq!(mcp["tls"]["ca_file"], "/etc/warden/ca.pem");
        assert_eq!(mcp["upstream"], "https://mcp.crm.example.com:443");
        assert_eq!(mcp["timeouts"]["connect"], "2s");
        assert_eq!(
            json["connections"][0]["oauth"]["token_path"],
            "/oauth2/token"
        );
        assert_eq!(
            json["policy"]["rules"][0]["when"]["request_header"]["authorization"],
            REDACTED
        );
        assert_eq!(json["policy"]["rules"][0]["when"]["status"][0], 401);
    }

    #[test]
    fn unset_secret_paths_are_null() {
        let config = crate::parse(
            "version: 1\nconnections:\n  - name: a\n    mcp: {listen: 127.0.0.1:1, upstream: http://x}\n",
            "test",
        )
        .expect("valid");
        let json = effective_json(&config);
        assert_eq!(json["admin"]["token_file"], Value::Null);
        assert_eq!(
            json["connections"][0]["mcp"]["tls"]["client_key"],
            Value::Null
        );
    }
}
