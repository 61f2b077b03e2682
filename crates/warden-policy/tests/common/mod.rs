//! An owned, buildable exchange for tests: `Ex` holds what an `Observation` borrows.
#![allow(dead_code)]

use warden_config::{ErrorKind, Role};
use warden_policy::Observation;

pub(crate) const TOKEN_PATH: &str = "/oauth2/token";

#[derive(Debug, Clone)]
pub(crate) struct Ex {
    pub role: Role,
    pub method: &'static str,
    pub path: &'static str,
    pub token: bool,
    pub grant: Option<&'static str>,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub access_token: bool,
    pub jsonrpc: Option<i64>,
    pub kind: Option<ErrorKind>,
    pub resp: Vec<(&'static str, &'static str)>,
    pub req: Vec<(&'static str, &'static str)>,
}

/// A token request (`refresh_token` grant unless changed) answered with `status`.
pub(crate) fn token(status: u16) -> Ex {
    Ex {
        role: Role::Oauth,
        method: "POST",
        path: TOKEN_PATH,
        token: true,
        grant: Some("refresh_token"),
        status: Some(status),
        error: None,
        access_token: false,
        jsonrpc: None,
        kind: None,
        resp: vec![("content-type", "application/json")],
        req: vec![("content-type", "application/x-www-form-urlencoded")],
    }
}

/// A token request that failed below HTTP.
pub(crate) fn token_net(kind: ErrorKind) -> Ex {
    Ex {
        status: None,
        kind: Some(kind),
        resp: vec![],
        ..token(200)
    }
}

/// An mcp `POST /mcp` answered with `status`.
pub(crate) fn mcp(status: u16) -> Ex {
    Ex {
        role: Role::Mcp,
        method: "POST",
        path: "/mcp",
        token: false,
        grant: None,
        status: Some(status),
        error: None,
        access_token: false,
        jsonrpc: None,
        kind: None,
        resp: vec![("content-type", "application/json")],
        req: vec![("accept", "application/json, text/event-stream")],
    }
}

/// An api `GET /v1/items` answered with `status`.
pub(crate) fn api(status: u16) -> Ex {
    Ex {
        role: Role::Api,
        method: "GET",
        path: "/v1/items",
        req: vec![],
        ..mcp(status)
    }
}

/// A non-token request on an oauth route (e.g. the authorize page, JWKS).
pub(crate) fn oauth_other(status: u16) -> Ex {
    Ex {
        role: Role::Oauth,
        method: "GET",
        path: "/.well-known/jwks.json",
        req: vec![],
        ..mcp(status)
    }
}

pub(crate) fn net(role: Role, kind: ErrorKind) -> Ex {
    Ex {
        role,
        status: None,
        kind: Some(kind),
        resp: vec![],
        ..mcp(200)
    }
}

impl Ex {
    pub(crate) fn error(mut self, e: &str) -> Self {
        self.error = Some(e.to_owned());
        self
    }
    pub(crate) fn access_token(mut self) -> Self {
        self.access_token = true;
        self
    }
    pub(crate) fn grant(mut self, g: Option<&'static str>) -> Self {
        self.grant = g;
        self
    }
    pub(crate) fn jsonrpc(mut self, c: i64) -> Self {
        self.jsonrpc = Some(c);
        self
    }
    pub(crate) fn req(mut self, name: &'static str, value: &'static str) -> Self {
        self.req.push((name, value));
        self
    }
    pub(crate) fn resp(mut self, name: &'static str, value: &'static str) -> Self {
        self.resp.push((name, value));
        self
    }
    pub(crate) fn method(mut self, m: &'static str) -> Self {
        self.method = m;
        self
    }
    pub(crate) fn path(mut self, p: &'static str) -> Self {
        self.path = p;
        self
    }

    pub(crate) fn obs(&self) -> Observation<'_> {
        Observation {
            role: self.role,
            method: self.method,
            path: self.path,
            token_request: self.token,
            grant_type: self.grant,
            status: self.status,
            oauth_error: self.error.as_deref(),
            has_access_token: self.access_token,
            jsonrpc_error: self.jsonrpc,
            mcp_tool_error: false,
            error_kind: self.kind,
            response_headers: &self.resp,
            request_headers: &self.req,
        }
    }
}
