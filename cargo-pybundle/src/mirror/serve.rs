//! A read-only HTTP server on 127.0.0.1 for one local channel folder, alive while pixi runs.
//!
//! pixi's native mirrors go through its HTTP client, which refuses `file://` URLs ("URL scheme
//! is not allowed", measured with pixi 0.77.0). A `file://` mirror is therefore served here and
//! pixi is pointed at `http://127.0.0.1:<port>`: the lock file keeps the canonical channel URLs,
//! exactly as with an http mirror. Only GET and HEAD of regular files below the folder are
//! answered; nothing is listed and nothing outside the folder is reachable (`..`, symlinks out).

use anyhow::{Context as _, Result};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

/// A running server; stopped and joined when dropped.
pub struct Server {
    server: Arc<tiny_http::Server>,
    url: String,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Serves `dir` on a free port of 127.0.0.1.
    pub fn start(dir: &Path) -> Result<Server> {
        let root = dir
            .canonicalize()
            .with_context(|| format!("the mirror folder {} cannot be opened", dir.display()))?;
        let server = tiny_http::Server::http("127.0.0.1:0")
            .map_err(|e| anyhow::anyhow!("{e}"))
            .context("starting the loopback server for a file:// mirror")?;
        let port = server
            .server_addr()
            .to_ip()
            .context("the loopback server has no IP address")?
            .port();
        let server = Arc::new(server);
        let serving = Arc::clone(&server);
        let thread = std::thread::Builder::new()
            .name("mirror-server".into())
            .spawn(move || {
                for request in serving.incoming_requests() {
                    answer(&root, request);
                }
            })
            .context("starting the loopback server thread")?;
        Ok(Server {
            server,
            url: format!("http://127.0.0.1:{port}"),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:<port>` (no trailing slash).
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn answer(root: &Path, request: tiny_http::Request) {
    let method = request.method().clone();
    if !matches!(method, tiny_http::Method::Get | tiny_http::Method::Head) {
        let _ = request.respond(tiny_http::Response::empty(405));
        return;
    }
    let file = resolve(root, request.url()).and_then(|p| std::fs::File::open(p).ok());
    let Some(file) = file.filter(|f| f.metadata().is_ok_and(|m| m.is_file())) else {
        let _ = request.respond(tiny_http::Response::empty(404));
        return;
    };
    // No caching headers: pixi revalidates every time, so a rebuilt channel is never shadowed
    // by what it cached under the canonical URL.
    let no_cache =
        tiny_http::Header::from_bytes("Cache-Control", "no-cache").expect("a valid static header");
    if method == tiny_http::Method::Head {
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let response = tiny_http::Response::empty(200)
            .with_header(no_cache)
            .with_header(
                tiny_http::Header::from_bytes("Content-Length", len.to_string())
                    .expect("a number is a valid header value"),
            );
        let _ = request.respond(response);
        return;
    }
    let _ = request.respond(tiny_http::Response::from_file(file).with_header(no_cache));
}

/// The file a request path names inside `root`, if it stays inside.
fn resolve(root: &Path, url: &str) -> Option<PathBuf> {
    let path = url.split(['?', '#']).next()?;
    let decoded = percent_decode(path)?;
    let relative = Path::new(decoded.trim_start_matches('/'));
    if !relative
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
    {
        return None;
    }
    let full = root.join(relative).canonicalize().ok()?;
    full.starts_with(root).then_some(full)
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read as _, Write as _};

    fn get(url: &str, path: &str, method: &str) -> (u16, Vec<u8>) {
        let addr = url.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).unwrap();
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, raw[split + 4..].to_vec())
    }

    #[test]
    fn serves_files_inside_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let channel = dir.path().join("channel");
        std::fs::create_dir_all(channel.join("linux-64")).unwrap();
        std::fs::write(channel.join("linux-64/repodata.json"), b"{\"x\": 1}").unwrap();
        std::fs::write(dir.path().join("secret"), b"no").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), channel.join("link")).unwrap();
        let server = Server::start(&channel).unwrap();
        let url = server.url().to_owned();
        assert_eq!(
            get(&url, "/linux-64/repodata.json", "GET"),
            (200, b"{\"x\": 1}".to_vec())
        );
        assert_eq!(get(&url, "/linux-64/repodata.json", "HEAD").0, 200);
        assert_eq!(get(&url, "/linux-64/%72epodata.json", "GET").0, 200);
        for path in [
            "/../secret",
            "/linux-64/../../secret",
            "/%2e%2e/secret",
            "/link",
            "/linux-64",
            "/nope",
        ] {
            assert_eq!(get(&url, path, "GET").0, 404, "{path}");
        }
        assert_eq!(get(&url, "/linux-64/repodata.json", "DELETE").0, 405);
        // Dropping stops the thread (a hang here would mean it never returns).
        drop(server);
    }
}
