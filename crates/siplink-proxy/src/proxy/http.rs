//! The status HTTP endpoint: `GET /healthz` (open), `GET /status` (JSON) and
//! `GET /test/NAME` (Test Connection), the last two behind a bearer token.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};

use super::Proxy;
use crate::error::Error;
use crate::status::bearer_matches;

impl Proxy {
    /// The bearer token the status endpoint asks for: read from
    /// `proxy.status_token_file` or the variable named by
    /// `proxy.status_token_env` (surrounding whitespace removed), else made
    /// at random once per process. Errors when the file or variable is
    /// missing or empty.
    pub fn status_token(&self) -> Result<String, Error> {
        let config = self.config();
        let token = if let Some(path) = &config.proxy.status_token_file {
            std::fs::read_to_string(path)
                .map_err(|e| Error::Status(format!("status_token_file {}: {e}", path.display())))?
                .trim()
                .to_owned()
        } else if let Some(var) = &config.proxy.status_token_env {
            std::env::var(var)
                .map_err(|e| Error::Status(format!("status_token_env {var}: {e}")))?
                .trim()
                .to_owned()
        } else {
            self.inner
                .status_token
                .get_or_init(|| {
                    let mut raw = [0u8; 24];
                    rand::fill(&mut raw);
                    raw.iter().map(|b| format!("{b:02x}")).collect()
                })
                .clone()
        };
        if token.is_empty() {
            return Err(Error::Status("the status token is empty".into()));
        }
        Ok(token)
    }

    /// Serves `GET /healthz` (open), `GET /status` (JSON) and
    /// `GET /test/NAME` (Test Connection, text; these two need the
    /// [`status_token`](Self::status_token)) on `addr` until the proxy is
    /// dropped. Returns the bound address.
    pub async fn serve_status(&self, addr: SocketAddr) -> Result<SocketAddr, Error> {
        let token: Arc<str> = self.status_token()?.into();
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Error::Status(format!("{addr}: {e}")))?;
        let bound = listener
            .local_addr()
            .map_err(|e| Error::Status(e.to_string()))?;
        let proxy = self.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let proxy = proxy.clone();
                let token = token.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let proxy = proxy.clone();
                        let token = token.clone();
                        async move { Ok::<_, Infallible>(answer(&proxy, &token, req).await) }
                    });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
            }
        });
        Ok(bound)
    }
}

pub(super) async fn answer(
    proxy: &Proxy,
    token: &str,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let authorized = || {
        bearer_matches(
            req.headers()
                .get(hyper::header::AUTHORIZATION)
                .map(|v| v.as_bytes()),
            token,
        )
    };
    let (status, ctype, body) = if req.method() != hyper::Method::GET {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".to_owned(),
        )
    } else if path == "/healthz" {
        (StatusCode::OK, "text/plain", "ok\n".to_owned())
    } else if !authorized() {
        let mut r = Response::new(Full::new(Bytes::from_static(
            b"a bearer token is needed: Authorization: Bearer TOKEN\n",
        )));
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        r.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            hyper::header::HeaderValue::from_static("Bearer realm=\"siplink\""),
        );
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("text/plain"),
        );
        return r;
    } else if path == "/status" {
        (
            StatusCode::OK,
            "application/json",
            proxy.status_json().await,
        )
    } else if let Some(name) = path.strip_prefix("/test/") {
        let name = percent_decode(name);
        match proxy.test_connection(&name).await {
            Ok(r) => (StatusCode::OK, "text/plain", format!("{r}\n")),
            Err(e) => (StatusCode::NOT_FOUND, "text/plain", format!("{e}\n")),
        }
    } else {
        (
            StatusCode::NOT_FOUND,
            "text/plain",
            "try /healthz, /status or /test/NAME\n".to_owned(),
        )
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(ctype) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

pub(super) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) =
                u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
