//! The rule registry: every rule's id, title, why it matters, default
//! severity and what to do, in one place. Findings, the configuration's
//! `[rules.<id>]` sections, alert routing and silences (which check rule
//! names against it), inhibition, the summary's hygiene lists, the "why"
//! line of every notice and the README's rules table (held to it by a
//! test) all come from here.

use super::Severity;

/// A detection rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RuleId {
    KeyInUrl,
    SecretInUrl,
    CredentialParamInUrl,
    RevokedKeyInUse,
    KeyBruteforce,
    AuthFailureBurst,
    RejectedKeyRepeated,
    KeyRateSpike,
    KeyNewNetwork,
    KeyFanout,
    KeyShared,
}

/// What a rule is, for people.
#[derive(Debug)]
pub struct RuleInfo {
    /// The id, as it appears in findings, the configuration and silences.
    pub id: &'static str,
    pub title: &'static str,
    /// Why it matters, one sentence (the "why" line of notices).
    pub why: &'static str,
    /// The usual severity (some findings of a rule are raised or lowered).
    pub severity: Severity,
    /// What to do, in general.
    pub action: &'static str,
}

const RULES: [RuleInfo; 11] = [
    RuleInfo {
        id: "key_in_url",
        title: "API key in a URL",
        why: "a key in a URL is written to access logs, proxy logs, browser history and Referer headers of other sites; treat it as leaked.",
        severity: Severity::Critical,
        action: "rotate the key, then have its client send it in a header instead of the URL",
    },
    RuleInfo {
        id: "secret_in_url",
        title: "Third-party credential in a URL",
        why: "a credential of another service sits in a URL and so in every log on its way.",
        severity: Severity::High,
        action: "revoke the credential with its provider and replace it",
    },
    RuleInfo {
        id: "credential_param_in_url",
        title: "Credential-named parameter in a URL",
        why: "a password or token sent as a query parameter is stored in logs in clear.",
        severity: Severity::Medium,
        action: "rotate the credential and send it in a header or the request body",
    },
    RuleInfo {
        id: "revoked_key_in_use",
        title: "Revoked key still in use",
        why: "a revoked key is still deployed somewhere, or someone is trying a leaked key.",
        severity: Severity::High,
        action: "find the client still sending the key and give it a new one",
    },
    RuleInfo {
        id: "key_bruteforce",
        title: "Key guessing",
        why: "one client, or many together, trying many different keys is guessing or replaying a leaked list.",
        severity: Severity::High,
        action: "block the clients and rate-limit 401s; revoke any key a guesser got accepted",
    },
    RuleInfo {
        id: "auth_failure_burst",
        title: "Burst of rejected requests",
        why: "a burst of rejected requests is a misconfigured client or an attack in progress.",
        severity: Severity::Medium,
        action: "fix the client's key, or block it if it is an attack",
    },
    RuleInfo {
        id: "rejected_key_repeated",
        title: "Key rejected again and again",
        why: "a key rejected again and again is a broken deployment or a stale leaked key.",
        severity: Severity::Medium,
        action: "find the client still sending the key and give it a valid one",
    },
    RuleInfo {
        id: "key_rate_spike",
        title: "Request rate far above the key's normal",
        why: "a key used far above its usual rate may be leaked, shared, or running away.",
        severity: Severity::Medium,
        action: "check who is behind the traffic; rate-limit or rotate the key",
    },
    RuleInfo {
        id: "key_new_network",
        title: "Key used from a new network",
        why: "a key suddenly used from a new network may have leaked.",
        severity: Severity::Low,
        action: "confirm the owner added a deployment; if not, rotate the key",
    },
    RuleInfo {
        id: "key_fanout",
        title: "Key used from many networks at once",
        why: "a key used from many clients at once is shared or leaked.",
        severity: Severity::Medium,
        action: "rotate the key unless its owner confirms the new clients",
    },
    RuleInfo {
        id: "key_shared",
        title: "One key shared by several integrations",
        why: "one key used by several services cannot be rotated or revoked without breaking them all.",
        severity: Severity::Low,
        action: "give each integration its own key",
    },
];

impl RuleId {
    pub const ALL: [RuleId; 11] = [
        RuleId::KeyInUrl,
        RuleId::SecretInUrl,
        RuleId::CredentialParamInUrl,
        RuleId::RevokedKeyInUse,
        RuleId::KeyBruteforce,
        RuleId::AuthFailureBurst,
        RuleId::RejectedKeyRepeated,
        RuleId::KeyRateSpike,
        RuleId::KeyNewNetwork,
        RuleId::KeyFanout,
        RuleId::KeyShared,
    ];

    pub const fn info(self) -> &'static RuleInfo {
        &RULES[self as usize]
    }

    pub const fn as_str(self) -> &'static str {
        self.info().id
    }

    pub fn parse(s: &str) -> Option<RuleId> {
        RuleId::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The stronger rule an alert of this one is hidden behind when both
    /// are about the same client (or key) at once.
    pub fn inhibited_by(self) -> Option<RuleId> {
        match self {
            RuleId::AuthFailureBurst => Some(RuleId::KeyBruteforce),
            RuleId::RejectedKeyRepeated => Some(RuleId::RevokedKeyInUse),
            _ => None,
        }
    }
}

/// Every rule id, in the registry's order.
pub const RULE_IDS: [&str; 11] = {
    let mut ids = [""; 11];
    let mut i = 0;
    while i < 11 {
        ids[i] = RuleId::ALL[i].as_str();
        i += 1;
    }
    ids
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_is_in_the_enum_order_and_the_config_has_a_section_per_rule() {
        for (i, r) in RuleId::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
            assert_eq!(RuleId::parse(r.as_str()), Some(*r));
        }
        let cfg = serde_json::to_value(super::super::RulesConfig::default()).unwrap();
        let sections: Vec<&str> = cfg
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, v)| v.is_object())
            .map(|(k, _)| k.as_str())
            .collect();
        assert_eq!(sections, RULE_IDS.to_vec());
    }
}
