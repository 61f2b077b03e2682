//! Moves an HTTP/1 request head out of hyper's read buffer.
//!
//! hyper parses a head in place: the URI and every header value are views into the
//! connection's 8 KiB read buffer. While the request is in flight hyper reads the socket
//! again, to notice a client that leaves, and reserves 8 KiB of free space before that read.
//! A buffer still shared with the request's views cannot be reclaimed, so the reserve takes a
//! second 8 KiB block, and every request in flight holds two: 32 MB at 2,000 clients, for
//! heads of a few hundred bytes. Copied into one block of their own before hyper reads again,
//! the views let go and hyper reuses its buffer.
//!
//! The copy is not free: about 700 instructions per request (callgrind, two fields), 2% of
//! a request at 32 connections, where the second block comes from jemalloc's thread cache
//! and costs little. At 512 busy connections those blocks no longer fit the thread cache and
//! go to the arena, and the copy costs what it saves. So heads are copied only while more
//! than [`COPY_ABOVE`] HTTP/1 sessions are open, when the memory matters.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{Bytes, BytesMut};
use http::header::HeaderValue;
use http::uri::PathAndQuery;
use http::{Request, Uri};

/// HTTP/1 sessions open at once above which request heads are copied: below it, the second
/// blocks cost at most 512 KiB.
pub(crate) const COPY_ABOVE: usize = 64;

/// HTTP/1 sessions open at once (hyper connections built and not yet dropped), counted to
/// decide whether a head is worth copying.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    open: AtomicUsize,
}

impl Sessions {
    #[cfg(test)]
    pub(crate) fn count(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Counts one session until the guard drops.
    pub(crate) fn open(self: &Arc<Self>) -> Session {
        self.open.fetch_add(1, Ordering::Relaxed);
        Session {
            sessions: Arc::clone(self),
        }
    }
}

/// One open session; the session's service holds it.
#[derive(Debug)]
pub(crate) struct Session {
    sessions: Arc<Sessions>,
}

impl Session {
    /// Moves `req`'s head out of hyper's read buffer when enough sessions are open for the
    /// second blocks to matter.
    pub(crate) fn detach_head<B>(&self, req: &mut Request<B>) {
        if self.sessions.open.load(Ordering::Relaxed) > COPY_ABOVE {
            detach(req);
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.sessions.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Replaces the URI and the header values of `req` with copies in a block of their own.
///
/// Must run before hyper polls the connection again, which is why the connection's service
/// calls it in `call`, not in the response future.
pub(crate) fn detach<B>(req: &mut Request<B>) {
    let path = origin_form(req.uri());
    let path_len = path.map_or(0, str::len);
    let values_len: usize = req.headers().values().map(HeaderValue::len).sum();
    let mut block = BytesMut::with_capacity(path_len + values_len);
    if let Some(path) = path {
        block.extend_from_slice(path.as_bytes());
    }
    for value in req.headers().values() {
        block.extend_from_slice(value.as_bytes());
    }
    let block = block.freeze();

    if path.is_some()
        && let Ok(copy) = PathAndQuery::from_maybe_shared(block.slice(..path_len))
    {
        *req.uri_mut() = Uri::from(copy);
    } else if path.is_none()
        && let Ok(copy) = Uri::try_from(req.uri().to_string())
    {
        // Absolute and authority forms (a forward proxy's requests, CONNECT): rare, so
        // copied through their text.
        *req.uri_mut() = copy;
    }
    let mut at = path_len;
    for value in req.headers_mut().values_mut() {
        let end = at + value.len();
        // The bytes were a valid value a moment ago; should they not parse, the view stays.
        if let Ok(mut copy) = HeaderValue::from_maybe_shared(slice_of(&block, at, end)) {
            copy.set_sensitive(value.is_sensitive());
            *value = copy;
        }
        at = end;
    }
}

/// The URI's text when it is a path and query alone, the form nearly every request has.
fn origin_form(uri: &Uri) -> Option<&str> {
    if uri.scheme().is_some() || uri.authority().is_some() {
        return None;
    }
    uri.path_and_query().map(PathAndQuery::as_str)
}

/// An empty value gets a static empty `Bytes`, not a view that would keep the block.
fn slice_of(block: &Bytes, start: usize, end: usize) -> Bytes {
    if start == end {
        Bytes::new()
    } else {
        block.slice(start..end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A head the way hyper builds one: every part a view into one read buffer.
    fn parsed(raw: &Bytes, uri: &str, fields: &[(&'static str, &str)]) -> Request<()> {
        let view = |s: &str| {
            let start = raw
                .windows(s.len())
                .position(|w| w == s.as_bytes())
                .expect("the test's head contains each part");
            raw.slice(start..start + s.len())
        };
        let mut req = Request::builder()
            .uri(Uri::from_maybe_shared(view(uri)).unwrap())
            .body(())
            .unwrap();
        for (name, value) in fields {
            let value = if value.is_empty() {
                HeaderValue::from_static("")
            } else {
                HeaderValue::from_maybe_shared(view(value)).unwrap()
            };
            req.headers_mut().append(*name, value);
        }
        req
    }

    fn points_into(raw: &Bytes, bytes: &[u8]) -> bool {
        let range = raw.as_ptr_range();
        !bytes.is_empty() && range.contains(&bytes.as_ptr())
    }

    #[test]
    fn nothing_of_the_head_stays_in_the_read_buffer() {
        let raw = Bytes::from(
            b"GET /a/b?q=1 HTTP/1.1\r\nhost: up.example\r\naccept: */*\r\n\
              x-many: one\r\nx-many: two\r\nx-empty: \r\nauthorization: Bearer t0k3n\r\n\r\n"
                .to_vec(),
        );
        let mut req = parsed(
            &raw,
            "/a/b?q=1",
            &[
                ("host", "up.example"),
                ("accept", "*/*"),
                ("x-many", "one"),
                ("x-many", "two"),
                ("x-empty", ""),
                ("authorization", "Bearer t0k3n"),
            ],
        );
        req.headers_mut()
            .get_mut("authorization")
            .unwrap()
            .set_sensitive(true);
        let before = req.headers().clone();
        assert!(
            points_into(&raw, req.uri().path().as_bytes()),
            "the test builds views"
        );

        detach(&mut req);

        assert_eq!(req.uri(), "/a/b?q=1");
        assert!(!points_into(&raw, req.uri().path().as_bytes()));
        assert_eq!(req.headers(), &before, "values, order and repeats are kept");
        for value in req.headers().values() {
            assert!(
                !points_into(&raw, value.as_bytes()),
                "{value:?} is still a view"
            );
        }
        assert!(req.headers()["authorization"].is_sensitive());
        assert!(!req.headers()["accept"].is_sensitive());
        let many: Vec<_> = req.headers().get_all("x-many").iter().collect();
        assert_eq!(many, ["one", "two"]);
    }

    #[test]
    fn an_absolute_uri_is_copied_too() {
        let raw = Bytes::from(b"GET http://up.example:8080/p?x HTTP/1.1\r\n\r\n".to_vec());
        let mut req = parsed(&raw, "http://up.example:8080/p?x", &[]);
        detach(&mut req);
        assert_eq!(req.uri(), "http://up.example:8080/p?x");
        assert!(!points_into(&raw, req.uri().path().as_bytes()));
        assert!(!points_into(
            &raw,
            req.uri().authority().unwrap().as_str().as_bytes()
        ));
    }

    #[test]
    fn heads_are_copied_only_while_many_sessions_are_open() {
        let raw = Bytes::from(b"GET /p HTTP/1.1\r\nhost: up\r\n\r\n".to_vec());
        let sessions = Arc::new(Sessions::default());
        let mut open: Vec<Session> = (0..COPY_ABOVE).map(|_| sessions.open()).collect();
        let mut req = parsed(&raw, "/p", &[("host", "up")]);
        open[0].detach_head(&mut req);
        assert!(
            points_into(&raw, req.headers()["host"].as_bytes()),
            "copied while few open"
        );

        open.push(sessions.open());
        open[0].detach_head(&mut req);
        assert!(!points_into(&raw, req.headers()["host"].as_bytes()));
        assert!(!points_into(&raw, req.uri().path().as_bytes()));

        open.truncate(1);
        assert_eq!(
            sessions.open.load(Ordering::Relaxed),
            1,
            "a dropped session is uncounted"
        );
    }

    #[test]
    fn a_head_without_fields_keeps_its_uri() {
        let raw = Bytes::from(b"OPTIONS * HTTP/1.1\r\n\r\n".to_vec());
        let mut req = parsed(&raw, "*", &[]);
        detach(&mut req);
        assert_eq!(req.uri(), "*");
        assert!(req.headers().is_empty());
    }
}
