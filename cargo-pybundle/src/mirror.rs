//! Channel mirrors for air-gapped builds, applied the way pixi applies its own: a `[mirrors]`
//! table in a pixi configuration layer, handed to pixi in `PIXI_CONFIG_FILE`. The user's
//! manifest and lock file are read by pixi as they are, so the lock keeps the channels' canonical
//! URLs and is used in `locked` mode; only the downloads go to the mirror.
//!
//! The layer is the user's own global configuration (what pixi would read without
//! `PIXI_CONFIG_FILE`: `/etc/pixi/config.toml`, the user config dir's `pixi/config.toml`,
//! `$PIXI_HOME/config.toml`; or the file `PIXI_CONFIG_FILE` already names) with our mirrors
//! merged on top, written to `<target>/pybundle/<package>/pixi-config.toml`. The project's own
//! `.pixi/config.toml` still applies over it, as pixi always merges it last.
//!
//! A channel given by name (`conda-forge`) means `https://conda.anaconda.org/<name>`, pixi's
//! default channel alias; give a full URL as the key for any other host. pixi cannot download
//! from a `file://` mirror, so such a folder is served on 127.0.0.1 while pixi runs ([`serve`]).

pub mod serve;

use anyhow::{bail, Context as _, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use toml_edit::{DocumentMut, Item};

/// Name of the environment variable holding `name=url,name=url` mirrors.
pub const ENV_VAR: &str = "PYBUNDLE_CHANNEL_MIRRORS";

/// pixi's default channel alias: where a channel given by name lives.
pub const CHANNEL_ALIAS: &str = "https://conda.anaconda.org";

/// Merges configured mirrors with `PYBUNDLE_CHANNEL_MIRRORS` (the variable wins per channel).
pub fn effective(configured: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>> {
    with_variable(configured, std::env::var(ENV_VAR).ok().as_deref())
}

/// `configured` with the mirrors of the variable's value `var` (if set) over it, per channel.
fn with_variable(
    configured: &BTreeMap<String, String>,
    var: Option<&str>,
) -> Result<BTreeMap<String, String>> {
    let mut mirrors = configured.clone();
    if let Some(value) = var {
        mirrors.extend(parse_env(value)?);
    }
    Ok(mirrors)
}

/// Parses `conda-forge=file:///x,bioconda=https://…`.
pub fn parse_env(value: &str) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for pair in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some((name, url)) if !name.trim().is_empty() && !url.trim().is_empty() => {
                out.insert(name.trim().to_owned(), url.trim().to_owned());
            }
            _ => bail!("{ENV_VAR} entry `{pair}` is not `channel=url` (e.g. conda-forge=file:///srv/conda-forge)"),
        }
    }
    Ok(out)
}

/// The configuration pixi runs with: `PIXI_CONFIG_FILE` when mirrors apply, and the loopback
/// servers of `file://` mirrors, which live as long as this value.
#[derive(Default)]
pub struct ConfigLayer {
    file: Option<PathBuf>,
    servers: Vec<serve::Server>,
}

impl ConfigLayer {
    /// The generated configuration file, if mirrors apply.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Points `cmd` (a pixi command) at the layer.
    pub fn apply(&self, cmd: &mut Command) {
        if let Some(file) = &self.file {
            Self::apply_file(cmd, file);
        }
        if self.serves() {
            // pixi would send the requests for a served `file://` mirror to a proxy from
            // HTTPS_PROXY/HTTP_PROXY/ALL_PROXY, which cannot reach this machine's loopback.
            let set = std::env::var("NO_PROXY")
                .or_else(|_| std::env::var("no_proxy"))
                .ok();
            let value = no_proxy_with_loopback(set.as_deref());
            cmd.env("NO_PROXY", &value).env("no_proxy", &value);
        }
    }

    /// Points `cmd` at a layer written earlier.
    pub fn apply_file(cmd: &mut Command, file: &Path) {
        // `--no-config` and `--config-file` exclude each other; the layer was built without
        // the global files already when PIXI_NO_CONFIG asked for that.
        cmd.env_remove("PIXI_NO_CONFIG")
            .env("PIXI_CONFIG_FILE", file);
    }

    /// Whether a `file://` mirror is being served.
    pub fn serves(&self) -> bool {
        !self.servers.is_empty()
    }
}

/// A `NO_PROXY` value that also exempts 127.0.0.1, where `file://` mirrors are served.
fn no_proxy_with_loopback(set: Option<&str>) -> String {
    match set.map(str::trim).filter(|v| !v.is_empty()) {
        Some(v) if v.split(',').any(|h| matches!(h.trim(), "*" | "127.0.0.1")) => v.to_owned(),
        Some(v) => format!("{v},127.0.0.1"),
        None => "127.0.0.1".to_owned(),
    }
}

/// Builds the layer for `mirrors` in `work` (nothing is written when there are none).
pub fn layer(mirrors: &BTreeMap<String, String>, work: &Path) -> Result<ConfigLayer> {
    if mirrors.is_empty() {
        return Ok(ConfigLayer::default());
    }
    let mut doc = global_config()?;
    let mut servers = Vec::new();
    for (channel, url) in mirrors {
        let key = channel_url(channel);
        let target = if let Some(dir) = url.strip_prefix("file://") {
            let dir = Path::new(dir);
            if !dir.is_dir() {
                bail!(
                    "the mirror of `{channel}` is {url}, but {} is not a folder; fix \
                     channel-mirrors / {ENV_VAR}",
                    dir.display()
                );
            }
            let server = serve::Server::start(dir)?;
            let served = server.url().to_owned();
            tracing::info!("serving {url} as {served} for pixi");
            servers.push(server);
            served
        } else if ["http://", "https://", "s3://", "oci://"]
            .iter()
            .any(|s| url.starts_with(s))
        {
            url.trim_end_matches('/').to_owned()
        } else {
            bail!(
                "the mirror of `{channel}` is `{url}`; a mirror must be a file://, http(s)://, \
                 s3:// or oci:// URL (fix channel-mirrors / {ENV_VAR})"
            );
        };
        let table = doc
            .entry("mirrors")
            .or_insert_with(toml_edit::table)
            .as_table_mut()
            .context("`mirrors` in the pixi configuration is not a table")?;
        let mut list = toml_edit::Array::new();
        list.push(target);
        table.insert(&key, toml_edit::value(list));
    }
    fs_err::create_dir_all(work)?;
    let file = work.join("pixi-config.toml");
    write_if_changed(&file, doc.to_string().as_bytes())?;
    Ok(ConfigLayer {
        file: Some(file),
        servers,
    })
}

/// The URL pixi's `[mirrors]` keys a channel by.
pub fn channel_url(channel: &str) -> String {
    let channel = channel.trim_end_matches('/');
    if channel.contains("://") {
        channel.to_owned()
    } else {
        format!("{CHANNEL_ALIAS}/{channel}")
    }
}

/// The user's global pixi configuration, merged in pixi's order.
fn global_config() -> Result<DocumentMut> {
    let truthy = |v: &str| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on");
    if std::env::var("PIXI_NO_CONFIG").is_ok_and(|v| truthy(&v)) {
        return Ok(DocumentMut::new());
    }
    let files = match std::env::var_os("PIXI_CONFIG_FILE").filter(|f| !f.is_empty()) {
        Some(file) => vec![PathBuf::from(file)],
        None => global_config_files(),
    };
    let mut doc = DocumentMut::new();
    for file in files {
        let text = match fs_err::read_to_string(&file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e.into()),
        };
        let layer: DocumentMut = text.parse().with_context(|| {
            format!(
                "the pixi configuration {} is not valid TOML; cargo pybundle adds channel \
                 mirrors to it",
                file.display()
            )
        })?;
        merge(doc.as_table_mut(), layer.as_table());
    }
    Ok(doc)
}

/// Where pixi looks for global configuration, lowest priority first.
fn global_config_files() -> Vec<PathBuf> {
    let mut files = vec![PathBuf::from("/etc/pixi/config.toml")];
    if cfg!(target_os = "macos") {
        if let Some(xdg) = std::env::var_os("XDG_CONFIG_HOME") {
            files.push(PathBuf::from(xdg).join("pixi/config.toml"));
        }
    }
    files.extend(dirs::config_dir().map(|d| d.join("pixi/config.toml")));
    let pixi_home = std::env::var_os("PIXI_HOME")
        .map(PathBuf::from)
        .or_else(|| dirs::home_dir().map(|h| h.join(".pixi")));
    files.extend(pixi_home.map(|h| h.join("config.toml")));
    files
}

/// Merges `over` into `base`: tables key by key, everything else replaced (pixi's own merge
/// extends `[mirrors]` and lets the later layer win elsewhere).
fn merge(base: &mut toml_edit::Table, over: &toml_edit::Table) {
    for (key, item) in over.iter() {
        match (base.get_mut(key), item) {
            (Some(Item::Table(b)), Item::Table(o)) => merge(b, o),
            _ => {
                base.insert(key, item.clone());
            }
        }
    }
}

fn write_if_changed(path: &Path, content: &[u8]) -> Result<()> {
    if fs_err::read(path).ok().as_deref() == Some(content) {
        return Ok(());
    }
    let dir = path.parent().context("no parent directory")?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, content)?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_mirrors_bypass_proxies() {
        assert_eq!(no_proxy_with_loopback(None), "127.0.0.1");
        assert_eq!(no_proxy_with_loopback(Some(" ")), "127.0.0.1");
        assert_eq!(
            no_proxy_with_loopback(Some("corp.example,.internal")),
            "corp.example,.internal,127.0.0.1"
        );
        assert_eq!(no_proxy_with_loopback(Some("a, 127.0.0.1")), "a, 127.0.0.1");
        assert_eq!(no_proxy_with_loopback(Some("*")), "*");
    }

    #[test]
    fn env_syntax_errors_are_named() {
        let e = parse_env("conda-forge").unwrap_err().to_string();
        assert!(e.contains(ENV_VAR) && e.contains("channel=url"), "{e}");
        assert!(parse_env("").unwrap().is_empty());
        let m = parse_env("conda-forge=file:///srv/cf, bioconda=https://m/bio").unwrap();
        assert_eq!(m["bioconda"], "https://m/bio");
    }

    #[test]
    fn the_variable_wins_over_the_key_per_channel() {
        let key = BTreeMap::from([
            ("conda-forge".to_owned(), "https://key/cf".to_owned()),
            ("bioconda".to_owned(), "https://key/bio".to_owned()),
        ]);
        assert_eq!(with_variable(&key, None).unwrap(), key);
        let m = with_variable(&key, Some("conda-forge=file:///var/cf")).unwrap();
        assert_eq!(m["conda-forge"], "file:///var/cf");
        assert_eq!(m["bioconda"], "https://key/bio");
        assert!(with_variable(&key, Some("conda-forge")).is_err());
    }

    #[test]
    fn names_map_to_the_default_alias_and_urls_stay() {
        assert_eq!(
            channel_url("conda-forge"),
            "https://conda.anaconda.org/conda-forge"
        );
        assert_eq!(
            channel_url("https://prefix.dev/conda-forge/"),
            "https://prefix.dev/conda-forge"
        );
    }

    #[test]
    fn layers_merge_tables_and_replace_values() {
        let mut base: DocumentMut =
            "tls-no-verify = false\n[mirrors]\n\"https://a\" = [\"https://m1\"]\n[pypi-config]\nindex-url = \"https://x\"\n"
                .parse()
                .unwrap();
        let over: DocumentMut =
            "tls-no-verify = true\n[mirrors]\n\"https://b\" = [\"https://m2\"]\n"
                .parse()
                .unwrap();
        merge(base.as_table_mut(), over.as_table());
        let text = base.to_string();
        assert!(text.contains("tls-no-verify = true"), "{text}");
        assert!(
            text.contains("https://m1") && text.contains("https://m2"),
            "{text}"
        );
        assert!(text.contains("index-url"), "{text}");
    }

    #[test]
    fn a_layer_serves_file_mirrors_and_keeps_http_ones() {
        let dir = tempfile::tempdir().unwrap();
        let channel = dir.path().join("channel");
        std::fs::create_dir_all(&channel).unwrap();
        let mirrors = BTreeMap::from([
            (
                "conda-forge".to_owned(),
                format!("file://{}", channel.display()),
            ),
            (
                "https://prefix.dev/bio".to_owned(),
                "https://m/bio/".to_owned(),
            ),
        ]);
        let work = dir.path().join("work");
        let layer = layer(&mirrors, &work).unwrap();
        assert!(layer.serves());
        let text = std::fs::read_to_string(layer.file().unwrap()).unwrap();
        let doc: DocumentMut = text.parse().unwrap();
        let served = doc["mirrors"]["https://conda.anaconda.org/conda-forge"][0]
            .as_str()
            .unwrap();
        assert!(served.starts_with("http://127.0.0.1:"), "{text}");
        assert_eq!(
            doc["mirrors"]["https://prefix.dev/bio"][0].as_str(),
            Some("https://m/bio")
        );
        let missing = BTreeMap::from([("c".to_owned(), "file:///no/such/dir".to_owned())]);
        let err = super::layer(&missing, &work).err().unwrap().to_string();
        assert!(
            err.contains("/no/such/dir") && err.contains(ENV_VAR),
            "{err}"
        );
        // `http://`, `s3://` and `oci://` mirrors go to pixi as they are.
        let others = BTreeMap::from([
            ("a".to_owned(), "http://m/a".to_owned()),
            ("b".to_owned(), "s3://bucket/b".to_owned()),
            ("c".to_owned(), "oci://ghcr.io/c".to_owned()),
        ]);
        let layer = super::layer(&others, &work).unwrap();
        let doc: DocumentMut = std::fs::read_to_string(layer.file().unwrap())
            .unwrap()
            .parse()
            .unwrap();
        for (channel, url) in &others {
            assert_eq!(
                doc["mirrors"][&channel_url(channel)][0].as_str(),
                Some(url.as_str())
            );
        }
        let bad = BTreeMap::from([("c".to_owned(), "ftp://x".to_owned())]);
        assert!(super::layer(&bad, &work).is_err());
        assert!(super::layer(&BTreeMap::new(), &work)
            .unwrap()
            .file()
            .is_none());
    }
}
