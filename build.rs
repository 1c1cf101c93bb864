//! Embeds every message catalog under `locales/<lang>/<domain>.toml` into the binary.
//!
//! Adding a catalog file needs no code change: this script lists the directory and writes
//! `$OUT_DIR/locales.rs`, a table of `(lang, domain, include_str!(path))` entries.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("locales");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut entries = Vec::new();
    for lang_dir in std::fs::read_dir(&root).expect("locales directory") {
        let lang_dir = lang_dir.expect("locales entry").path();
        if !lang_dir.is_dir() {
            continue;
        }
        println!("cargo:rerun-if-changed={}", lang_dir.display());
        let lang = lang_dir
            .file_name()
            .and_then(|s| s.to_str())
            .expect("utf-8 name")
            .to_owned();
        for file in std::fs::read_dir(&lang_dir).expect("language directory") {
            let file = file.expect("language entry").path();
            if file.extension().and_then(|s| s.to_str()) != Some("toml") {
                continue;
            }
            println!("cargo:rerun-if-changed={}", file.display());
            let domain = file
                .file_stem()
                .and_then(|s| s.to_str())
                .expect("utf-8 name")
                .to_owned();
            entries.push((lang.clone(), domain, file));
        }
    }
    entries.sort();
    let mut out = String::from(
        "/// Embedded message catalogs: (language, domain, TOML text).\npub static CATALOG_FILES: &[(&str, &str, &str)] = &[\n",
    );
    for (lang, domain, path) in entries {
        writeln!(
            out,
            "    ({lang:?}, {domain:?}, include_str!({:?})),",
            path.display().to_string()
        )
        .expect("write");
    }
    out.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("locales.rs");
    std::fs::write(dest, out).expect("write locales.rs");
}
