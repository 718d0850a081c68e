//! Rendering results for people (text) and programs (newline-delimited JSON).
//! Every string that came from a log is already printable when it gets here
//! ([`crate::format::escape::printable`]); keys appear only masked.

pub mod daily;
pub mod html;
pub mod json;
pub mod markdown;
pub mod text;

use crate::detect::Finding;
use crate::pipeline::{Skipped, Totals};
use crate::usage::Usage;
use crate::zone::Zone;

/// Everything a report shows.
pub struct Report<'a> {
    pub findings: &'a [Finding],
    pub usage: &'a Usage,
    pub totals: Totals,
    /// Per input: its name and line counts.
    pub inputs: &'a [(String, Totals)],
    pub skipped: &'a [Skipped],
    pub zone: &'a Zone,
    pub format: &'a str,
    /// Configured key names, indexed by [`crate::keys::KeyRef::name`].
    pub names: &'a [String],
    /// The store's history around the reported day (`summary`), if any.
    pub history: Option<&'a daily::History>,
    /// Keys in use longer than this many days are due for rotation.
    pub rotation_days: u32,
}

impl Report<'_> {
    /// The daily summaries, one per day of the report.
    pub fn dailies(&self) -> Vec<daily::Daily> {
        self.usage
            .days
            .iter()
            .map(|(day, d)| {
                daily::Daily::build(
                    *day,
                    d,
                    &self.usage.labels,
                    self.names,
                    self.findings,
                    self.zone,
                    &daily::Context::of(self, *day),
                )
            })
            .collect()
    }

    pub fn name_of(&self, idx: Option<u32>) -> Option<&str> {
        idx.and_then(|i| self.names.get(i as usize))
            .map(String::as_str)
    }
}
