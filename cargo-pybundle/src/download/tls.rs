//! Which TLS certificates the pixi download trusts: the system's trust store plus whatever
//! `SSL_CERT_FILE` and `SSL_CERT_DIR` add (a corporate CA, a mirror's private CA).
//!
//! "Plus", not "instead": OpenSSL and rustls-native-certs read those variables *instead of* the
//! system store, so pointing `SSL_CERT_FILE` at one corporate CA would cut off every public
//! host. Here the system store is read from its fixed locations (never from the variables),
//! and the variables only add to it. On Linux and other Unixes that store is the CA folders
//! the system keeps (`/etc/ssl/certs`, `/etc/pki/tls/certs`, …); on macOS and Windows it is the
//! OS's own verifier (`rustls-platform-verifier`), given the variables' certificates as extras.
//!
//! Crypto is rustls with *ring*, passed explicitly: no process-wide provider is installed.

use anyhow::{anyhow, Result};
use rustls::pki_types::CertificateDer;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Names a file of PEM certificates trusted in addition to the system store.
pub const CERT_FILE_VAR: &str = "SSL_CERT_FILE";
/// Names folders (`:`-separated) of PEM certificates trusted in addition to the system store.
pub const CERT_DIR_VAR: &str = "SSL_CERT_DIR";

/// The trust configuration of one download: a rustls client config, plus what went wrong
/// reading the trust settings (reported when an https URL is fetched, so a broken
/// `SSL_CERT_FILE` does not stop an http:// or file:// mirror).
pub(super) struct Trust {
    pub(super) config: rustls::ClientConfig,
    /// Set when no https connection can succeed (unreadable `SSL_CERT_FILE`, no roots at all).
    pub(super) problem: Option<String>,
    /// For messages: where the trusted certificates came from.
    pub(super) sources: String,
}

/// The extra certificates named by `SSL_CERT_FILE` / `SSL_CERT_DIR`, as read from the
/// environment.
#[derive(Debug, Default)]
pub(super) struct Extra {
    file: Option<PathBuf>,
    dirs: Vec<PathBuf>,
}

impl Extra {
    pub(super) fn from_env() -> Extra {
        let file = std::env::var_os(CERT_FILE_VAR)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        let dirs = std::env::var_os(CERT_DIR_VAR)
            .map(|v| {
                std::env::split_paths(&v)
                    .filter(|p| !p.as_os_str().is_empty())
                    .collect()
            })
            .unwrap_or_default();
        Extra { file, dirs }
    }

    /// Reads the certificates; an unreadable location or one without a single certificate
    /// is an error naming the variable and the path.
    fn load(&self) -> Result<Vec<CertificateDer<'static>>> {
        let mut certs = Vec::new();
        if let Some(file) = &self.file {
            certs.extend(load_named(CERT_FILE_VAR, file, Some(file), None)?);
        }
        for dir in &self.dirs {
            certs.extend(load_named(CERT_DIR_VAR, dir, None, Some(dir))?);
        }
        Ok(certs)
    }

    fn describe(&self) -> String {
        let mut out = String::from("the system trust store");
        if let Some(file) = &self.file {
            out.push_str(&format!(" and {CERT_FILE_VAR}={}", file.display()));
        }
        if !self.dirs.is_empty() {
            let dirs: Vec<_> = self.dirs.iter().map(|d| d.display().to_string()).collect();
            out.push_str(&format!(" and {CERT_DIR_VAR}={}", dirs.join(":")));
        }
        out
    }
}

fn load_named(
    var: &str,
    path: &Path,
    file: Option<&Path>,
    dir: Option<&Path>,
) -> Result<Vec<CertificateDer<'static>>> {
    let fix = format!("fix {var} or unset it");
    let loaded = rustls_native_certs::load_certs_from_paths(file, dir);
    if let Some(err) = loaded.errors.first() {
        return Err(anyhow!(
            "{var}={} cannot be read as PEM certificates ({err}); {fix}",
            path.display()
        ));
    }
    if loaded.certs.is_empty() && file.is_some() {
        return Err(anyhow!(
            "{var}={} holds no PEM certificate (-----BEGIN CERTIFICATE-----); {fix}",
            path.display()
        ));
    }
    Ok(loaded.certs)
}

/// The trust configuration from the environment (see the module docs).
pub(super) fn from_env() -> Trust {
    build(&Extra::from_env())
}

pub(super) fn build(extra: &Extra) -> Trust {
    let sources = extra.describe();
    let (extra_certs, mut problem) = match extra.load() {
        Ok(certs) => (certs, None),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        // ring supports every safe default version: this cannot fail.
        .unwrap_or_else(|_| unreachable!("ring supports TLS 1.2 and 1.3"));
    let (mut config, roots_problem) = platform::config(builder, provider, extra_certs);
    problem = problem.or(roots_problem);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Trust {
        config,
        problem,
        sources,
    }
}

#[cfg(not(any(target_vendor = "apple", windows)))]
mod platform {
    use super::*;
    use rustls::client::WantsClientCert;
    use rustls::{ClientConfig, ConfigBuilder, RootCertStore};

    /// The system's CA certificates, from its fixed folders (never from `SSL_CERT_*`).
    pub(super) fn system_roots() -> Vec<CertificateDer<'static>> {
        let mut certs = Vec::new();
        for dir in openssl_probe::candidate_cert_dirs() {
            let loaded = rustls_native_certs::load_certs_from_paths(None, Some(dir));
            for err in &loaded.errors {
                tracing::debug!("reading system certificates in {}: {err}", dir.display());
            }
            certs.extend(loaded.certs);
        }
        certs
    }

    pub(super) fn config(
        builder: ConfigBuilder<ClientConfig, rustls::WantsVerifier>,
        _provider: Arc<rustls::crypto::CryptoProvider>,
        extra: Vec<CertificateDer<'static>>,
    ) -> (ClientConfig, Option<String>) {
        let mut roots = RootCertStore::empty();
        let (system, _) = roots.add_parsable_certificates(system_roots());
        let (added, ignored) = roots.add_parsable_certificates(extra);
        if ignored > 0 {
            tracing::warn!(
                "{ignored} certificates from {CERT_FILE_VAR}/{CERT_DIR_VAR} are unusable"
            );
        }
        tracing::debug!("trusting {system} system and {added} extra CA certificates");
        let problem = roots.is_empty().then(|| {
            format!(
                "no trusted CA certificates: the system store ({}) is empty and {CERT_FILE_VAR} \
                 is not set; install your system's CA certificates (e.g. the ca-certificates \
                 package) or set {CERT_FILE_VAR} to a PEM file of the CAs to trust",
                openssl_probe::candidate_cert_dirs()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        });
        let builder: ConfigBuilder<ClientConfig, WantsClientCert> =
            builder.with_root_certificates(roots);
        (builder.with_no_client_auth(), problem)
    }
}

#[cfg(any(target_vendor = "apple", windows))]
mod platform {
    use super::*;
    use rustls::{ClientConfig, ConfigBuilder};

    pub(super) fn config(
        builder: ConfigBuilder<ClientConfig, rustls::WantsVerifier>,
        provider: Arc<rustls::crypto::CryptoProvider>,
        extra: Vec<CertificateDer<'static>>,
    ) -> (ClientConfig, Option<String>) {
        match rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider) {
            Ok(verifier) => (
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(verifier))
                    .with_no_client_auth(),
                None,
            ),
            Err(e) => (
                builder
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth(),
                Some(format!(
                    "the system trust store cannot be used ({e}); set {CERT_FILE_VAR} to a PEM \
                     file of the CAs to trust"
                )),
            ),
        }
    }
}

/// The rustls error behind a failed request, if TLS is what failed. Walks the source chain
/// and looks inside `io::Error`s (hyper-rustls wraps tokio-rustls' `io::Error` in another
/// one, and an `io::Error`'s `source()` skips the error it wraps).
pub(super) fn rustls_error<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a rustls::Error> {
    if let Some(tls) = err.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    if let Some(inner) = err
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
    {
        if let Some(tls) = rustls_error(inner) {
            return Some(tls);
        }
    }
    err.source().and_then(rustls_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_ca(dir: &Path) -> (PathBuf, CertificateDer<'static>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "cargo-pybundle unit test CA");
        let cert = params.self_signed(&key).unwrap();
        let path = dir.join("ca.pem");
        std::fs::write(&path, cert.pem()).unwrap();
        (path, cert.der().clone())
    }

    #[cfg(not(any(target_vendor = "apple", windows)))]
    #[test]
    fn extra_certificates_add_to_the_system_store() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, der) = test_ca(dir.path());
        let extra = Extra {
            file: Some(ca.clone()),
            dirs: Vec::new(),
        };
        let loaded = extra.load().unwrap();
        assert_eq!(loaded, vec![der.clone()]);
        // What `build` trusts: every system root and the extra one.
        let system = platform::system_roots();
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(system.clone());
        let before = roots.len();
        roots.add_parsable_certificates(loaded);
        assert_eq!(roots.len(), before + 1);
        let trust = build(&extra);
        assert!(trust.problem.is_none(), "{:?}", trust.problem);
        assert!(trust
            .sources
            .contains(&format!("SSL_CERT_FILE={}", ca.display())));
        assert!(trust.sources.starts_with("the system trust store"));

        // The same CA from a folder named by SSL_CERT_DIR.
        let from_dir = Extra {
            file: None,
            dirs: vec![dir.path().to_path_buf()],
        };
        assert_eq!(from_dir.load().unwrap(), vec![der]);
        let trust = build(&from_dir);
        assert!(trust.problem.is_none(), "{:?}", trust.problem);
        assert!(trust
            .sources
            .contains(&format!("SSL_CERT_DIR={}", dir.path().display())));
    }

    #[test]
    fn tls_errors_are_found_inside_nested_io_errors() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let nested = std::io::Error::other(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            tls.clone(),
        ));
        assert_eq!(rustls_error(&nested), Some(&tls));
        let plain = std::io::Error::other("connection refused");
        assert_eq!(rustls_error(&plain), None);
    }

    #[test]
    fn broken_settings_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let err = Extra {
            file: Some(missing.clone()),
            dirs: Vec::new(),
        }
        .load()
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(&format!("SSL_CERT_FILE={}", missing.display())) && err.contains("unset"),
            "{err}"
        );
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        let extra = Extra {
            file: Some(junk.clone()),
            dirs: Vec::new(),
        };
        let err = extra.load().unwrap_err().to_string();
        assert!(err.contains("holds no PEM certificate"), "{err}");
        // The problem is kept for https, not raised while building.
        let trust = build(&extra);
        assert!(trust.problem.unwrap().contains(&junk.display().to_string()));
        let err = Extra {
            file: None,
            dirs: vec![dir.path().join("no-dir")],
        }
        .load()
        .unwrap_err()
        .to_string();
        assert!(err.contains("SSL_CERT_DIR="), "{err}");
    }
}
