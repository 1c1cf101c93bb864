//! The on-disk cache of compiled modules, authenticated (ABI v2, guarantee 10).
//!
//! Deserializing a compiled module runs whatever machine code the file holds, so a file is used
//! only when it proves it was written by this platform for these bytes and this engine: each
//! file is `<compiled module> || HMAC-SHA256(key, context || module sha256 || engine hash ||
//! compiled module)`, under a key of the data dir that job authors never see. A file that is
//! missing, truncated, planted or copied from another module is ignored and the module is
//! compiled again (and the file rewritten).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use wasmtime::{Engine, Module};

type Tag = Hmac<Sha256>;

/// Bytes of a tag.
const TAG_BYTES: usize = 32;

/// What every tag is bound to besides the module and the engine.
const CONTEXT: &[u8] = b"dataop compiled module cache v2\0";

/// A directory of compiled modules with their tags.
pub(crate) struct CompileCache {
    dir: PathBuf,
    key: Vec<u8>,
    engine_tag: String,
}

impl CompileCache {
    /// The cache in `dir` (created if needed) under `key`, for modules compiled by `engine`.
    pub(crate) fn open(dir: &Path, key: &[u8], engine: &Engine) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let engine_tag = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            engine.precompile_compatibility_hash().hash(&mut h);
            format!("{:016x}", h.finish())
        };
        Ok(CompileCache {
            dir: dir.to_path_buf(),
            key: key.to_vec(),
            engine_tag,
        })
    }

    fn tag(&self, sha256: &str, compiled: &[u8]) -> Tag {
        let mut mac = Tag::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(CONTEXT);
        mac.update(sha256.as_bytes());
        mac.update(self.engine_tag.as_bytes());
        mac.update(compiled);
        mac
    }

    fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}-{}.cwasm", self.engine_tag))
    }

    /// The compiled module of `binary` (whose submitted bytes hash to `sha256`): from the cache
    /// when its file carries a valid tag, else compiled and written to the cache.
    pub(crate) fn compile(
        &self,
        engine: &Engine,
        binary: &[u8],
        sha256: &str,
    ) -> wasmtime::Result<Module> {
        let path = self.path(sha256);
        if let Ok(file) = std::fs::read(&path)
            && file.len() > TAG_BYTES
        {
            let (compiled, tag) = file.split_at(file.len() - TAG_BYTES);
            if self.tag(sha256, compiled).verify_slice(tag).is_ok() {
                // SAFETY: the tag proves that this platform wrote these bytes with
                // `Module::serialize` of a module compiled from `binary` by an engine of this
                // configuration; the key never leaves the data dir.
                if let Ok(m) = unsafe { Module::deserialize(engine, compiled) } {
                    return Ok(m);
                }
            }
        }
        let module = Module::new(engine, binary)?;
        if let Ok(mut bytes) = module.serialize() {
            let tag = self.tag(sha256, &bytes).finalize().into_bytes();
            bytes.extend_from_slice(&tag);
            // A name of its own for each write, so two threads never write one temporary file.
            static WRITES: AtomicU64 = AtomicU64::new(0);
            let tmp = self.dir.join(format!(
                ".{sha256}.{}.{}.tmp",
                std::process::id(),
                WRITES.fetch_add(1, Ordering::Relaxed)
            ));
            if std::fs::write(&tmp, &bytes).is_ok() && std::fs::rename(&tmp, &path).is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
        }
        Ok(module)
    }
}
