//! Splitting a line into words the way a POSIX shell does, without
//! running one: used for `--stdin` lines and pup-sched's config, so that a
//! line can be pasted into a terminal and mean the same thing.
//!
//! Supported: blanks separate words; `'…'` is literal; `"…"` is literal but
//! for `\"`, `\\`, `\$` and `` \` ``; a backslash outside quotes escapes
//! the next character. Not supported (and never needed to name a check):
//! expansions, globs, redirections; `$` and `*` are plain characters here.

/// A line that could not be split, with the 1-based column where the
/// trouble starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitError {
    pub column: usize,
    pub message: String,
}

impl std::fmt::Display for SplitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "column {}: {}", self.column, self.message)
    }
}

/// Splits `line` into words. Columns count characters, from 1.
pub fn split(line: &str) -> Result<Vec<String>, SplitError> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars().enumerate().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            ' ' | '\t' | '\n' | '\r' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some((_, '\'')) => break,
                        Some((_, c)) => word.push(c),
                        None => {
                            return Err(SplitError {
                                column: i + 1,
                                message: "unterminated single quote".into(),
                            })
                        }
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some((_, '"')) => break,
                        Some((_, '\\')) => match chars.peek() {
                            Some(&(_, n @ ('"' | '\\' | '$' | '`'))) => {
                                word.push(n);
                                chars.next();
                            }
                            Some(&(_, '\n')) => {
                                chars.next();
                            }
                            _ => word.push('\\'),
                        },
                        Some((_, c)) => word.push(c),
                        None => {
                            return Err(SplitError {
                                column: i + 1,
                                message: "unterminated double quote".into(),
                            })
                        }
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some((_, '\n')) => {}
                    Some((_, n)) => word.push(n),
                    None => {
                        return Err(SplitError {
                            column: i + 1,
                            message: "backslash at end of line".into(),
                        })
                    }
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// Quotes `word` so that [`split`] (and a shell) reads it back unchanged.
pub fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%^".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_a_shell() {
        let cases: &[(&str, &[&str])] = &[
            ("", &[]),
            ("  a  b\tc ", &["a", "b", "c"]),
            (
                r#"--contains 'Hello world' x"#,
                &["--contains", "Hello world", "x"],
            ),
            (r#""a \"b\" \$c \n""#, &[r#"a "b" $c \n"#]),
            (r#"a\ b c\'d"#, &["a b", "c'd"]),
            (r#"''  "" x"#, &["", "", "x"]),
            (r#"pre'mid'"post""#, &["premidpost"]),
            ("$HOME *", &["$HOME", "*"]),
        ];
        for (line, want) in cases {
            assert_eq!(split(line).unwrap(), *want, "line {line:?}");
        }
    }

    #[test]
    fn unterminated_quotes_name_the_column() {
        let e = split("abc 'def").unwrap_err();
        assert_eq!(
            (e.column, e.message.as_str()),
            (5, "unterminated single quote")
        );
        let e = split(r#"x "é"  "y"#).unwrap_err();
        assert_eq!(e.to_string(), "column 8: unterminated double quote");
        assert_eq!(split("a\\").unwrap_err().column, 2);
    }

    #[test]
    fn quote_round_trips() {
        for w in ["plain", "", "two words", "it's", "a\"b", "$x", "tab\there"] {
            assert_eq!(split(&quote(w)).unwrap(), [w], "word {w:?}");
        }
    }
}
