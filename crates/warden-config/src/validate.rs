//! Raw sections to the validated `Config`: defaults filled in, overrides merged, and every
//! rule of README › proxy.yaml checked, each problem reported at its key path.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::addr::{listeners_collide, parse_listen, parse_upstream};
use crate::bounds::{self, Bound, Whole};
use crate::decode::{Decoded, DecodedConnection, Part};
use crate::diag::Diags;
use crate::duration::parse_duration;
use crate::located::join_key;
use crate::model::Log;
use crate::model::{Admin, Config, Connection, Limits, Role, Route, Scheme, Shutdown, Tls};
use crate::raw::{RawDefaults, RawLimits, RawRoute, RawTls};
use crate::settings::{Layer, resolve};
use crate::{DEFAULT_EVENTS_PER_CONNECTION, rules};

/// The config, or `None` with every problem in `diags`.
pub(crate) fn validate(decoded: &Decoded, diags: &mut Diags) -> Option<Config> {
    if let Part::Present(version) = decoded.version
        && version != bounds::VERSION
    {
        diags.error(
            "version",
            format!(
                "unsupported version {version}: this warden reads version {}",
                bounds::VERSION
            ),
        );
    }
    let (admin, admin_listener) = admin(decoded, diags);
    let limits = limits(decoded.limits.get(), diags);
    let events_per_connection = bounded(
        decoded.events_per_connection.get().copied(),
        "events_per_connection",
        bounds::EVENTS_PER_CONNECTION,
        DEFAULT_EVENTS_PER_CONNECTION,
        diags,
    );
    let shutdown = shutdown(decoded, diags);
    let log = Log {
        access: decoded
            .log
            .get()
            .and_then(|l| l.access)
            .unwrap_or(Log::default().access),
    };

    let defaults = decoded.defaults.get();
    // Checked on their own too: a bad default is an error even if every route overrides it.
    resolve(&[Layer::defaults(defaults)], diags);

    if decoded.connections_empty {
        diags.error("connections", "no connections: add at least one");
    }
    // (key path, how to name it in a message, address)
    let mut listeners: Vec<(String, String, SocketAddr)> = Vec::new();
    if let Some((label, addr)) = admin_listener {
        listeners.push(("admin.listen".into(), label, addr));
    }
    let mut names: HashMap<&str, &str> = HashMap::new();
    let mut connections = Vec::with_capacity(decoded.connections.len());
    for conn in &decoded.connections {
        let name = connection_name(conn, &mut names, diags);
        if conn.route_keys == 0 {
            diags.error(
                conn.path.as_str(),
                "a connection needs at least one route: mcp, api or oauth",
            );
        }
        let mut routes = Vec::with_capacity(conn.routes.len());
        for (role, raw) in &conn.routes {
            let path = join_key(&conn.path, role.as_str());
            let (listen, route) = route(&path, *role, raw, defaults, diags);
            if let Some(listen) = listen {
                let listen_path = join_key(&path, "listen");
                let label = format!("{listen_path} ({listen})");
                listeners.push((listen_path, label, listen));
            }
            routes.extend(route);
        }
        connections.push(Connection { name, routes });
    }
    check_listeners(&listeners, diags);
    let policy = rules::policy(&decoded.rules, diags);

    if !diags.is_empty() {
        return None;
    }
    Some(Config {
        admin,
        limits,
        events_per_connection,
        shutdown,
        log,
        connections,
        policy: policy?,
    })
}

/// The admin settings, and its listener for the collision check (with how to name it in a
/// message) unless its address is unknown because it is invalid.
fn admin(decoded: &Decoded, diags: &mut Diags) -> (Admin, Option<(String, SocketAddr)>) {
    let mut admin = Admin::default();
    let default_listener = |addr: SocketAddr| {
        Some((
            format!("the admin API (admin.listen defaults to {addr})"),
            addr,
        ))
    };
    let raw = match &decoded.admin {
        Part::Present(raw) => raw,
        Part::Absent => return (admin.clone(), default_listener(admin.listen)),
        Part::Broken => return (admin, None),
    };
    let listener = match &raw.listen {
        None => default_listener(admin.listen),
        Some(listen) => match parse_listen(listen) {
            Ok(addr) => {
                admin.listen = addr;
                Some((format!("admin.listen ({addr})"), addr))
            }
            Err(message) => {
                diags.error("admin.listen", message);
                None
            }
        },
    };
    admin.token_file = file_path(raw.token_file.as_deref(), "admin.token_file", diags);
    (admin, listener)
}

fn file_path(raw: Option<&str>, path: &str, diags: &mut Diags) -> Option<PathBuf> {
    let raw = raw?;
    if raw.trim().is_empty() {
        diags.error(
            path,
            "the file path is empty; remove the key or name a file",
        );
        return None;
    }
    Some(PathBuf::from(raw))
}

fn limits(raw: Option<&RawLimits>, diags: &mut Diags) -> Limits {
    let builtin = Limits::default();
    let Some(raw) = raw else {
        return builtin;
    };
    let path = |key| join_key("limits", key);
    Limits {
        max_concurrent_retries: bounded(
            raw.max_concurrent_retries,
            &path("max_concurrent_retries"),
            bounds::MAX_CONCURRENT_RETRIES,
            builtin.max_concurrent_retries,
            diags,
        ),
        max_concurrent_probes: bounded(
            raw.max_concurrent_probes,
            &path("max_concurrent_probes"),
            bounds::MAX_CONCURRENT_PROBES,
            builtin.max_concurrent_probes,
            diags,
        ),
        max_request_body_bytes: bounded(
            raw.max_request_body_bytes,
            &path("max_request_body_bytes"),
            bounds::MAX_REQUEST_BODY_BYTES,
            builtin.max_request_body_bytes,
            diags,
        ),
        max_header_bytes: bounded(
            raw.max_header_bytes,
            &path("max_header_bytes"),
            bounds::MAX_HEADER_BYTES,
            builtin.max_header_bytes,
            diags,
        ),
        max_connections: bounded(
            raw.max_connections,
            &path("max_connections"),
            bounds::MAX_CONNECTIONS,
            builtin.max_connections,
            diags,
        ),
        max_idle_upstream_per_route: bounded(
            raw.max_idle_upstream_per_route,
            &path("max_idle_upstream_per_route"),
            bounds::UNBOUNDED,
            builtin.max_idle_upstream_per_route,
            diags,
        ),
        max_upstream_per_route: bounded(
            raw.max_upstream_per_route,
            &path("max_upstream_per_route"),
            bounds::MAX_UPSTREAM_PER_ROUTE,
            builtin.max_upstream_per_route,
            diags,
        ),
    }
}

/// `value` if present and within `bound`, else `builtin`; a value out of range is reported
/// at `path` and replaced, so the checks after it still run.
fn bounded<T: Whole>(
    value: Option<u64>,
    path: &str,
    bound: Bound,
    builtin: T,
    diags: &mut Diags,
) -> T {
    let Some(value) = value else {
        return builtin;
    };
    bound.check(value).unwrap_or_else(|message| {
        diags.error(path, message);
        builtin
    })
}

fn shutdown(decoded: &Decoded, diags: &mut Diags) -> Shutdown {
    let mut shutdown = Shutdown::default();
    let raw = decoded
        .shutdown
        .get()
        .and_then(|s| s.drain_timeout.as_ref());
    if let Some(raw) = raw {
        match parse_duration(&raw.0) {
            Ok(d) => shutdown.drain_timeout = d,
            Err(message) => diags.error("shutdown.drain_timeout", message),
        }
    }
    shutdown
}

fn connection_name<'a>(
    conn: &'a DecodedConnection,
    names: &mut HashMap<&'a str, &'a str>,
    diags: &mut Diags,
) -> String {
    let Some(name) = conn.name.get() else {
        return String::new();
    };
    let path = join_key(&conn.path, "name");
    let max = bounds::CONNECTION_NAME_MAX_LEN;
    if name.is_empty() {
        diags.error(
            path,
            format!("the name is empty: use 1 to {max} of a-z, 0-9 and `-`"),
        );
    } else if !bounds::is_connection_name(name) {
        diags.error(
            path,
            format!(
                "`{name}` is not a valid connection name: use 1 to {max} of a-z, 0-9 and `-` \
                 (it becomes a metrics label)"
            ),
        );
    } else if let Some(first) = names.insert(name, &conn.path) {
        diags.error(
            path,
            format!("duplicate connection name `{name}` (also {first})"),
        );
    }
    name.clone()
}

/// The route if valid, and its listen address if that much is valid (for the collision
/// check, which should run even when something else on the route is wrong).
fn route(
    path: &str,
    role: Role,
    raw: &RawRoute,
    defaults: Option<&RawDefaults>,
    diags: &mut Diags,
) -> (Option<SocketAddr>, Option<Route>) {
    let listen = parse_listen(&raw.listen)
        .map_err(|message| diags.error(join_key(path, "listen"), message))
        .ok();
    let upstream = parse_upstream(&raw.upstream)
        .map_err(|message| diags.error(join_key(path, "upstream"), message))
        .ok();
    let tls = tls(
        raw.tls.as_ref(),
        &join_key(path, "tls"),
        upstream.as_ref().map(|u| u.scheme),
        diags,
    );
    let token_path = token_path(raw.token_path.as_deref(), path, role, diags);
    let (timeouts, retry, circuit) =
        resolve(&[Layer::defaults(defaults), Layer::route(path, raw)], diags);
    let route = listen.zip(upstream).map(|(listen, upstream)| Route {
        role,
        listen,
        upstream,
        tls,
        token_path,
        timeouts,
        retry,
        circuit,
    });
    (listen, route)
}

fn token_path(
    raw: Option<&str>,
    route_path: &str,
    role: Role,
    diags: &mut Diags,
) -> Option<String> {
    let key = join_key(route_path, "token_path");
    match (role, raw) {
        (Role::Oauth, None) => {
            diags.error(
                route_path,
                "missing required key `token_path` (the path of the token endpoint, e.g. /oauth2/token)",
            );
            None
        }
        (Role::Oauth, Some(p)) => {
            if !p.starts_with('/') || p.contains(['?', '#']) || p.contains(char::is_whitespace) {
                diags.error(
                    key,
                    format!("`{p}` is not a request path: it must start with `/` and have no query, e.g. /oauth2/token"),
                );
            }
            Some(p.to_owned())
        }
        (Role::Mcp | Role::Api, Some(_)) => {
            diags.error(
                key,
                format!("token_path only applies to oauth routes, not {role}"),
            );
            None
        }
        (Role::Mcp | Role::Api, None) => None,
    }
}

fn tls(raw: Option<&RawTls>, path: &str, scheme: Option<Scheme>, diags: &mut Diags) -> Tls {
    let Some(raw) = raw else {
        return Tls::default();
    };
    let at = |key: &str| join_key(path, key);
    let tls = Tls {
        ca_file: file_path(raw.ca_file.as_deref(), &at("ca_file"), diags),
        client_cert: file_path(raw.client_cert.as_deref(), &at("client_cert"), diags),
        client_key: file_path(raw.client_key.as_deref(), &at("client_key"), diags),
        server_name: raw.server_name.clone(),
    };
    if let Some(name) = &raw.server_name {
        if name.trim().is_empty() {
            diags.error(
                at("server_name"),
                "server_name is empty; remove the key to use the upstream host",
            );
        } else if name.contains(char::is_whitespace) {
            diags.error(at("server_name"), format!("`{name}` is not a server name"));
        }
    }
    match (&raw.client_cert, &raw.client_key) {
        (Some(_), None) => diags.error(
            at("client_cert"),
            "client_cert needs client_key (mTLS takes both)",
        ),
        (None, Some(_)) => diags.error(
            at("client_key"),
            "client_key needs client_cert (mTLS takes both)",
        ),
        _ => {}
    }
    if scheme == Some(Scheme::Http) {
        let set = [
            ("ca_file", raw.ca_file.is_some()),
            ("client_cert", raw.client_cert.is_some()),
            ("client_key", raw.client_key.is_some()),
            ("server_name", raw.server_name.is_some()),
        ];
        for (key, _) in set.iter().filter(|(_, is_set)| *is_set) {
            diags.error(
                at(key),
                "TLS settings need an https:// upstream; this upstream is http://",
            );
        }
    }
    tls
}

/// Two listeners on one port; reported at the later one, naming the earlier.
fn check_listeners(listeners: &[(String, String, SocketAddr)], diags: &mut Diags) {
    let mut by_port: HashMap<u16, Vec<(&str, SocketAddr)>> = HashMap::new();
    for (path, label, addr) in listeners {
        let earlier = by_port.entry(addr.port()).or_default();
        if let Some((other_label, _)) = earlier
            .iter()
            .find(|(_, other)| listeners_collide(*other, *addr))
        {
            diags.error(
                path.as_str(),
                format!("port {} is already used by {other_label}", addr.port()),
            );
        }
        earlier.push((label, *addr));
    }
}
