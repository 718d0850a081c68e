//! Every rule, one file each, registered below with one line.
//!
//! A rule's file holds all of it:
//! - `INFO`, its registry entry (id, title, why, severity, what to do);
//! - `Config`, its `[rules.<id>]` section, and `check`, the section's bounds;
//! - `Plain`, the detector that sees every keyed request in any order (a
//!   scan on several threads splits the input and merges), behind
//!   [`Detector`];
//! - `Ordered`, the detector that sees events in log order and reports
//!   episodes, behind [`OrderedRule`].
//!
//! A rule without one of the two names `()` there. The registration line
//! gives the rule's `RuleId` variant and its file, whose name is the rule's
//! id; the enum, the settings, and the sets of running detectors are made
//! from the list.

use super::ordered::{At, Context, Event, Now, OrderedRule, Subject};
use super::{Detector, Finding, RuleInfo, sort_findings};
use crate::config::ranges::Checks;
use crate::request::KeyedRequest;

macro_rules! rules {
    ($($variant:ident $module:ident,)*) => {
        $(pub mod $module;)*

        /// A detection rule.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum RuleId {
            $($variant,)*
        }

        /// Each rule's file, in the registry's order.
        #[cfg(test)]
        const FILES: &[&str] = &[$(stringify!($module),)*];

        impl RuleId {
            /// Every rule, in the registry's order.
            pub const ALL: &[RuleId] = &[$(RuleId::$variant,)*];

            pub const fn info(self) -> &'static RuleInfo {
                match self {
                    $(RuleId::$variant => &$module::INFO,)*
                }
            }
        }

        /// Which rules run, and their settings (`[rules]` in the configuration).
        #[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct RulesConfig {
            /// Rules that count clients count an IPv6 client by its network of
            /// this many bits (addresses inside a /64 rotate at will); 128 counts
            /// each address.
            pub ipv6_client_prefix: u8,
            $(pub $module: $module::Config,)*
        }

        impl Default for RulesConfig {
            fn default() -> Self {
                RulesConfig {
                    ipv6_client_prefix: 64,
                    $($module: Default::default(),)*
                }
            }
        }

        impl RulesConfig {
            /// Each section's bounds (see `config::ranges`).
            pub(crate) fn check(&self, c: &mut Checks) {
                $($module::check(&self.$module, c, concat!("rules.", stringify!($module)));)*
            }
        }

        /// The plain detectors that are switched on.
        #[derive(Default)]
        pub struct Detectors {
            $($module: Option<$module::Plain>,)*
        }

        impl Detectors {
            /// Every rule with its default settings.
            pub fn all() -> Self {
                Detectors::new(&RulesConfig::default())
            }

            /// The rules the configuration switches on.
            pub fn new(rules: &RulesConfig) -> Self {
                Detectors {
                    $($module: rules.$module.enabled.then(Default::default),)*
                }
            }

            /// The rules `rules` switches on, keeping the state of those that
            /// were on already (a reload).
            pub fn reconfigure(self, rules: &RulesConfig) -> Self {
                Detectors {
                    $($module: rules.$module.enabled.then(|| self.$module.unwrap_or_default()),)*
                }
            }

            pub fn observe(&mut self, req: &KeyedRequest<'_>) {
                $(if let Some(d) = &mut self.$module {
                    Detector::observe(d, req);
                })*
            }

            pub fn merge(&mut self, other: Detectors) {
                $(if let (Some(a), Some(b)) = (&mut self.$module, other.$module) {
                    Detector::merge(a, b);
                })*
            }

            /// All findings, most severe first, then by first time.
            pub fn findings(&self, names: &[String]) -> Vec<Finding> {
                let mut all = Vec::new();
                $(if let Some(d) = &self.$module {
                    all.extend(Detector::findings(d, names));
                })*
                sort_findings(&mut all);
                all
            }
        }

        /// The ordered detectors that are switched on, with what they learned.
        #[derive(Default, serde::Serialize, serde::Deserialize)]
        pub struct OrderedRules {
            $($module: Option<$module::Ordered>,)*
        }

        impl OrderedRules {
            /// Takes the settings, keeping what the rules still on learned;
            /// whether any runs.
            pub fn configure(&mut self, rules: &RulesConfig) -> bool {
                let mut any = false;
                $(
                    self.$module = (rules.$module.enabled && <$module::Ordered as OrderedRule>::RUNS)
                        .then(|| {
                            let mut r = self.$module.take().unwrap_or_default();
                            OrderedRule::configure(&mut r, rules);
                            r
                        });
                    any |= self.$module.is_some();
                )*
                any
            }

            pub fn observe(&mut self, e: &Event, at: &At, cx: &mut Context) {
                $(if let Some(r) = &mut self.$module {
                    OrderedRule::observe(r, e, at, cx);
                })*
            }

            pub fn advance(&mut self, now: Now, cx: &Context) {
                $(if let Some(r) = &mut self.$module {
                    OrderedRule::advance(r, now, cx);
                })*
            }

            pub fn findings(&self, names: &[String], out: &mut Vec<(Subject, Finding)>) {
                $(if let Some(r) = &self.$module {
                    OrderedRule::findings(r, names, out);
                })*
            }

            pub fn relabel(&mut self, name: &dyn Fn(Option<u32>) -> Option<u32>) {
                $(if let Some(r) = &mut self.$module {
                    OrderedRule::relabel(r, name);
                })*
            }
        }
    };
}

rules! {
    KeyInUrl key_in_url,
    SecretInUrl secret_in_url,
    CredentialParamInUrl credential_param_in_url,
    RevokedKeyInUse revoked_key_in_use,
    KeyBruteforce key_bruteforce,
    AuthFailureBurst auth_failure_burst,
    RejectedKeyRepeated rejected_key_repeated,
    KeyRateSpike key_rate_spike,
    KeyNewNetwork key_new_network,
    KeyFanout key_fanout,
    KeyShared key_shared,
}

/// A rule with nothing to set but whether it runs.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Switch {
    pub enabled: bool,
}

impl Default for Switch {
    fn default() -> Self {
        Switch { enabled: true }
    }
}

/// Bounds of a section with nothing but the switch.
pub(crate) fn no_bounds<T>(_: &T, _: &mut Checks, _: &str) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_rule_file_is_named_by_its_rule_id() {
        let ids: Vec<&str> = RuleId::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(ids, FILES);
    }
}
