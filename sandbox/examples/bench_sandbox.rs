//! Runs `bench sandbox` without the server binary: `cargo run --release -p dataop-sandbox
//! --example bench_sandbox -- [ROWS]`.

fn main() -> anyhow::Result<()> {
    let rows = std::env::args().nth(1).map(|s| s.parse()).transpose()?;
    let code = dataop_sandbox::cli::bench_command(rows, &mut std::io::stdout())?;
    std::process::exit(code)
}
