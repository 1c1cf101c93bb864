//! Embeds every message catalog under `locales/<lang>/<domain>.toml` and every file under
//! `static/` into the binary, so an installed `dataop` needs nothing beside it.
//!
//! Adding a file needs no code change: this script lists the directories and writes
//! `$OUT_DIR/locales.rs`, a table of `(lang, domain, include_str!(path))` entries, and
//! `$OUT_DIR/static_files.rs`, a table of `(url path, include_bytes!(path))` entries.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    embed_locales();
    embed_static();
}

/// Lists every file below `dir`, recursively, in a stable order.
fn files_below(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("static directory")
        .map(|e| e.expect("static entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            files_below(&path, out);
        } else {
            println!("cargo:rerun-if-changed={}", path.display());
            out.push(path);
        }
    }
}

fn embed_static() {
    let root =
        Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR")).join("static");
    let mut files = Vec::new();
    files_below(&root, &mut files);
    let mut out = String::from(
        "/// Embedded static assets: (path below /static/, bytes).\npub static STATIC_FILES: &[(&str, &[u8])] = &[\n",
    );
    for path in files {
        let rel = path
            .strip_prefix(&root)
            .expect("below static/")
            .to_str()
            .expect("utf-8 name")
            .replace('\\', "/");
        writeln!(
            out,
            "    ({rel:?}, include_bytes!({:?})),",
            path.display().to_string()
        )
        .expect("write");
    }
    out.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("static_files.rs");
    std::fs::write(dest, out).expect("write static_files.rs");
}

fn embed_locales() {
    let root = Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"))
        .join("locales");
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
