//! API keys: where a request's key comes from, what it becomes, and how
//! nothing of it is ever shown.
//!
//! - [`sources`]: the log fields and query parameters that carry keys, and
//!   the names that say "credential";
//! - [`extract`]: a parsed line in, its keys out (the presented key, keys and
//!   third-party credentials its URLs expose), plus every credential value
//!   on the line;
//! - [`id`]: a key becomes a [`KeyId`] (HMAC-SHA256 under a per-install
//!   secret, so ids cannot be checked against guessed keys offline) and a
//!   [`MaskedKey`] for people;
//! - [`secret`]: that per-install secret;
//! - [`redact`]: the [`Scrubber`] every string derived from a line passes
//!   through before it leaves the parse;
//! - [`shapes`]: the shapes of well-known third-party credentials.
//!
//! A key in plaintext lives only inside [`Extractor::extract`] for one line.

pub mod extract;
pub mod id;
pub mod redact;
pub mod secret;
pub mod shapes;
pub mod sources;

pub use extract::{Exposure, Extractor, KeyRef, KeyScratch, KeySource, Keyed, Place, SecretHit};
pub use id::{KeyId, MaskedKey, mask};
pub use redact::Scrubber;
pub use secret::{KeySecret, SECRET_ENV, SECRET_FILE, SecretError};
pub use sources::{KeyName, KeySources};
