//! Tokenizer. Positions are 0-based *character* offsets (not bytes) because they are shown
//! to API clients, who count characters.

use crate::ExprError;

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Tok {
    Ident(String),
    /// `@auth.id`, `@data.title`, `@now`: the text after `@`, e.g. `auth.id`.
    Var(String),
    Str(String),
    Num(f64),
    True,
    False,
    Null,
    In,
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Like,
    NotLike,
    And,
    Or,
    Not,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
}

impl Tok {
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("identifier '{s}'"),
            Tok::Var(s) => format!("'@{s}'"),
            Tok::Str(_) => "string literal".into(),
            Tok::Num(_) => "number".into(),
            Tok::True => "'true'".into(),
            Tok::False => "'false'".into(),
            Tok::Null => "'null'".into(),
            Tok::In => "'in'".into(),
            Tok::Eq => "'='".into(),
            Tok::Ne => "'!='".into(),
            Tok::Gt => "'>'".into(),
            Tok::Ge => "'>='".into(),
            Tok::Lt => "'<'".into(),
            Tok::Le => "'<='".into(),
            Tok::Like => "'~'".into(),
            Tok::NotLike => "'!~'".into(),
            Tok::And => "'&&'".into(),
            Tok::Or => "'||'".into(),
            Tok::Not => "'!'".into(),
            Tok::LParen => "'('".into(),
            Tok::RParen => "')'".into(),
            Tok::LBracket => "'['".into(),
            Tok::RBracket => "']'".into(),
            Tok::Comma => "','".into(),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Token {
    pub tok: Tok,
    pub pos: usize,
}

fn err(position: usize, message: impl Into<String>) -> ExprError {
    ExprError {
        position,
        message: message.into(),
    }
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_lowercase() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'
}

pub(crate) fn lex(src: &str) -> Result<Vec<Token>, ExprError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let two = chars.get(i + 1).copied();
        let simple = |t: Tok, n: usize, i: &mut usize, out: &mut Vec<Token>| {
            out.push(Token { tok: t, pos: start });
            *i += n;
        };
        match c {
            '(' => simple(Tok::LParen, 1, &mut i, &mut out),
            ')' => simple(Tok::RParen, 1, &mut i, &mut out),
            '[' => simple(Tok::LBracket, 1, &mut i, &mut out),
            ']' => simple(Tok::RBracket, 1, &mut i, &mut out),
            ',' => simple(Tok::Comma, 1, &mut i, &mut out),
            '=' => simple(Tok::Eq, 1, &mut i, &mut out),
            '~' => simple(Tok::Like, 1, &mut i, &mut out),
            '!' => match two {
                Some('=') => simple(Tok::Ne, 2, &mut i, &mut out),
                Some('~') => simple(Tok::NotLike, 2, &mut i, &mut out),
                _ => simple(Tok::Not, 1, &mut i, &mut out),
            },
            '>' => match two {
                Some('=') => simple(Tok::Ge, 2, &mut i, &mut out),
                _ => simple(Tok::Gt, 1, &mut i, &mut out),
            },
            '<' => match two {
                Some('=') => simple(Tok::Le, 2, &mut i, &mut out),
                _ => simple(Tok::Lt, 1, &mut i, &mut out),
            },
            '&' => match two {
                Some('&') => simple(Tok::And, 2, &mut i, &mut out),
                _ => return Err(err(start, "unexpected '&' (did you mean '&&'?)")),
            },
            '|' => match two {
                Some('|') => simple(Tok::Or, 2, &mut i, &mut out),
                _ => return Err(err(start, "unexpected '|' (did you mean '||'?)")),
            },
            '\'' | '"' => {
                let quote = c;
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(err(start, "unterminated string")),
                        Some('\\') => match chars.get(i + 1) {
                            Some(e @ ('\'' | '"' | '\\')) => {
                                s.push(*e);
                                i += 2;
                            }
                            None => return Err(err(start, "unterminated string")),
                            Some(_) => {
                                return Err(err(
                                    i,
                                    "unknown escape (only \\', \\\" and \\\\ are allowed)",
                                ));
                            }
                        },
                        Some(&ch) if ch == quote => {
                            i += 1;
                            break;
                        }
                        Some(&ch) => {
                            s.push(ch);
                            i += 1;
                        }
                    }
                }
                out.push(Token {
                    tok: Tok::Str(s),
                    pos: start,
                });
            }
            '@' => {
                i += 1;
                let mut name = String::new();
                while i < chars.len() && is_ident_char(chars[i]) {
                    name.push(chars[i]);
                    i += 1;
                }
                if chars.get(i) == Some(&'.') {
                    name.push('.');
                    i += 1;
                    if !chars.get(i).is_some_and(|&c| is_ident_start(c)) {
                        return Err(err(i, "expected a name after '.'"));
                    }
                    while i < chars.len() && is_ident_char(chars[i]) {
                        name.push(chars[i]);
                        i += 1;
                    }
                }
                if name.is_empty() {
                    return Err(err(start, "expected a variable name after '@'"));
                }
                out.push(Token {
                    tok: Tok::Var(name),
                    pos: start,
                });
            }
            c if c == '-' || c.is_ascii_digit() => {
                let mut s = String::new();
                if c == '-' {
                    s.push('-');
                    i += 1;
                }
                let digits = |i: &mut usize, s: &mut String| -> usize {
                    let mut n = 0;
                    while *i < chars.len() && chars[*i].is_ascii_digit() {
                        s.push(chars[*i]);
                        *i += 1;
                        n += 1;
                    }
                    n
                };
                if digits(&mut i, &mut s) == 0 {
                    return Err(err(start, "malformed number"));
                }
                if chars.get(i) == Some(&'.') {
                    s.push('.');
                    i += 1;
                    if digits(&mut i, &mut s) == 0 {
                        return Err(err(start, "malformed number"));
                    }
                }
                if matches!(chars.get(i), Some('e' | 'E')) {
                    s.push('e');
                    i += 1;
                    if let Some(&sign @ ('+' | '-')) = chars.get(i) {
                        s.push(sign);
                        i += 1;
                    }
                    if digits(&mut i, &mut s) == 0 {
                        return Err(err(start, "malformed number"));
                    }
                }
                if chars
                    .get(i)
                    .is_some_and(|&c| c.is_alphanumeric() || c == '_' || c == '.')
                {
                    return Err(err(start, "malformed number"));
                }
                let n: f64 = s.parse().map_err(|_| err(start, "malformed number"))?;
                if !n.is_finite() {
                    return Err(err(start, "number out of range"));
                }
                out.push(Token {
                    tok: Tok::Num(n),
                    pos: start,
                });
            }
            c if is_ident_start(c) => {
                let mut s = String::new();
                while i < chars.len() && is_ident_char(chars[i]) {
                    s.push(chars[i]);
                    i += 1;
                }
                let tok = match s.as_str() {
                    "true" => Tok::True,
                    "false" => Tok::False,
                    "null" => Tok::Null,
                    "in" => Tok::In,
                    _ => Tok::Ident(s),
                };
                out.push(Token { tok, pos: start });
            }
            other => {
                return Err(err(start, format!("unexpected character '{other}'")));
            }
        }
    }
    Ok(out)
}
