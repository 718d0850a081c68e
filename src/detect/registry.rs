//! The rule registry: every rule's id, title, why it matters, default
//! severity, what to do and what hides it, each in its rule's file
//! (`INFO`, see [`super::rules`]) and listed once there. Findings, the configuration's
//! `[rules.<id>]` sections, alert routing and silences (which check rule
//! names against it), inhibition, the summary's hygiene lists, the "why"
//! line of every notice and the README's rules table (held to it by a
//! test) all come from here.

use super::Severity;
pub use super::rules::RuleId;

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
    /// The stronger rule an episode of this one is hidden behind when both
    /// are about the same client (or key) at once.
    pub inhibited_by: Option<RuleId>,
}

impl RuleId {
    pub const fn as_str(self) -> &'static str {
        self.info().id
    }

    pub fn parse(s: &str) -> Option<RuleId> {
        RuleId::ALL.iter().copied().find(|r| r.as_str() == s)
    }

    /// The stronger rule an alert of this one is hidden behind when both
    /// are about the same client (or key) at once.
    pub fn inhibited_by(self) -> Option<RuleId> {
        self.info().inhibited_by
    }
}

/// Every rule id, in the registry's order.
pub const RULE_IDS: [&str; RuleId::ALL.len()] = {
    let mut ids = [""; RuleId::ALL.len()];
    let mut i = 0;
    while i < ids.len() {
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
