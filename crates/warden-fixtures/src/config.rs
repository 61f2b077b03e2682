//! Config text for the common test shapes.

/// A minimal config with one connection `t` and one route of `role` to `upstream`;
/// `extra_route` is appended under the route (indent it by six spaces).
pub fn one_route(role: &str, upstream: &str, extra_route: &str) -> String {
    named_route("t", role, upstream, extra_route)
}

/// [`one_route`] with the connection called `name`, for tests that share a process (and
/// its metrics) and must tell their series apart.
pub fn named_route(name: &str, role: &str, upstream: &str, extra_route: &str) -> String {
    let token = if role == "oauth" {
        "\n      token_path: /token"
    } else {
        ""
    };
    format!(
        "version: 1
admin:
  listen: 127.0.0.1:0
connections:
  - name: {name}
    {role}:
      listen: 127.0.0.1:0
      upstream: {upstream}{token}{extra_route}
"
    )
}
