//! Issue 17 (found by the soak): the local git cache stays at a bounded number of pack
//! files however many fetches it has done. libgit2 writes one pack per fetch and keeps
//! each open and mapped, so without consolidation a months-long daemon held thousands.

use std::time::Duration;

use phoenix_core::config::{GitAuthConfig, GitSourceConfig};
use phoenix_source::{GitSource, PollOutcome};
use phoenix_testkit::git::{RepoHost, WorkRepo};

fn spec(name: &str, image: &str) -> String {
    format!(
        "apiVersion: phoenix/v1\nkind: InstanceGroup\nmetadata:\n  name: {name}\nspec:\n  provider: local\n  replicas: 2\n  template:\n    image: {image}\n    instanceType: t3.micro\n"
    )
}

fn packs(cache: &std::path::Path) -> usize {
    let mut count = 0;
    let mut dirs = vec![cache.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read the cache") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "pack") {
                count += 1;
            }
        }
    }
    count
}

#[test]
fn many_fetches_leave_few_packs_and_every_revision_right() {
    let host = RepoHost::new();
    let remote = host.create("infra");
    let work = WorkRepo::new(&remote);
    work.write("groups/web.yaml", &spec("web", "ami-0"));
    work.write("groups/db.yaml", &spec("db", "ami-db"));
    work.commit("first");
    work.push();
    let cache = tempfile::tempdir().expect("cache folder");
    let config = GitSourceConfig {
        url: host.file_url("infra"),
        branch: None,
        reference: None,
        path: "groups".into(),
        interval: Duration::from_secs(30),
        auth: GitAuthConfig::default(),
        verify: None,
    };
    let mut source = GitSource::open(&config, cache.path()).expect("open");
    let mut most = 0;
    for n in 1..=80 {
        work.write("groups/web.yaml", &spec("web", &format!("ami-{n}")));
        work.commit(&format!("web on ami-{n}"));
        work.push();
        match source.poll().expect("poll") {
            PollOutcome::Accepted { revision, reparsed } => {
                let name = |n: &str| phoenix_core::GroupName::new(n).expect("a valid name");
                let web = &revision.groups[&name("web")];
                assert_eq!(web.group.spec.template.image.as_str(), format!("ami-{n}"));
                assert!(
                    revision.groups.contains_key(&name("db")),
                    "the unchanged group stays"
                );
                assert!(
                    reparsed
                        .iter()
                        .all(|p| p == "groups/web.yaml" || p == "groups/db.yaml"),
                    "{reparsed:?}"
                );
            }
            other => panic!("fetch {n}: expected an accepted revision, got {other:?}"),
        }
        most = most.max(packs(cache.path()));
    }
    assert!(
        most <= 33,
        "the cache held {most} packs at most; one per fetch would be 80"
    );
}
