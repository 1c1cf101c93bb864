//! The account pages: [`register`] registration, [`session`] login, logout, the account page
//! and API tokens, [`admin`] the platform admin's organisations and users.

pub mod admin;
pub mod register;
pub mod session;
