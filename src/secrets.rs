//! Secrets kept in the data dir: the session-signing key and the pseudonymization key.
//!
//! Each is 32 random bytes, created on first start as a hex file with mode 0600
//! (`secret.key`, `pseudonym.key`). `secret_key` in the configuration replaces the session key.
//! The values are never logged (`Debug` is redacted).

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use anyhow::Context as _;
use rand::RngCore as _;

use crate::Config;

/// The platform's secret keys.
#[derive(Clone)]
pub struct Secrets {
    /// Signs session JWTs and CSRF tokens.
    pub session_key: Vec<u8>,
    /// Keys the HMAC that pseudonymizes identifiers at ingest.
    pub pseudonym_key: Vec<u8>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(<redacted>)")
    }
}

impl Secrets {
    /// Loads the keys from the data dir, creating missing ones.
    pub fn load_or_create(config: &Config) -> anyhow::Result<Self> {
        let session_key = match &config.secret_key {
            Some(k) if k.len() >= 16 => k.as_bytes().to_vec(),
            Some(_) => anyhow::bail!("secret_key must be at least 16 characters"),
            None => key_file(&config.data_dir.join("secret.key"))?,
        };
        let pseudonym_key = key_file(&config.data_dir.join("pseudonym.key"))?;
        Ok(Self {
            session_key,
            pseudonym_key,
        })
    }
}

fn key_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let key = hex::decode(text.trim())
                .with_context(|| format!("{} is not a hex key", path.display()))?;
            anyhow::ensure!(key.len() >= 16, "{} holds a too short key", path.display());
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = vec![0u8; 32];
            rand::rng().fill_bytes(&mut key);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("creating {}", path.display()))?;
            f.write_all(hex::encode(&key).as_bytes())?;
            f.sync_all()?;
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}
