//! The syntax of what users paste after `--log-format`, read with nom: an
//! nginx `log_format` directive as nginx's configuration reader tokenizes it,
//! and the format string's `$variable` / `${variable}` references.
//!
//! This runs once per run, so it favours clear grammar over speed; the
//! per-line matcher lives in [`super::nginx`].

use nom::branch::alt;
use nom::bytes::complete::{is_not, tag, take_until, take_while1};
use nom::character::complete::{anychar, char, multispace1, not_line_ending};
use nom::combinator::{map, value};
use nom::multi::{fold_many0, many0};
use nom::sequence::{delimited, preceded, terminated};
use nom::{IResult, Parser};

/// A piece of a format string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece<'a> {
    Literal(&'a str),
    Variable(&'a str),
}

/// What went wrong in the syntax, before any meaning is given to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyntaxError {
    UnterminatedQuote(char),
    /// `${` without `}`, at this byte offset of the format string.
    UnterminatedVariable(usize),
}

/// A quoted configuration string with nginx's escapes (`\"`, `\'`, `\\`,
/// `\n`, `\r`, `\t`); any other escaped character keeps its backslash.
fn quoted(q: char) -> impl Fn(&str) -> IResult<&str, String> {
    move |input| {
        let stop = if q == '\'' { "\\'" } else { "\\\"" };
        let escape = map(preceded(char('\\'), anychar), |c| match c {
            'n' => "\n".to_string(),
            'r' => "\r".to_string(),
            't' => "\t".to_string(),
            '"' | '\'' | '\\' => c.to_string(),
            other => format!("\\{other}"),
        });
        delimited(
            char(q),
            fold_many0(
                alt((map(is_not(stop), str::to_string), escape)),
                String::new,
                |mut acc, s| {
                    acc.push_str(&s);
                    acc
                },
            ),
            char(q),
        )
        .parse(input)
    }
}

/// Whitespace, `;` and `#` comments between tokens.
fn gap(input: &str) -> IResult<&str, ()> {
    value(
        (),
        many0(alt((
            value((), multispace1),
            value((), char(';')),
            value((), preceded(char('#'), not_line_ending)),
        ))),
    )
    .parse(input)
}

fn bare(input: &str) -> IResult<&str, String> {
    map(
        take_while1(|c: char| !c.is_whitespace() && c != ';' && c != '\'' && c != '"'),
        str::to_string,
    )
    .parse(input)
}

/// Splits configuration text into tokens the way nginx does.
pub fn config_tokens(text: &str) -> Result<Vec<String>, SyntaxError> {
    let mut tokens = Vec::new();
    let mut rest = text;
    loop {
        rest = gap(rest).map_or(rest, |(r, ())| r);
        if rest.is_empty() {
            return Ok(tokens);
        }
        match alt((quoted('\''), quoted('"'), bare)).parse(rest) {
            Ok((r, tok)) => {
                tokens.push(tok);
                rest = r;
            }
            Err(_) => {
                let q = rest.chars().next().unwrap_or('\'');
                return Err(SyntaxError::UnterminatedQuote(q));
            }
        }
    }
}

fn is_var_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn piece(input: &str) -> IResult<&str, Piece<'_>> {
    alt((
        map(
            delimited(tag("${"), take_until("}"), char('}')),
            Piece::Variable,
        ),
        map(
            preceded(char('$'), take_while1(is_var_char)),
            Piece::Variable,
        ),
        map(take_while1(|c| c != '$'), Piece::Literal),
        // A `$` that starts no variable is a literal `$`.
        map(
            terminated(tag("$"), nom::combinator::not(tag("{"))),
            Piece::Literal,
        ),
    ))
    .parse(input)
}

/// Splits a format string into literals and variable references.
pub fn pieces(format: &str) -> Result<Vec<Piece<'_>>, SyntaxError> {
    let mut out = Vec::new();
    let mut rest = format;
    while !rest.is_empty() {
        match piece(rest) {
            Ok((r, p)) => {
                out.push(p);
                rest = r;
            }
            Err(_) => return Err(SyntaxError::UnterminatedVariable(format.len() - rest.len())),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_as_nginx_reads_them() {
        let t = config_tokens("log_format main escape=json '$a \\'x\\'' # note\n  \"$b\\t\" ;")
            .unwrap();
        assert_eq!(t, ["log_format", "main", "escape=json", "$a 'x'", "$b\t"]);
        assert_eq!(
            config_tokens("'open"),
            Err(SyntaxError::UnterminatedQuote('\''))
        );
        assert_eq!(config_tokens("''").unwrap(), [""]);
    }

    #[test]
    fn variables_and_literals() {
        use Piece::*;
        assert_eq!(
            pieces("[$time_local] ${duration}ms $ $x").unwrap(),
            [
                Literal("["),
                Variable("time_local"),
                Literal("] "),
                Variable("duration"),
                Literal("ms "),
                Literal("$"),
                Literal(" "),
                Variable("x")
            ]
        );
        assert_eq!(
            pieces("a ${open"),
            Err(SyntaxError::UnterminatedVariable(2))
        );
    }
}
