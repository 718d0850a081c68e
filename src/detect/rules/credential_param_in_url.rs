//! `credential_param_in_url`: a parameter whose name says credential
//! (`password`, `client_secret`, `…_token`) carrying a high-entropy value
//! in a URL (DETECTION.md R8). It shares its bookkeeping with
//! `secret_in_url` (see there); only which hits are its own differ.

use super::Switch;
use crate::detect::{RuleInfo, Severity};

pub const INFO: RuleInfo = RuleInfo {
    id: "credential_param_in_url",
    title: "Credential-named parameter in a URL",
    why: "a password or token sent as a query parameter is stored in logs in clear.",
    severity: Severity::Medium,
    action: "rotate the credential and send it in a header or the request body",
    inhibited_by: None,
};

pub type Config = Switch;
pub(crate) use super::no_bounds as check;
pub type Plain = super::secret_in_url::UrlSecrets<true>;
pub type Ordered = ();
