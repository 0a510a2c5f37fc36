//! Request-URI normalization for DPoP `htu` comparison (RFC 9449 §4.3 step 9, which points to the
//! syntax- and scheme-based normalization of RFC 3986 §6.2.2 and §6.2.3).
//!
//! Normalized: scheme and host lowercased; default port removed; percent-encoding hex uppercased and
//! unreserved characters decoded; dot segments removed; an empty path becomes "/"; query and fragment
//! dropped. Userinfo is refused (it has no place in an `htu`).

/// Normalizes an absolute http(s) URI; `None` when it is not one.
pub fn normalize(uri: &str) -> Option<String> {
    let (scheme, rest) = uri.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => "443",
        "http" => "80",
        _ => return None,
    };
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let authority = authority.to_ascii_lowercase();
    let (host, port) = match authority.rsplit_once(':') {
        // An IPv6 literal without a port ends with ']'.
        Some((host, port)) if !port.contains(']') => (host, port),
        _ => (authority.as_str(), ""),
    };
    // RFC 3986 §3.2.2: a host is an IP literal in brackets or a reg-name of unreserved and sub-delim
    // characters (percent-encoded hosts are refused).
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(literal) => {
            !literal.is_empty()
                && literal
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        }
        None => {
            !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&b))
        }
    };
    if !host_ok {
        return None;
    }
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // RFC 3986 §6.2.3: an empty or default port is omitted; leading zeros are not significant.
    let digits = port.trim_start_matches('0');
    let digits = if digits.is_empty() && !port.is_empty() {
        "0"
    } else {
        digits
    };
    let host = if digits.is_empty() || digits == default_port {
        host.to_string()
    } else {
        format!("{host}:{digits}")
    };
    let path = normalize_percent(path)?;
    let path = remove_dot_segments(&path);
    let path = if path.is_empty() { "/".to_string() } else { path };
    Some(format!("{scheme}://{host}{path}"))
}

/// Builds the URI of a request from its parts as the client sent them (`:scheme`, `:authority`,
/// `:path`), then normalizes it.
pub fn request_uri(scheme: &str, authority: &str, path: &str) -> Option<String> {
    if !path.starts_with('/') {
        return None;
    }
    normalize(&format!("{scheme}://{authority}{path}"))
}

fn normalize_percent(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = path.get(i + 1..i + 3)?;
            if !hex.bytes().all(|h| h.is_ascii_hexdigit()) {
                return None;
            }
            let v = u8::from_str_radix(hex, 16).ok()?;
            if v.is_ascii_alphanumeric() || matches!(v, b'-' | b'.' | b'_' | b'~') {
                out.push(v as char);
            } else {
                out.push('%');
                out.push_str(&hex.to_ascii_uppercase());
            }
            i += 3;
        } else {
            // Non-ASCII or control characters are not valid in a URI path.
            if !(0x21..0x7f).contains(&b) {
                return None;
            }
            out.push(b as char);
            i += 1;
        }
    }
    Some(out)
}

/// RFC 3986 §5.2.4.
fn remove_dot_segments(path: &str) -> String {
    let mut output: Vec<&str> = Vec::new();
    let ends_with_slash = path.ends_with("/.") || path.ends_with("/..");
    for segment in path.split('/').skip(1) {
        match segment {
            "." => {}
            ".." => {
                output.pop();
            }
            s => output.push(s),
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &output {
        out.push('/');
        out.push_str(s);
    }
    if ends_with_slash || (out.is_empty() && !path.is_empty()) {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_per_rfc3986() {
        let n = |s| normalize(s).unwrap_or_default();
        assert_eq!(
            n("https://server.example.com/token"),
            "https://server.example.com/token"
        );
        assert_eq!(
            n("HTTPS://Server.Example.COM:443/token?x=1#f"),
            "https://server.example.com/token"
        );
        assert_eq!(n("https://server.example.com"), "https://server.example.com/");
        assert_eq!(
            n("https://a.example:8443/a/./b/../c"),
            "https://a.example:8443/a/c"
        );
        assert_eq!(n("http://a.example:80/%7euser/%2f"), "http://a.example/~user/%2F");
        assert_eq!(n("https://[::1]:443/x"), "https://[::1]/x");
        assert_eq!(n("https://[::1]/x"), "https://[::1]/x");
        assert_eq!(normalize("ftp://a/x"), None);
        assert_eq!(normalize("https://user@a/x"), None);
        assert_eq!(normalize("https://a/%zz"), None);
        assert_eq!(normalize("https://a:x/"), None);
        assert_eq!(
            request_uri("https", "api.bank.example", "/accounts?x=1"),
            Some("https://api.bank.example/accounts".into())
        );
    }
}
