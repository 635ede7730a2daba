//! `phoenix plan` end to end against a real moto server (issue 5): launches for a new
//! group, nothing for a fleet in sync, a `modified` finding after an out-of-band
//! instance-type change, and the documented exit codes, including exit 1 for an
//! unreachable provider and for a rejected revision.

use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use phoenix_cloud::{BuildOptions, LaunchRequest, Provider, StaticCredentials, build_providers};
use phoenix_core::config::Config;
use phoenix_core::parse_group;
use phoenix_testkit::moto::{MotoServer, http_request};

const GROUP: &str = "apiVersion: phoenix/v1
kind: InstanceGroup
metadata:
  name: web
spec:
  provider: aws
  replicas: 2
  template:
    image: ami-0123456789abcdef0
    instanceType: t3.micro
    tags: {app: web}
";

struct Setup {
    dir: tempfile::TempDir,
    config_path: String,
}

fn setup(endpoint: &str) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("desired")).expect("mkdir desired");
    std::fs::write(dir.path().join("desired/web.yaml"), GROUP).expect("write group");
    let config = format!(
        "owner: plan-test\nsource: {{dir: {{path: desired, watch: false}}}}\nproviders:\n  - {{name: aws, type: aws_ec2, region: us-east-1, endpoint_url: \"{endpoint}\", max_attempts: 2}}\nstate: {{path: state}}\n"
    );
    let config_path = dir.path().join("phoenix.yaml");
    std::fs::write(&config_path, config).expect("write config");
    Setup {
        config_path: config_path.display().to_string(),
        dir,
    }
}

fn plan(setup: &Setup, extra: &[&str]) -> Output {
    let mut args = vec!["plan", "--config", &setup.config_path];
    args.extend_from_slice(extra);
    Command::new(env!("CARGO_BIN_EXE_phoenix"))
        .args(&args)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env("NO_COLOR", "1")
        .output()
        .expect("run phoenix plan")
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "plan --json output is JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

async fn provider(setup: &Setup) -> Arc<dyn Provider> {
    let text = std::fs::read_to_string(&setup.config_path).expect("read config");
    let config = Config::parse(&text).expect("valid config");
    let options = BuildOptions {
        aws_static_credentials: Some(StaticCredentials {
            access_key_id: "testing".into(),
            secret_access_key: "testing".into(),
        }),
    };
    let mut providers = build_providers(&config.providers, setup.dir.path(), &options)
        .await
        .expect("build providers");
    providers.remove("aws").expect("the aws provider")
}

/// ModifyInstanceAttribute through moto's EC2 query API: an out-of-band change.
fn change_instance_type(moto: &MotoServer, id: &str, instance_type: &str) {
    let body = format!(
        "Action=ModifyInstanceAttribute&Version=2016-11-15&InstanceId={id}&InstanceType.Value={instance_type}"
    );
    let headers = [
        ("Content-Type", "application/x-www-form-urlencoded"),
        (
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0",
        ),
    ];
    let (status, response) = http_request(moto.addr(), "POST", "/", &headers, body.as_bytes());
    assert_eq!(
        status,
        200,
        "ModifyInstanceAttribute failed: {}",
        String::from_utf8_lossy(&response)
    );
}

#[test]
fn plan_against_moto_from_new_group_to_in_sync_to_modified() {
    let moto = MotoServer::start();
    let setup = setup(&moto.endpoint_url());

    // 1. A new group: two launches, exit 2 with --detailed-exitcode.
    let out = plan(&setup, &["--json", "--detailed-exitcode"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = json(&out);
    assert_eq!(doc["format_version"], "1.0");
    assert_eq!(doc["changes"], true);
    let group = &doc["groups"][0];
    assert_eq!(group["name"], "web");
    assert_eq!(group["drift"][0]["kind"], "missing");
    assert_eq!(group["drift"][0]["count"], 2);
    assert_eq!(
        group["steps"][0],
        serde_json::json!({"action": "launch", "count": 2})
    );
    // Without the flag, changes still exit 0.
    assert_eq!(plan(&setup, &[]).status.code(), Some(0));

    // 2. Launch exactly what the spec asks for: the fleet is in sync.
    let parsed = parse_group(GROUP).expect("valid group");
    let rt = runtime();
    let launched = rt.block_on(async {
        let aws = provider(&setup).await;
        let request = LaunchRequest {
            owner: "plan-test".into(),
            group: parsed.group.name().clone(),
            template: parsed.group.spec.template.clone(),
            spec_hash: parsed.hash,
            commit: "test".into(),
            plan_id: "plan-test".into(),
            launch_token: "token-1".into(),
            count: 2,
        };
        tokio::time::timeout(Duration::from_secs(60), aws.launch(&request))
            .await
            .expect("launch in time")
            .expect("launch")
    });
    assert_eq!(launched.len(), 2);
    let out = plan(&setup, &["--json", "--detailed-exitcode"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "in sync; stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = json(&out);
    assert_eq!(doc["changes"], false);
    assert_eq!(doc["groups"][0]["status"], "in_sync");
    let text = plan(&setup, &["--detailed-exitcode"]);
    assert_eq!(text.status.code(), Some(0));

    // 3. An out-of-band instance-type change: a `modified` finding and a replacement.
    change_instance_type(&moto, &launched[0].id, "t3.large");
    let out = plan(&setup, &["--json", "--detailed-exitcode"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = json(&out);
    let drift = doc["groups"][0]["drift"].as_array().expect("drift list");
    let modified = drift
        .iter()
        .find(|f| f["kind"] == "modified")
        .unwrap_or_else(|| panic!("no modified finding in {drift:?}"));
    assert_eq!(modified["instance_id"], launched[0].id.as_str());
    assert_eq!(modified["field"], "instanceType");
    assert_eq!(modified["expected"], "t3.micro");
    assert_eq!(modified["observed"], "t3.large");
    let steps = doc["groups"][0]["steps"].as_array().expect("steps");
    assert!(
        steps.iter().any(|s| s["action"] == "terminate"
            && s["instance_ids"] == serde_json::json!([launched[0].id])),
        "{steps:?}"
    );
    // The readable form names the finding too.
    let text = plan(&setup, &[]);
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(
        stdout.contains("modified") && stdout.contains("t3.large"),
        "{stdout}"
    );
}

#[test]
fn unreachable_provider_is_an_error_not_everything_missing() {
    // Nothing listens on this port.
    let port = phoenix_testkit::net::free_port();
    let setup = setup(&format!("http://127.0.0.1:{port}"));
    let out = plan(&setup, &["--json", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("provider `aws`") && stderr.contains("unreachable"),
        "{stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "no plan is printed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn rejected_revision_is_an_error_naming_path_line_and_column() {
    let moto = MotoServer::start();
    let setup = setup(&moto.endpoint_url());
    std::fs::write(
        setup.dir.path().join("desired/web.yaml"),
        GROUP.replace("instanceType", "instanceTyp"),
    )
    .expect("write");
    let out = plan(&setup, &["--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("web.yaml:10:5: unknown field `instanceTyp`"),
        "{stderr}"
    );
}

#[test]
fn group_naming_an_unknown_provider_is_an_error() {
    let setup = setup("http://127.0.0.1:9");
    std::fs::write(
        setup.dir.path().join("desired/web.yaml"),
        GROUP.replace("provider: aws", "provider: gcp"),
    )
    .expect("write");
    let out = plan(&setup, &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("spec.provider `gcp` is not a provider"),
        "{stderr}"
    );
}
