//! Where keys are looked for: the log fields that hold them, the query
//! parameters that carry them, and the names that say "credential".

/// Last name tokens that make a query parameter a credential (`db_password`,
/// `refresh_token`, `session_key`…), checked on names keywatch does not take
/// as API keys.
const CREDENTIAL_SUFFIXES: &[&str] = &[
    "key",
    "token",
    "secret",
    "password",
    "passwd",
    "pwd",
    "apikey",
    "auth",
    "session",
    "sessionid",
    "credential",
    "credentials",
];

/// Names whose last token looks like a credential but which never carry one.
const NOT_CREDENTIALS: &[&str] = &[
    "sort_key",
    "primary_key",
    "partition_key",
    "public_key",
    "publishable_key",
    "idempotency_key",
    "cache_key",
    "key_id",
    "public_token",
    "csrf_token",
    "xsrf_token",
    "page_token",
    "next_page_token",
    "continuation_token",
    "cursor_token",
];

/// Whether a normalised parameter name is credential-like by its last token.
pub fn credential_named(n: &[u8]) -> bool {
    let last = n.rsplit(|&b| b == b'_').next().unwrap_or(n);
    CREDENTIAL_SUFFIXES.iter().any(|s| s.as_bytes() == last)
        && !NOT_CREDENTIALS.iter().any(|s| s.as_bytes() == n)
}

/// A name for a key, by id or by a prefix of the key.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyName {
    pub name: String,
    pub id: Option<String>,
    pub prefix: Option<String>,
}

/// Where keys are looked for.
#[derive(Clone, Debug)]
pub struct KeySources {
    /// Log variables that hold a key or key id.
    pub fields: Vec<String>,
    pub authorization: bool,
    pub remote_user: bool,
    /// Query parameter names whose every value is a key (normalised).
    pub query_params: Vec<String>,
    /// Names that carry a key only when the value looks like a secret.
    pub ambiguous_params: Vec<String>,
    /// Prefixes of this API's keys, for finding them anywhere in a URL.
    pub prefixes: Vec<String>,
    /// When the key field logs only the first N characters of each key (the
    /// recommended nginx `map`), keys found elsewhere are cut to N characters
    /// too, so that a key gets one id wherever it was seen.
    pub logged_prefix_length: Option<usize>,
}

/// Log variables that hold keys unless configured otherwise.
pub const DEFAULT_FIELDS: &[&str] = &[
    "api_key_id",
    "http_x_api_key",
    "http_api_key",
    "http_apikey",
    "http_x_api_token",
    "http_x_auth_token",
    "api_key",
    "key_id",
];

/// Query parameters whose value is a key whatever it looks like.
pub const DEFAULT_QUERY_PARAMS: &[&str] = &[
    "api_key",
    "apikey",
    "x_api_key",
    "api_token",
    "apitoken",
    "access_token",
    "accesstoken",
    "access_key",
    "accesskey",
    "auth_token",
    "authtoken",
    "private_token",
    "client_secret",
    "secret_key",
    "app_key",
    "appkey",
    "subscription_key",
    "developer_key",
    "x_auth_token",
    "token_key",
];

/// Query parameters that carry a key only when the value looks like one
/// (`key=name` and `token=page2` are common and harmless).
pub const AMBIGUOUS_QUERY_PARAMS: &[&str] = &[
    "key",
    "token",
    "auth",
    "secret",
    "bearer",
    "apikey_id",
    "password",
    "passwd",
    "pwd",
];

impl Default for KeySources {
    fn default() -> Self {
        KeySources {
            fields: DEFAULT_FIELDS.iter().map(|s| s.to_string()).collect(),
            authorization: true,
            remote_user: false,
            query_params: DEFAULT_QUERY_PARAMS.iter().map(|s| s.to_string()).collect(),
            ambiguous_params: AMBIGUOUS_QUERY_PARAMS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            prefixes: Vec::new(),
            logged_prefix_length: None,
        }
    }
}
