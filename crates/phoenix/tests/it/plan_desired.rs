//! `phoenix plan --desired DIR` (issue 21, item 1): a local folder of group files, such
//! as a pull-request checkout, planned against the live inventory of a sim cloud, in
//! every output format, with the same validation and exit codes as the configured source.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use phoenix_cloud::{BuildOptions, LaunchRequest, build_providers};
use phoenix_core::config::Config;
use phoenix_core::markdown::MARKER;
use phoenix_core::parse_group;

fn group(name: &str, replicas: u32, image: &str) -> String {
    format!(
        "apiVersion: phoenix/v1\nkind: InstanceGroup\nmetadata:\n  name: {name}\nspec:\n  provider: local\n  replicas: {replicas}\n  template:\n    image: {image}\n    instanceType: t3.micro\n    subnetIds: [subnet-a]\n"
    )
}

struct Setup {
    dir: tempfile::TempDir,
    config: String,
}

impl Setup {
    /// `live/` is the configured source (web at ami-1, launched in the sim); `pr/` is a
    /// pull-request checkout that moves web to ami-2 and adds api.
    fn new() -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        for sub in ["live", "pr"] {
            std::fs::create_dir(root.join(sub)).expect("mkdir");
        }
        std::fs::write(root.join("live/web.yaml"), group("web", 2, "ami-1")).expect("write");
        std::fs::write(root.join("pr/web.yaml"), group("web", 2, "ami-2")).expect("write");
        std::fs::write(root.join("pr/api.yaml"), group("api", 1, "ami-9")).expect("write");
        let config = "owner: pr-test\nsource: {dir: {path: live, watch: false}}\nproviders:\n  - {name: local, type: sim}\nreconcile: {max_replacements: 10, max_replacement_fraction: 1.0}\nstate: {path: state}\n";
        std::fs::write(root.join("phoenix.yaml"), config).expect("write config");
        let setup = Setup {
            config: root.join("phoenix.yaml").display().to_string(),
            dir,
        };
        setup.launch_live_web();
        setup
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn path(&self, sub: &str) -> String {
        self.root().join(sub).display().to_string()
    }

    /// Two instances of the live web spec, as the daemon would have launched them.
    fn launch_live_web(&self) {
        let text = std::fs::read_to_string(&self.config).expect("read config");
        let mut config = Config::parse(&text).expect("valid config");
        config.resolve_paths(self.root());
        let parsed = parse_group(&group("web", 2, "ami-1")).expect("valid group");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let providers = build_providers(
                &config.providers,
                &config.state.path,
                &BuildOptions::default(),
            )
            .await
            .expect("build providers");
            let sim = providers.get("local").expect("the sim provider");
            let request = LaunchRequest {
                owner: "pr-test".into(),
                group: parsed.group.name().clone(),
                template: parsed.group.spec.template.clone(),
                spec_hash: parsed.hash,
                commit: "live".into(),
                plan_id: "plan-live".into(),
                launch_token: "token-live".into(),
                count: 2,
            };
            let launched = tokio::time::timeout(Duration::from_secs(30), sim.launch(&request))
                .await
                .expect("launch in time")
                .expect("launch");
            assert_eq!(launched.len(), 2);
        });
    }

    fn plan(&self, extra: &[&str]) -> Output {
        let mut args = vec!["plan", "--config", &self.config];
        args.extend_from_slice(extra);
        Command::new(env!("CARGO_BIN_EXE_phoenix"))
            .args(&args)
            .env("NO_COLOR", "1")
            .output()
            .expect("run phoenix plan")
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn show(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    )
}

#[test]
fn a_pull_request_folder_is_planned_against_live_inventory() {
    let setup = Setup::new();
    let pr = setup.path("pr");

    // The configured source matches the fleet: nothing to do.
    let live = setup.plan(&["--detailed-exitcode"]);
    assert_eq!(live.status.code(), Some(0), "{}", show(&live));

    // The pull request replaces web's two instances and launches api.
    let out = setup.plan(&["--desired", &pr, "--format", "json", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON plan");
    assert_eq!(doc["changes"], true);
    let names: Vec<&str> = doc["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| g["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["api", "web"]);
    let web = &doc["groups"][1];
    assert!(
        web["drift"]
            .as_array()
            .expect("drift")
            .iter()
            .filter(|f| f["kind"] == "outdated")
            .count()
            == 2,
        "{web}"
    );
    assert_eq!(doc["groups"][0]["steps"][0]["action"], "launch");

    // `--json` stays an alias of `--format json`.
    let alias = setup.plan(&["--desired", &pr, "--json"]);
    assert_eq!(alias.status.code(), Some(0), "{}", show(&alias));
    assert_eq!(text(&alias.stdout), text(&out.stdout));

    // The markdown comment: marker, summary table, then collapsible details.
    let md = setup.plan(&[
        "--desired",
        &pr,
        "--format",
        "markdown",
        "--detailed-exitcode",
    ]);
    assert_eq!(md.status.code(), Some(2), "{}", show(&md));
    let md = text(&md.stdout);
    assert!(md.starts_with(MARKER), "{md}");
    assert!(
        md.contains(
            "| group | status | drift | replacements | launches | terminations | blast radius |"
        ),
        "{md}"
    );
    assert!(
        md.contains("| `web` | planned | outdated ×2 | 2 | 2 | 2 | 2 of 2 (100%) |"),
        "{md}"
    );
    assert!(
        md.contains("| `api` | planned | missing ×1 | 0 | 1 | 0 | none |"),
        "{md}"
    );
    assert!(
        md.contains("<details><summary><code>web</code>: planned, rolling</summary>"),
        "{md}"
    );
    assert_eq!(
        md.matches("<details>").count(),
        md.matches("</details>").count()
    );

    // Text names the folder's revision and both groups.
    let plain = setup.plan(&["--desired", &pr]);
    assert_eq!(plain.status.code(), Some(0), "{}", show(&plain));
    assert!(
        text(&plain.stdout).contains("2 group(s) to change"),
        "{}",
        show(&plain)
    );
}

#[test]
fn an_invalid_file_in_the_folder_is_an_error_naming_path_line_and_column() {
    let setup = Setup::new();
    let bad = setup.root().join("bad");
    std::fs::create_dir(&bad).expect("mkdir");
    std::fs::write(bad.join("web.yaml"), group("web", 2, "ami-2")).expect("write");
    // Line 9, column 5: an unknown key in the template.
    let api = group("api", 1, "ami-9").replace("    image:", "    imagee:");
    std::fs::write(bad.join("api.yaml"), api).expect("write");
    let bad = bad.display().to_string();
    for format in ["text", "json", "markdown"] {
        let out = setup.plan(&["--desired", &bad, "--format", format, "--detailed-exitcode"]);
        assert_eq!(out.status.code(), Some(1), "{}", show(&out));
        assert!(out.stdout.is_empty(), "nothing is planned: {}", show(&out));
        let stderr = text(&out.stderr);
        assert!(stderr.contains(&format!("{bad}/api.yaml:9:5:")), "{stderr}");
        assert!(stderr.contains("imagee"), "{stderr}");
    }

    // Two files naming one group reject the folder as a whole, as in the source.
    let dup = setup.root().join("dup");
    std::fs::create_dir(&dup).expect("mkdir");
    std::fs::write(dup.join("a.yaml"), group("web", 2, "ami-2")).expect("write");
    std::fs::write(dup.join("b.yaml"), group("web", 2, "ami-3")).expect("write");
    let out = setup.plan(&["--desired", &dup.display().to_string()]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(text(&out.stderr).contains("b.yaml"), "{}", show(&out));

    // A group on a provider the config does not have names its file.
    let other = setup.root().join("other");
    std::fs::create_dir(&other).expect("mkdir");
    std::fs::write(
        other.join("web.yaml"),
        group("web", 2, "ami-2").replace("provider: local", "provider: nowhere"),
    )
    .expect("write");
    let out = setup.plan(&["--desired", &other.display().to_string()]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        text(&out.stderr).contains(&format!("{}/web.yaml", other.display())),
        "{}",
        show(&out)
    );

    // A folder that does not exist is an error too.
    let out = setup.plan(&["--desired", &setup.path("absent")]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(text(&out.stderr).contains("absent"), "{}", show(&out));
}
