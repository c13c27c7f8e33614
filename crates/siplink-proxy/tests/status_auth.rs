//! The admin surface is closed: over real loopback sockets, `/status` and
//! `/test/NAME` need the bearer token, `/healthz` does not.

mod support;

use std::time::Duration;

use siplink_proxy::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET path` with an optional Authorization value; (status, headers+body).
async fn get(addr: std::net::SocketAddr, path: &str, auth: Option<&str>) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[tokio::test]
async fn status_needs_the_token_and_healthz_does_not() {
    let dir = support::work_dir("status-token");
    let file = dir.join("token");
    std::fs::write(&file, "s3cr3t-token-0123456789\n").unwrap();
    let port = support::free_port();
    let toml = format!(
        "{}\n",
        support::head(port).replace(
            "[proxy]\n",
            &format!(
                "[proxy]\nstatus_token_file = {:?}\n",
                file.display().to_string()
            )
        )
    );
    let proxy = support::proxy(&toml).await;
    assert_eq!(proxy.status_token().unwrap(), "s3cr3t-token-0123456789");
    let addr = proxy
        .serve_status("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();

    let (code, _) = get(addr, "/healthz", None).await;
    assert_eq!(code, 200);
    for path in ["/status", "/test/nothing", "/other"] {
        for auth in [
            None,
            Some("Bearer wrong"),
            Some("Bearer s3cr3t-token-012345678"),
            Some("Basic czNjcjN0"),
            Some("s3cr3t-token-0123456789"),
        ] {
            let (code, text) = get(addr, path, auth).await;
            assert_eq!(code, 401, "{path} {auth:?}: {text}");
            assert!(
                text.to_ascii_lowercase()
                    .contains("www-authenticate: bearer"),
                "{text}"
            );
            assert!(!text.contains("s3cr3t"), "{text}");
        }
    }
    let (code, text) = get(addr, "/status", Some("Bearer s3cr3t-token-0123456789")).await;
    assert_eq!(code, 200, "{text}");
    assert!(text.contains("\"uptime_s\""), "{text}");
    // The scheme is case-insensitive (RFC 7235).
    let (code, _) = get(addr, "/status", Some("bearer s3cr3t-token-0123456789")).await;
    assert_eq!(code, 200);
    let (code, _) = get(addr, "/test/none", Some("Bearer s3cr3t-token-0123456789")).await;
    assert_eq!(code, 404);
}

#[tokio::test]
async fn token_from_the_environment_or_made_at_random() {
    // A variable that is not set (setting one is `unsafe` in edition 2024):
    // the token cannot be read, so the endpoint does not start.
    let var = format!("SIPLINK_TEST_STATUS_TOKEN_UNSET_{}", std::process::id());
    let port = support::free_port();
    let toml = support::head(port).replace(
        "[proxy]\n",
        &format!("[proxy]\nstatus_token_env = {var:?}\n"),
    );
    let proxy = support::proxy(&toml).await;
    let err = proxy.status_token().unwrap_err().to_string();
    assert!(err.contains(&var), "{err}");
    assert!(
        proxy
            .serve_status("127.0.0.1:0".parse().unwrap())
            .await
            .is_err()
    );

    // No token configured: one is made, the same for the process's life.
    let port = support::free_port();
    let proxy = support::proxy(&support::head(port)).await;
    let token = proxy.status_token().unwrap();
    assert!(token.len() >= 32);
    assert_eq!(proxy.status_token().unwrap(), token);
    let addr = proxy
        .serve_status("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(get(addr, "/status", None).await.0, 401);
    assert_eq!(
        get(addr, "/status", Some(&format!("Bearer {token}")))
            .await
            .0,
        200
    );
}

#[test]
fn a_status_listener_off_loopback_needs_a_configured_token() {
    let head = support::head(5060);
    let open = head.replace("[proxy]\n", "[proxy]\nstatus_listen = \"0.0.0.0:8081\"\n");
    let err = Config::from_toml(&open)
        .unwrap()
        .validate()
        .unwrap_err()
        .to_string();
    assert!(err.contains("status_listen"), "{err}");
    let with_token = head.replace(
        "[proxy]\n",
        "[proxy]\nstatus_listen = \"0.0.0.0:8081\"\nstatus_token_env = \"SIPLINK_STATUS_TOKEN\"\n",
    );
    assert!(Config::from_toml(&with_token).unwrap().validate().is_ok());
    let local = head.replace("[proxy]\n", "[proxy]\nstatus_listen = \"127.0.0.1:8081\"\n");
    assert!(Config::from_toml(&local).unwrap().validate().is_ok());
}
