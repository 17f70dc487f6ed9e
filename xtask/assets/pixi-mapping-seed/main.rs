//! Seeds pixi 0.15.2's HTTP cache with an empty conda-to-PyPI name mapping.
//!
//! Before it solves `[pypi-dependencies]`, pixi 0.15.2 downloads conda-forge's package-name
//! mapping from raw.githubusercontent.com through a caching HTTP client. That host is out of
//! reach on the machines this project is tested on, so every PyPI dependency failed with
//! "failed to download pypi name mapping". The mapping only adds PyPI names to conda-forge
//! records; our test channel is not conda-forge, so an empty mapping is the correct answer.
//! A fresh cached response (ten-year max-age) makes pixi use it without touching the network.
//!
//! Usage: `pixi-mapping-seed <pixi cache dir>/http-cache`

use http_cache::{CACacheManager, CacheManager, HttpResponse, HttpVersion};
use http_cache_semantics::CachePolicy;
use std::collections::HashMap;

const URL: &str =
    "https://raw.githubusercontent.com/regro/cf-graph-countyfair/master/mappings/pypi/name_mapping.json";
const CACHE_CONTROL: &str = "public, max-age=315360000";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let dir = std::env::args_os()
        .nth(1)
        .ok_or("usage: pixi-mapping-seed <pixi cache dir>/http-cache")?;
    let body = b"[]".to_vec();
    let request = http::Request::get(URL).body(())?;
    let response = http::Response::builder()
        .status(200)
        .header("cache-control", CACHE_CONTROL)
        .header("content-type", "application/json")
        .body(body.clone())?;
    let policy = CachePolicy::new(&request, &response);
    let headers = HashMap::from([
        ("cache-control".to_owned(), CACHE_CONTROL.to_owned()),
        ("content-type".to_owned(), "application/json".to_owned()),
    ]);
    let url = url::Url::parse(URL)?;
    let cached = HttpResponse { body, headers, status: 200, url: url.clone(), version: HttpVersion::Http11 };
    let manager = CACacheManager { path: dir.into() };
    manager.put(format!("GET:{url}"), cached, policy).await?;
    Ok(())
}
