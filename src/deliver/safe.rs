//! Making log-derived text safe for where it appears in a notice.
//!
//! Every function here takes text that may hold anything a client could put in
//! a request (markup, CR/LF, control bytes, chat mentions, invalid UTF-8,
//! megabytes) and returns text that is inert in one destination. They are
//! applied at the last moment, once per destination, never twice.

use std::borrow::Cow;

/// The marker appended where text was cut. It says how much was left out so a
/// reader knows the evidence is incomplete.
fn cut_marker(omitted_chars: usize) -> String {
    format!("… [{omitted_chars} more characters cut]")
}

/// Cuts `text` to at most `max_chars` characters, marker included; text that
/// fits is returned untouched. Cuts on a character boundary.
pub fn truncate(text: &str, max_chars: usize) -> Cow<'_, str> {
    let total = text.chars().count();
    if total <= max_chars {
        return Cow::Borrowed(text);
    }
    // The marker's own length depends on the number it prints; size it for
    // the worst case (the whole text omitted) so the result never overshoots.
    let marker_len = cut_marker(total).chars().count();
    let keep = max_chars.saturating_sub(marker_len);
    let mut out: String = text.chars().take(keep).collect();
    out.push_str(&cut_marker(total - keep));
    if out.chars().count() > max_chars {
        // `max_chars` is smaller than any marker: keep only what fits.
        out = out.chars().take(max_chars).collect();
    }
    Cow::Owned(out)
}

/// Text for a single-line field such as a mail header or a chat title: no
/// character that ends a line or controls a terminal survives (CR, LF, NEL,
/// U+2028/U+2029, every C0 and C1 control, DEL), invalid UTF-8 becomes U+FFFD,
/// and the result is at most `max_chars` long.
pub fn one_line(bytes: &[u8], max_chars: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let cleaned: String = text
        .chars()
        .map(|c| if is_line_or_control(c) { ' ' } else { c })
        .collect();
    truncate(&cleaned, max_chars).into_owned()
}

/// Text for a multi-line body (a plain-text mail part): line breaks from the
/// log are shown escaped as `\n` and `\r`, other controls as `\xHH` or
/// `\u{HHHH}`, so one log value is always one line of the notice and cannot
/// forge the lines around it.
pub fn plain(bytes: &[u8], max_chars: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_line_or_control(c) => {
                let cp = c as u32;
                if cp < 0x100 {
                    out.push_str(&format!("\\x{cp:02x}"));
                } else {
                    out.push_str(&format!("\\u{{{cp:04x}}}"));
                }
            }
            c => out.push(c),
        }
    }
    truncate(&out, max_chars).into_owned()
}

fn is_line_or_control(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn html(text: &str) -> Cow<'_, str> {
    if !text.contains(['&', '<', '>', '"', '\'']) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// The zero-width space inserted after `@` to break a mention: readers see
/// the same text, chat servers no longer match it.
const ZWSP: char = '\u{200b}';

/// The words after `@` that notify a whole channel or server.
const BROADCASTS: [&str; 4] = ["everyone", "here", "channel", "all"];

/// Breaks `@everyone`, `@here`, `@channel` and `@all` (Slack, Discord, Teams)
/// by putting a zero-width space after the `@`.
fn break_broadcasts(text: &str, out: &mut String) {
    let mut rest = text;
    while let Some(at) = rest.find('@') {
        out.push_str(&rest[..=at]);
        rest = &rest[at + 1..];
        let lower = rest.get(..8).unwrap_or(rest).to_ascii_lowercase();
        if BROADCASTS.iter().any(|w| lower.starts_with(w)) {
            out.push(ZWSP);
        }
    }
    out.push_str(rest);
}

/// Text for a Slack `mrkdwn` field: `&`, `<` and `>` escaped as Slack asks
/// (which also makes `<!channel>`, `<@U123>` and `<http://x|label>` plain
/// text) and broadcast mentions broken.
pub fn slack(text: &str) -> String {
    let mut broken = String::with_capacity(text.len() + 8);
    break_broadcasts(text, &mut broken);
    let mut out = String::with_capacity(broken.len() + 16);
    for c in broken.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// Text for Discord or Teams markdown: markdown control characters
/// backslash-escaped (so log text cannot bold, link, quote or hide itself),
/// `<` `>` escaped so `<@id>`, `<@&role>` and `<at>` tags are inert, and
/// broadcast mentions broken.
pub fn markdown(text: &str) -> String {
    let mut broken = String::with_capacity(text.len() + 8);
    break_broadcasts(text, &mut broken);
    let mut out = String::with_capacity(broken.len() + 16);
    for c in broken.chars() {
        if matches!(
            c,
            '\\' | '*' | '_' | '~' | '`' | '|' | '[' | ']' | '(' | ')' | '#' | '>' | '<'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_keeps_short_text_and_marks_cuts() {
        assert!(matches!(truncate("short", 10), Cow::Borrowed("short")));
        let long = "x".repeat(10_000);
        let cut = truncate(&long, 200);
        assert!(cut.chars().count() <= 200);
        assert!(cut.ends_with("more characters cut]"), "{cut}");
        assert!(cut.starts_with("xxxx"));
        // Multi-byte characters are cut on a boundary.
        let wide = "é".repeat(500);
        assert!(truncate(&wide, 100).chars().count() <= 100);
        // A limit smaller than the marker still holds.
        assert!(truncate(&long, 5).chars().count() <= 5);
    }

    #[test]
    fn one_line_removes_every_line_break_and_control() {
        let hostile = b"svc\r\nBcc: victim@example.com\x85\xe2\x80\xa8\x1b[31m\xff";
        let s = one_line(hostile, 200);
        for bad in ['\r', '\n', '\u{85}', '\u{2028}', '\u{1b}'] {
            assert!(!s.contains(bad), "{s:?} holds {bad:?}");
        }
        assert!(s.contains("Bcc: victim@example.com"));
        assert!(s.contains('\u{fffd}'));
    }

    #[test]
    fn plain_shows_breaks_escaped() {
        assert_eq!(
            plain(b"a\r\nb\x00c\xe2\x80\xa9", 100),
            "a\\r\\nb\\x00c\\u{2029}"
        );
    }

    #[test]
    fn html_escapes_markup_and_quotes() {
        assert_eq!(
            html(r#"<script>alert('x')</script>&"q""#),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;q&quot;"
        );
        assert!(matches!(html("plain text"), Cow::Borrowed(_)));
    }

    #[test]
    fn slack_mentions_are_neutralised() {
        let s = slack("<!channel> hi @here and @Everyone <@U123> <http://evil|click>");
        assert!(!s.contains('<') && !s.contains('>'), "{s}");
        assert!(s.contains("@\u{200b}here"));
        assert!(s.contains("@\u{200b}Everyone"));
        assert!(s.contains("&lt;!channel&gt;"));
        // Ordinary addresses keep their @.
        assert_eq!(slack("ops@example.com"), "ops@example.com");
    }

    #[test]
    fn markdown_is_inert() {
        let s = markdown("@everyone **bold** [link](http://x) <@&123> `code`");
        assert!(s.contains("@\u{200b}everyone"));
        assert!(s.contains(r"\*\*bold\*\*"));
        assert!(s.contains(r"\[link\]\(http://x\)"));
        assert!(s.contains(r"\<@&123\>"));
        assert!(s.contains(r"\`code\`"));
    }
}
