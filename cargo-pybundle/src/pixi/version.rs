//! pixi versions, and the `requires-pixi` version specs of pixi manifests.
//!
//! A `requires-pixi` value is a conda version spec: constraints joined by `,` (all must hold)
//! and alternatives by `|`; each constraint is an operator (`>=`, `>`, `<=`, `<`, `==`, `!=`,
//! `~=`) and a version, or a bare version, which (as in conda) matches every version it is a
//! prefix of (`0.70` and `0.70.*` both match `0.70.2`).

use std::cmp::Ordering;
use std::fmt;

/// A pixi release version such as `0.77.0`: numeric components, compared numerically with
/// missing components read as zero (`0.70` == `0.70.0`).
#[derive(Clone, Debug, Eq)]
pub struct Version(Vec<u64>);

impl Version {
    /// Parses `0.77.0` or `v0.77.0`; `None` for anything else.
    pub fn parse(text: &str) -> Option<Version> {
        let text = text.trim().trim_start_matches('v');
        let parts: Option<Vec<u64>> = text.split('.').map(|p| p.parse().ok()).collect();
        parts.filter(|p| !p.is_empty()).map(Version)
    }

    fn component(&self, i: usize) -> u64 {
        self.0.get(i).copied().unwrap_or(0)
    }

    fn starts_with(&self, prefix: &Version) -> bool {
        (0..prefix.0.len()).all(|i| self.component(i) == prefix.0[i])
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        let len = self.0.len().max(other.0.len());
        (0..len)
            .map(|i| self.component(i).cmp(&other.component(i)))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(u64::to_string).collect();
        f.write_str(&parts.join("."))
    }
}

/// A parsed `requires-pixi` spec.
#[derive(Clone, Debug)]
pub struct Spec {
    text: String,
    alternatives: Vec<Vec<Constraint>>,
}

#[derive(Clone, Debug)]
enum Constraint {
    Compare(Ordering, bool, Version),
    NotEqual(Version),
    Prefix(Version),
    Compatible(Version),
}

impl Spec {
    /// Parses a spec; the error says which part could not be read.
    pub fn parse(text: &str) -> Result<Spec, String> {
        let alternatives = text
            .split('|')
            .map(|alt| {
                alt.split(',')
                    .map(|c| parse_constraint(c.trim()))
                    .collect::<Result<Vec<_>, _>>()
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Spec {
            text: text.trim().to_owned(),
            alternatives,
        })
    }

    /// Whether `version` satisfies the spec.
    pub fn matches(&self, version: &Version) -> bool {
        self.alternatives
            .iter()
            .any(|all| all.iter().all(|c| c.matches(version)))
    }
}

impl fmt::Display for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn parse_constraint(text: &str) -> Result<Constraint, String> {
    let version = |rest: &str| {
        Version::parse(rest.trim()).ok_or_else(|| format!("`{text}` is not a version constraint"))
    };
    if text.is_empty() || text == "*" {
        return Ok(Constraint::Prefix(Version(Vec::new())));
    }
    for (op, ordering, or_equal) in [
        (">=", Ordering::Greater, true),
        ("<=", Ordering::Less, true),
        (">", Ordering::Greater, false),
        ("<", Ordering::Less, false),
    ] {
        if let Some(rest) = text.strip_prefix(op) {
            return Ok(Constraint::Compare(ordering, or_equal, version(rest)?));
        }
    }
    if let Some(rest) = text.strip_prefix("~=") {
        return Ok(Constraint::Compatible(version(rest)?));
    }
    if let Some(rest) = text.strip_prefix("!=") {
        return Ok(Constraint::NotEqual(version(rest)?));
    }
    if let Some(rest) = text.strip_prefix("==") {
        let rest = rest.trim();
        return match rest.strip_suffix(".*") {
            Some(prefix) => Ok(Constraint::Prefix(version(prefix)?)),
            None => Ok(Constraint::Compare(Ordering::Equal, true, version(rest)?)),
        };
    }
    let bare = text.trim_start_matches('=');
    let bare = bare.strip_suffix(".*").unwrap_or(bare);
    Ok(Constraint::Prefix(version(bare)?))
}

impl Constraint {
    fn matches(&self, v: &Version) -> bool {
        match self {
            Constraint::Compare(ordering, or_equal, bound) => {
                let o = v.cmp(bound);
                o == *ordering || (*or_equal && o == Ordering::Equal)
            }
            Constraint::NotEqual(bound) => v != bound,
            Constraint::Prefix(prefix) => v.starts_with(prefix),
            Constraint::Compatible(bound) => {
                // `~=0.70.1` means `>=0.70.1, ==0.70.*`.
                let keep = bound.0.len().saturating_sub(1).max(1);
                v >= bound && v.starts_with(&Version(bound.0[..keep].to_vec()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn versions_compare_numerically() {
        assert!(v("0.77.0") > v("0.9.9"));
        assert_eq!(v("v0.70"), v("0.70.0"));
        assert!(v("0.70.1") > v("0.70"));
        assert_eq!(v("0.77.0").to_string(), "0.77.0");
        assert!(Version::parse("0.77.0-rc1").is_none());
        assert!(Version::parse("").is_none());
    }

    #[test]
    fn specs_match_like_conda() {
        let cases = [
            (">=0.70", "0.77.0", true),
            (">=0.78", "0.77.0", false),
            (">=0.70,<0.77", "0.77.0", false),
            (">=0.70, <0.78", "0.77.0", true),
            ("0.77", "0.77.3", true),
            ("0.77.*", "0.78.0", false),
            ("==0.77.0", "0.77", true),
            ("==0.76.*", "0.76.2", true),
            ("!=0.77.0", "0.77.0", false),
            ("~=0.70.1", "0.70.9", true),
            ("~=0.70.1", "0.71.0", false),
            ("<0.60|>=0.77", "0.77.0", true),
            ("<0.60|>=0.78", "0.77.0", false),
            ("*", "0.1.0", true),
        ];
        for (spec, version, want) in cases {
            let parsed = Spec::parse(spec).unwrap();
            assert_eq!(parsed.matches(&v(version)), want, "{spec} vs {version}");
        }
        let err = Spec::parse(">=zero").unwrap_err();
        assert!(err.contains(">=zero"), "{err}");
    }
}
