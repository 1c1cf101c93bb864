//! `dataop job submit|status|wait|output`: the API from the shell (`--server URL --token
//! TOKEN`, the token from `POST /api/v1/tokens` or the account page). A submission is sent
//! with an `Idempotency-Key` and retried with it when its answer is lost ([`submit`]).

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use reqwest::blocking::{Client, Response, multipart};
use sha2::{Digest, Sha256};

fn client() -> anyhow::Result<Client> {
    Ok(Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?)
}

fn url(server: &str, path: &str) -> String {
    format!("{}{path}", server.trim_end_matches('/'))
}

fn json_or_error(r: Response) -> anyhow::Result<serde_json::Value> {
    let status = r.status();
    let body: serde_json::Value = r.json().context("the server did not answer JSON")?;
    if status.is_success() {
        Ok(body)
    } else if let Some(problems) = body["problems"].as_array() {
        let lines: Vec<String> = problems
            .iter()
            .map(|p| format!("  - {}", p["message"].as_str().unwrap_or("")))
            .collect();
        anyhow::bail!("refused ({status}):\n{}", lines.join("\n"))
    } else {
        anyhow::bail!(
            "{status}: {}",
            body["error"]["message"]
                .as_str()
                .unwrap_or("request failed")
        )
    }
}

/// Attempts of one submission before `dataop job submit` gives up.
pub const SUBMIT_ATTEMPTS: u32 = 5;
/// The wait before the first retry; doubled before each next one.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// Submits a module and manifest; prints the answer (JSON) and returns the run's id.
///
/// The request carries an `Idempotency-Key` (`key`, or a random one), so when the connection
/// fails or the server answers 5xx it is sent again with the same key, up to
/// [`SUBMIT_ATTEMPTS`] times with a doubling wait: a run recorded by an attempt whose answer
/// was lost is answered again, never submitted twice.
#[allow(clippy::too_many_arguments)]
pub fn submit(
    server: &str,
    token: &str,
    module: &Path,
    manifest: &Path,
    purpose: &str,
    bindings: &[String],
    key: Option<&str>,
    out: &mut dyn Write,
) -> anyhow::Result<i64> {
    let wasm = std::fs::read(module).with_context(|| format!("reading {}", module.display()))?;
    let toml =
        std::fs::read(manifest).with_context(|| format!("reading {}", manifest.display()))?;
    let mut fields = Vec::new();
    for b in bindings {
        let (name, id) = b
            .split_once('=')
            .context("--dataset takes NAME=DATASET_ID")?;
        fields.push((format!("dataset.{name}"), id.to_owned()));
    }
    let form = || {
        let mut form = multipart::Form::new()
            .part(
                "module",
                multipart::Part::bytes(wasm.clone()).file_name("module"),
            )
            .part(
                "manifest",
                multipart::Part::bytes(toml.clone()).file_name("manifest.toml"),
            )
            .text("purpose", purpose.to_owned());
        for (name, value) in &fields {
            form = form.text(name.clone(), value.clone());
        }
        form
    };
    let key = key.map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    let client = client()?;
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 1;
    let r = loop {
        let sent = client
            .post(url(server, "/api/v1/jobs"))
            .bearer_auth(token)
            .header(crate::idempotency::HEADER, &key)
            .multipart(form())
            .send();
        let failure = match sent {
            Ok(r) if !r.status().is_server_error() => break r,
            Ok(r) if attempt >= SUBMIT_ATTEMPTS => break r,
            Ok(r) => format!("the server answered {}", r.status()),
            Err(e) if attempt >= SUBMIT_ATTEMPTS => {
                return Err(anyhow::Error::from(e).context(format!(
                    "submitting failed {SUBMIT_ATTEMPTS} times (Idempotency-Key {key})"
                )));
            }
            Err(e) => format!("{e}"),
        };
        eprintln!(
            "submission attempt {attempt} failed ({failure}); retrying in {} ms with the same \
             Idempotency-Key {key}",
            backoff.as_millis()
        );
        std::thread::sleep(backoff);
        backoff *= 2;
        attempt += 1;
    };
    let body = json_or_error(r)?;
    writeln!(out, "{body}")?;
    body["id"].as_i64().context("no job id in the answer")
}

/// The run's status (JSON).
pub fn status(server: &str, token: &str, id: i64) -> anyhow::Result<serde_json::Value> {
    let r = client()?
        .get(url(server, &format!("/api/v1/jobs/{id}")))
        .bearer_auth(token)
        .send()?;
    json_or_error(r)
}

/// Polls until the run reaches a final state; whether it was released.
pub fn wait(
    server: &str,
    token: &str,
    id: i64,
    timeout: Duration,
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    let started = Instant::now();
    let mut last = String::new();
    loop {
        let s = status(server, token, id)?;
        let state = s["state"].as_str().unwrap_or("").to_owned();
        if state != last {
            // `rows_done` is given to platform staff only.
            match s["rows_done"].as_i64() {
                Some(done) => writeln!(out, "job {id}: {state} ({done}/{} rows)", s["rows_total"])?,
                None => writeln!(out, "job {id}: {state} ({} rows)", s["rows_total"])?,
            }
            last = state.clone();
        }
        if s["final"].as_bool().unwrap_or(false) {
            if state != "released"
                && let Some(reason) = s["reason"].as_str().filter(|r| !r.is_empty())
            {
                writeln!(out, "reason: {reason}")?;
            }
            return Ok(state == "released");
        }
        if started.elapsed() > timeout {
            anyhow::bail!("job {id} is still {state} after {}s", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Downloads the released output (`csv` or `json`), checks its sha256 against the server's
/// and the platform's signature over it, and writes it to `dest` (or `out`).
pub fn output(
    server: &str,
    token: &str,
    id: i64,
    format: &str,
    dest: Option<&Path>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let path = match format {
        "csv" => format!("/api/v1/jobs/{id}/output.csv"),
        "json" => format!("/api/v1/jobs/{id}/output"),
        other => anyhow::bail!("--format is csv or json, not {other}"),
    };
    let r = client()?
        .get(url(server, &path))
        .bearer_auth(token)
        .send()?;
    if !r.status().is_success() {
        return json_or_error(r).map(|_| ());
    }
    let header = |n: &str| -> anyhow::Result<String> {
        Ok(r.headers()
            .get(n)
            .with_context(|| format!("no {n} header"))?
            .to_str()?
            .to_owned())
    };
    let (sha, sig, key) = (
        header("X-Dataop-Sha256")?,
        header("X-Dataop-Signature")?,
        header("X-Dataop-Public-Key")?,
    );
    let body = r.bytes()?;
    let digest = hex::encode(Sha256::digest(&body));
    anyhow::ensure!(digest == sha, "the file does not match its sha256");
    anyhow::ensure!(
        crate::agreements::seal::verify_hex(&key, digest.as_bytes(), &sig),
        "the platform's signature does not verify"
    );
    match dest {
        Some(p) => {
            std::fs::write(p, &body).with_context(|| format!("writing {}", p.display()))?;
            eprintln!(
                "wrote {} (sha256 {digest}, signature verified)",
                p.display()
            );
        }
        None => out.write_all(&body)?,
    }
    Ok(())
}
