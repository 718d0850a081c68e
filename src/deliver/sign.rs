//! Webhook signatures.
//!
//! keywatch signs every webhook per the Standard Webhooks convention: the
//! receiver gets `webhook-id`, `webhook-timestamp` and
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`.
//! Optionally a GitHub-style `X-Hub-Signature-256: sha256=<hex HMAC of body>`
//! is added for receivers that only know that form.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// A webhook signing secret, as bytes.
///
/// The `Debug` form never shows the bytes.
#[derive(Clone)]
pub struct SigningSecret(Vec<u8>);

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningSecret({} bytes)", self.0.len())
    }
}

/// Why a secret could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("the signing secret is empty; set it to at least 16 random bytes")]
    Empty,
    #[error(
        "the signing secret after `whsec_` is not valid base64; paste it exactly as the receiver issued it"
    )]
    BadBase64,
    #[error(
        "the signing secret is only {0} bytes; use at least 16 random bytes (e.g. `openssl rand -base64 32`)"
    )]
    TooShort(usize),
}

impl SigningSecret {
    /// Reads a secret as receivers issue them: `whsec_<base64>` is the
    /// Standard Webhooks form and is decoded; anything else is used as its
    /// UTF-8 bytes (the GitHub form). Surrounding whitespace, such as the
    /// newline at the end of a secret file, is ignored.
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(SecretError::Empty);
        }
        let bytes = match text.strip_prefix("whsec_") {
            Some(b64) => STANDARD.decode(b64).map_err(|_| SecretError::BadBase64)?,
            None => text.as_bytes().to_vec(),
        };
        if bytes.len() < 16 {
            return Err(SecretError::TooShort(bytes.len()));
        }
        Ok(SigningSecret(bytes))
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC accepts keys of any length; this cannot fail.
        <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("HMAC takes any key length")
    }

    /// The MAC over `id.timestamp.body`, the string Standard Webhooks signs.
    fn standard_mac(&self, id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.mac();
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// The `webhook-signature` header value for a message.
    pub fn standard_signature(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mac = self.standard_mac(id, timestamp, body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }

    /// The `X-Hub-Signature-256` header value for a body.
    pub fn github_signature(&self, body: &[u8]) -> String {
        let mut mac = self.mac();
        mac.update(body);
        let digest = mac.finalize().into_bytes();
        let mut out = String::with_capacity(7 + 64);
        out.push_str("sha256=");
        for b in digest {
            out.push_str(&format!("{b:02x}"));
        }
        out
    }

    /// Checks a `webhook-signature` header as a receiver would: the header
    /// may list several space-separated signatures (during a secret
    /// rotation); one matching `v1` signature is enough. The comparison runs
    /// in constant time.
    pub fn verify_standard(&self, id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
        header.split(' ').any(|sig| {
            let Some(b64) = sig.strip_prefix("v1,") else {
                return false;
            };
            let Ok(expected) = STANDARD.decode(b64) else {
                return false;
            };
            self.standard_mac(id, timestamp, body)
                .verify_slice(&expected)
                .is_ok()
        })
    }
}

/// The headers that sign one delivery attempt, in the order they are sent.
pub fn signature_headers(
    secret: &SigningSecret,
    id: &str,
    timestamp: i64,
    body: &[u8],
    github: bool,
) -> Vec<(&'static str, String)> {
    let mut headers = vec![
        ("webhook-id", id.to_owned()),
        ("webhook-timestamp", timestamp.to_string()),
        (
            "webhook-signature",
            secret.standard_signature(id, timestamp, body),
        ),
    ];
    if github {
        headers.push(("X-Hub-Signature-256", secret.github_signature(body)));
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    // The published Standard Webhooks test vector (its reference libraries
    // test against the same values).
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: i64 = 1_614_265_330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn standard_webhooks_vector() {
        let secret = SigningSecret::parse(SECRET).unwrap();
        assert_eq!(secret.standard_signature(ID, TS, BODY), SIGNATURE);
        assert!(secret.verify_standard(ID, TS, BODY, SIGNATURE));
        assert!(secret.verify_standard(ID, TS, BODY, &format!("v1,AAAA {SIGNATURE}")));
        assert!(!secret.verify_standard(ID, TS + 1, BODY, SIGNATURE));
        assert!(!secret.verify_standard(ID, TS, br#"{"test": 2432232315}"#, SIGNATURE));
        assert!(!secret.verify_standard(ID, TS, BODY, "v2,g0hM9SsE"));
    }

    #[test]
    fn github_vector() {
        // GitHub's documented example: secret "It's a Secret to Everybody",
        // payload "Hello, World!".
        let secret = SigningSecret::parse("It's a Secret to Everybody").unwrap();
        assert_eq!(
            secret.github_signature(b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    #[test]
    fn secrets_are_read_with_clear_errors() {
        assert_eq!(
            SigningSecret::parse("  \n").unwrap_err(),
            SecretError::Empty
        );
        assert_eq!(
            SigningSecret::parse("whsec_!!!").unwrap_err(),
            SecretError::BadBase64
        );
        assert_eq!(
            SigningSecret::parse("short").unwrap_err(),
            SecretError::TooShort(5)
        );
        let from_file = SigningSecret::parse(&format!("{SECRET}\n")).unwrap();
        assert_eq!(from_file.standard_signature(ID, TS, BODY), SIGNATURE);
        assert!(!format!("{from_file:?}").contains("MfKQ"));
    }

    #[test]
    fn headers_carry_id_timestamp_and_signatures() {
        let secret = SigningSecret::parse(SECRET).unwrap();
        let h = signature_headers(&secret, ID, TS, BODY, true);
        let names: Vec<_> = h.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "webhook-id",
                "webhook-timestamp",
                "webhook-signature",
                "X-Hub-Signature-256"
            ]
        );
        assert_eq!(h[1].1, "1614265330");
        assert_eq!(h[2].1, SIGNATURE);
        assert_eq!(signature_headers(&secret, ID, TS, BODY, false).len(), 3);
    }
}
