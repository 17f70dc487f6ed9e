//! A small HTTP service whose request handler is Python: every `POST /analyze` body goes to
//! `textstats.analyze` on a pool of bundled Python worker processes, awaited from axum
//! handlers on tokio, so requests are served concurrently, across cores, without starting an
//! interpreter per request and without blocking a tokio thread. A client that goes away
//! cancels its call (the future is dropped); each call has a timeout.
//!
//! ```text
//! service serve [ADDR] [PROCESSES]   serve until Ctrl-C (default 127.0.0.1:8787, 2 processes),
//!                                    then let calls in flight finish and stop the workers
//! service [REQUESTS] [CLIENTS]       self-test: serve on a free port, fire REQUESTS requests
//!                                    from CLIENTS clients, check every answer, report
//! ```
//!
//! Build and run with `cargo pybundle run --manifest-path examples/service/Cargo.toml`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use pybundle_runtime::WorkerPool;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // The whole chain: "cannot start ...: Permission denied", not just the top.
            let mut text = err.to_string();
            let mut source = err.source();
            while let Some(cause) = source {
                text.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            eprintln!("service: {text}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Extracting on a first run takes a while: off the runtime's threads.
    let env = pybundle_runtime::Bundle::embedded()?
        .progress_to_stderr()
        .ready_async()
        .await?;
    let serving = args.first().map(String::as_str) == Some("serve");
    let processes = if serving {
        args.get(2).map(|n| n.parse()).transpose()?.unwrap_or(2)
    } else {
        2
    };
    let pool = env
        .worker(["textstats"])
        .threads(2)
        .pool_async(processes)
        .await?;
    let app = Router::new()
        .route("/analyze", post(analyze))
        .route("/health", get(health))
        .with_state(pool.clone());

    if serving {
        let addr = args.get(1).map_or("127.0.0.1:8787", String::as_str);
        let listener = TcpListener::bind(addr).await?;
        eprintln!("service: listening on http://{addr} with {processes} Python processes");
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
        eprintln!("service: stopping");
        pool.shutdown_async(Duration::from_secs(10)).await;
        return Ok(());
    }

    let requests: usize = args.first().map(|n| n.parse()).transpose()?.unwrap_or(2000);
    let clients: usize = args.get(1).map(|n| n.parse()).transpose()?.unwrap_or(16);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    self_test(addr, requests, clients).await?;
    pool.shutdown_async(Duration::from_secs(10)).await;
    Ok(())
}

/// `POST /analyze`: the body's text statistics, from Python.
async fn analyze(State(pool): State<WorkerPool>, body: String) -> (StatusCode, Json<Value>) {
    let stats = pool
        .request("textstats.analyze")
        .args(&(body,))
        .timeout(Duration::from_secs(10))
        .call_async::<Value>()
        .await;
    match stats {
        Ok(stats) => (StatusCode::OK, Json(stats)),
        Err(err) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": err.to_string()})),
        ),
    }
}

/// `GET /health`: every Python process answers a ping.
async fn health(State(pool): State<WorkerPool>) -> (StatusCode, Json<Value>) {
    match pool.ping_async(Duration::from_secs(2)).await {
        Ok(rtt) => (
            StatusCode::OK,
            Json(json!({"ok": true, "ping_us": rtt.as_micros()})),
        ),
        Err(err) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": err.to_string()})),
        ),
    }
}

/// Fires `requests` requests from `clients` keep-alive connections and checks every answer.
async fn self_test(addr: SocketAddr, requests: usize, clients: usize) -> Result<(), BoxError> {
    let start = Instant::now();
    let per_client = requests.div_ceil(clients);
    let tasks: Vec<_> = (0..clients)
        .map(|c| tokio::spawn(client(addr, c, per_client)))
        .collect();
    let mut latencies = Vec::with_capacity(requests);
    for task in tasks {
        latencies.extend(task.await??);
    }
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

/// One keep-alive connection sending `n` requests one after another.
async fn client(addr: SocketAddr, c: usize, n: usize) -> Result<Vec<Duration>, BoxError> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let text = format!("the quick brown fox {c} jumps over the lazy dog {i} the end");
        let sent = Instant::now();
        let request = format!(
            "POST /analyze HTTP/1.1\r\nhost: {addr}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{text}",
            text.len()
        );
        write.write_all(request.as_bytes()).await?;
        let stats = read_response(&mut reader).await?;
        times.push(sent.elapsed());
        if stats["words"] != 11 || stats["top"][0] != json!(["the", 3]) {
            return Err(format!("wrong answer for {text:?}: {stats}").into());
        }
    }
    Ok(times)
}

/// One HTTP/1.1 response with a Content-Length body, as JSON.
async fn read_response(
    reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
) -> Result<Value, BoxError> {
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    if !line.starts_with("HTTP/1.1 200") {
        return Err(format!("server answered {}", line.trim_end()).into());
    }
    let mut length = 0;
    loop {
        line.clear();
        reader.read_line(&mut line).await?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse()?;
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await?;
    Ok(serde_json::from_slice(&body)?)
}
