//! Named formats, written as the servers define them.

use super::json::JsonFormat;
use super::nginx::NginxFormat;
use super::{Escape, LogFormat};

/// nginx's predefined format (`ngx_http_log_module.c`).
pub const COMBINED: &str = r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent""#;
/// The distro and Docker image `main` format: combined plus the forwarded-for header.
pub const MAIN: &str = r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" "$http_x_forwarded_for""#;
/// Apache `%h %l %u %t "%r" %>s %b`.
pub const COMMON: &str =
    r#"$remote_addr $remote_ident $remote_user [$time_local] "$request" $status $body_bytes_sent"#;
/// Apache `%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i"`.
pub const APACHE_COMBINED: &str = r#"$remote_addr $remote_ident $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent""#;

/// The format the README recommends: combined plus the request time and a
/// key id that nginx derives with `map` (never the raw key).
pub const KEYWATCH: &str = r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" $request_time "$api_key_id""#;

/// Every preset name, for help texts and error messages.
pub const NAMES: &[&str] = &[
    "combined",
    "main",
    "keywatch",
    "common",
    "apache-combined",
    "json",
    "caddy",
];

/// The order in which detection tries presets; on a tie the earlier wins, so
/// the more specific of two formats that both parse a sample comes first.
pub const DETECTION_ORDER: &[&str] = &[
    "keywatch",
    "main",
    "combined",
    "apache-combined",
    "common",
    "caddy",
    "json",
];

/// The preset called `name`, with `key_vars` as the variables that hold keys.
pub fn by_name(name: &str, key_vars: &[String]) -> Option<LogFormat> {
    let nginx = |name: &str, format: &str, escape: Escape| {
        NginxFormat::compile(name, format, escape, key_vars)
            .ok()
            .map(LogFormat::Nginx)
    };
    match name {
        "keywatch" => nginx("keywatch", KEYWATCH, Escape::Nginx),
        "combined" => nginx("combined", COMBINED, Escape::Nginx),
        "main" => nginx("main", MAIN, Escape::Nginx),
        "common" => nginx("common", COMMON, Escape::Apache),
        "apache-combined" => nginx("apache-combined", APACHE_COMBINED, Escape::Apache),
        "json" => Some(LogFormat::Json(JsonFormat::generic(&[], key_vars))),
        "caddy" => Some(LogFormat::Json(JsonFormat::caddy(key_vars))),
        _ => None,
    }
}

/// The default format when nothing else is known.
pub fn combined(key_vars: &[String]) -> LogFormat {
    match by_name("combined", key_vars) {
        Some(f) => f,
        None => unreachable!("the combined preset always compiles"),
    }
}
