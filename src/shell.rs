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
    let words = split_words(line, &mut Expand::None)?;
    Ok(words.into_iter().map(|w| w.text).collect())
}

/// One word of a line and the 1-based column (in characters) where it
/// starts, so that a caller can point at the word in its own errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    pub text: String,
    pub column: usize,
}

/// What [`split_words`] does with `${NAME}` and `#`.
pub enum Expand<'a> {
    /// `$` and `#` are plain characters (the `--stdin` line syntax).
    None,
    /// pup-sched's config: `${NAME}` outside single quotes is replaced by
    /// what the function returns for NAME (an `Err` is an error at the
    /// `$`'s column), and the value is never split again, as if written in
    /// double quotes, so a secret with blanks or quotes in it stays one
    /// word. A `#` at the start of a word begins a comment, as in a shell.
    Config(&'a mut dyn FnMut(&str) -> Result<String, String>),
}

/// Splits `line` into words with their columns; see [`Expand`] for the
/// config variant.
pub fn split_words(line: &str, expand: &mut Expand<'_>) -> Result<Vec<Word>, SplitError> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut start = 0;
    let config = matches!(expand, Expand::Config(_));
    let mut chars = line.chars().enumerate().peekable();
    // Replaces `${NAME}` starting at column `i` (the `$`), if expanding.
    let mut dollar = |i: usize,
                      chars: &mut std::iter::Peekable<
        std::iter::Enumerate<std::str::Chars<'_>>,
    >,
                      word: &mut String|
     -> Result<bool, SplitError> {
        let Expand::Config(f) = expand else {
            return Ok(false);
        };
        if chars.peek().map(|&(_, c)| c) != Some('{') {
            return Ok(false);
        }
        chars.next();
        let mut name = String::new();
        loop {
            match chars.next() {
                Some((_, '}')) => break,
                Some((_, c)) if c.is_ascii_alphanumeric() || c == '_' => name.push(c),
                _ => {
                    return Err(SplitError {
                        column: i + 1,
                        message: "bad ${NAME}: a name is letters, digits and '_', closed by '}'"
                            .into(),
                    })
                }
            }
        }
        let value = f(&name).map_err(|message| SplitError {
            column: i + 1,
            message,
        })?;
        word.push_str(&value);
        Ok(true)
    };
    while let Some((i, c)) = chars.next() {
        if !in_word {
            start = i + 1;
        }
        match c {
            ' ' | '\t' | '\n' | '\r' => {
                if in_word {
                    words.push(Word {
                        text: std::mem::take(&mut word),
                        column: start,
                    });
                    in_word = false;
                }
            }
            '#' if config && !in_word => break,
            '$' => {
                in_word = true;
                if !dollar(i, &mut chars, &mut word)? {
                    word.push('$');
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
                        Some((j, '$')) => {
                            if !dollar(j, &mut chars, &mut word)? {
                                word.push('$');
                            }
                        }
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
        words.push(Word {
            text: word,
            column: start,
        });
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
    fn config_words_expand_variables_and_drop_comments() {
        let mut env = |n: &str| match n {
            "TOKEN" => Ok("s3 'cr\"t".to_string()),
            _ => Err(format!("environment variable \"{n}\" is not set")),
        };
        let words = split_words(
            r#"a  x${TOKEN}y "${TOKEN}" '${TOKEN}' $HOME #c"#,
            &mut Expand::Config(&mut env),
        )
        .unwrap();
        let got: Vec<(&str, usize)> = words.iter().map(|w| (w.text.as_str(), w.column)).collect();
        assert_eq!(
            got,
            [
                ("a", 1),
                ("xs3 'cr\"ty", 4),
                ("s3 'cr\"t", 15),
                ("${TOKEN}", 26),
                ("$HOME", 37)
            ]
        );
        let e = split_words("ab ${NOPE}", &mut Expand::Config(&mut env)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "column 4: environment variable \"NOPE\" is not set"
        );
        let e = split_words("ab ${NO PE}", &mut Expand::Config(&mut env)).unwrap_err();
        assert_eq!(e.column, 4);
        // Without expansion, `$` and `#` stay plain characters.
        assert_eq!(split("a#b #c ${X}").unwrap(), ["a#b", "#c", "${X}"]);
    }

    #[test]
    fn quote_round_trips() {
        for w in ["plain", "", "two words", "it's", "a\"b", "$x", "tab\there"] {
            assert_eq!(split(&quote(w)).unwrap(), [w], "word {w:?}");
        }
    }
}
