//! Tidy: the architecture rules of docs/ARCHITECTURE.md checked as ordinary tests, in
//! the manner of rust-analyzer's `tidy.rs`. Each test reads the repository's own files
//! (manifests and sources), so a change that breaks a rule fails `scripts/test.sh`
//! instead of waiting for a reviewer to notice.
//!
//! - every heavy dependency has exactly one home crate;
//! - the dependency direction between workspace crates holds (phoenix-core depends on no
//!   workspace crate and on nothing that does IO; phoenix-api knows only phoenix-core);
//! - phoenix-core reads no clock, does no IO and draws no OS randomness;
//! - no public item of phoenix-source exposes a git2 or notify type;
//! - every Rust source file starts with a `//!` doc saying what lives there.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A crate's dependencies by kind (`dependencies`, `dev-dependencies`, ...), read from its
/// manifest with just enough TOML to see the keys of the dependency tables (plain
/// `name = ...`, `name.workspace = true` and `[dependencies.name]` forms, and the
/// `package = "..."` of a renamed dependency).
#[derive(Debug, Default)]
struct Manifest {
    deps: Vec<(String, String)>,
}

fn manifest(path: &Path) -> Manifest {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut out = Manifest::default();
    let mut kind: Option<String> = None;
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let header = header.trim_matches(|c| c == '[' || c == ']');
            let parts: Vec<&str> = header.split('.').collect();
            // `[target.'cfg(..)'.dependencies]` and `[dependencies.name]` forms.
            let dep_at = parts.iter().position(|p| p.ends_with("dependencies"));
            kind = None;
            if let Some(i) = dep_at {
                if let Some(name) = parts.get(i + 1) {
                    out.deps.push((parts[i].to_string(), name.to_string()));
                } else {
                    kind = Some(parts[i].to_string());
                }
            }
            continue;
        }
        let Some(kind) = &kind else { continue };
        let key: String = line
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect();
        let renamed = line
            .split("package")
            .nth(1)
            .and_then(|rest| rest.split('"').nth(1))
            .map(str::to_string);
        out.deps.push((kind.clone(), renamed.unwrap_or(key)));
    }
    out
}

fn workspace_manifests() -> BTreeMap<String, Manifest> {
    let crates = repo().join("crates");
    let mut out = BTreeMap::new();
    for entry in fs::read_dir(&crates).expect("crates/ is readable") {
        let dir = entry.expect("crates/ entry").path();
        let path = dir.join("Cargo.toml");
        if path.is_file() {
            let name = dir
                .file_name()
                .expect("crate folder name")
                .to_string_lossy()
                .into_owned();
            out.insert(name, manifest(&path));
        }
    }
    assert!(
        out.len() >= 8,
        "expected the workspace's crates under {}",
        crates.display()
    );
    out
}

/// The heavy dependencies and the one crate each may live in. A dependency matches a
/// rule when its name equals the rule or starts with it followed by `-`.
const HOMES: &[(&str, &str, &str)] = &[
    (
        "git2",
        "phoenix-source",
        "the only crate that links libgit2",
    ),
    (
        "notify",
        "phoenix-source",
        "the only crate that knows the file watcher",
    ),
    (
        "ssh-key",
        "phoenix-source",
        "the only crate that verifies commit signatures",
    ),
    (
        "pgp",
        "phoenix-source",
        "the only crate that verifies commit signatures",
    ),
    (
        "aws-config",
        "phoenix-cloud",
        "the only crate that knows a cloud SDK",
    ),
    (
        "aws-sdk",
        "phoenix-cloud",
        "the only crate that knows a cloud SDK",
    ),
    (
        "aws-smithy",
        "phoenix-cloud",
        "the only crate that knows a cloud SDK",
    ),
    (
        "rusqlite",
        "phoenix-store",
        "the only crate that knows the database",
    ),
    (
        "tokio-postgres",
        "phoenix-store",
        "the only crate that knows the database",
    ),
    (
        "deadpool-postgres",
        "phoenix-store",
        "the only crate that knows the database",
    ),
    (
        "sqlx",
        "phoenix-store",
        "the only crate that knows the database",
    ),
    (
        "axum",
        "phoenix-api",
        "the only crate that knows HTTP server types",
    ),
    (
        "tower-http",
        "phoenix-api",
        "the only crate that knows HTTP server types",
    ),
    (
        "hyper",
        "phoenix-api",
        "the only crate that runs the HTTP server loop",
    ),
    (
        "hyper-util",
        "phoenix-api",
        "the only crate that runs the HTTP server loop",
    ),
    (
        "utoipa",
        "phoenix-api",
        "the only crate that knows the OpenAPI wire types",
    ),
];

/// Dev-only exceptions: a test of another crate may stand up a tiny HTTP receiver.
const DEV_EXCEPTIONS: &[(&str, &str)] = &[("phoenix-daemon", "axum")];

fn matches(dep: &str, rule: &str) -> bool {
    dep == rule
        || dep
            .strip_prefix(rule)
            .is_some_and(|rest| rest.starts_with('-'))
}

#[test]
fn heavy_dependencies_have_one_home() {
    let mut problems = Vec::new();
    for (krate, m) in workspace_manifests() {
        for (kind, dep) in &m.deps {
            for (rule, home, why) in HOMES {
                if !matches(dep, rule) || krate == *home {
                    continue;
                }
                let excepted = kind == "dev-dependencies"
                    && DEV_EXCEPTIONS.iter().any(|(c, d)| *c == krate && d == dep);
                if !excepted {
                    problems.push(format!(
                        "crates/{krate}/Cargo.toml [{kind}] names `{dep}`, but {home} is {why}"
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn workspace_dependency_direction_holds() {
    let manifests = workspace_manifests();
    let normal = |krate: &str| -> Vec<String> {
        manifests[krate]
            .deps
            .iter()
            .filter(|(kind, _)| kind == "dependencies")
            .map(|(_, d)| d.clone())
            .collect()
    };
    let mut problems = Vec::new();
    // phoenix-core is pure: no workspace crate, no runtime, no network client; what it
    // may not call is checked in its sources (`phoenix_core_reads_no_clock_and_does_no_io`).
    for dep in normal("phoenix-core") {
        if dep.starts_with("phoenix-") || ["tokio", "reqwest", "hyper"].contains(&dep.as_str()) {
            problems.push(format!(
                "phoenix-core must stay pure, but depends on `{dep}`"
            ));
        }
    }
    // phoenix-api knows phoenix-core only.
    for dep in normal("phoenix-api") {
        if dep.starts_with("phoenix-") && dep != "phoenix-core" {
            problems.push(format!(
                "phoenix-api may depend on phoenix-core only, not `{dep}`"
            ));
        }
    }
    // Library crates below the daemon never depend on the daemon or the binary; the
    // testkit is a dev-dependency only, except of phoenix-bench (a benchmark tool that is
    // never shipped; its soak can run the fleet on the testkit's scale EC2 endpoint).
    for (krate, m) in &manifests {
        for (kind, dep) in &m.deps {
            if (dep == "phoenix-daemon" && !["phoenix", "phoenix-bench"].contains(&krate.as_str()))
                || dep == "phoenix"
            {
                problems.push(format!("crates/{krate} [{kind}] depends on `{dep}`"));
            }
            if dep == "phoenix-testkit" && kind != "dev-dependencies" && krate != "phoenix-bench" {
                problems.push(format!("crates/{krate} has phoenix-testkit in [{kind}]"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The public declarations of a file, one string each, with a multi-line function
/// signature joined up to its body or `;`: enough to see every type a public function,
/// field, alias or re-export names.
fn public_declarations(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut open: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("").trim();
        if let Some((start, mut acc)) = open.take() {
            acc.push(' ');
            acc.push_str(code);
            if code.contains('{') || code.ends_with(';') {
                out.push((start, acc));
            } else {
                open = Some((start, acc));
            }
            continue;
        }
        if !code.starts_with("pub ") {
            continue;
        }
        let signature_goes_on = code.contains("fn ") && !code.contains('{') && !code.ends_with(';');
        if signature_goes_on {
            open = Some((i + 1, code.to_string()));
        } else {
            out.push((i + 1, code.to_string()));
        }
    }
    out
}

/// Calls that read the clock, the environment or the operating system's randomness, or
/// do IO: none belongs in phoenix-core, whose callers pass `now` and seeds in.
const IMPURE: &[&str] = &[
    "SystemTime::now(",
    "Instant::now(",
    "std::fs",
    "std::process",
    "std::env",
    "TcpStream",
    "TcpListener",
    "UdpSocket",
    "thread_rng",
    "rand::random",
    "rand::rng(",
    "from_os_rng",
    "from_entropy",
];

#[test]
fn phoenix_core_reads_no_clock_and_does_no_io() {
    let mut files = Vec::new();
    rust_files(&repo().join("crates/phoenix-core/src"), &mut files);
    assert!(!files.is_empty(), "no phoenix-core sources");
    let mut problems = Vec::new();
    for file in files {
        let text = fs::read_to_string(&file).expect("source is readable");
        // Unit tests may use the clock; they start at the file's `#[cfg(test)]` module.
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for (i, line) in code.lines().enumerate() {
            let line = line.split("//").next().unwrap_or("");
            for call in IMPURE.iter().filter(|call| line.contains(*call)) {
                problems.push(format!("{}:{}: `{call}`", file.display(), i + 1));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "phoenix-core must stay pure (no clock, no IO, no OS randomness):\n{}",
        problems.join("\n")
    );
}

#[test]
fn phoenix_source_public_api_exposes_no_git2_type() {
    let src = repo().join("crates/phoenix-source/src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(!files.is_empty(), "no sources under {}", src.display());
    let mut problems = Vec::new();
    for file in files {
        let text = fs::read_to_string(&file).expect("source is readable");
        for (line, decl) in public_declarations(&text) {
            if names_foreign_type(&decl) {
                problems.push(format!("{}:{line}: {decl}", file.display()));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "public items of phoenix-source name git2/notify types (they may appear only as an \
         error's source()):\n{}",
        problems.join("\n")
    );
}

/// Whether a public declaration names a git2 or notify type where a user of the crate can
/// see it. A tuple struct's private field (`pub struct BlobId(git2::Oid);`, a newtype) is
/// not visible, so only its `pub` fields count.
fn names_foreign_type(decl: &str) -> bool {
    let foreign = |s: &str| s.contains("git2::") || s.contains("notify::");
    if decl.starts_with("pub use git2") || decl.starts_with("pub use notify") {
        return true;
    }
    if let Some(rest) = decl.strip_prefix("pub struct ")
        && let Some((_, fields)) = rest.split_once('(')
    {
        let fields = fields.split(')').next().unwrap_or("");
        return fields
            .split(',')
            .any(|f| f.trim().starts_with("pub ") && foreign(f));
    }
    foreign(decl)
}

#[test]
fn a_newtype_hides_its_private_field() {
    assert!(!names_foreign_type("pub struct BlobId(git2::Oid);"));
    assert!(names_foreign_type("pub struct BlobId(pub git2::Oid);"));
    assert!(names_foreign_type(
        "pub fn open(repo: git2::Repository) -> Self {"
    ));
    assert!(names_foreign_type("pub use git2::Oid;"));
}

#[test]
fn public_declarations_join_multi_line_signatures() {
    let text = "pub fn open(\n    path: &Path,\n    repo: git2::Repository,\n) -> Self {\n}\n\
                fn private(x: git2::Oid) {}\npub(crate) fn inner(x: git2::Oid) {}\n";
    let decls = public_declarations(text);
    assert_eq!(decls.len(), 1);
    assert!(decls[0].1.contains("git2::Repository"), "{decls:?}");
}

#[test]
fn every_source_file_has_a_module_doc() {
    let mut files = Vec::new();
    rust_files(&repo().join("crates"), &mut files);
    assert!(files.len() > 50, "expected the workspace's sources");
    let missing: Vec<String> = files
        .iter()
        .filter(|f| {
            let text = fs::read_to_string(f).expect("source is readable");
            !text.lines().take(20).any(|l| l.starts_with("//!"))
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "files without a `//!` doc:\n{}",
        missing.join("\n")
    );
}

#[test]
fn manifest_reader_sees_every_form() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("Cargo.toml");
    fs::write(
        &path,
        "[package]\nname = \"x\"\n[dependencies]\ngit2.workspace = true\nserde = { version = \"1\" }\n\
         alias = { package = \"aws-sdk-s3\", version = \"1\" }\n[dev-dependencies.axum]\nversion = \"0.8\"\n\
         [target.'cfg(unix)'.dependencies]\nrusqlite = \"0.37\"\n",
    )
    .expect("write manifest");
    let m = manifest(&path);
    let names: Vec<&str> = m.deps.iter().map(|(_, d)| d.as_str()).collect();
    assert_eq!(names, ["git2", "serde", "aws-sdk-s3", "axum", "rusqlite"]);
    assert!(matches("aws-sdk-ec2", "aws-sdk") && !matches("aws-sdkx", "aws-sdk"));
}

/// Issue 17, defect 10: every logged error carries its whole source chain: a
/// `error = %x` field must go through `phoenix_core::chain` (or anyhow's `{:#}`), never
/// print the outer message alone.
#[test]
fn every_logged_error_carries_its_source_chain() {
    let mut files = Vec::new();
    rust_files(&repo().join("crates"), &mut files);
    let mut offenders = Vec::new();
    for file in files
        .into_iter()
        .filter(|f| !f.ends_with("tests/it/tidy.rs"))
    {
        let text = std::fs::read_to_string(&file).expect("read a source file");
        for (index, line) in text.lines().enumerate() {
            let mut rest = line;
            while let Some(at) = rest.find("error = %") {
                let value = &rest[at + "error = %".len()..];
                if !(value.starts_with("phoenix_core::chain(")
                    || value.starts_with("error_chain(")
                    || value.starts_with("chain(")
                    || value.starts_with("format!(\"{err:#}\")"))
                {
                    offenders.push(format!("{}:{}: {}", file.display(), index + 1, line.trim()));
                }
                rest = value;
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "errors logged without their cause:\n{}",
        offenders.join("\n")
    );
}
