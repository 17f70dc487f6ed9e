//! A real HTTP/1.1 server on a loopback address for download tests: std `TcpListener` plus a
//! thread, serving canned replies by path, with modes that misbehave (break a body off, stall,
//! redirect); over TLS (rustls) when given a certificate ([`pki`]). [`proxy`] is a real HTTP
//! proxy to put in front of it.

pub mod pki;
pub mod proxy;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a stalling reply holds its connection: far past any timeout a test sets.
const STALL: Duration = Duration::from_secs(60);

/// What the server answers for one path.
#[derive(Clone)]
pub enum Reply {
    /// 200 with this body.
    Body(Vec<u8>),
    /// 200 announcing this body's full length, then only half of it and a closed connection.
    Truncated(Vec<u8>),
    /// 200 announcing this body's full length, half of it, then nothing (connection held).
    Stall(Vec<u8>),
    /// Reads the request and never answers (connection held).
    Silent,
    /// 302 to this location (absolute URL or path).
    Redirect(String),
}

/// A running server; it lives until the test process ends.
pub struct Server {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts serving `routes` (path → reply) on 127.0.0.1; other paths get 404.
    pub fn start(routes: HashMap<String, Reply>) -> Server {
        Server::start_on(Ipv4Addr::LOCALHOST.into(), routes)
    }

    /// Like [`Server::start`], on another loopback address (127.0.0.2 is another host to a
    /// client: Linux routes all of 127.0.0.0/8 to `lo`).
    pub fn start_on(ip: IpAddr, routes: HashMap<String, Reply>) -> Server {
        Server::listen(ip, routes, None)
    }

    /// Like [`Server::start`], speaking TLS with `cert` (HTTPS).
    pub fn start_tls(routes: HashMap<String, Reply>, cert: &pki::ServerCert) -> Server {
        Server::listen(
            Ipv4Addr::LOCALHOST.into(),
            routes,
            Some(cert.server_config()),
        )
    }

    fn listen(
        ip: IpAddr,
        routes: HashMap<String, Reply>,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Server {
        let listener = TcpListener::bind((ip, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&requests);
        let routes = Arc::new(routes);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (routes, log, tls) = (Arc::clone(&routes), Arc::clone(&log), tls.clone());
                std::thread::spawn(move || match tls {
                    None => serve(stream, &routes, &log),
                    Some(config) => {
                        let conn = rustls::ServerConnection::new(config).unwrap();
                        // The handshake happens on first use; a client that rejects the
                        // certificate ends it there, before any request is logged.
                        serve(rustls::StreamOwned::new(conn, stream), &routes, &log)
                    }
                });
            }
        });
        Server { addr, requests }
    }

    /// `http://<ip>:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Paths requested so far.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

fn serve(stream: impl Read + Write, routes: &HashMap<String, Reply>, log: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        // Skip the headers.
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                break;
            }
        }
        let target = request_line.split_whitespace().nth(1).unwrap_or("/");
        // The absolute form (`http://host:port/path`, as sent through a proxy) names the
        // same path.
        let path = match target.strip_prefix("http://") {
            Some(rest) => rest.find('/').map_or("/", |i| &rest[i..]),
            None => target,
        }
        .to_owned();
        log.lock().unwrap().push(path.clone());
        let stream = reader.get_mut();
        let result = match routes.get(&path) {
            Some(Reply::Body(body)) => {
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                stream
                    .write_all(head.as_bytes())
                    .and_then(|()| stream.write_all(body))
            }
            Some(Reply::Truncated(body)) => {
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&body[..body.len() / 2]);
                let _ = stream.flush();
                return; // dropping the stream closes the connection mid-body
            }
            Some(Reply::Stall(body)) => {
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&body[..body.len() / 2]);
                let _ = stream.flush();
                std::thread::sleep(STALL);
                return;
            }
            Some(Reply::Silent) => {
                std::thread::sleep(STALL);
                return;
            }
            Some(Reply::Redirect(location)) => {
                let head = format!(
                    "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n"
                );
                stream.write_all(head.as_bytes())
            }
            None => {
                let body = b"not found";
                let head = format!(
                    "HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                stream
                    .write_all(head.as_bytes())
                    .and_then(|()| stream.write_all(body))
            }
        };
        // Over TLS the last bytes may still sit in rustls' buffer.
        if result.and_then(|()| stream.flush()).is_err() {
            return;
        }
    }
}
