//! The demo world seeded by `serve --demo`.

pub mod outpatients;

use crate::AppState;

/// Seeds the demo world once; running it again keeps existing data.
pub fn seed(_state: &AppState) -> anyhow::Result<()> {
    Ok(())
}

/// Prints the demo accounts.
pub fn print_accounts() {}
