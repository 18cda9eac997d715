//! `WWW-Authenticate` parsing (RFC 7235 §4.1, RFC 9110 §11.6.1).
//!
//! Real registries send several challenges in one header line (quay.io:
//! `Basic realm="quay.io", Bearer realm="https://quay.io/v2/auth",service="quay.io",...`) and
//! several header lines; the containers/image parser keeps only the first scheme per line, which is
//! why this is a full parser. It is lenient: the bytes come from the upstream, so garbage is
//! skipped rather than failing the request, and it never panics.

/// One challenge: a scheme and its parameters (or a token68).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// As sent; compare with [`Challenge::is`], scheme names are case-insensitive.
    pub scheme: String,
    /// Parameter names lowercased, values unquoted and unescaped, in order, first one wins.
    pub params: Vec<(String, String)>,
    pub token68: Option<String>,
}

impl Challenge {
    pub fn is(&self, scheme: &str) -> bool {
        self.scheme.eq_ignore_ascii_case(scheme)
    }

    /// A parameter by (case-insensitive) name.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// All challenges of all the given header lines, in order.
pub fn parse_all<'a>(lines: impl IntoIterator<Item = &'a [u8]>) -> Vec<Challenge> {
    lines.into_iter().flat_map(parse).collect()
}

/// The challenges of one header line.
pub fn parse(line: &[u8]) -> Vec<Challenge> {
    let mut p = Parser { s: line, i: 0 };
    let mut out = Vec::new();
    loop {
        p.skip_while(|b| b == b',' || is_ws(b));
        if p.eof() {
            return out;
        }
        let scheme = p.token();
        if scheme.is_empty() {
            // Not a challenge: skip to the next list element.
            p.skip_while(|b| b != b',');
            continue;
        }
        let mut challenge = Challenge {
            scheme: lossy(scheme),
            params: Vec::new(),
            token68: None,
        };
        p.skip_while(is_ws);
        if let Some(t68) = p.token68() {
            challenge.token68 = Some(lossy(t68));
        } else {
            p.params(&mut challenge);
        }
        out.push(challenge);
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    fn eof(&self) -> bool {
        self.i >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_while(&mut self, f: impl Fn(u8) -> bool) {
        while self.peek().is_some_and(&f) {
            self.i += 1;
        }
    }

    fn token(&mut self) -> &'a [u8] {
        let start = self.i;
        self.skip_while(is_tchar);
        &self.s[start..self.i]
    }

    /// `token68` standing alone as the challenge's credentials (`Negotiate abc==`); it must be
    /// followed by the end or a comma, else it is the first `name=value` parameter.
    fn token68(&mut self) -> Option<&'a [u8]> {
        let start = self.i;
        let mut j = start;
        while self.s.get(j).is_some_and(|&b| is_token68_char(b)) {
            j += 1;
        }
        if j == start {
            return None;
        }
        while self.s.get(j) == Some(&b'=') {
            j += 1;
        }
        let mut k = j;
        while self.s.get(k).is_some_and(|&b| is_ws(b)) {
            k += 1;
        }
        if k < self.s.len() && self.s[k] != b',' {
            return None;
        }
        self.i = j;
        Some(&self.s[start..j])
    }

    /// `#auth-param` after the scheme. Stops (without consuming) at the scheme of the next
    /// challenge: after a comma, a token that is not followed by `=` starts a new challenge.
    fn params(&mut self, challenge: &mut Challenge) {
        loop {
            let before = self.i;
            self.skip_while(|b| b == b',' || is_ws(b));
            if self.eof() {
                return;
            }
            let name = self.token();
            self.skip_while(is_ws);
            if name.is_empty() || self.peek() != Some(b'=') {
                // The next challenge's scheme, or garbage that the outer loop skips.
                self.i = before;
                return;
            }
            self.i += 1;
            self.skip_while(is_ws);
            let value = if self.peek() == Some(b'"') {
                self.quoted()
            } else {
                lossy(self.token())
            };
            let name = lossy(name).to_ascii_lowercase();
            if challenge.param(&name).is_none() {
                challenge.params.push((name, value));
            }
            self.skip_while(is_ws);
            // Anything but a comma here is junk up to the next element.
            self.skip_while(|b| b != b',');
        }
    }

    /// A quoted-string starting at `"`; an unterminated one runs to the end of the line.
    fn quoted(&mut self) -> String {
        self.i += 1;
        let mut out = Vec::new();
        while let Some(b) = self.peek() {
            self.i += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    if let Some(escaped) = self.peek() {
                        out.push(escaped);
                        self.i += 1;
                    }
                }
                _ => out.push(b),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// RFC 9110 `tchar`.
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_token68_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)
}

#[cfg(test)]
mod tests;
