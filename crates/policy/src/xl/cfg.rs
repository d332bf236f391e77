//! Reading an xl configuration file as libxlutil does (`libxlu_cfg_l.l`, `libxlu_cfg_y.y`,
//! `libxlu_cfg.c`, unchanged from 4.14 to 4.22), to find the `cpuid` setting xl would use.
//!
//! The file is a sequence of statements, each ended by a newline or `;`: `name = value`,
//! `name += value`, or nothing. A name is `[a-z][._0-9a-z]*`; a value is a quoted string
//! (`'…'` or `"…"`, on one line, with backslash escapes), a number (`[0-9][0-9a-fx]*`, kept
//! as its text), or a list `[ value, … ]` that may span lines and end in a comma. `#` starts a
//! comment up to the end of the line (the line must end: a comment on the last line without
//! a newline is a lexical error there). Spaces and tabs separate tokens; any other character
//! (a carriage return, `+`, `-`, `.`, `(`, …) is a lexical error. Any error refuses the whole
//! file, as `xlu_cfg_readfile` does.
//!
//! A setting given again replaces the earlier one; `+=` joins onto it (string to string, list
//! to list; mixing them refuses the file), or sets it when there was none.

use std::collections::HashMap;

use super::{xl_error, XlError};

/// A value of a setting: a string (or a number, which libxlutil keeps as its text) or a list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CfgValue {
    /// A string or number.
    Atom(String),
    /// A list.
    List(Vec<CfgValue>),
}

/// The deepest nesting of lists read (libxlutil's parser stack allows far more; no setting
/// xl knows nests more than once).
const MAX_DEPTH: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token<'a> {
    Ident(&'a str),
    Atom(String),
    Comma,
    Open,
    Close,
    Assign,
    Add,
    Semicolon,
    Newline,
}

/// A token, its line (from 1) and its text as written.
struct Lexed<'a> {
    token: Token<'a>,
    line: usize,
    text: &'a str,
}

/// What makes xl refuse the file: `what` about `token` on `line`.
fn refused(token: &str, line: usize, what: &str) -> XlError {
    xl_error(token, format!("line {line} of the xl configuration: {what} (xl refuses the file)"))
}

/// The tokens of the file, as libxlutil's scanner makes them.
fn tokens(text: &str) -> Result<Vec<Lexed<'_>>, XlError> {
    let bytes = text.as_bytes();
    let (mut out, mut i, mut line) = (Vec::new(), 0, 1);
    // The text of a token that runs over bytes matching `more`.
    let run = |start: usize, more: fn(u8) -> bool| {
        let mut end = start + 1;
        while end < bytes.len() && more(bytes[end]) {
            end += 1;
        }
        end
    };
    while i < bytes.len() {
        let start = i;
        let (token, end) = match bytes[i] {
            b' ' | b'\t' => {
                i += 1;
                continue;
            }
            b'a'..=b'z' => {
                let end = run(i, |b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.'));
                (Token::Ident(&text[i..end]), end)
            }
            b'0'..=b'9' => {
                let end = run(i, |b| matches!(b, b'0'..=b'9' | b'a'..=b'f' | b'x'));
                (Token::Atom(text[i..end].to_string()), end)
            }
            b',' => (Token::Comma, i + 1),
            b'[' => (Token::Open, i + 1),
            b']' => (Token::Close, i + 1),
            b'=' => (Token::Assign, i + 1),
            b';' => (Token::Semicolon, i + 1),
            b'+' if bytes.get(i + 1) == Some(&b'=') => (Token::Add, i + 2),
            b'\n' => (Token::Newline, i + 1),
            b'#' => match text[i..].find('\n') {
                Some(offset) => (Token::Newline, i + offset + 1),
                None => return Err(refused(&text[i..], line, "a comment on the last line without a newline")),
            },
            quote @ (b'"' | b'\'') => {
                let (value, end) = quoted(text, i, quote, line)?;
                (Token::Atom(value), end)
            }
            _ => {
                let end = text[i..].find([' ', '\t', '\n']).map_or(text.len(), |offset| i + offset);
                let what = match bytes[i] {
                    b'\r' => "a carriage return (a file with DOS line ends)".to_string(),
                    b'A'..=b'Z' => "a name must be lower case".to_string(),
                    b @ (0..=0x1f | 0x7f) => format!("the control character {b:#04x}"),
                    _ => "a character that starts no token".to_string(),
                };
                return Err(refused(&text[start..end.max(start + 1)], line, &what));
            }
        };
        out.push(Lexed { token, line, text: &text[start..end] });
        if bytes[end - 1] == b'\n' {
            line += 1;
        }
        i = end;
    }
    Ok(out)
}

/// The string quoted from `start` (the quote), and where it ends: on one line, with libxlutil's
/// escapes of a quote, a backslash and the control characters; its numeric escapes are refused
/// (libxlutil 4.17 reads `"a\101b"` as `ab`, dropping the character, and refuses `"a\x414b"`).
fn quoted(text: &str, start: usize, quote: u8, line: usize) -> Result<(String, usize), XlError> {
    let bytes = text.as_bytes();
    let mut value = String::new();
    let mut i = start + 1;
    let unterminated = |end: usize| refused(&text[start..end], line, "a string not closed on its line");
    loop {
        let Some(&b) = bytes.get(i) else { return Err(unterminated(i)) };
        match b {
            b'\n' => return Err(unterminated(i)),
            b'\\' => {
                let escaped = match bytes.get(i + 1) {
                    Some(&c @ (b'"' | b'\'' | b'\\')) => c as char,
                    Some(b'a') => '\x07',
                    Some(b'b') => '\x08',
                    Some(b'f') => '\x0c',
                    Some(b'n') => '\n',
                    Some(b'r') => '\r',
                    Some(b't') => '\t',
                    Some(b'v') => '\x0b',
                    None | Some(b'\n') => return Err(unterminated(i + 1)),
                    Some(_) => {
                        let end = (i + 2).min(text.len());
                        let shown = text.get(i..end).unwrap_or("\\");
                        return Err(refused(shown, line, "an escape libxlutil does not keep"));
                    }
                };
                value.push(escaped);
                i += 2;
            }
            _ if b == quote => return Ok((value, i + 1)),
            _ => {
                // A whole character (the text is UTF-8).
                let c = text[i..].chars().next().unwrap_or('\u{fffd}');
                value.push(c);
                i += c.len_utf8();
            }
        }
    }
}

/// The parser over the tokens: the grammar of `libxlu_cfg_y.y`.
struct Parser<'a> {
    tokens: Vec<Lexed<'a>>,
    at: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&Token<'a>> {
        self.tokens.get(self.at).map(|l| &l.token)
    }

    /// A syntax error at the current token (or the end of the file).
    fn error(&self, expected: &str) -> XlError {
        match self.tokens.get(self.at) {
            Some(lexed) => {
                let shown = if lexed.token == Token::Newline { "<newline>" } else { lexed.text };
                refused(shown, lexed.line, &format!("expected {expected}"))
            }
            None => xl_error("<end of file>", format!("xl configuration: expected {expected} (xl refuses the file)")),
        }
    }

    fn skip_newlines(&mut self) {
        while self.peek() == Some(&Token::Newline) {
            self.at += 1;
        }
    }

    /// `value: atom | '[' nlok valuelist ']'`.
    fn value(&mut self, depth: usize) -> Result<CfgValue, XlError> {
        match self.peek() {
            Some(Token::Atom(_)) => {
                // Taken out of the token, which is read once.
                let text = match self.tokens.get_mut(self.at).map(|l| &mut l.token) {
                    Some(Token::Atom(text)) => std::mem::take(text),
                    _ => String::new(),
                };
                self.at += 1;
                Ok(CfgValue::Atom(text))
            }
            Some(Token::Open) if depth >= MAX_DEPTH => Err(self.error("fewer nested lists")),
            Some(Token::Open) => {
                self.at += 1;
                self.skip_newlines();
                let mut items = Vec::new();
                while self.peek() != Some(&Token::Close) {
                    items.push(self.value(depth + 1)?);
                    self.skip_newlines();
                    if self.peek() != Some(&Token::Comma) {
                        break;
                    }
                    self.at += 1;
                    self.skip_newlines();
                }
                if self.peek() != Some(&Token::Close) {
                    return Err(self.error("',' or ']'"));
                }
                self.at += 1;
                Ok(CfgValue::List(items))
            }
            _ => Err(self.error("a string, a number or '['")),
        }
    }
}

/// Every setting of the file, as libxlutil keeps them (the last given, `+=` joined), or the
/// error that makes xl refuse the file.
pub(crate) fn read_settings(text: &str) -> Result<HashMap<&str, CfgValue>, XlError> {
    let mut parser = Parser { tokens: tokens(text)?, at: 0 };
    let mut settings: HashMap<&str, CfgValue> = HashMap::new();
    while let Some(token) = parser.peek() {
        let name = match token {
            Token::Newline | Token::Semicolon => {
                parser.at += 1;
                continue;
            }
            Token::Ident(name) => *name,
            _ => return Err(parser.error("a setting name")),
        };
        parser.at += 1;
        let add = match parser.peek() {
            Some(Token::Assign) => false,
            Some(Token::Add) => true,
            _ => return Err(parser.error("'=' or '+='")),
        };
        parser.at += 1;
        let line = parser.tokens.get(parser.at).map_or(0, |l| l.line);
        let value = parser.value(0)?;
        let value = match (settings.remove(name), value) {
            (Some(CfgValue::Atom(before)), CfgValue::Atom(after)) if add => CfgValue::Atom(before + &after),
            (Some(CfgValue::List(mut before)), CfgValue::List(after)) if add => {
                before.extend(after);
                CfgValue::List(before)
            }
            (Some(_), _) if add => return Err(refused(name, line, "can't add [list] to \"string\" or vice versa")),
            (_, value) => value,
        };
        settings.insert(name, value);
        match parser.peek() {
            None => break,
            Some(Token::Newline | Token::Semicolon) => parser.at += 1,
            Some(_) => return Err(parser.error("the end of the setting (a newline or ';')")),
        }
    }
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpuid(text: &str) -> Result<Option<CfgValue>, XlError> {
        read_settings(text).map(|mut settings| settings.remove("cpuid"))
    }

    fn atom(text: &str) -> CfgValue {
        CfgValue::Atom(text.to_string())
    }

    /// What Debian's libxlutil 4.17 (`xl_oracle setting`) reads from each of these files; the
    /// c-api step checks a set of them against it in every run.
    #[test]
    fn settings_read_as_libxlutil_reads_them() {
        let list = |items: &[&str]| CfgValue::List(items.iter().map(|i| atom(i)).collect());
        let cases: [(&str, CfgValue); 11] = [
            ("cpuid = \"host\"; cpuid = \"host,avx=0\"\n", atom("host,avx=0")),
            ("disk = [ 'a',\n 'cpuid = \"x\"' ]\ncpuid=\"host\"\n", atom("host")),
            ("cpuid = 5\n", atom("5")),
            ("cpuid = 0x1f\n", atom("0x1f")),
            ("cpuid = \"host\"", atom("host")),
            ("cpuid = [ ]\n", list(&[])),
            ("cpuid = [\n\n \"a\"\n ,\n \"b\" ,\n ]\n", list(&["a", "b"])),
            ("cpuid = \"a\\tb\"\n", atom("a\tb")),
            ("\n\n# only comment\n   \n\t\ncpuid = \"host\"\n", atom("host")),
            ("name = \"a\"\n;;\ncpuid = \"host\"\n  # indented comment\n", atom("host")),
            ("cpuid += [ \"a\" ]\ncpuid += [ 'b' ]\n", list(&["a", "b"])),
        ];
        for (text, expected) in cases {
            assert_eq!(cpuid(text).unwrap(), Some(expected), "{text:?}");
        }
        assert_eq!(cpuid("cpuid.x = \"host\"\n").unwrap(), None);
    }

    /// What libxlutil refuses, refused, naming the line and the token.
    #[test]
    fn files_libxlutil_refuses_are_refused_at_the_line() {
        let cases: [(&str, &str, &str); 12] = [
            ("garbage\ncpuid = \"host\"\n", "<newline>", "line 1 of the xl configuration: expected '=' or '+='"),
            ("name = 1\nCPUID = \"host\"\n", "CPUID", "line 2 of the xl configuration: a name must be lower case"),
            ("cpuid = \"host\" # c", "# c", "a comment on the last line without a newline"),
            ("cpuid = \"host\"\r\n", "\r", "a carriage return"),
            ("cpuid = host\n", "host", "expected a string, a number or '['"),
            ("cpuid = \"host\",\n", ",", "expected the end of the setting"),
            ("cpuid = \"ho\nst\"\n", "\"ho", "a string not closed on its line"),
            ("cpuid = \"host\" cpuid = \"x\"\n", "cpuid", "expected the end of the setting"),
            ("cpuid = \"host\"\nname = \"x\" ]\n", "]", "line 2"),
            ("cpuid = \"a\"\ncpuid += [ \"b\" ]\n", "cpuid", "can't add [list] to \"string\""),
            ("cpuid = \"a\\x41\"\n", "\\x", "an escape libxlutil does not keep"),
            ("cpuid = \"host\"\0\n", "\0", "the control character 0x00"),
        ];
        for (text, token, problem) in cases {
            let e = cpuid(text).unwrap_err();
            assert_eq!(e.token, token, "{text:?}: {e}");
            assert!(e.problem.contains(problem), "{text:?}: {e}");
        }
        let deep = format!("cpuid = {}\n", "[".repeat(10_000));
        assert!(cpuid(&deep).unwrap_err().problem.contains("fewer nested lists"));
    }
}
