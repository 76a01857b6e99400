//! EC2 spot interruption notices: the instance metadata service answers
//! `/latest/meta-data/spot/instance-action` with 200 about two minutes before the instance
//! is taken back, and 404 until then. A tiny HTTP/1.1 client (plain `http://` only: the
//! metadata service and the tests' fake) so no other HTTP stack is needed.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// The default notice URL on EC2.
pub const SPOT_NOTICE_URL: &str = "http://169.254.169.254/latest/meta-data/spot/instance-action";

/// Whether the notice URL answers 200 (an interruption is scheduled). Errors (no metadata
/// service, timeouts) count as "no notice"; IMDSv2 is used when the service offers a token.
pub fn notice_posted(url: &str, timeout: Duration) -> bool {
    let Some((host, path)) = split_url(url) else {
        return false;
    };
    let token = request(
        &host,
        "PUT",
        "/latest/api/token",
        &[("X-aws-ec2-metadata-token-ttl-seconds", "60")],
        timeout,
    )
    .ok()
    .filter(|(status, _)| *status == 200)
    .map(|(_, body)| body);
    let headers: Vec<(&str, &str)> = match &token {
        Some(t) => vec![("X-aws-ec2-metadata-token", t.trim())],
        None => Vec::new(),
    };
    matches!(
        request(&host, "GET", &path, &headers, timeout),
        Ok((200, _))
    )
}

/// `http://host:port/path` -> (`host:port`, `/path`).
fn split_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("http://")?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let host = if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:80")
    };
    Some((host, path.to_string()))
}

fn request(
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> std::io::Result<(u16, String)> {
    let address = host
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other("no address"))?;
    let mut stream = TcpStream::connect_timeout(&address, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut text = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: 0\r\n"
    );
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("\r\n");
    stream.write_all(text.as_bytes())?;
    let mut response = Vec::new();
    stream.take(64 * 1024).read_to_end(&mut response)?;
    let response = String::from_utf8_lossy(&response);
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("not an HTTP response"))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_host_and_path() {
        assert_eq!(
            split_url(SPOT_NOTICE_URL),
            Some((
                "169.254.169.254:80".into(),
                "/latest/meta-data/spot/instance-action".into()
            ))
        );
        assert_eq!(
            split_url("http://127.0.0.1:8080"),
            Some(("127.0.0.1:8080".into(), "/".into()))
        );
        assert_eq!(split_url("https://x"), None);
    }

    #[test]
    fn a_200_is_a_notice_and_a_404_is_not() {
        for (status, expected) in [(200, true), (404, false)] {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let url = format!("http://{}/notice", listener.local_addr().unwrap());
            let server = std::thread::spawn(move || {
                // The token request, then the notice request.
                for _ in 0..2 {
                    let (mut s, _) = listener.accept().unwrap();
                    let mut buf = [0u8; 1024];
                    let _ = s.read(&mut buf);
                    let _ = write!(s, "HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n");
                }
            });
            assert_eq!(notice_posted(&url, Duration::from_secs(2)), expected);
            server.join().unwrap();
        }
    }
}
