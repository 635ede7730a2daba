//! Data-driven validation cases for desired-state spec v1 (issue 2): each case is a
//! document and the exact `line:col: message` (or `field: message`) it must produce.

use phoenix_core::parse_group;

const BASE: &str = "\
apiVersion: phoenix/v1
kind: InstanceGroup
metadata:
  name: web
spec:
  provider: aws-prod
  replicas: 3
  template:
    image: ami-1
    instanceType: t3.micro
";

/// Parse `text` and render its error as `line:col: message` or `message`.
fn error_of(text: &str) -> String {
    match parse_group(text) {
        Ok(parsed) => panic!("expected an error, got a valid group {}", parsed.hash),
        Err(err) => match (err.line, err.column) {
            (Some(l), Some(c)) => format!("{l}:{c}: {}", err.message),
            _ => err.message,
        },
    }
}

/// `BASE` with `from` replaced by `to` (which must occur exactly once).
fn edit(from: &str, to: &str) -> String {
    assert_eq!(
        BASE.matches(from).count(),
        1,
        "`{from}` must occur once in BASE"
    );
    BASE.replace(from, to)
}

#[test]
fn base_document_is_valid() {
    let parsed = parse_group(BASE).expect("BASE is valid");
    assert_eq!(parsed.group.name().as_str(), "web");
    assert_eq!(parsed.group.spec.replicas.get(), 3);
}

#[test]
fn validation_cases() {
    let cases: &[(&str, String, &str)] = &[
        (
            "misspelled template key",
            edit("instanceType", "instanceTyp"),
            "10:5: unknown field `instanceTyp`, expected one of image, instanceType, subnetIds, securityGroupIds, keyName, userData, tags",
        ),
        (
            "unknown top-level key",
            format!("{BASE}extra: 1\n"),
            "11:1: unknown field `extra`, expected one of apiVersion, kind, metadata, spec",
        ),
        (
            "wrong apiVersion",
            edit("phoenix/v1", "phoenix/v2"),
            "1:13: unknown variant `phoenix/v2`, expected one of phoenix/v1",
        ),
        (
            "wrong kind",
            edit("kind: InstanceGroup", "kind: Pod"),
            "2:7: unknown variant `Pod`, expected one of InstanceGroup",
        ),
        (
            "uppercase name",
            edit("name: web", "name: Web"),
            "4:9: metadata.name `Web` may contain only lowercase letters, digits and `-`",
        ),
        (
            "leading dash",
            edit("name: web", "name: -web"),
            "4:9: metadata.name `-web` must not start or end with `-`",
        ),
        (
            "trailing dash",
            edit("name: web", "name: web-"),
            "4:9: metadata.name `web-` must not start or end with `-`",
        ),
        (
            "empty name",
            edit("name: web", "name: ''"),
            "4:9: metadata.name `` must be 1 to 63 characters long",
        ),
        (
            "name too long",
            edit("name: web", &format!("name: {}", "a".repeat(64))),
            "4:9: metadata.name `aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa` must be 1 to 63 characters long",
        ),
        (
            "replicas too high",
            edit("replicas: 3", "replicas: 10001"),
            "7:13: spec.replicas must be between 0 and 10000, got 10001",
        ),
        (
            "negative replicas",
            edit("replicas: 3", "replicas: -1"),
            "7:13: spec.replicas must be between 0 and 10000, got -1",
        ),
        (
            "missing provider",
            edit("  provider: aws-prod\n", ""),
            "7:3: missing field `provider`",
        ),
        (
            "empty provider",
            edit("provider: aws-prod", "provider: ''"),
            "6:13: spec.provider must name a provider from the daemon config",
        ),
        (
            "duplicate key",
            edit("replicas: 3", "replicas: 3\n  replicas: 4"),
            "8:3: duplicate key `replicas`",
        ),
        (
            "unknown tag",
            edit("image: ami-1", "image: !secret ami-1"),
            "9:20: unsupported tag `!secret`",
        ),
        (
            "number for a string",
            edit("image: ami-1", "image: 123"),
            "9:12: expected a string, found the number 123; quote it as \"123\"",
        ),
        (
            "YAML 1.1 boolean",
            edit("replicas: 3", "replicas: 3\n  suspend: yes"),
            "8:12: invalid boolean (strict mode expects true/false)",
        ),
        (
            "second document",
            format!("{BASE}---\n{BASE}"),
            "11:1: a file holds exactly one document; found a second one (`---`)",
        ),
        (
            "percent over 100",
            edit("replicas: 3", "replicas: 3\n  rollout: {maxSurge: 101%}"),
            "8:23: `101%` is neither an integer nor a percentage from 0% to 100%",
        ),
        (
            "bad percent",
            edit(
                "replicas: 3",
                "replicas: 3\n  rollout: {maxUnavailable: lots}",
            ),
            "8:29: `lots` is neither an integer nor a percentage from 0% to 100%",
        ),
        (
            "bad duration",
            edit("replicas: 3", "replicas: 3\n  rollout: {bake: forever}"),
            "8:19: invalid duration `forever`: expected number at 0 (examples: 30s, 5m, 1h 30m)",
        ),
        (
            "duration without unit",
            edit("replicas: 3", "replicas: 3\n  health: {grace: 30}"),
            "8:19: duration `30` has no unit; write e.g. `30s`",
        ),
        (
            "unknown strategy",
            edit("replicas: 3", "replicas: 3\n  rollout: {strategy: yolo}"),
            "8:23: unknown variant `yolo`, expected one of rolling, blue-green, canary",
        ),
        (
            "unknown health check",
            edit("replicas: 3", "replicas: 3\n  health: {check: tcp}"),
            "8:19: unknown variant `tcp`, expected one of provider, http, none",
        ),
        (
            "unknown approval",
            edit("replicas: 3", "replicas: 3\n  approval: maybe"),
            "8:13: unknown variant `maybe`, expected one of auto, manual",
        ),
        (
            "http check without http",
            edit("replicas: 3", "replicas: 3\n  health: {check: http}"),
            "spec.health.http: required when spec.health.check is `http`",
        ),
        (
            "deadline shorter than grace",
            edit(
                "replicas: 3",
                "replicas: 3\n  health: {grace: 5m, deadline: 1m}",
            ),
            "spec.health.deadline: must not be shorter than spec.health.grace (1m < 5m)",
        ),
        (
            "rollout that cannot progress",
            edit(
                "replicas: 3",
                "replicas: 3\n  rollout: {maxSurge: 0, maxUnavailable: 0}",
            ),
            "spec.rollout: maxSurge and maxUnavailable are both 0, so no replacement could ever make progress",
        ),
        (
            "reserved tag prefix",
            edit(
                "image: ami-1",
                "image: ami-1\n    tags: {\"phoenix:group\": x}",
            ),
            "10:12: tag key `phoenix:group` uses a reserved prefix (`phoenix:` or `aws:`)",
        ),
        (
            "null tag value",
            edit("image: ami-1", "image: ami-1\n    tags: {a: null}"),
            "10:15: tag value must not be null; use \"\" for an empty value",
        ),
        (
            "empty file",
            String::new(),
            "file is empty; expected one InstanceGroup document",
        ),
        (
            "not a mapping",
            "- a\n- b\n".to_string(),
            "1:1: expected mapping start",
        ),
        (
            "syntax error",
            edit("image: ami-1", "image: \"ami-1"),
            "9:12: unclosed quote",
        ),
    ];
    let mut failures = Vec::new();
    for (name, text, expected) in cases {
        let actual = error_of(text);
        if actual != *expected {
            failures.push(format!(
                "{name}:\n  expected: {expected}\n  actual:   {actual}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn in_file_prefixes_path_and_position() {
    let err = parse_group(&edit("instanceType", "instanceTyp")).expect_err("misspelled key");
    assert!(
        err.in_file("groups/web.yaml")
            .to_string()
            .starts_with("groups/web.yaml:10:5: unknown field `instanceTyp`")
    );
    let err = parse_group(&edit("replicas: 3", "replicas: 3\n  health: {check: http}"))
        .expect_err("cross-field");
    assert_eq!(
        err.in_file("groups/web.yaml").to_string(),
        "groups/web.yaml: spec.health.http: required when spec.health.check is `http`"
    );
}

#[test]
fn defaults_are_documented_values() {
    let group = parse_group(BASE).expect("valid").group;
    let rollout = &group.spec.rollout;
    assert_eq!(rollout.strategy, phoenix_core::spec::Strategy::Rolling);
    assert_eq!(
        rollout.max_surge,
        phoenix_core::spec::IntOrPercent::Count(1)
    );
    assert_eq!(
        rollout.max_unavailable,
        phoenix_core::spec::IntOrPercent::Count(0)
    );
    assert!(!rollout.auto_rollback);
    assert_eq!(group.spec.health.grace, std::time::Duration::from_secs(30));
    assert_eq!(
        group.spec.health.deadline,
        std::time::Duration::from_secs(300)
    );
    assert_eq!(group.spec.approval, phoenix_core::spec::Approval::Auto);
    assert!(!group.spec.suspend);
}

#[test]
fn percentages_round_like_kubernetes() {
    use phoenix_core::spec::IntOrPercent::{Count, Percent};
    assert_eq!(Percent(25).resolve(10, true), 3, "surge rounds up");
    assert_eq!(Percent(25).resolve(10, false), 2, "unavailable rounds down");
    assert_eq!(Percent(100).resolve(7, false), 7);
    assert_eq!(Percent(0).resolve(7, true), 0);
    assert_eq!(Count(4).resolve(10, true), 4);
}

/// `spec.traffic` (issue 16): parsed, validated with field paths, and not hashed.
#[test]
fn traffic_is_validated_and_not_hashed() {
    let with = |traffic: &str| format!("{BASE}  traffic: {traffic}\n");
    let parsed = parse_group(&with("{targetGroups: [tg-a, tg-b], port: 8080, drain: 2m}"))
        .expect("a valid traffic section");
    let traffic = parsed.group.spec.traffic.as_deref().expect("traffic kept");
    assert_eq!(traffic.target_group_names(), ["tg-a", "tg-b"]);
    assert_eq!(traffic.port, Some(8080));
    assert_eq!(traffic.drain, Some(std::time::Duration::from_secs(120)));
    let plain = parse_group(BASE).expect("BASE is valid");
    assert_eq!(parsed.hash, plain.hash, "spec.traffic is not hashed");
    assert_eq!(
        parse_group(&with("{targetGroups: [tg-a]}"))
            .expect("defaults")
            .group
            .spec
            .traffic
            .as_deref()
            .map(|t| (t.port, t.drain)),
        Some((None, None))
    );
    let cases: &[(&str, &str)] = &[
        (
            "{targetGroups: []}",
            "spec.traffic.targetGroups: must name at least one target group",
        ),
        (
            "{targetGroups: [tg-a, tg-a]}",
            "spec.traffic.targetGroups[1]: `tg-a` is listed twice",
        ),
        (
            "{targetGroups: [\"\"]}",
            "spec.traffic.targetGroups[0]: must be a target group ARN (not empty, no whitespace)",
        ),
        (
            "{targetGroups: [tg-a], port: 0}",
            "spec.traffic.port: must be 1 to 65535",
        ),
        (
            "{targetGroups: [tg-a], drain: 0s}",
            "spec.traffic.drain: must be longer than 0s (leave it out for the target group's own delay)",
        ),
    ];
    for (traffic, expected) in cases {
        assert_eq!(&error_of(&with(traffic)), expected, "traffic: {traffic}");
    }
    let unknown = error_of(&with("{targetGroups: [tg-a], weight: 1}"));
    assert!(
        unknown == "11:35: unknown field `weight`, expected one of targetGroups, port, drain",
        "{unknown}"
    );
    let big_port = error_of(&with("{targetGroups: [tg-a], port: 70000}"));
    assert!(big_port.starts_with("11:"), "{big_port}");
}
