//! What the pipeline hands the detectors for each request: the parsed line,
//! its key, what its URLs expose, and the [`Scrubber`] that every string
//! shown from it goes through. Both [`crate::pipeline`] and
//! [`crate::detect`] use it, so detectors never import from the pipeline.

use crate::format::Record;
use crate::keys::{Exposure, KeyRef, Scrubber, SecretHit};

/// Redacted URLs of a request that exposed a key, built only for such requests.
pub struct Evidence {
    /// `METHOD /path?query` with credential values redacted.
    pub request: String,
    pub referer: Option<String>,
}

/// A parsed request with its key attribution: what detectors and usage see.
pub struct KeyedRequest<'a> {
    pub rec: &'a Record<'a>,
    pub key: Option<KeyRef>,
    pub exposures: &'a [Exposure],
    /// Third-party credentials and credential-named values in its URLs.
    pub secrets: &'a [SecretHit],
    /// The client address as a number ([`crate::usage::distinct::client_tag`]).
    pub client: u128,
    pub evidence: Option<&'a Evidence>,
    /// The credential values of the line.
    pub scrub: &'a Scrubber,
}

impl KeyedRequest<'_> {
    /// Text from the line, ready to show: printable, with every credential
    /// value and piece of one masked.
    pub fn shown(&self, text: &[u8]) -> String {
        self.scrub.scrub(text)
    }
}
