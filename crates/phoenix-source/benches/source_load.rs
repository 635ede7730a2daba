//! Benchmark for issue 3: cold load versus a one-file commit on a generated repository
//! of 100,000 group files (10,000 with `PHOENIX_BENCH_SIZE=small`), with the baseline
//! measured in the same run: `git ls-tree -r` piped into `git cat-file --batch` over the
//! same tree (reading every blob, parsing nothing).
//!
//! The repository is generated with `git fast-import`: groups are spread over folders of
//! 1,000 files (`groups/s042/g-42123.yaml`), and a chain of one-file commits follows the
//! base commit. Each timed update moves `main` to the next commit and polls; the poll
//! includes the ls-remote, the fetch (file://), the tree diff, one parse and the accept.
//! Prints a Markdown table for docs/benchmarks.md.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use phoenix_core::config::{GitAuthConfig, GitSourceConfig};
use phoenix_source::{GitSource, PollOutcome};

const UPDATES: usize = 9;
const PER_FOLDER: usize = 1000;

fn spec(i: usize, image: usize) -> String {
    format!(
        "apiVersion: phoenix/v1\nkind: InstanceGroup\nmetadata:\n  name: g-{i}\n  labels: {{team: t{}}}\nspec:\n  provider: aws-prod\n  replicas: 3\n  template:\n    image: ami-{image:017x}\n    instanceType: t3.micro\n    subnetIds: [subnet-aaa, subnet-bbb]\n    securityGroupIds: [sg-123]\n    tags: {{app: g-{i}}}\n  rollout:\n    strategy: rolling\n    maxSurge: 1\n    maxUnavailable: 0\n    bake: 30s\n",
        i % 17
    )
}

fn path_of(i: usize) -> String {
    format!("groups/s{:03}/g-{i}.yaml", i / PER_FOLDER)
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Build the repository; returns the base commit and the chain of one-file commits.
fn generate(repo: &Path, files: usize) -> (String, Vec<String>) {
    git(
        repo,
        &["init", "--quiet", "--bare", "--initial-branch=main"],
    );
    let mut child = Command::new("git")
        .args(["fast-import", "--quiet", "--done"])
        .current_dir(repo)
        .stdin(Stdio::piped())
        .spawn()
        .expect("start git fast-import");
    {
        let mut stdin = std::io::BufWriter::new(child.stdin.take().expect("piped stdin"));
        let mut emit = |text: &str| {
            stdin
                .write_all(text.as_bytes())
                .expect("write to fast-import")
        };
        emit(
            "commit refs/heads/main\nmark :1\ncommitter Bench <bench@phoenix.invalid> 1767225600 +0000\ndata 4\nbase\n",
        );
        for i in 0..files {
            let body = spec(i, 1);
            emit(&format!(
                "M 100644 inline {}\ndata {}\n{body}\n",
                path_of(i),
                body.len()
            ));
        }
        emit("\n");
        for step in 0..UPDATES {
            let i = (step * 7919) % files;
            let body = spec(i, step + 2);
            emit(&format!(
                "commit refs/heads/step-{step}\nmark :{}\ncommitter Bench <bench@phoenix.invalid> {} +0000\ndata 8\nstep {step:02}\nfrom :{}\nM 100644 inline {}\ndata {}\n{body}\n\n",
                step + 2,
                1767225600 + step + 1,
                step + 1,
                path_of(i),
                body.len()
            ));
        }
        emit("done\n");
    }
    let status = child.wait().expect("wait for fast-import");
    assert!(status.success(), "git fast-import failed");
    let base = git(repo, &["rev-parse", "refs/heads/main"]);
    let steps = (0..UPDATES)
        .map(|step| git(repo, &["rev-parse", &format!("refs/heads/step-{step}")]))
        .collect();
    (base, steps)
}

fn baseline(repo: &Path, commit: &str) -> Duration {
    let started = Instant::now();
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "git ls-tree -r --format='%(objectname)' {commit} | git cat-file --batch > /dev/null"
        ))
        .current_dir(repo)
        .status()
        .expect("run the baseline pipeline");
    let elapsed = started.elapsed();
    assert!(status.success(), "baseline pipeline failed");
    elapsed
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let files = match std::env::var("PHOENIX_BENCH_SIZE").as_deref() {
        Ok("small") => 10_000,
        Ok(other) if other.parse::<usize>().is_ok() => other.parse().expect("checked"),
        _ => 100_000,
    };
    let work = tempfile::tempdir().expect("bench tempdir");
    let repo = work.path().join("infra.git");
    std::fs::create_dir_all(&repo).expect("mkdir repo");

    let started = Instant::now();
    let (base, steps) = generate(&repo, files);
    let generated = started.elapsed();

    // Baseline, twice: the first run warms the page cache for both contenders.
    baseline(&repo, &base);
    let baseline_time = baseline(&repo, &base);

    let config = GitSourceConfig {
        url: format!("file://{}", repo.display()),
        branch: Some("main".into()),
        reference: None,
        path: "groups".into(),
        interval: Duration::from_secs(30),
        auth: GitAuthConfig::default(),
        verify: None,
    };
    let cache = work.path().join("cache");
    let mut source = GitSource::open(&config, &cache).expect("open source");
    let started = Instant::now();
    let outcome = source.poll().expect("cold poll");
    let cold = started.elapsed();
    match &outcome {
        PollOutcome::Accepted { revision, reparsed } => {
            assert_eq!(revision.groups.len(), files);
            assert_eq!(reparsed.len(), files);
        }
        other => panic!("cold poll was not accepted: {other:?}"),
    }

    let mut updates = Vec::new();
    for step in &steps {
        git(&repo, &["update-ref", "refs/heads/main", step]);
        let started = Instant::now();
        let outcome = source.poll().expect("update poll");
        let elapsed = started.elapsed();
        match &outcome {
            PollOutcome::Accepted { revision, reparsed } => {
                assert_eq!(revision.id.as_str(), step);
                assert_eq!(reparsed.len(), 1, "one-file commit parses one file");
                assert_eq!(revision.groups.len(), files);
            }
            other => panic!("update poll was not accepted: {other:?}"),
        }
        updates.push(elapsed);
    }
    let started = Instant::now();
    let unchanged = source.poll().expect("unchanged poll");
    let unchanged_time = started.elapsed();
    assert!(matches!(unchanged, PollOutcome::Unchanged));

    updates.sort();
    let median = updates[updates.len() / 2];
    let worst = *updates.last().expect("at least one update");
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();

    println!("files: {files} (generated in {})", ms(generated));
    println!();
    println!("| measurement | time | ratio |");
    println!("|---|---|---|");
    println!(
        "| baseline: `git ls-tree -r` + `git cat-file --batch` (read every blob) | {} | 1.0 |",
        ms(baseline_time)
    );
    println!(
        "| cold load: clone (file://) + read + parse + hash + accept {files} files | {} | {:.1}x baseline |",
        ms(cold),
        ratio(cold, baseline_time)
    );
    println!(
        "| one-file commit: ls-remote + fetch + diff + parse 1 + accept (median of {UPDATES}) | {} | cold / update = {:.0}x; update / baseline = {:.3} |",
        ms(median),
        ratio(cold, median),
        ratio(median, baseline_time)
    );
    println!(
        "| one-file commit, worst of {UPDATES} | {} | cold / worst = {:.0}x |",
        ms(worst),
        ratio(cold, worst)
    );
    println!(
        "| unchanged poll (ls-remote only) | {} | |",
        ms(unchanged_time)
    );
}
