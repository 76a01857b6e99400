//! `spotmill serve`: the telemetry dashboard page over a folder the dashboard analysis
//! published (`versions.json`, `<channel>/<version>/<hash16>/...`).
//!
//! A deliberately small HTTP/1.1 server on `std::net` (no dependency: it serves a handful
//! of GETs to one local browser): a thread per connection (at most [`MAX_CONNECTIONS`] at
//! once), one request per connection (`Connection: close`), GET and HEAD only.
//!
//! - `/` (and `/index.html`), `/app.js`, `/app.css`: the page, embedded in the binary
//!   (`runner/assets/`, built from `web/` by `scripts/build-web.sh`), so it works offline.
//! - `/data/<path>`: a file under the served folder, read-only. The path is percent-decoded
//!   and checked with [`crate::job::output::safe_join`] (relative, `/`-separated, no `..`,
//!   no `\` or NUL); the file it names must also resolve (symbolic links followed) inside
//!   the folder and be a regular file. No directory listings.
//! - anything else: 404.
//!
//! When bound to a loopback address, requests whose `Host` is not a loopback name are
//! refused (403): a web page cannot use DNS rebinding to read the data through the user's
//! browser.

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::job::output::safe_join;

/// Connections served at once; more get a 503.
pub const MAX_CONNECTIONS: usize = 64;
/// Longest request head (request line and headers) accepted.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// The page's files, embedded: (request path, content type, body).
pub const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "/index.html",
        "text/html; charset=utf-8",
        include_bytes!("../assets/index.html"),
    ),
    (
        "/app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/app.js"),
    ),
    (
        "/app.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/app.css"),
    ),
];

/// The page may load only its own scripts, styles and data.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// A content type from a file name's extension.
pub fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("json") => "application/json",
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("txt") | Some("log") => "text/plain; charset=utf-8",
        Some("csv") => "text/csv; charset=utf-8",
        Some("png") => "image/png",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

/// The body of a response.
pub enum Body {
    Static(&'static [u8]),
    Text(String),
    File(fs::File, u64),
}

pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Body,
    pub extra_headers: Vec<(&'static str, &'static str)>,
}

impl Response {
    fn error(status: u16, message: &str) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: Body::Text(format!("{message}\n")),
            extra_headers: Vec::new(),
        }
    }

    pub fn len(&self) -> u64 {
        match &self.body {
            Body::Static(b) => b.len() as u64,
            Body::Text(s) => s.len() as u64,
            Body::File(_, n) => *n,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// Decodes `%XX` escapes; None on a malformed escape or a result that is not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The folder a server serves, checked once.
#[derive(Debug, Clone)]
pub struct Site {
    /// Canonical path of the served folder.
    root: PathBuf,
}

impl Site {
    /// Checks that `dir` is a folder holding `versions.json` (the dashboard's output).
    pub fn open(dir: &Path) -> anyhow::Result<Site> {
        let root = dir
            .canonicalize()
            .with_context(|| format!("cannot open the folder {}", dir.display()))?;
        if !root.is_dir() {
            bail!("{} is not a folder", dir.display());
        }
        if !root.join("versions.json").is_file() {
            bail!(
                "{} has no versions.json: serve the --output folder of a run of the dashboard analysis",
                dir.display()
            );
        }
        Ok(Site { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The response to `method target` (the request line's method and target).
    pub fn respond(&self, method: &str, target: &str) -> Response {
        if method != "GET" && method != "HEAD" {
            let mut r = Response::error(405, "only GET and HEAD are supported");
            r.extra_headers.push(("Allow", "GET, HEAD"));
            return r;
        }
        let path = target.split(['?', '#']).next().unwrap_or("");
        if !path.starts_with('/') {
            return Response::error(400, "the request target must be an absolute path");
        }
        let asset_path = if path == "/" { "/index.html" } else { path };
        if let Some((_, content_type, body)) = ASSETS.iter().find(|(p, _, _)| *p == asset_path) {
            let mut r = Response {
                status: 200,
                content_type,
                body: Body::Static(body),
                extra_headers: vec![("Cache-Control", "no-cache")],
            };
            if content_type.starts_with("text/html") {
                r.extra_headers.push(("Content-Security-Policy", CSP));
            }
            return r;
        }
        match path.strip_prefix("/data/") {
            Some(rest) => self.data_file(rest),
            None => Response::error(404, "not found"),
        }
    }

    fn data_file(&self, encoded: &str) -> Response {
        let Some(relative) = percent_decode(encoded) else {
            return Response::error(400, "malformed percent-encoding in the path");
        };
        let Ok(joined) = safe_join(&self.root, &relative) else {
            return Response::error(404, "not found");
        };
        // Symbolic links may not lead outside the folder.
        let resolved = match joined.canonicalize() {
            Ok(p) if p.starts_with(&self.root) => p,
            _ => return Response::error(404, "not found"),
        };
        let file = match fs::File::open(&resolved) {
            Ok(f) => f,
            Err(_) => return Response::error(404, "not found"),
        };
        match file.metadata() {
            Ok(m) if m.is_file() => Response {
                status: 200,
                content_type: content_type(&resolved),
                body: Body::File(file, m.len()),
                // versions.json changes between runs; the hashed folders never do, but a
                // revalidation on loopback costs next to nothing.
                extra_headers: vec![("Cache-Control", "no-cache")],
            },
            _ => Response::error(404, "not found"),
        }
    }
}

/// Whether `host` (a `Host` header value) names a loopback address.
fn loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Reads one request head: (method, target, Host header).
fn read_head(stream: &TcpStream) -> Result<(String, String, Option<String>), u16> {
    let mut reader = BufReader::new(stream.take(MAX_HEAD_BYTES as u64));
    let mut line = String::new();
    let mut read_line = |line: &mut String| -> Result<(), u16> {
        line.clear();
        match reader.read_line(line) {
            Ok(0) => Err(400),
            Ok(_) if !line.ends_with('\n') => Err(431),
            Ok(_) => Ok(()),
            Err(_) => Err(400),
        }
    };
    read_line(&mut line)?;
    let mut parts = line.split_ascii_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(400);
    };
    if !version.starts_with("HTTP/1.") {
        return Err(400);
    }
    let (method, target) = (method.to_owned(), target.to_owned());
    let mut host = None;
    loop {
        read_line(&mut line)?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("host") {
                host = Some(value.trim().to_owned());
            }
        }
    }
    Ok((method, target, host))
}

fn write_response(stream: &mut TcpStream, head_only: bool, response: Response) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\nX-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n",
        response.status,
        reason(response.status),
        response.content_type,
        response.len()
    );
    for (name, value) in &response.extra_headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    if !head_only {
        match response.body {
            Body::Static(b) => stream.write_all(b)?,
            Body::Text(s) => stream.write_all(s.as_bytes())?,
            Body::File(mut f, _) => {
                io::copy(&mut f, stream)?;
            }
        }
    }
    stream.flush()
}

fn handle(site: &Site, check_host: bool, mut stream: TcpStream) -> io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let (method, target, host) = match read_head(&stream) {
        Ok(head) => head,
        Err(status) => {
            return write_response(&mut stream, false, Response::error(status, "bad request"))
        }
    };
    let response = if check_host && !host.as_deref().is_some_and(loopback_host) {
        Response::error(
            403,
            "this server answers only requests to a loopback host name",
        )
    } else {
        site.respond(&method, &target)
    };
    tracing::debug!(%method, %target, status = response.status, "serve");
    write_response(&mut stream, method == "HEAD", response)
}

/// A bound server: [`Server::run`] serves until the process ends.
pub struct Server {
    listener: TcpListener,
    site: Arc<Site>,
}

impl Server {
    pub fn bind(site: Site, addr: &str) -> anyhow::Result<Server> {
        let listener =
            TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
        Ok(Server {
            listener,
            site: Arc::new(site),
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The page's address, e.g. `http://127.0.0.1:8080/`.
    pub fn url(&self) -> io::Result<String> {
        let addr = self.local_addr()?;
        let host = if addr.ip().is_unspecified() {
            "127.0.0.1".to_owned()
        } else {
            match addr {
                SocketAddr::V4(a) => a.ip().to_string(),
                SocketAddr::V6(a) => format!("[{}]", a.ip()),
            }
        };
        Ok(format!("http://{host}:{}/", addr.port()))
    }

    pub fn run(self) -> anyhow::Result<()> {
        let check_host = self.local_addr()?.ip().is_loopback();
        let active = Arc::new(AtomicUsize::new(0));
        for stream in self.listener.incoming() {
            let mut stream = match stream {
                Ok(s) => s,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    continue;
                }
            };
            if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                active.fetch_sub(1, Ordering::SeqCst);
                let _ = write_response(&mut stream, false, Response::error(503, "busy"));
                continue;
            }
            let (site, active) = (Arc::clone(&self.site), Arc::clone(&active));
            std::thread::spawn(move || {
                if let Err(error) = handle(&site, check_host, stream) {
                    tracing::debug!(%error, "connection ended");
                }
                active.fetch_sub(1, Ordering::SeqCst);
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site() -> (tempfile::TempDir, Site) {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("versions.json"), b"{}\n").unwrap();
        fs::create_dir_all(dir.path().join("release/25/abc")).unwrap();
        fs::write(
            dir.path().join("release/25/abc/GC_MS-by-build-date.json"),
            b"{}\n",
        )
        .unwrap();
        let site = Site::open(dir.path()).unwrap();
        (dir, site)
    }

    fn body(r: Response) -> Vec<u8> {
        match r.body {
            Body::Static(b) => b.to_vec(),
            Body::Text(s) => s.into_bytes(),
            Body::File(mut f, _) => {
                let mut v = Vec::new();
                f.read_to_end(&mut v).unwrap();
                v
            }
        }
    }

    #[test]
    fn serves_the_page_and_data_files() {
        let (_dir, site) = site();
        let r = site.respond("GET", "/");
        assert_eq!(
            (r.status, r.content_type),
            (200, "text/html; charset=utf-8")
        );
        assert!(r
            .extra_headers
            .iter()
            .any(|(n, _)| *n == "Content-Security-Policy"));
        assert_eq!(site.respond("GET", "/app.js").status, 200);
        let r = site.respond("GET", "/data/release/25/abc/GC_MS-by-build-date.json?x=1");
        assert_eq!((r.status, r.content_type), (200, "application/json"));
        assert_eq!(body(r), b"{}\n");
        let r = site.respond("HEAD", "/data/versions.json");
        assert_eq!((r.status, r.len()), (200, 3));
        let r = site.respond("GET", "/data/release/25/%61bc/GC_MS-by-build-date.json");
        assert_eq!(r.status, 200);
    }

    #[test]
    fn refuses_traversal_folders_and_other_methods() {
        let (dir, site) = site();
        fs::write(dir.path().parent().unwrap().join("secret.json"), b"x").ok();
        for bad in [
            "/data/../secret.json",
            "/data/%2e%2e/secret.json",
            "/data/release/../../secret.json",
            "/data//etc/passwd",
            "/data/%2Fetc%2Fpasswd",
            "/data/release\\..\\x",
            "/data/a%00b",
            "/data/release",
            "/data/",
            "/data/nope.json",
            "/etc/passwd",
            "/../etc/passwd",
        ] {
            let status = site.respond("GET", bad).status;
            assert!(status == 404 || status == 400, "{bad}: {status}");
        }
        assert_eq!(site.respond("GET", "/data/%zz").status, 400);
        assert_eq!(site.respond("POST", "/").status, 405);
        assert_eq!(site.respond("GET", "http://x/").status, 400);
    }

    #[cfg(unix)]
    #[test]
    fn refuses_symbolic_links_out_of_the_folder() {
        let (dir, site) = site();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("x.json"), b"secret").unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap();
        assert_eq!(site.respond("GET", "/data/link/x.json").status, 404);
    }

    #[test]
    fn needs_versions_json_and_loopback_hosts() {
        let empty = tempfile::tempdir().unwrap();
        assert!(Site::open(empty.path()).is_err());
        for ok in [
            "127.0.0.1:8080",
            "localhost:1",
            "LOCALHOST",
            "[::1]:80",
            "127.0.0.2",
        ] {
            assert!(loopback_host(ok), "{ok}");
        }
        for bad in ["evil.example:8080", "10.0.0.1", "[::2]:80", ""] {
            assert!(!loopback_host(bad), "{bad}");
        }
        assert_eq!(percent_decode("a%20b%2F").as_deref(), Some("a b/"));
        assert_eq!(percent_decode("%e2%82"), None);
        assert_eq!(percent_decode("%4"), None);
    }

    #[test]
    fn answers_over_tcp() {
        let (_dir, site) = site();
        let server = Server::bind(site, "127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        std::thread::spawn(move || server.run());
        let get = |request: &str| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(request.as_bytes()).unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        };
        let ok = get("GET /data/versions.json HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("Content-Type: application/json\r\n"));
        assert!(ok.ends_with("\r\n\r\n{}\n"));
        let rebound = get("GET /data/versions.json HTTP/1.1\r\nHost: evil.example\r\n\r\n");
        assert!(rebound.starts_with("HTTP/1.1 403"), "{rebound}");
        let missing = get("GET /data/x.json HTTP/1.1\r\nHost: localhost\r\n\r\n");
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        let garbage = get("hello\r\n\r\n");
        assert!(garbage.starts_with("HTTP/1.1 400"), "{garbage}");
    }
}
