//! The path prefix oneoff is served under (`[server] base_path`), e.g. `/oneoff` for
//! `https://tools.example.com/oneoff/` behind an ingress that passes the path on unchanged.
//!
//! A [`BasePath`] is either empty (served at the root) or `/` followed by segments of
//! URL-safe characters, without a trailing `/`: so `format!("{base}/api/v1")` is always a
//! valid path, and the prefix never needs escaping in HTML, JavaScript or a header.

use std::fmt;

/// The longest prefix accepted: a path, not a place to keep text.
const MAX_BASE_PATH_BYTES: usize = 200;

/// Paths the server answers at the root whatever the prefix, which a prefix may not shadow.
const ROOT_PATHS: &[&str] = &["healthz", "readyz"];

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BasePath(String);

impl BasePath {
    /// `""` and `"/"` are the root; `"/oneoff"` and `"/oneoff/"` are the same prefix.
    pub fn parse(text: &str) -> Result<BasePath, String> {
        let shape =
            "write it as /NAME or /NAME/NAME (letters, digits, `-`, `_`, `.`, `~`), e.g. base_path = \"/oneoff\"";
        if text.len() > MAX_BASE_PATH_BYTES {
            return Err(format!("base_path is longer than {MAX_BASE_PATH_BYTES} bytes: {shape}"));
        }
        let trimmed = text.strip_suffix('/').unwrap_or(text);
        if trimmed.is_empty() {
            return Ok(BasePath::default());
        }
        // Only a bounded, printable piece of the text is quoted back.
        let quoted: String = text.chars().take(80).map(|c| if c.is_control() { '?' } else { c }).collect();
        let Some(rest) = trimmed.strip_prefix('/') else {
            return Err(format!("base_path `{quoted}` must start with `/`: {shape}"));
        };
        for segment in rest.split('/') {
            if segment.is_empty() {
                return Err(format!("base_path `{quoted}` has an empty segment (`//`): {shape}"));
            }
            if segment == "." || segment == ".." {
                return Err(format!(
                    "base_path `{quoted}` holds `{segment}`, which a browser would resolve away: {shape}"
                ));
            }
            if let Some(bad) = segment.chars().find(|c| !(c.is_ascii_alphanumeric() || "-_.~".contains(*c))) {
                let shown = if bad.is_control() { "a control character".to_string() } else { format!("`{bad}`") };
                return Err(format!("base_path `{quoted}` holds {shown}: {shape}"));
            }
        }
        if let Some(first) = rest.split('/').next().filter(|first| ROOT_PATHS.contains(first)) {
            return Err(format!(
                "base_path `{quoted}` would hide /{first}, which is always served at the root: choose another prefix"
            ));
        }
        Ok(BasePath(trimmed.to_string()))
    }

    /// `""` at the root, else `/NAME…` without a trailing `/`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// `path` (which starts with `/`) under the prefix.
    pub fn join(&self, path: &str) -> String {
        format!("{}{path}", self.0)
    }
}

impl fmt::Display for BasePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "/" } else { &self.0 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_and_prefixes_parse_to_one_form() {
        for root in ["", "/"] {
            assert!(BasePath::parse(root).unwrap().is_root(), "{root:?}");
        }
        for (text, expected) in [("/oneoff", "/oneoff"), ("/oneoff/", "/oneoff"), ("/a/b-c_d.e~f", "/a/b-c_d.e~f")] {
            assert_eq!(BasePath::parse(text).unwrap().as_str(), expected);
        }
        assert_eq!(BasePath::parse("/oneoff").unwrap().join("/api/v1"), "/oneoff/api/v1");
        assert_eq!(BasePath::default().join("/api/v1"), "/api/v1");
    }

    #[test]
    fn what_is_not_a_clean_prefix_is_refused_with_the_fix() {
        for (text, expected) in [
            ("oneoff", "must start with `/`"),
            ("//oneoff", "empty segment"),
            ("/a//b", "empty segment"),
            ("/a/../b", "holds `..`"),
            ("/./a", "holds `.`"),
            ("/one off", "holds ` `"),
            ("/a?b=1", "holds `?`"),
            ("/a#b", "holds `#`"),
            ("/caf%C3%A9", "holds `%`"),
            ("/\"><script>", "holds `\"`"),
            ("/a\nb", "holds a control character"),
            ("/healthz", "would hide /healthz"),
            ("/readyz/x", "would hide /readyz"),
        ] {
            let error = BasePath::parse(text).unwrap_err();
            assert!(error.contains(expected), "{text:?}: {error}");
            assert!(error.contains("base_path"), "{error}");
        }
        let long = format!("/{}", "a".repeat(MAX_BASE_PATH_BYTES));
        assert!(BasePath::parse(&long).unwrap_err().contains("longer than"));
    }
}
