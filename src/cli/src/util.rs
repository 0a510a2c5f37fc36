//! Small helpers shared by the commands: writing files (secrets with mode 0600), names safe as file
//! names, times as RFC 3339 plus a relative phrase, and hex.

use anyhow::{bail, Context as _, Result};
use std::io::Write as _;
use std::path::Path;

/// Writes `bytes` to `path`. Secrets are created with mode 0600 (and set to 0600 if the file existed).
/// An existing file is an error unless `force`.
pub fn write_file(path: &Path, bytes: &[u8], secret: bool, force: bool) -> Result<()> {
    if !force && path.exists() {
        bail!("{}: already exists (use --force to overwrite)", path.display());
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("{}: cannot create", path.display()))?;
    #[cfg(unix)]
    if secret {
        // The mode above applies only when the file is created; an overwritten one is tightened here.
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("{}: cannot set mode 0600", path.display()))?;
    }
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("{}: cannot write", path.display()))?;
    Ok(())
}

/// Creates `dir` (and parents) when missing.
pub fn ensure_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create directory", dir.display()))
}

/// `true` for names usable as one file name component: `[A-Za-z0-9._-]`, not starting with a dot.
pub fn is_safe_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// RFC 3339 UTC (`2024-01-01T00:00:00Z`), or `None` outside the representable range.
pub fn rfc3339(unix: i64) -> Option<String> {
    let t = time::OffsetDateTime::from_unix_timestamp(unix).ok()?;
    Some(format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    ))
}

/// A duration in its largest whole unit: `45s`, `4m`, `2h`, `3d`.
pub fn span(seconds: u64) -> String {
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3_600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3_600),
        s => format!("{}d", s / 86_400),
    }
}

/// The wall clock as Unix seconds (only for display and `token inspect` without `--now`).
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The first characters of a secret-ish string, for messages: never the whole value.
pub fn abbreviate(s: &str) -> String {
    let n = (s.chars().count() / 2).min(12);
    let head: String = s.chars().take(n).collect();
    format!("{head}...")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(rfc3339(1_704_067_200).as_deref(), Some("2024-01-01T00:00:00Z"));
        assert_eq!(rfc3339(0).as_deref(), Some("1970-01-01T00:00:00Z"));
        assert_eq!(span(240), "4m");
        assert_eq!(span(7_200), "2h");
        assert_eq!(span(59), "59s");
        assert_eq!(
            abbreviate("abcdefghijklmnopqrstuvwxyz0123456789"),
            "abcdefghijkl..."
        );
        assert_eq!(abbreviate("abcd"), "ab...");
        assert!(is_safe_file_name("client-1.a_b"));
        assert!(!is_safe_file_name("../x"));
        assert!(!is_safe_file_name(".hidden"));
        assert_eq!(hex(&[0, 255, 16]), "00ff10");
    }
}
