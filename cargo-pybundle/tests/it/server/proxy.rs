//! A real HTTP proxy on 127.0.0.1 for the download tests: `CONNECT host:port` (how clients
//! reach https URLs through a proxy) is answered 200 and spliced both ways; an absolute-form
//! request (`GET http://host:port/path`, how clients send http URLs through a proxy) is passed
//! on as is. Whatever host the client names, the proxy dials 127.0.0.1 at the named port, so a
//! test can use a host name only the proxy "resolves" (e.g. `pixi-mirror.test`): a download
//! of such a URL that succeeds went through the proxy.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// A running proxy; it lives until the test process ends.
pub struct Proxy {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    pub fn start() -> Proxy {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let log = Arc::clone(&log);
                std::thread::spawn(move || relay(client, &log));
            }
        });
        Proxy { addr, seen }
    }

    /// `http://127.0.0.1:<port>`, what `HTTPS_PROXY` and friends are set to.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The request line of every connection's first request (`CONNECT pixi-mirror.test:443
    /// HTTP/1.1`, `GET http://… HTTP/1.1`).
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

fn relay(client: TcpStream, log: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return;
    }
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let end = line == "\r\n";
        head.push(line);
        if end {
            break;
        }
    }
    let request_line = request_line.trim_end().to_owned();
    log.lock().unwrap().push(request_line.clone());
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let authority = if method == "CONNECT" {
        target.to_owned()
    } else if let Some(rest) = target.strip_prefix("http://") {
        rest.split('/').next().unwrap_or("").to_owned()
    } else {
        let _ = (&client).write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        return;
    };
    let port: u16 = authority
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or(80);
    let Ok(mut upstream) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) else {
        let _ = (&client).write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
        return;
    };
    if method == "CONNECT" {
        if (&client)
            .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            .is_err()
        {
            return;
        }
    } else {
        // Pass the request on as it came (servers accept the absolute form too).
        let mut bytes = format!("{request_line}\r\n").into_bytes();
        bytes.extend(head.concat().into_bytes());
        if upstream.write_all(&bytes).is_err() {
            return;
        }
    }
    // Bytes the client sent after the head, already buffered here, go first.
    if upstream.write_all(reader.buffer()).is_err() {
        return;
    }
    splice(reader.into_inner(), upstream);
}

/// Copies each way until either side closes, then closes both.
fn splice(client: TcpStream, upstream: TcpStream) {
    let (mut c_read, mut u_write) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut c_read, &mut u_write);
        let _ = u_write.shutdown(Shutdown::Write);
    });
    let (mut u_read, mut c_write) = (upstream, client);
    let _ = std::io::copy(&mut u_read, &mut c_write);
    let _ = c_write.shutdown(Shutdown::Write);
    let _ = up.join();
}
