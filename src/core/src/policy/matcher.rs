//! Which rule a request falls under: host, method and path patterns, and the coverage relation the
//! linter uses to find rules that an earlier rule shadows.

use std::borrow::Cow;

/// A path pattern, compiled from `path`, `prefix` or `template`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathPattern {
    Exact(String),
    /// Segment-aligned prefix, stored without a trailing slash (the root prefix is "").
    Prefix(String),
    Template(Vec<Segment>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    Variable(String),
}

/// Why a path pattern is invalid.
pub fn parse_template(template: &str) -> Result<Vec<Segment>, String> {
    if !template.starts_with('/') {
        return Err("a path template must start with /".into());
    }
    let mut names: Vec<&str> = Vec::new();
    let mut segments = Vec::new();
    for seg in template[1..].split('/') {
        if seg.starts_with('{') && seg.ends_with('}') && seg.len() >= 2 {
            let name = &seg[1..seg.len() - 1];
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(format!(
                    "template variable {{{name}}} must be a non-empty name of letters, digits and _"
                ));
            }
            if names.contains(&name) {
                return Err(format!("template variable {{{name}}} appears twice"));
            }
            names.push(name);
            segments.push(Segment::Variable(name.to_string()));
        } else if seg.contains('{') || seg.contains('}') {
            return Err(format!(
                "segment \"{seg}\": a variable must be a whole segment, like /{{id}}/"
            ));
        } else {
            segments.push(Segment::Literal(seg.to_string()));
        }
    }
    Ok(segments)
}

impl PathPattern {
    /// `path` is normalized ([`normalize_path`]).
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathPattern::Exact(p) => p == path,
            PathPattern::Prefix(p) => {
                path.starts_with(p.as_str())
                    && (path.len() == p.len() || path.as_bytes().get(p.len()) == Some(&b'/'))
            }
            PathPattern::Template(segments) => {
                let Some(rest) = path.strip_prefix('/') else {
                    return false;
                };
                let mut parts = rest.split('/');
                for seg in segments {
                    match (seg, parts.next()) {
                        (Segment::Literal(l), Some(p)) if l == p => {}
                        (Segment::Variable(_), Some(p)) if !p.is_empty() => {}
                        _ => return false,
                    }
                }
                parts.next().is_none()
            }
        }
    }

    /// `true` when every path `other` matches, `self` matches too.
    pub fn covers(&self, other: &PathPattern) -> bool {
        match (self, other) {
            (PathPattern::Prefix(p), o) => {
                let lit = o.literal_prefix();
                let ok = lit.starts_with(p.as_str())
                    && (lit.len() == p.len() || lit.as_bytes().get(p.len()) == Some(&b'/'));
                // An exact "/a" is covered by the prefix "/a"; a template is covered when its literal
                // segments reach past the prefix; another prefix when it is longer.
                ok && match o {
                    PathPattern::Template(_) => o.literal_segments_len() >= p.len(),
                    _ => true,
                }
            }
            (PathPattern::Exact(a), PathPattern::Exact(b)) => a == b,
            (PathPattern::Exact(_), _) => false,
            (PathPattern::Template(_), PathPattern::Exact(e)) => self.matches(e),
            (PathPattern::Template(a), PathPattern::Template(b)) => {
                a.len() == b.len()
                    && a.iter().zip(b).all(|(x, y)| match (x, y) {
                        (Segment::Variable(_), _) => true,
                        (Segment::Literal(l), Segment::Literal(m)) => l == m,
                        _ => false,
                    })
            }
            (PathPattern::Template(_), PathPattern::Prefix(_)) => false,
        }
    }

    /// The literal text every matched path starts with.
    fn literal_prefix(&self) -> String {
        match self {
            PathPattern::Exact(p) | PathPattern::Prefix(p) => p.clone(),
            PathPattern::Template(_) => {
                let mut out = String::new();
                for seg in self.literal_segments() {
                    out.push('/');
                    out.push_str(seg);
                }
                out
            }
        }
    }

    fn literal_segments(&self) -> Vec<&str> {
        match self {
            PathPattern::Template(segs) => segs
                .iter()
                .map_while(|s| match s {
                    Segment::Literal(l) => Some(l.as_str()),
                    Segment::Variable(_) => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    fn literal_segments_len(&self) -> usize {
        self.literal_prefix().len()
    }
}

/// A host pattern: exact, or `*.suffix` for exactly one extra label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    Exact(String),
    Wildcard(String),
}

impl HostPattern {
    pub fn parse(s: &str) -> Result<Self, String> {
        let lower = s.to_ascii_lowercase();
        let valid = |h: &str| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':' | b'[' | b']'))
        };
        if let Some(suffix) = lower.strip_prefix("*.") {
            if valid(suffix) {
                return Ok(HostPattern::Wildcard(suffix.to_string()));
            }
        } else if valid(&lower) {
            return Ok(HostPattern::Exact(lower));
        }
        Err(format!("\"{s}\" is not a host name or *.domain pattern"))
    }

    /// `host` is lowercase without port.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(h) => h == host,
            HostPattern::Wildcard(suffix) => host
                .strip_suffix(suffix.as_str())
                .and_then(|label| label.strip_suffix('.'))
                .is_some_and(|label| !label.is_empty() && !label.contains('.')),
        }
    }

    pub fn covers(&self, other: &HostPattern) -> bool {
        match (self, other) {
            (HostPattern::Exact(a), HostPattern::Exact(b)) => a == b,
            (HostPattern::Wildcard(_), HostPattern::Exact(b)) => self.matches(b),
            (HostPattern::Wildcard(a), HostPattern::Wildcard(b)) => a == b,
            (HostPattern::Exact(_), HostPattern::Wildcard(_)) => false,
        }
    }
}

/// The host of an authority: lowercased, port removed.
pub fn host_of(authority: &str) -> String {
    host_cow(authority).into_owned()
}

/// [`host_of`] without a copy when the authority is already lowercase (the usual case on the request
/// path).
pub fn host_cow(authority: &str) -> Cow<'_, str> {
    if authority.bytes().any(|b| b.is_ascii_uppercase()) {
        return Cow::Owned(host_of_lower(&authority.to_ascii_lowercase()).to_string());
    }
    Cow::Borrowed(host_of_lower(authority))
}

/// The host of a lowercase authority.
fn host_of_lower(a: &str) -> &str {
    if a.starts_with('[') {
        return match a.find(']') {
            Some(i) => &a[..=i],
            None => a,
        };
    }
    match a.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => a,
    }
}

#[cfg(test)]
fn host_of_reference(authority: &str) -> String {
    let a = authority.to_ascii_lowercase();
    if a.starts_with('[') {
        return match a.find(']') {
            Some(i) => a[..=i].to_string(),
            None => a,
        };
    }
    match a.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h.to_string(),
        _ => a,
    }
}

/// The path used for matching: query dropped, percent-encoding normalized (RFC 3986 §6.2.2.2),
/// dot segments removed and repeated slashes merged, so `/a/../b` and `//b` cannot dodge a rule.
/// `None` for a path that is not a valid origin-form path.
pub fn normalize_path(path: &str) -> Option<String> {
    normalized_path(path).map(Cow::into_owned)
}

/// [`normalize_path`] without a copy when the path is already normal: printable ASCII, no
/// percent-encoding, no dot segment and no repeated slash (the usual case on the request path; the
/// result is then the same as the full normalization's).
pub fn normalized_path(path: &str) -> Option<Cow<'_, str>> {
    let path = path.split(['?', '#']).next().unwrap_or("");
    let b = path.as_bytes();
    let plain = b.first() == Some(&b'/')
        && b.iter().all(|c| (0x21..0x7f).contains(c) && *c != b'%')
        && !path.contains("//")
        && path.split('/').all(|seg| seg != "." && seg != "..");
    if plain {
        return Some(Cow::Borrowed(path));
    }
    normalize_path_full(path).map(Cow::Owned)
}

fn normalize_path_full(path: &str) -> Option<String> {
    if !path.starts_with('/') {
        return None;
    }
    let full = crate::uri::normalize(&format!("http://h{path}"))?;
    let normalized = full.strip_prefix("http://h")?;
    let mut merged = String::with_capacity(normalized.len());
    let mut last_slash = false;
    for c in normalized.chars() {
        if c == '/' && last_slash {
            continue;
        }
        last_slash = c == '/';
        merged.push(c);
    }
    Some(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(t: &str) -> PathPattern {
        PathPattern::Template(parse_template(t).unwrap_or_default())
    }

    #[test]
    fn templates_match_whole_segments() {
        let t = template("/accounts/{id}/balances");
        assert!(t.matches("/accounts/123/balances"));
        assert!(!t.matches("/accounts//balances"));
        assert!(!t.matches("/accounts/1/2/balances"));
        assert!(!t.matches("/accounts/1/balances/x"));
        assert!(parse_template("/a/{id}x").is_err());
        assert!(parse_template("/a/{}").is_err());
        assert!(parse_template("/a/{id}/{id}").is_err());
        assert!(parse_template("a").is_err());
    }

    #[test]
    fn prefixes_respect_segment_boundaries() {
        let p = PathPattern::Prefix("/accounts".into());
        assert!(p.matches("/accounts"));
        assert!(p.matches("/accounts/1"));
        assert!(!p.matches("/accountsX"));
        assert!(PathPattern::Prefix(String::new()).matches("/anything"));
    }

    #[test]
    fn coverage_for_shadowing() {
        let prefix = PathPattern::Prefix("/accounts".into());
        assert!(prefix.covers(&template("/accounts/{id}/balances")));
        assert!(prefix.covers(&PathPattern::Exact("/accounts/1".into())));
        assert!(!prefix.covers(&PathPattern::Exact("/transfers".into())));
        assert!(template("/accounts/{id}").covers(&template("/accounts/{x}")));
        assert!(template("/accounts/{id}").covers(&PathPattern::Exact("/accounts/7".into())));
        assert!(!template("/accounts/{id}").covers(&template("/accounts/{id}/balances")));
        assert!(!PathPattern::Exact("/a".into()).covers(&template("/a")));
        assert!(!PathPattern::Prefix("/a/b".into()).covers(&template("/a/{x}/c")));
    }

    #[test]
    fn hosts() {
        let w = HostPattern::parse("*.bank.example").unwrap_or(HostPattern::Exact(String::new()));
        assert!(w.matches("api.bank.example"));
        assert!(!w.matches("bank.example"));
        assert!(!w.matches("a.b.bank.example"));
        assert_eq!(host_of("API.Bank.Example:8443"), "api.bank.example");
        assert_eq!(host_of("[::1]:443"), "[::1]");
        assert!(HostPattern::parse("bad host").is_err());
    }

    #[test]
    fn fast_paths_agree_with_the_full_normalization() {
        for a in [
            "api.bank.example",
            "API.Bank.Example:8443",
            "[::1]:443",
            "[::1]",
            "h:x",
            "a:",
            "[x",
        ] {
            assert_eq!(host_of(a), host_of_reference(a), "{a}");
        }
        for p in [
            "/accounts/0012345/balances",
            "/",
            "/a/",
            "/a/./b",
            "/a/../b",
            "/a/..",
            "/a/.",
            "/.hidden/x",
            "/a..b/c",
            "//x",
            "/a//b",
            "/%41",
            "/a b",
            "/ä",
            "/x?y=/../z",
            "/x#/../z",
            "x",
            "",
        ] {
            let cut = p.split(['?', '#']).next().unwrap_or("");
            let full = if cut.starts_with('/') {
                normalize_path_full(cut)
            } else {
                None
            };
            assert_eq!(normalized_path(p).map(Cow::into_owned), full, "{p}");
        }
        assert!(matches!(
            normalized_path("/accounts/1/balances?x=1"),
            Some(Cow::Borrowed(_))
        ));
    }

    #[test]
    fn path_normalization_defeats_dodges() {
        assert_eq!(
            normalize_path("/accounts/1/../2/transfers?x").as_deref(),
            Some("/accounts/2/transfers")
        );
        assert_eq!(normalize_path("//transfers").as_deref(), Some("/transfers"));
        assert_eq!(normalize_path("/%61ccounts").as_deref(), Some("/accounts"));
        assert_eq!(normalize_path("accounts"), None);
    }
}
