//! Shapes of well-known third-party credentials, checked on whole URL tokens
//! (a query value or a path segment, percent-decoded), never on raw lines:
//! a key followed by `&` is still a whole token.

/// A kind of third-party credential.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SecretKind {
    AwsAccessKeyId,
    StripeSecret,
    GitHubToken,
    SlackToken,
    GoogleApiKey,
    OpenAiKey,
    AnthropicKey,
    SendGridKey,
    TwilioKey,
    MailgunKey,
    GitLabToken,
    NpmToken,
    Jwt,
    UrlCredentials,
}

impl SecretKind {
    pub fn label(self) -> &'static str {
        match self {
            SecretKind::AwsAccessKeyId => "an AWS access key id",
            SecretKind::StripeSecret => "a Stripe secret or restricted key",
            SecretKind::GitHubToken => "a GitHub token",
            SecretKind::SlackToken => "a Slack token",
            SecretKind::GoogleApiKey => "a Google API key",
            SecretKind::OpenAiKey => "an OpenAI API key",
            SecretKind::AnthropicKey => "an Anthropic API key",
            SecretKind::SendGridKey => "a SendGrid API key",
            SecretKind::TwilioKey => "a Twilio API key",
            SecretKind::MailgunKey => "a Mailgun API key",
            SecretKind::GitLabToken => "a GitLab token",
            SecretKind::NpmToken => "an npm token",
            SecretKind::Jwt => "a JSON Web Token",
            SecretKind::UrlCredentials => "credentials in a URL (user:password@ or token@)",
        }
    }
}

fn all(b: &[u8], f: impl Fn(u8) -> bool) -> bool {
    !b.is_empty() && b.iter().all(|&c| f(c))
}

fn alnum(c: u8) -> bool {
    c.is_ascii_alphanumeric()
}

fn word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

fn hex(c: u8) -> bool {
    c.is_ascii_hexdigit()
}

fn b64url(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'=')
}

/// The kind of credential `t` is, if it has a well-known shape.
/// Publishable keys (`pk_live_…`) are meant to be public and are no secret.
pub fn secret_kind(t: &[u8]) -> Option<SecretKind> {
    if t.len() < 16 || t.len() > 4096 {
        return None;
    }
    let rest = |p: &[u8]| t.strip_prefix(p);
    if let Some(r) = [&b"AKIA"[..], b"ASIA", b"ABIA", b"ACCA"]
        .iter()
        .find_map(|p| rest(p))
        && r.len() == 16
        && all(r, |c| c.is_ascii_uppercase() || (b'2'..=b'7').contains(&c))
    {
        return Some(SecretKind::AwsAccessKeyId);
    }
    for p in [
        &b"sk_live_"[..],
        b"sk_test_",
        b"sk_prod_",
        b"rk_live_",
        b"rk_test_",
        b"rk_prod_",
    ] {
        if let Some(r) = rest(p)
            && (10..=99).contains(&r.len())
            && all(r, alnum)
        {
            return Some(SecretKind::StripeSecret);
        }
    }
    for p in [&b"ghp_"[..], b"gho_", b"ghu_", b"ghs_", b"ghr_"] {
        if let Some(r) = rest(p)
            && (36..=255).contains(&r.len())
            && all(r, alnum)
        {
            return Some(SecretKind::GitHubToken);
        }
    }
    if let Some(r) = rest(b"github_pat_")
        && r.len() >= 82
        && all(r, |c| c.is_ascii_alphanumeric() || c == b'_')
    {
        return Some(SecretKind::GitHubToken);
    }
    if [&b"xoxb-"[..], b"xoxp-", b"xoxa-", b"xoxr-"]
        .iter()
        .any(|p| t.starts_with(p))
        && all(&t[5..], |c| alnum(c) || c == b'-')
    {
        return Some(SecretKind::SlackToken);
    }
    if let Some(r) = rest(b"AIza")
        && r.len() == 35
        && all(r, word)
    {
        return Some(SecretKind::GoogleApiKey);
    }
    if let Some(r) = [&b"sk-ant-api03-"[..], b"sk-ant-admin01-"]
        .iter()
        .find_map(|p| rest(p))
        && r.len() >= 90
        && r.ends_with(b"AA")
        && all(r, word)
    {
        return Some(SecretKind::AnthropicKey);
    }
    if t.starts_with(b"sk-") && memchr::memmem::find(t, b"T3BlbkFJ").is_some() && all(&t[3..], word)
    {
        return Some(SecretKind::OpenAiKey);
    }
    if let Some(r) = rest(b"SG.") {
        let mut parts = r.split(|&c| c == b'.');
        if let (Some(a), Some(b), None) = (parts.next(), parts.next(), parts.next())
            && (16..=32).contains(&a.len())
            && (30..=64).contains(&b.len())
            && all(a, word)
            && all(b, word)
        {
            return Some(SecretKind::SendGridKey);
        }
    }
    if let Some(r) = rest(b"SK")
        && r.len() == 32
        && all(r, |c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    {
        return Some(SecretKind::TwilioKey);
    }
    if let Some(r) = rest(b"key-")
        && r.len() == 32
        && all(r, hex)
    {
        return Some(SecretKind::MailgunKey);
    }
    if let Some(r) = rest(b"glpat-")
        && r.len() >= 20
        && all(r, word)
    {
        return Some(SecretKind::GitLabToken);
    }
    if let Some(r) = rest(b"npm_")
        && r.len() == 36
        && all(r, alnum)
    {
        return Some(SecretKind::NpmToken);
    }
    if t.starts_with(b"eyJ") {
        let mut parts = t.split(|&c| c == b'.');
        if let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
            && h.len() >= 10
            && p.starts_with(b"eyJ")
            && all(h, b64url)
            && all(p, b64url)
            && (s.is_empty() || all(s, b64url))
        {
            return Some(SecretKind::Jwt);
        }
    }
    None
}

/// Whether a query string is a signed or presigned URL, decided by its
/// structure: a signature parameter with an expiry or a signing identity
/// beside it (AWS SigV2 and SigV4, GCS V2 and V4, Azure SAS, CloudFront).
/// The credentials in it are meant to be there, until it expires.
pub fn is_signed_url(query: &[u8]) -> bool {
    let names: Vec<Vec<u8>> = crate::url::query_pairs(query)
        .map(|(n, _)| n.to_ascii_lowercase())
        .collect();
    let last_word = |n: &[u8]| -> Vec<u8> {
        n.rsplit(|&b| b == b'-' || b == b'_')
            .next()
            .unwrap_or(n)
            .to_vec()
    };
    let any = |f: &dyn Fn(&[u8]) -> bool| names.iter().any(|n| f(n));
    let signature = any(&|n| matches!(&last_word(n)[..], b"signature" | b"sig"));
    let expiry = any(&|n| {
        matches!(
            &last_word(n)[..],
            b"expires" | b"expiry" | b"se" | b"date" | b"policy"
        )
    });
    let identity = any(&|n| {
        matches!(
            n,
            b"awsaccesskeyid"
                | b"googleaccessid"
                | b"x-amz-credential"
                | b"x-goog-credential"
                | b"key-pair-id"
                | b"sv"
        )
    });
    signature && (expiry || identity)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(parts: &[&str]) -> Vec<u8> {
        parts.concat().into_bytes()
    }

    #[test]
    fn shapes_are_recognised() {
        assert_eq!(
            secret_kind(&k(&["AKIA", "IOSFODNN7EXAMPLE"])),
            Some(SecretKind::AwsAccessKeyId)
        );
        assert_eq!(
            secret_kind(&k(&["sk_", "live_", "4eC39HqLyjWDarjtT1zdp7dc"])),
            Some(SecretKind::StripeSecret)
        );
        assert_eq!(
            secret_kind(&k(&["pk_", "live_", "4eC39HqLyjWDarjtT1zdp7dc"])),
            None,
            "publishable"
        );
        assert_eq!(
            secret_kind(&k(&["ghp_", &"a1B2".repeat(9)])),
            Some(SecretKind::GitHubToken)
        );
        assert_eq!(
            secret_kind(&k(&["xoxb-", "1234-5678-abcdEFGH"])),
            Some(SecretKind::SlackToken)
        );
        assert_eq!(
            secret_kind(&k(&["AIza", "SyA-", &"x1Y2".repeat(7), "abc"])),
            Some(SecretKind::GoogleApiKey)
        );
        assert_eq!(
            secret_kind(&k(&["SG.", "abcdefghij0123456789AB", ".", &"Q".repeat(43)])),
            Some(SecretKind::SendGridKey)
        );
        assert_eq!(
            secret_kind(&k(&[
                "eyJhbGciOiJIUzI1NiJ9",
                ".",
                "eyJzdWIiOiIxIn0",
                ".",
                "c2lnbmF0dXJl"
            ])),
            Some(SecretKind::Jwt)
        );
        assert_eq!(
            secret_kind(b"550e8400-e29b-41d4-a716-446655440000"),
            None,
            "a UUID"
        );
        assert_eq!(
            secret_kind(b"d41d8cd98f00b204e9800998ecf8427e"),
            None,
            "an MD5"
        );
    }

    #[test]
    fn signed_urls() {
        assert!(is_signed_url(b"AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Expires=1800000000&Signature=vjbyPxybdZaNmGa%2ByT272YEAiv4%3D"));
        assert!(is_signed_url(
            b"GoogleAccessId=svc%40p.iam.gserviceaccount.com&Expires=1800000000&Signature=abc"
        ));
        assert!(is_signed_url(
            b"Expires=1800000000&Signature=abc&Key-Pair-Id=K2JCJMDEHXQW5F"
        ));
        assert!(!is_signed_url(b"api_key=abc&signature_method=x"));
        assert!(!is_signed_url(b"signature=abc"));
        assert!(is_signed_url(b"X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F20250101&X-Amz-Signature=ab12"));
        assert!(is_signed_url(b"sv=2022-11-02&se=2025-01-01&sp=r&sig=abc"));
        assert!(!is_signed_url(b"api_key=x&limit=3"));
    }
}
