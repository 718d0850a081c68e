//! Delivery of findings to people and systems.
//!
//! This module holds the parts every channel shares: how a webhook body is
//! signed ([`sign`]) and how log-derived text is made safe for the place it
//! lands in a notice ([`safe`]). Log content is hostile by default: it may
//! carry markup, line breaks meant to forge mail headers, chat mentions, or be
//! megabytes long; nothing from a log line reaches a notice without passing
//! through [`safe`].

pub mod notice;
pub mod retry;
pub mod safe;
pub mod send;
pub mod sign;
