//! Listen addresses and upstream URLs, shared by the file and the zero-config command line.

use std::net::SocketAddr;

use crate::model::{Scheme, Upstream};

/// `ip:port`. Host names are refused: resolving at load would make the bound address
/// depend on DNS at start-up.
pub(crate) fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    text.trim().parse().map_err(|_| {
        format!(
            "`{text}` is not an ip:port address (e.g. 127.0.0.1:15001 or [::1]:15001); \
             host names are not resolved"
        )
    })
}

/// Whether two listeners would fight over one socket. Port 0 asks the OS for a free port,
/// so it never collides; the unspecified address (0.0.0.0, ::) takes the port on every
/// address, so it collides with any listener on that port.
pub(crate) fn listeners_collide(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port()
        && a.port() != 0
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// `http[s]://host[:port]` and nothing else.
pub(crate) fn parse_upstream(text: &str) -> Result<Upstream, String> {
    let origin_only = "the client's path and query are forwarded as is, so the upstream \
                       must be scheme://host[:port] only";
    if text.trim().is_empty() {
        return Err("the upstream is empty: write e.g. https://mcp.example.com".into());
    }
    // `http::Uri` silently drops a fragment; refuse it explicitly.
    if text.contains('#') {
        return Err(format!("`{text}` has a fragment (#...): {origin_only}"));
    }
    let uri: http::Uri = text
        .parse()
        .map_err(|e| format!("`{text}` is not a valid URL: {e}"))?;
    let scheme = match uri.scheme_str() {
        None => {
            return Err(format!(
                "`{text}` has no scheme: write https://{text} or http://{text}"
            ));
        }
        Some(s) if s.eq_ignore_ascii_case("https") => Scheme::Https,
        Some(s) if s.eq_ignore_ascii_case("http") => Scheme::Http,
        Some(s) => {
            return Err(format!(
                "scheme `{s}` is not supported: use http:// or https://"
            ));
        }
    };
    let Some(authority) = uri.authority().cloned() else {
        return Err(format!("`{text}` has no host"));
    };
    if authority.as_str().contains('@') {
        return Err(
            "credentials in the URL (user@host) are not allowed: they would be sent to the \
             upstream and shown in logs; let the client authenticate"
                .into(),
        );
    }
    let host_as_written = authority.host();
    if host_as_written.is_empty() {
        return Err(format!("`{text}` has no host"));
    }
    // Without userinfo (refused above) the authority is the host, then `:port` if any.
    let after_host = authority
        .as_str()
        .strip_prefix(host_as_written)
        .unwrap_or_default();
    let port = match after_host.strip_prefix(':') {
        None => match scheme {
            Scheme::Http => 80,
            Scheme::Https => 443,
        },
        Some(port) => match port.parse::<u16>() {
            Ok(0) => return Err("port 0 is not a port an upstream can listen on".into()),
            Ok(port) => port,
            Err(_) => return Err(format!("`{port}` is not a valid port (1-65535)")),
        },
    };
    if uri.query().is_some() || text.contains('?') {
        return Err(format!("`{text}` has a query string: {origin_only}"));
    }
    let path = uri.path();
    if !(path.is_empty() || path == "/") {
        return Err(format!("`{text}` has a path (`{path}`): {origin_only}"));
    }
    let host = host_as_written
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host_as_written)
        .to_owned();
    Ok(Upstream {
        scheme,
        host,
        port,
        authority,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams() {
        let u = parse_upstream("https://mcp.crm.example.com").unwrap();
        assert_eq!(
            (u.scheme, u.host.as_str(), u.port),
            (Scheme::Https, "mcp.crm.example.com", 443)
        );
        assert_eq!(u.authority.as_str(), "mcp.crm.example.com");
        assert_eq!(u.to_string(), "https://mcp.crm.example.com");

        let u = parse_upstream("http://127.0.0.1:8080/").unwrap();
        assert_eq!(
            (u.scheme, u.host.as_str(), u.port),
            (Scheme::Http, "127.0.0.1", 8080)
        );

        let u = parse_upstream("https://[::1]:8443").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 8443));
        assert_eq!(u.authority.as_str(), "[::1]:8443");

        let u = parse_upstream("HTTPS://Idp.Example.com").unwrap();
        assert_eq!(
            (u.scheme, u.host.as_str()),
            (Scheme::Https, "Idp.Example.com")
        );
    }

    #[test]
    fn bad_upstreams() {
        for (text, needle) in [
            ("", "empty"),
            ("ftp://a.example.com", "scheme `ftp`"),
            ("a.example.com", "no scheme"),
            ("a.example.com:443", "no scheme"),
            ("https://", "not a valid URL"),
            ("https://:443", "no host"),
            ("https://u:p@a.example.com", "credentials"),
            ("https://a.example.com/mcp", "has a path"),
            ("https://a.example.com?x=1", "query"),
            ("https://a.example.com/?", "query"),
            ("https://a.example.com#top", "fragment"),
            ("https://a.example.com:99999", "not a valid port"),
            ("https://a.example.com:", "not a valid port"),
            ("https://a.example.com:0", "port 0"),
            ("https://a b", "not a valid URL"),
        ] {
            let err = parse_upstream(text).expect_err(text);
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(
            parse_listen("127.0.0.1:15001").unwrap(),
            "127.0.0.1:15001".parse::<SocketAddr>().unwrap()
        );
        assert!(parse_listen("[::1]:15001").is_ok());
        assert!(
            parse_listen("localhost:15001")
                .unwrap_err()
                .contains("host names")
        );
        assert!(parse_listen("127.0.0.1").is_err());
        assert!(parse_listen("127.0.0.1:99999").is_err());
    }

    #[test]
    fn collisions() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(listeners_collide(a("127.0.0.1:1"), a("127.0.0.1:1")));
        assert!(listeners_collide(a("0.0.0.0:1"), a("127.0.0.1:1")));
        assert!(listeners_collide(a("[::1]:1"), a("[::]:1")));
        assert!(listeners_collide(a("0.0.0.0:1"), a("[::1]:1")));
        assert!(!listeners_collide(a("127.0.0.1:1"), a("127.0.0.2:1")));
        assert!(!listeners_collide(a("127.0.0.1:1"), a("127.0.0.1:2")));
        assert!(!listeners_collide(a("127.0.0.1:0"), a("127.0.0.1:0")));
    }
}
