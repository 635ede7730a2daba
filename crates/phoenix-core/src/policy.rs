//! Image policy (design section 12, `policy.images`): the rules a golden image must meet
//! before Phoenix launches anything from it, the provider-neutral [`ImageInfo`] a
//! provider's image lookup returns, and [`evaluate`], the pure check of one image
//! against the rules at a given `now`. Also [`glob_match`], the one glob matcher for
//! image names, tag values and allowed-signer namespaces.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// Match `text` against a glob: `*` matches any run of characters (also none), `?`
/// exactly one; everything else matches itself. Iterative with one backtrack point,
/// so hostile patterns cost O(pattern × text) at worst.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((star_p, star_t)) = star {
            pi = star_p + 1;
            ti = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// `policy`: rules the fleet must follow. Absent: nothing is checked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// `policy.images`: checked for every image a launch would use (boxed: most configs
    /// have none, and the config travels in the loop's events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<Box<ImagePolicy>>,
}

/// `policy.images`. Every rule that is set must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ImagePolicy {
    /// Allowed image owner account ids. Empty (default): any owner.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owners: Vec<String>,
    /// Glob the image name must match. Absent (default): any name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Tags the image must carry, each value matching a glob (`"*"`: any value).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub require_tags: BTreeMap<String, String>,
    /// The image's creation date must be no older than this. Absent (default): any age.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::duration::option"
    )]
    pub max_age: Option<Duration>,
    /// Refuse images whose deprecation time has passed. Default true.
    #[serde(default = "default_true")]
    pub deny_deprecated: bool,
}

fn default_true() -> bool {
    true
}

/// What a provider knows about one image (`DescribeImages`, or the sim's registry;
/// the sim's `images` config entries have this shape, times as RFC 3339).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageInfo {
    /// The image id (`ami-...`).
    pub id: String,
    /// The owner account id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The image name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The image's tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// When the image was created.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "rfc3339_option"
    )]
    pub created: Option<SystemTime>,
    /// When the image is (or was) deprecated.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "rfc3339_option"
    )]
    pub deprecated_at: Option<SystemTime>,
}

/// serde for an optional RFC 3339 timestamp (`2026-11-01T00:00:00Z`).
mod rfc3339_option {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer, de};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SystemTime>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(text) => crate::time::parse_rfc3339_lenient(&text)
                .map(Some)
                .map_err(de::Error::custom),
            None => Ok(None),
        }
    }

    pub fn serialize<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.collect_str(&crate::time::display_rfc3339(*t)),
            None => s.serialize_none(),
        }
    }
}

/// A provider's answer for one image: found, or known not to exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageLookup {
    /// The provider described it.
    Found(ImageInfo),
    /// The provider says no such image exists (or it is not visible to us).
    NotFound,
}

/// The rule an image broke; `Display` names the rule and what was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// The provider has no such image.
    NotFound,
    /// `owners`: the owner is not allowed.
    Owner {
        /// The image's owner (`None`: unknown).
        owner: Option<String>,
    },
    /// `name`: the name does not match.
    Name {
        /// The image's name (`None`: it has none).
        name: Option<String>,
        /// The glob.
        pattern: String,
    },
    /// `require_tags`: a tag is absent or its value does not match.
    Tag {
        /// The tag key.
        key: String,
        /// The image's value (`None`: absent).
        value: Option<String>,
        /// The glob.
        pattern: String,
    },
    /// `max_age`: the image is too old, or its creation date is unknown.
    TooOld {
        /// When it was created (`None`: unknown).
        created: Option<SystemTime>,
        /// The limit.
        max_age: Duration,
    },
    /// `deny_deprecated`: its deprecation time has passed.
    Deprecated {
        /// When it was deprecated.
        at: SystemTime,
    },
}

impl Violation {
    /// The rule's config key, e.g. `require_tags`.
    pub fn rule(&self) -> &'static str {
        match self {
            Violation::NotFound => "exists",
            Violation::Owner { .. } => "owners",
            Violation::Name { .. } => "name",
            Violation::Tag { .. } => "require_tags",
            Violation::TooOld { .. } => "max_age",
            Violation::Deprecated { .. } => "deny_deprecated",
        }
    }
}

fn time(t: SystemTime) -> String {
    crate::time::rfc3339(t)
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rule = self.rule();
        match self {
            Violation::NotFound => write!(f, "{rule}: the provider has no such image"),
            Violation::Owner { owner } => match owner {
                Some(owner) => write!(f, "{rule}: owner {owner} is not allowed"),
                None => write!(f, "{rule}: the image's owner is unknown"),
            },
            Violation::Name { name, pattern } => match name {
                Some(name) => write!(f, "{rule}: `{name}` does not match `{pattern}`"),
                None => write!(f, "{rule}: the image has no name (must match `{pattern}`)"),
            },
            Violation::Tag {
                key,
                value,
                pattern,
            } => match value {
                Some(value) => write!(f, "{rule}: tag {key}=`{value}` does not match `{pattern}`"),
                None => write!(f, "{rule}: tag `{key}` is missing"),
            },
            Violation::TooOld { created, max_age } => match created {
                Some(created) => write!(
                    f,
                    "{rule}: created {} is older than {}",
                    time(*created),
                    crate::duration::format(*max_age)
                ),
                None => write!(f, "{rule}: the image's creation date is unknown"),
            },
            Violation::Deprecated { at } => write!(f, "{rule}: deprecated since {}", time(*at)),
        }
    }
}

/// Check `lookup` against `policy` at `now`; the first rule broken, in the order
/// exists, owners, name, require_tags (by key), max_age, deny_deprecated.
pub fn evaluate(policy: &ImagePolicy, lookup: &ImageLookup, now: SystemTime) -> Option<Violation> {
    let image = match lookup {
        ImageLookup::NotFound => return Some(Violation::NotFound),
        ImageLookup::Found(image) => image,
    };
    if !policy.owners.is_empty()
        && !image
            .owner
            .as_ref()
            .is_some_and(|owner| policy.owners.contains(owner))
    {
        return Some(Violation::Owner {
            owner: image.owner.clone(),
        });
    }
    if let Some(pattern) = &policy.name
        && !image
            .name
            .as_deref()
            .is_some_and(|n| glob_match(pattern, n))
    {
        return Some(Violation::Name {
            name: image.name.clone(),
            pattern: pattern.clone(),
        });
    }
    for (key, pattern) in &policy.require_tags {
        let value = image.tags.get(key);
        if !value.is_some_and(|v| glob_match(pattern, v)) {
            return Some(Violation::Tag {
                key: key.clone(),
                value: value.cloned(),
                pattern: pattern.clone(),
            });
        }
    }
    if let Some(max_age) = policy.max_age {
        let fresh = image.created.is_some_and(|created| {
            now.duration_since(created)
                .map_or(true, |age| age <= max_age)
        });
        if !fresh {
            return Some(Violation::TooOld {
                created: image.created,
                max_age,
            });
        }
    }
    if policy.deny_deprecated
        && let Some(at) = image.deprecated_at
        && at <= now
    {
        return Some(Violation::Deprecated { at });
    }
    None
}

/// The verdicts of one pass, by (provider, image id): what the planner consults. An
/// image without an entry (not looked up, or its lookup failed) is not launched
/// either: see [`ImageVerdicts::check`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageVerdicts {
    /// Whether a policy is in force at all. Without one every image passes.
    enforced: bool,
    verdicts: BTreeMap<(String, String), Verdict>,
}

/// The outcome for one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The image meets the policy.
    Allowed,
    /// The image broke a rule.
    Denied(Violation),
    /// The image could not be looked up this pass (the provider failed).
    Unknown(String),
}

/// No policy: every image passes.
pub static NO_POLICY: ImageVerdicts = ImageVerdicts {
    enforced: false,
    verdicts: BTreeMap::new(),
};

impl ImageVerdicts {
    /// An empty set of verdicts for a policy in force.
    pub fn enforced() -> Self {
        Self {
            enforced: true,
            verdicts: BTreeMap::new(),
        }
    }

    /// Record the verdict for `image` on `provider`.
    pub fn insert(&mut self, provider: &str, image: &str, verdict: Verdict) {
        self.verdicts
            .insert((provider.to_string(), image.to_string()), verdict);
    }

    /// Why `image` on `provider` must not be launched, or `None` when it may be.
    /// Under a policy, an image whose lookup is missing or failed may not be launched:
    /// `Some(Err(reason))`. A broken rule is `Some(Ok(violation))`.
    pub fn check(&self, provider: &str, image: &str) -> Option<Result<&Violation, String>> {
        if !self.enforced {
            return None;
        }
        match self
            .verdicts
            .get(&(provider.to_string(), image.to_string()))
        {
            Some(Verdict::Allowed) => None,
            Some(Verdict::Denied(violation)) => Some(Ok(violation)),
            Some(Verdict::Unknown(reason)) => Some(Err(reason.clone())),
            None => Some(Err("the image was not looked up this pass".into())),
        }
    }
}

/// The planner's hook (design section 12): check the image a group's launches would use
/// against `verdicts`. A broken rule adds the group-level `policy_violation` finding
/// (field `image`, the rule in `observed`) and a note; an image that could not be
/// checked adds a note. Either way the answer is `true`: plan nothing for the group
/// this pass, so nothing is launched from that image. Other groups are not affected.
pub fn plan_hook(
    verdicts: &ImageVerdicts,
    report: &mut crate::plan::GroupReport,
    image: &str,
) -> bool {
    let Some(check) = verdicts.check(report.provider.as_str(), image) else {
        return false;
    };
    match check {
        Ok(violation) => {
            report.drift.insert(
                0,
                crate::drift::Finding {
                    kind: crate::drift::DriftKind::PolicyViolation,
                    group: Some(report.name.to_string()),
                    provider: report.provider.to_string(),
                    instance_id: None,
                    count: None,
                    field: Some(crate::drift::Field::Image),
                    expected: Some(image.to_string()),
                    observed: Some(violation.to_string()),
                    reason: format!(
                        "image {image} breaks policy.images ({violation}); nothing is launched from it"
                    ),
                },
            );
            report.status = crate::plan::GroupStatus::Drifted;
            report.notes.push(format!(
                "image {image} breaks policy.images rule `{}`: no plan until the spec names an allowed image",
                violation.rule()
            ));
        }
        Err(reason) => report.notes.push(format!(
            "image {image} could not be checked against policy.images ({reason}): nothing is launched this pass"
        )),
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn golden() -> ImageInfo {
        ImageInfo {
            id: "ami-1".into(),
            owner: Some("123456789012".into()),
            name: Some("golden-web-42".into()),
            tags: [("source-commit".to_string(), "abc".to_string())].into(),
            created: Some(at(1_000_000)),
            deprecated_at: Some(at(2_000_000)),
        }
    }

    fn policy() -> ImagePolicy {
        ImagePolicy {
            owners: vec!["123456789012".into()],
            name: Some("golden-*".into()),
            require_tags: [("source-commit".to_string(), "*".to_string())].into(),
            max_age: Some(Duration::from_secs(86_400)),
            deny_deprecated: true,
        }
    }

    fn rule(image: ImageInfo, now: u64) -> Option<&'static str> {
        evaluate(&policy(), &ImageLookup::Found(image), at(now)).map(|v| v.rule())
    }

    #[test]
    fn globs() {
        assert!(glob_match("golden-*", "golden-web"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a?c*", "abcdef"));
        assert!(!glob_match("golden-*", "gold"));
        assert!(glob_match("*-*-*", "a-b-c"));
        assert!(!glob_match("*x", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaay"));
    }

    #[test]
    fn each_rule() {
        assert_eq!(rule(golden(), 1_000_100), None);
        let owner = ImageInfo {
            owner: Some("999".into()),
            ..golden()
        };
        assert_eq!(rule(owner, 1_000_100), Some("owners"));
        let name = ImageInfo {
            name: Some("random".into()),
            ..golden()
        };
        assert_eq!(rule(name, 1_000_100), Some("name"));
        let untagged = ImageInfo {
            tags: BTreeMap::new(),
            ..golden()
        };
        assert_eq!(rule(untagged, 1_000_100), Some("require_tags"));
        assert_eq!(rule(golden(), 1_000_000 + 86_401), Some("max_age"));
        let undated = ImageInfo {
            created: None,
            ..golden()
        };
        assert_eq!(rule(undated, 1_000_100), Some("max_age"));
        let mut lenient = policy();
        lenient.max_age = None;
        let deprecated = evaluate(&lenient, &ImageLookup::Found(golden()), at(2_000_000));
        assert_eq!(
            deprecated.as_ref().map(Violation::rule),
            Some("deny_deprecated")
        );
        lenient.deny_deprecated = false;
        assert_eq!(
            evaluate(&lenient, &ImageLookup::Found(golden()), at(3_000_000)),
            None
        );
        assert_eq!(
            evaluate(&policy(), &ImageLookup::NotFound, at(0)).map(|v| v.rule()),
            Some("exists")
        );
    }

    #[test]
    fn messages_name_rule_and_value() {
        let violation = Violation::Tag {
            key: "source-commit".into(),
            value: None,
            pattern: "*".into(),
        };
        assert_eq!(
            violation.to_string(),
            "require_tags: tag `source-commit` is missing"
        );
    }

    #[test]
    fn verdicts() {
        assert_eq!(NO_POLICY.check("aws", "ami-1"), None);
        let mut verdicts = ImageVerdicts::enforced();
        verdicts.insert("aws", "ami-1", Verdict::Allowed);
        verdicts.insert("aws", "ami-2", Verdict::Denied(Violation::NotFound));
        assert_eq!(verdicts.check("aws", "ami-1"), None);
        assert!(matches!(
            verdicts.check("aws", "ami-2"),
            Some(Ok(Violation::NotFound))
        ));
        assert!(matches!(verdicts.check("sim", "ami-1"), Some(Err(_))));
    }
}
