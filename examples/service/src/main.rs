//! A small HTTP service whose request handler is Python: every `POST /analyze` body goes to
//! `textstats.analyze` on a pool of bundled Python worker processes, so requests are served
//! concurrently, across cores, without starting an interpreter per request.
//!
//! ```text
//! service serve [ADDR] [PROCESSES]   serve until killed (default 127.0.0.1:8787, 2 processes)
//! service [REQUESTS] [CLIENTS]       self-test: serve on a free port, fire REQUESTS requests
//!                                    from CLIENTS client threads, check every answer, report
//! ```
//!
//! Build and run with `cargo pybundle run --manifest-path examples/service/Cargo.toml`.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pybundle_runtime::WorkerPool;
use serde_json::Value;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("service: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let env = pybundle_runtime::Bundle::embedded()?
        .progress_to_stderr()
        .ready()?;
    if args.first().map(String::as_str) == Some("serve") {
        let addr = args.get(1).map_or("127.0.0.1:8787", String::as_str);
        let processes = args.get(2).map(|n| n.parse()).transpose()?.unwrap_or(2);
        let pool = Arc::new(env.worker(["textstats"]).threads(2).pool(processes)?);
        let listener = TcpListener::bind(addr)?;
        eprintln!("service: listening on http://{addr} with {processes} Python processes");
        return serve(listener, pool);
    }
    let requests: usize = args.first().map(|n| n.parse()).transpose()?.unwrap_or(2000);
    let clients: usize = args.get(1).map(|n| n.parse()).transpose()?.unwrap_or(16);
    let pool = Arc::new(env.worker(["textstats"]).threads(2).pool(2)?);
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let server_pool = pool.clone();
    std::thread::spawn(move || serve(listener, server_pool));
    self_test(addr, requests, clients)
}

/// Accepts connections forever, one thread each; the pool is shared by all of them.
fn serve(listener: TcpListener, pool: Arc<WorkerPool>) -> Result<(), BoxError> {
    for stream in listener.incoming() {
        let stream = stream?;
        let pool = pool.clone();
        std::thread::spawn(move || {
            if let Err(err) = handle(stream, &pool) {
                eprintln!("service: connection failed: {err}");
            }
        });
    }
    Ok(())
}

/// Serves the requests of one keep-alive connection.
fn handle(stream: TcpStream, pool: &WorkerPool) -> Result<(), BoxError> {
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    while let Some((method, path, body)) = read_request(&mut reader)? {
        let (status, reply) = match (method.as_str(), path.as_str()) {
            ("POST", "/analyze") => match pool
                .request("textstats.analyze")
                .args(&(String::from_utf8_lossy(&body),))
                .timeout(Duration::from_secs(10))
                .call::<Value>()
            {
                Ok(stats) => ("200 OK", stats),
                Err(err) => (
                    "500 Internal Server Error",
                    serde_json::json!({"error": err.to_string()}),
                ),
            },
            ("GET", "/health") => match pool.ping(Duration::from_secs(2)) {
                Ok(rtt) => (
                    "200 OK",
                    serde_json::json!({"ok": true, "ping_us": rtt.as_micros()}),
                ),
                Err(err) => (
                    "503 Service Unavailable",
                    serde_json::json!({"error": err.to_string()}),
                ),
            },
            _ => (
                "404 Not Found",
                serde_json::json!({"error": "try POST /analyze or GET /health"}),
            ),
        };
        let body = serde_json::to_vec(&reply)?;
        // One write per response: a split header/body write meets delayed ACKs (40 ms).
        let mut response = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        response.extend_from_slice(&body);
        out.write_all(&response)?;
    }
    Ok(())
}

/// One HTTP/1.1 request (method, path, body), or `None` when the client closed the connection.
fn read_request(reader: &mut impl BufRead) -> Result<Option<(String, String, Vec<u8>)>, BoxError> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or("").to_owned(),
        parts.next().unwrap_or("").to_owned(),
    );
    let length = content_length(reader)?;
    if length > 16 << 20 {
        return Err(format!("request body of {length} bytes is over the 16 MiB limit").into());
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok(Some((method, path, body)))
}

/// Fires `requests` requests from `clients` keep-alive connections and checks every answer.
fn self_test(addr: SocketAddr, requests: usize, clients: usize) -> Result<(), BoxError> {
    let start = Instant::now();
    let per_client = requests.div_ceil(clients);
    let mut latencies: Vec<Duration> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                scope.spawn(move || -> Result<Vec<Duration>, BoxError> {
                    let stream = TcpStream::connect(addr)?;
                    stream.set_nodelay(true)?;
                    let mut reader = BufReader::new(stream.try_clone()?);
                    let mut out = stream;
                    let mut times = Vec::with_capacity(per_client);
                    for i in 0..per_client {
                        let text = format!("the quick brown fox {c} jumps over the lazy dog {i} the end");
                        let sent = Instant::now();
                        write!(
                            out,
                            "POST /analyze HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {}\r\n\r\n{text}",
                            text.len()
                        )?;
                        let stats = read_response(&mut reader)?;
                        times.push(sent.elapsed());
                        if stats["words"] != 11 || stats["top"][0] != serde_json::json!(["the", 3]) {
                            return Err(format!("wrong answer for {text:?}: {stats}").into());
                        }
                    }
                    Ok(times)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| BoxError::from("a client thread panicked"))?
            })
            .collect::<Result<Vec<_>, BoxError>>()
            .map(|all| all.concat())
    })?;
    let elapsed = start.elapsed();
    latencies.sort();
    let pct = |p: usize| latencies[(latencies.len() * p / 100).min(latencies.len() - 1)];
    println!(
        "{} requests from {clients} clients in {:.2} s: {:.0} requests/s, latency p50 {:.2} ms, p99 {:.2} ms; all answers correct",
        latencies.len(),
        elapsed.as_secs_f64(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        pct(50).as_secs_f64() * 1e3,
        pct(99).as_secs_f64() * 1e3,
    );
    Ok(())
}

fn read_response(reader: &mut impl BufRead) -> Result<Value, BoxError> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    if !line.starts_with("HTTP/1.1 200") {
        return Err(format!("server answered {}", line.trim_end()).into());
    }
    let mut body = vec![0; content_length(reader)?];
    reader.read_exact(&mut body)?;
    Ok(serde_json::from_slice(&body)?)
}

/// Reads the header lines of a request or response up to the blank line; its Content-Length
/// (0 when there is none).
fn content_length(reader: &mut impl BufRead) -> Result<usize, BoxError> {
    let mut line = String::new();
    let mut length = 0;
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let header = line.trim_end();
        if header.is_empty() {
            return Ok(length);
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse()?;
            }
        }
    }
}
