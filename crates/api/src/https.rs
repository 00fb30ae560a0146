//! How Ferry's HTTPS clients (the admin client, downloads of remote
//! components, trace export) trust servers and report failures: one TLS
//! configuration and one way of describing a failed request.

use std::sync::Arc;

use anyhow::Context as _;

/// TLS with the system's trust store (so a proxy's or a company's own CA,
/// installed the usual way, is trusted) on the `ring` provider that Ferry
/// already links for outbound HTTP.
pub fn tls_config() -> anyhow::Result<rustls::ClientConfig> {
    use rustls_platform_verifier::BuilderVerifierExt as _;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("configuring TLS")?
        .with_platform_verifier()
        .context("loading the system's TLS trust store")?
        .with_no_client_auth())
}

/// reqwest's errors say "error sending request" and hide the cause in the
/// source chain; people need the cause. The URL is left out: the caller
/// names it, redacted.
pub fn describe(error: reqwest::Error) -> anyhow::Error {
    let error = error.without_url();
    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    anyhow::anyhow!(message)
}
