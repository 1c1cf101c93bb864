//! The supervision pages: [`audit`] the audit log, its CSV export and the chain check;
//! [`desk`] the regulator's desk; [`calendar`] the working-day calendar.

pub mod audit;
pub mod calendar;
pub mod desk;
