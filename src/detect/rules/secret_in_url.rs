//! `secret_in_url` and `credential_param_in_url`: credentials that are not
//! this API's keys, in request URLs or Referers. A third-party secret of a
//! well-known shape (AWS, Stripe, GitHub, Slack, Google, OpenAI, Anthropic,
//! SendGrid, Twilio, Mailgun, GitLab, npm, JWTs, `user:password@`), or a
//! parameter whose name says credential carrying a high-entropy value.
//! Signed URLs and publishable keys are not findings.
//!
//! The two rules share their bookkeeping, here; `credential_param_in_url`
//! is this with `PARAMS` set.

use super::Switch;
use crate::detect::tally::{Tallies, Tally};
use crate::detect::{Detector, Finding, RuleId, RuleInfo, Severity};
use crate::keys::{KeyId, Place};
use crate::request::KeyedRequest;
use crate::usage::KeyLabel;

pub const INFO: RuleInfo = RuleInfo {
    id: "secret_in_url",
    title: "Third-party credential in a URL",
    why: "a credential of another service sits in a URL and so in every log on its way.",
    severity: Severity::High,
    action: "revoke the credential with its provider and replace it",
    inhibited_by: None,
};

pub type Config = Switch;
pub(crate) use super::no_bounds as check;
pub type Plain = UrlSecrets<false>;
pub type Ordered = ();

/// Both rules share their bookkeeping; `PARAMS` picks which hits are theirs.
#[derive(Default)]
pub struct UrlSecrets<const PARAMS: bool> {
    seen: Tallies<(KeyId, Place)>,
}

impl<const PARAMS: bool> Detector for UrlSecrets<PARAMS> {
    const RULE: &'static str = if PARAMS {
        RuleId::CredentialParamInUrl.as_str()
    } else {
        RuleId::SecretInUrl.as_str()
    };

    fn observe(&mut self, req: &KeyedRequest<'_>) {
        for h in req.secrets {
            let what = match (&h.kind, &h.param) {
                (Some(k), _) if !PARAMS => k.label().to_string(),
                (None, Some(p)) if PARAMS => format!("a secret value in the parameter `{p}`"),
                _ => continue,
            };
            let evidence = req.evidence.map(|ev| match h.place {
                Place::Referer => ev.referer.clone().unwrap_or_default(),
                _ => ev.request.clone(),
            });
            let label = KeyLabel {
                masked: h.key.masked,
                name: None,
            };
            if let Some(t) = self.seen.get((h.key.id, h.place), || {
                Tally::new(label, what, req, evidence)
            }) {
                t.add(req);
            }
        }
    }

    fn merge(&mut self, other: Self) {
        self.seen.merge(other.seen);
    }

    fn findings(&self, _names: &[String]) -> Vec<Finding> {
        self.seen
            .iter()
            .map(|((id, place), s)| {
                let where_ = match place {
                    Place::Query => "in the query string of request URLs",
                    Place::Path => "in the path of request URLs",
                    Place::Referer => "in the Referer of requests",
                };
                let times = if s.count == 1 { "once".to_string() } else { format!("{} times", s.count) };
                Finding {
                    resolved_ms: None,
                    rule: Self::RULE,
                    severity: if PARAMS { Severity::Medium } else { Severity::High },
                    key: Some((*id, s.label)),
                    client: s.first_client.clone(),
                    clients: s.clients.count(),
                    place: Some(*place),
                    first_ms: s.first_ms,
                    last_ms: s.last_ms,
                    count: s.count,
                    message: format!(
                        "{} ({}) was sent {where_} {times}; URLs are kept in logs, proxies and browser history, so treat it as leaked",
                        s.what, s.label.masked
                    ),
                    evidence: s.evidence.clone(),
                    action: if PARAMS {
                        "rotate the credential and have the client send it in a header or request body, not the URL"
                    } else {
                        "revoke the credential with its provider and replace it; find the code that put it in a URL"
                    },
                }
            })
            .collect()
    }
}
