//! Hostile input (issue 2): alias bombs, deep nesting and oversized files must fail
//! fast with a clear error, never hang, crash or use unbounded memory.

use phoenix_core::parse_group;

const HEAD: &str = "apiVersion: phoenix/v1\nkind: InstanceGroup\nmetadata:\n  name: web\nspec:\n  provider: p\n  replicas: 1\n  template:\n    image: ami-1\n    instanceType: t3.micro\n";

#[test]
fn alias_bomb_is_refused() {
    // Nine levels of nine-fold aliases would expand to 9^9 (~387 million) scalars.
    let mut text = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for level in 1..9 {
        let prev = level - 1;
        let refs = vec![format!("*a{prev}"); 9].join(", ");
        text.push_str(&format!("a{level}: &a{level} [{refs}]\n"));
    }
    let started = std::time::Instant::now();
    let err = phoenix_core::yaml::from_str::<serde::de::IgnoredAny>(&text)
        .expect_err("alias bomb must fail");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(
        err.message,
        "aliases expand beyond the allowed budget (alias bomb?)"
    );
    // As a desired-state file, the unknown key is reported before anything expands.
    let err = parse_group(&format!("{text}{HEAD}")).expect_err("alias bomb must fail");
    assert_eq!((err.line, err.column), (Some(1), Some(1)));
}

#[test]
fn alias_bomb_inside_the_schema_is_refused() {
    let mut anchors = String::from("    tags:\n      a0: &a0 lol\n");
    let mut refs = String::from("*a0");
    for level in 1..40 {
        anchors.push_str(&format!("      a{level}: &a{level} [{refs}, {refs}]\n"));
        refs = format!("*a{level}");
    }
    let doc = format!("{HEAD}{anchors}");
    let err = parse_group(&doc).expect_err("alias bomb must fail");
    assert!(err.line.is_some(), "position should be known: {err:?}");
    assert!(
        err.message.contains("alias") || err.message.contains("expected a string"),
        "{err:?}"
    );
}

#[test]
fn nesting_deeper_than_64_is_refused() {
    let depth = 10_000;
    let nested = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
    // Through the schema the first `[` where a string belongs is already an error.
    let doc = format!("{HEAD}    userData: {nested}\n");
    let err = parse_group(&doc).expect_err("deep nesting must fail");
    assert_eq!((err.line, err.column), (Some(11), Some(5)), "{err:?}");
    // Read without a schema, the parser's own depth budget stops it.
    let err = phoenix_core::yaml::from_str::<serde::de::IgnoredAny>(&nested)
        .expect_err("deep nesting must fail");
    assert_eq!(
        err.message, "recursion limit exceeded",
        "the scanner's own limit (256) stops it first"
    );
    let nested = format!("{}1{}", "[".repeat(100), "]".repeat(100));
    let err = phoenix_core::yaml::from_str::<serde::de::IgnoredAny>(&nested)
        .expect_err("deep nesting must fail");
    assert_eq!(err.message, "nesting deeper than 64 levels");
    let ok = format!("{}1{}", "[".repeat(60), "]".repeat(60));
    phoenix_core::yaml::from_str::<serde::de::IgnoredAny>(&ok).expect("60 levels are fine");
}

#[test]
fn files_over_one_mib_are_refused() {
    let big = format!("{HEAD}    userData: \"{}\"\n", "x".repeat(1024 * 1024));
    let err = parse_group(&big).expect_err("oversized file must fail");
    assert!(
        err.message.contains("larger than the 1048576 byte limit"),
        "{}",
        err.message
    );
}

#[test]
fn legal_anchors_expand() {
    let doc = format!(
        "{HEAD}    subnetIds: &subnets [subnet-a, subnet-b]\n    securityGroupIds: *subnets\n"
    );
    let parsed = parse_group(&doc).expect("anchors and aliases are legal YAML");
    assert_eq!(parsed.group.spec.template.security_group_ids.len(), 2);
}
