//! The `phoenix` command line as a user runs it: exit codes and exact output of
//! `validate` and `hash`, and a check that every shipped config and example is valid.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn phoenix(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_phoenix"))
        .args(args)
        .current_dir(repo_root())
        .output()
        .expect("run the phoenix binary")
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn write(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, body).expect("write test file");
    path.display().to_string()
}

const WEB: &str = "apiVersion: phoenix/v1
kind: InstanceGroup
metadata:
  name: web
spec:
  provider: aws-prod
  replicas: 3
  template:
    image: ami-0123456789abcdef0
    instanceType: t3.micro
    subnetIds: [subnet-aaa]
    tags: {app: web, port: 8080}
";

/// The same group, written differently: comments, key order, block style, quoting.
const WEB_REFORMATTED: &str = "# same spec, other presentation
kind: \"InstanceGroup\"
apiVersion: 'phoenix/v1'
spec:
    template:
        tags:
            port: 8080      # an integer, as above
            app: \"web\"
        subnetIds:
            - 'subnet-aaa'
        instanceType: \"t3.micro\"
        image: ami-0123456789abcdef0
    replicas: 5             # not hashed
    provider: aws-prod
metadata: {name: \"web\"}
";

/// Folders under `examples/` that hold files for other tools (CI systems, IAM, monitoring),
/// not Phoenix configs or groups; each has its own test.
const FOREIGN_EXAMPLES: [&str; 3] = ["ci", "iam", "monitoring"];

#[test]
fn every_shipped_config_and_example_is_valid() {
    let mut paths = vec!["config".to_owned()];
    let mut entries: Vec<_> = std::fs::read_dir(repo_root().join("examples"))
        .expect("list examples")
        .map(|e| e.expect("example entry").file_name())
        .collect();
    entries.sort();
    for name in entries {
        let name = name.to_string_lossy().into_owned();
        if !FOREIGN_EXAMPLES.contains(&name.as_str()) {
            paths.push(format!("examples/{name}"));
        }
    }
    // The config the CI jobs plan with is a Phoenix config.
    paths.push("examples/ci/phoenix-plan.yaml".to_owned());
    let args: Vec<&str> = std::iter::once("validate")
        .chain(paths.iter().map(String::as_str))
        .collect();
    let out = phoenix(&args);
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).starts_with("ok: "),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn hash_is_equal_for_differently_formatted_equal_specs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = write(dir.path(), "a.yaml", WEB);
    let b = write(dir.path(), "b.yaml", WEB_REFORMATTED);
    let out = phoenix(&["hash", &a, &b]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    let (hash_a, path_a) = lines[0].split_once("  ").expect("sha256sum-style line");
    let (hash_b, path_b) = lines[1].split_once("  ").expect("sha256sum-style line");
    assert_eq!(hash_a, hash_b);
    assert!(
        hash_a.starts_with("v1:sha256:") && hash_a.len() == 10 + 64,
        "{hash_a}"
    );
    assert_eq!((path_a, path_b), (a.as_str(), b.as_str()));
}

#[test]
fn hash_changes_when_a_value_changes_type() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = write(dir.path(), "a.yaml", WEB);
    let b = write(
        dir.path(),
        "b.yaml",
        &WEB.replace("port: 8080", "port: \"8080\""),
    );
    let out = phoenix(&["hash", "--json", &a, &b]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let entries: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    assert_eq!(entries[0]["name"], "web");
    assert_ne!(entries[0]["hash"], entries[1]["hash"]);
}

#[test]
fn validate_reports_file_line_and_column_and_exits_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = write(
        dir.path(),
        "web.yaml",
        &WEB.replace("instanceType", "instanceTyp"),
    );
    let out = phoenix(&["validate", &bad]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    let first = stderr.lines().next().expect("one error line");
    assert_eq!(
        first,
        format!(
            "{bad}:10:5: unknown field `instanceTyp`, expected one of image, instanceType, subnetIds, securityGroupIds, keyName, userData, tags"
        )
    );
}

#[test]
fn validate_walks_folders_and_finds_duplicate_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("nested")).expect("mkdir");
    write(dir.path(), "web.yaml", WEB);
    write(&dir.path().join("nested"), "web-copy.yml", WEB);
    write(dir.path(), "README.md", "not yaml, ignored");
    let out = phoenix(&["validate", &dir.path().display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("web.yaml: metadata.name `web` is already used by"),
        "{stderr}"
    );
}

#[test]
fn validate_reports_every_config_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write(
        dir.path(),
        "phoenix.yaml",
        "owner: ''\nsource: {dir: {path: ./d}}\nproviders:\n  - {name: a, type: sim, launch_failure_rate: 2}\n  - {name: a, type: sim}\nreconcile: {max_prune_fraction: 3}\n",
    );
    let out = phoenix(&["validate", &config]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    for expected in [
        format!("{config}: owner: must be 1 to 128 characters"),
        format!("{config}: providers[0].launch_failure_rate: must be between 0.0 and 1.0"),
        format!("{config}: providers[1].name: `a` is used by more than one provider"),
        format!("{config}: reconcile.max_prune_fraction: must be between 0.0 and 1.0"),
    ] {
        assert!(
            stderr.lines().any(|l| l == expected),
            "missing `{expected}` in:\n{stderr}"
        );
    }
}

#[test]
fn validate_config_reports_unknown_keys_with_position() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write(
        dir.path(),
        "phoenix.yaml",
        "owner: me\nsource: {dir: {path: ./d}}\nproviders: [{name: a, type: sim}]\nreconcile: {intervall: 5s}\n",
    );
    let out = phoenix(&["validate", &config]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with(&format!("{config}:4:13: unknown field `intervall`")),
        "{stderr}"
    );
}

#[test]
fn version_and_help_work() {
    let out = phoenix(&["--version"]);
    assert!(out.status.success());
    assert!(text(&out.stdout).starts_with("phoenix "));
    for cmd in [
        &["--help"][..],
        &["validate", "--help"],
        &["hash", "--help"],
    ] {
        let out = phoenix(cmd);
        assert!(out.status.success(), "{cmd:?}");
        assert!(text(&out.stdout).contains("Usage: phoenix"), "{cmd:?}");
    }
}

/// The example CI jobs (issue 21): valid YAML that runs `phoenix plan --desired` with the
/// markdown format on the shipped CI config, and posts the comment.
#[test]
fn example_ci_jobs_plan_the_checkout_as_markdown() {
    for (file, posts) in [
        ("examples/ci/github-actions.yml", "createComment"),
        (
            "examples/ci/gitlab-ci.yml",
            "merge_requests/${CI_MERGE_REQUEST_IID}/notes",
        ),
    ] {
        let text = std::fs::read_to_string(repo_root().join(file)).expect("read CI example");
        let doc: serde_json::Value = phoenix_core::yaml::from_str(&text)
            .unwrap_or_else(|e| panic!("{file} is not valid YAML: {e}"));
        assert!(doc.is_object(), "{file}");
        for needle in [
            "phoenix plan --config examples/ci/phoenix-plan.yaml --desired groups",
            "--format markdown",
            "--detailed-exitcode",
            posts,
        ] {
            assert!(text.contains(needle), "{file} lacks `{needle}`");
        }
    }
}
