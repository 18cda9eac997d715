//! Secrets in configuration errors: the parser quotes the offending line, and a password
//! written inline by mistake must not be echoed (issue 13 #8).

/// A key whose value must never be printed: `password = "…"` written inline by mistake (wharf
/// takes passwords from `password_file` or `password_env` only) would otherwise be echoed by
/// the parser's error, which quotes the offending line.
fn is_secret_key(key: &str) -> bool {
    let key = key.trim().trim_matches(['"', '\'']).to_ascii_lowercase();
    let key = key.rsplit('.').next().unwrap_or_default();
    ["password", "secret", "token", "passphrase", "credential"]
        .iter()
        .any(|s| key.contains(s))
        && !key.ends_with("_file")
        && !key.ends_with("_env")
}

/// `message` with the values of secret-looking keys of `text` replaced by `<redacted>`: in the
/// quoted source lines of a TOML error, and wherever the quoted value appears.
pub(super) fn redact_secrets(message: &str, text: &str) -> String {
    const REDACTED: &str = "\"<redacted>\"";
    let secrets: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| is_secret_key(k))
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
        .collect();
    if secrets.is_empty() {
        return message.to_owned();
    }
    let mut out = String::with_capacity(message.len());
    for line in message.lines() {
        // The parser quotes source lines as `12 | key = value`.
        let quoted = line
            .split_once('|')
            .filter(|(n, _)| !n.trim().is_empty() && n.trim().chars().all(|c| c.is_ascii_digit()));
        let line = match quoted.and_then(|(n, src)| Some((n, src, src.split_once('=')?))) {
            Some((n, _, (k, _))) if is_secret_key(k) => format!("{n}|{k}= {REDACTED}"),
            _ => secrets
                .iter()
                .fold(line.to_owned(), |l, v| l.replace(v, REDACTED)),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out.truncate(out.trim_end().len());
    out
}
