//! `examples/iam/phoenix-policy.json` (issue 16) is the minimal IAM policy for the
//! `aws_ec2` provider: exactly the EC2 and ELBv2 actions the provider's code calls (read
//! from its sources, so a new call without a policy line fails here), plus
//! `ec2:CreateTags` for the tags RunInstances sets at creation, and nothing else.

use std::collections::BTreeSet;

/// The repository root (this crate lives in `crates/phoenix`).
fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The API operations the `aws_ec2` provider names in its calls, by service prefix.
fn called() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (file, service) in [
        ("crates/phoenix-cloud/src/aws.rs", "ec2"),
        (
            "crates/phoenix-cloud/src/aws/elb.rs",
            "elasticloadbalancing",
        ),
    ] {
        let text = std::fs::read_to_string(repo_root().join(file)).expect("provider source");
        for marker in ["fail(\"", "fail_with_ids(\""] {
            for part in text.split(marker).skip(1) {
                let op: String = part
                    .chars()
                    .take_while(|c| c.is_ascii_alphabetic())
                    .collect();
                out.insert(format!("{service}:{op}"));
            }
        }
    }
    out
}

#[test]
fn the_iam_example_allows_exactly_what_the_provider_calls() {
    let text = std::fs::read_to_string(repo_root().join("examples/iam/phoenix-policy.json"))
        .expect("the policy example");
    let policy: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(policy["Version"], "2012-10-17");
    let mut allowed = BTreeSet::new();
    for statement in policy["Statement"].as_array().expect("statements") {
        assert_eq!(statement["Effect"], "Allow");
        match &statement["Action"] {
            serde_json::Value::String(a) => {
                allowed.insert(a.clone());
            }
            serde_json::Value::Array(list) => {
                allowed.extend(list.iter().map(|a| a.as_str().expect("action").to_string()));
            }
            other => panic!("unexpected Action {other}"),
        }
    }
    let mut wanted = called();
    assert!(
        wanted.contains("elasticloadbalancing:DescribeTargetHealth"),
        "{wanted:?}"
    );
    assert!(wanted.contains("ec2:RunInstances"), "{wanted:?}");
    wanted.insert("ec2:CreateTags".to_string());
    assert_eq!(allowed, wanted);
}
