//! The daemon config schema: the reference config parses, defaults are the documented
//! ones, relative paths resolve against the config file's folder, and bad configs
//! report every problem.

use std::path::Path;
use std::time::Duration;

use phoenix_core::config::{Config, Mode, ProviderConfig, SourceConfig};

fn reference() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/phoenix.yaml");
    std::fs::read_to_string(path).expect("read config/phoenix.yaml")
}

#[test]
fn reference_config_parses() {
    let config = Config::parse(&reference()).expect("reference config is valid");
    assert_eq!(config.owner, "acme-prod");
    assert_eq!(config.providers.len(), 2);
    assert!(
        matches!(&config.providers[0], ProviderConfig::AwsEc2(aws) if aws.region.as_deref() == Some("us-east-1"))
    );
    assert!(matches!(&config.providers[1], ProviderConfig::Sim(_)));
    let SourceConfig::Git(git) = &config.source else {
        panic!("git source expected")
    };
    assert_eq!(git.branch.as_deref(), Some("main"));
    assert_eq!(git.interval, Duration::from_secs(30));
    assert_eq!(config.alerts[0].events.len(), 7);
}

#[test]
fn minimal_config_gets_safe_defaults() {
    let config = Config::parse(
        "owner: me\nsource: {dir: {path: desired}}\nproviders: [{name: local, type: sim}]\n",
    )
    .expect("valid");
    assert_eq!(
        config.reconcile.mode,
        Mode::Observe,
        "observe is the safe default"
    );
    assert!(!config.reconcile.prune);
    assert_eq!(config.reconcile.max_replacements, 10);
    assert_eq!(config.reconcile.interval, Duration::from_secs(60));
    assert_eq!(config.server.listen.to_string(), "127.0.0.1:8080");
    assert!(config.server.token_env.is_none());
    assert!(config.alerts.is_empty());
}

#[test]
fn relative_paths_resolve_against_the_config_folder() {
    let mut config = Config::parse("owner: me\nsource: {dir: {path: desired}}\nproviders: [{name: local, type: sim}]\nstate: {path: /var/lib/phoenix}\n").expect("valid");
    config.resolve_paths(Path::new("/etc/phoenix"));
    let SourceConfig::Dir(dir) = &config.source else {
        panic!("dir source expected")
    };
    assert_eq!(dir.path, Path::new("/etc/phoenix/desired"));
    assert_eq!(
        config.state.path,
        Path::new("/var/lib/phoenix"),
        "absolute paths stay"
    );
}

#[test]
fn provider_type_selects_the_variant_and_unknown_keys_fail() {
    let err =
        Config::parse("owner: me\nsource: {dir: {path: d}}\nproviders: [{name: a, type: gcp}]\n")
            .expect_err("unknown type");
    assert!(err[0].message.contains("unknown variant `gcp`"), "{err:?}");
    let err = Config::parse(
        "owner: me\nsource: {dir: {path: d}}\nproviders: [{name: a, type: sim, regionn: x}]\n",
    )
    .expect_err("unknown key");
    assert!(
        err[0].message.contains("unknown field `regionn`"),
        "{err:?}"
    );
}

#[test]
fn both_branch_and_ref_is_a_problem() {
    let err = Config::parse("owner: me\nsource: {git: {url: file:///r, branch: main, ref: refs/tags/v1}}\nproviders: [{name: a, type: sim}]\n").expect_err("invalid");
    assert_eq!(
        err[0].message,
        "source.git: set `branch` or `ref`, not both"
    );
}

/// Issue 18: `source.git.verify` and `policy.images` keys, defaults and errors.
#[test]
fn verify_and_image_policy_keys() {
    let config = Config::parse(
        "owner: me
source:
  git:
    url: file:///tmp/r
    verify: {mode: all, allowed_signers: keys/allowed}
providers: [{name: local, type: sim, images: [{id: ami-1, owner: \"1\", created: \"2026-01-01T00:00:00Z\"}]}]
policy:
  images: {owners: [\"1\"], name: \"golden-*\", require_tags: {source-commit: \"*\"}, max_age: 90d}
",
    )
    .expect("valid");
    let SourceConfig::Git(git) = &config.source else {
        panic!("git source expected")
    };
    let verify = git.verify.as_ref().expect("verify");
    assert_eq!(verify.mode, phoenix_core::config::VerifyMode::All);
    assert!(verify.openpgp_keys.is_none());
    let images = config.policy.images.as_ref().expect("policy.images");
    assert!(images.deny_deprecated, "deny_deprecated defaults to true");
    assert_eq!(images.max_age, Some(Duration::from_secs(90 * 86_400)));
    let ProviderConfig::Sim(sim) = &config.providers[0] else {
        panic!("sim expected")
    };
    assert_eq!(sim.images[0].id, "ami-1");
    assert!(sim.images[0].created.is_some());

    let errors = Config::parse(
        "owner: me\nsource: {git: {url: file:///tmp/r, verify: {mode: head}}}\nproviders: [{name: local, type: sim}]\n",
    )
    .expect_err("verify without a trusted key file");
    assert!(
        errors
            .iter()
            .any(|e| e.message.starts_with("source.git.verify")),
        "{errors:?}"
    );
    let errors = Config::parse(
        "owner: me\nsource: {dir: {path: d}}\nproviders: [{name: local, type: sim}]\npolicy: {images: {owner: [x]}}\n",
    )
    .expect_err("unknown key");
    assert!(errors[0].message.contains("owner"), "{errors:?}");
}

/// Issue 17, defect 9: `owner` is matched by EC2 tag filters, where `*` and `?` are
/// wildcards: `acme-*` would claim every `acme-...` owner's instances.
#[test]
fn owner_with_filter_wildcards_is_refused() {
    for owner in ["acme-*", "acme?", "*", "a\\\\b"] {
        let text = format!(
            "owner: '{owner}'\nsource: {{dir: {{path: desired}}}}\nproviders: [{{name: local, type: sim}}]\n"
        );
        let err = Config::parse(&text).expect_err("a wildcard owner is refused");
        assert!(
            err.iter()
                .any(|e| e.message.contains("owner") && e.message.contains("wildcard")),
            "{owner}: {err:?}"
        );
    }
}

/// Issue 15: an alert event has one name, the same in config (serde) and everywhere
/// else (`AlertEvent::as_str`).
#[test]
fn alert_event_names_are_the_serde_names() {
    for event in phoenix_core::config::AlertEvent::ALL {
        let serde = serde_json::to_value(event).expect("serializes");
        assert_eq!(serde, serde_json::Value::from(event.as_str()), "{event:?}");
    }
}
