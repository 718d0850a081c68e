//! keywatch watches web-server access logs for API-key trouble: keys rejected
//! again and again, keys sent in URLs, keys used at unusual rates.
//!
//! The data flow is the module layout:
//!
//! ```text
//! source ─lines─▶ format ─Record─▶ keys ─KeyedRequest─▶ detect ─Finding─▶ output
//!                                                    └─▶ usage ──────────▶ output
//! ```
//!
//! [`pipeline`] wires the stages together; [`commands`] are what the CLI runs.

pub mod alert;
pub mod clients;
pub mod commands;
pub mod config;
pub mod deliver;
pub mod detect;
pub mod files;
pub mod format;
pub mod hash;
pub mod keys;
pub mod memory;
pub mod metrics;
pub mod output;
pub mod pipeline;
pub mod request;
pub mod source;
pub mod state;
pub mod store;
pub mod url;
pub mod usage;
pub mod zone;
