//! The YAML fast path against serde-saphyr (issue 2): whenever the fast path reads a
//! document, it must read exactly what serde-saphyr reads, so the spec hash (persisted
//! in cloud tags) can never change; whatever it cannot read, it must decline.
//!
//! The property checked everywhere: `from_str_fast(text) == Some(v)` implies
//! `from_str_reference(text) == Ok(v)`, for typed specs, the daemon config and untyped
//! values (`serde_json::Value`, which exercises `deserialize_any` on every scalar).

use std::path::Path;

use phoenix_core::config::Config;
use phoenix_core::spec::parse_group_shared;
use phoenix_core::text::Interner;
use phoenix_core::yaml::{from_str, from_str_fast, from_str_reference};
use phoenix_core::{InstanceGroup, parse_group};
use proptest::prelude::*;
use serde::de::DeserializeOwned;

/// The fast path agrees with serde-saphyr on `text` read as `T`; returns whether the
/// fast path read it.
fn agrees<T: DeserializeOwned + PartialEq + std::fmt::Debug>(text: &str) -> bool {
    let reference = from_str_reference::<T>(text);
    match from_str_fast::<T>(text) {
        Some(fast) => {
            assert_eq!(
                reference.as_ref(),
                Ok(&fast),
                "fast path disagrees with serde-saphyr on:\n{text}"
            );
            true
        }
        None => {
            // Declined: `from_str` falls back, so it returns exactly the reference.
            assert_eq!(
                from_str::<T>(text),
                reference,
                "fallback differs on:\n{text}"
            );
            false
        }
    }
}

/// The shape `phoenix validate` reads to tell a config from a desired-state file.
#[derive(Debug, PartialEq, serde::Deserialize)]
struct Probe {
    #[serde(rename = "apiVersion")]
    api_version: Option<serde::de::IgnoredAny>,
    owner: Option<serde::de::IgnoredAny>,
    providers: Option<serde::de::IgnoredAny>,
}

/// Every way of reading `text` agrees; for specs, the hash too.
fn check_all(text: &str) -> bool {
    let fast = agrees::<InstanceGroup>(text);
    agrees::<serde_json::Value>(text);
    agrees::<Config>(text);
    agrees::<Probe>(text);
    if let Ok(reference) = from_str_reference::<InstanceGroup>(text)
        && let Ok(parsed) = parse_group(text)
    {
        assert_eq!(parsed.hash, reference.hash(), "hash differs on:\n{text}");
    }
    if let Ok(parsed) = parse_group(text) {
        // Sharing strings between specs changes allocations, never values or hashes.
        let mut strings = Interner::new();
        let first = parse_group_shared(text, &mut strings).expect("parse_group read it");
        let second = parse_group_shared(text, &mut strings).expect("parse_group read it");
        assert_eq!(first, parsed, "shared parse differs on:\n{text}");
        assert_eq!(second, parsed, "shared parse differs on:\n{text}");
        let image = |p: &phoenix_core::spec::ParsedGroup| p.group.spec.template.image.as_ptr();
        assert_eq!(image(&first), image(&second), "not shared on:\n{text}");
    }
    fast
}

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

#[test]
fn the_benchmark_specs_take_the_fast_path() {
    for i in [0, 1, 7, 4095, 99_999] {
        assert!(
            check_all(&crate::spec_gen::spec(i)),
            "the benchmark spec must not fall back"
        );
    }
    assert!(check_all(BASE));
}

#[test]
fn repository_files_agree() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = Vec::new();
    for dir in ["examples", "config"] {
        collect_yaml(&root.join(dir), &mut files);
    }
    assert!(files.len() >= 4, "found {files:?}");
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read a repository YAML file");
        check_all(&text);
    }
}

fn collect_yaml(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("list a repository folder") {
        let path = entry.expect("read a folder entry").path();
        if path.is_dir() {
            collect_yaml(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

/// Scalars whose meaning depends on YAML 1.2 rules, quoting or serde-saphyr's options.
const TRICKY_SCALARS: &[&str] = &[
    "web",
    "yes",
    "no",
    "on",
    "off",
    "y",
    "n",
    "Yes",
    "true",
    "True",
    "TRUE",
    "false",
    "FALSE",
    "tRue",
    "null",
    "Null",
    "NULL",
    "~",
    "nul",
    "0",
    "-0",
    "+0",
    "7",
    "+7",
    "-7",
    "0755",
    "-0755",
    "08",
    "1_000",
    "1__0",
    "_1",
    "0x10",
    "0X10",
    "0o17",
    "0b101",
    "1.5",
    "1.50",
    "-1.5",
    "1e3",
    "1E3",
    "1.",
    ".5",
    ".inf",
    "-.inf",
    ".nan",
    "-.nan",
    "inf",
    "nan",
    "infinity",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775808",
    "-9223372036854775809",
    "30s",
    "5m",
    "1h 30m",
    "t3.micro",
    "ami-0123",
    "-web",
    "web-",
    "/healthz",
    "a#b",
    "a #b",
    "a:b",
    "a: b",
    "a:",
    "'quoted'",
    "\"dq\"",
    "'it''s'",
    "\"a\\nb\"",
    "\"a\\\\b\"",
    "\"\\x41\"",
    "\"\\u00e9\"",
    "\"\"",
    "''",
    "[]",
    "{}",
    "[a, b]",
    "{a: 1}",
    "[a, [b, c]]",
    "{a: {b: c}}",
    "&x a",
    "*x",
    "!secret a",
    "!!str 8080",
    "!!int 7",
    "|",
    ">",
    "a b",
    "a  b",
    "25%",
    "101%",
    "@x",
    "`x",
    "%x",
    "?x",
    "-",
    "- a",
    "a,b",
    "a]b",
    "key",
    "phoenix:group",
    "\"phoenix:group\"",
    "é",
    "a\tb",
    "#",
];

#[test]
fn every_tricky_scalar_in_every_slot_agrees() {
    let mut fast = 0;
    let mut total = 0;
    for tricky in TRICKY_SCALARS.iter().chain(TRICKY_KEYS) {
        for slot in 0..ORDINARY.len() {
            let mut values: Vec<String> = ORDINARY.iter().map(|v| v.to_string()).collect();
            values[slot] = tricky.to_string();
            for flow_tags in [false, true] {
                total += 1;
                if check_all(&spec_with(&values, flow_tags)) {
                    fast += 1;
                }
            }
        }
    }
    // The property is only worth something if the fast path reads many of these.
    assert!(fast * 3 > total, "fast path read {fast} of {total}");
}

/// Keys, some of them tricky.
const TRICKY_KEYS: &[&str] = &[
    "a",
    "b",
    "app",
    "port",
    "name",
    "\"quoted\"",
    "'single'",
    "8080",
    "true",
    "null",
    "~",
    "yes",
    "0755",
    "1_0",
    "phoenix:group",
    "a b",
    "<<",
    "? x",
    "-x",
    "_x",
    "/x",
    "x.y",
    "owner-email",
    "a",
    "\"a\"",
];

fn scalar() -> impl Strategy<Value = String> {
    prop::sample::select(TRICKY_SCALARS).prop_map(str::to_string)
}

fn key() -> impl Strategy<Value = String> {
    prop::sample::select(TRICKY_KEYS).prop_map(str::to_string)
}

/// A random YAML value rendered as text: block or flow, nested a little.
#[derive(Debug, Clone)]
enum Tree {
    Scalar(String),
    Seq(Vec<Tree>),
    Map(Vec<(String, Tree)>),
}

fn tree() -> impl Strategy<Value = Tree> {
    scalar()
        .prop_map(Tree::Scalar)
        .prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Tree::Seq),
                prop::collection::vec((key(), inner), 0..4).prop_map(Tree::Map),
            ]
        })
}

fn flow(tree: &Tree) -> String {
    match tree {
        Tree::Scalar(s) => s.clone(),
        Tree::Seq(items) => format!(
            "[{}]",
            items.iter().map(flow).collect::<Vec<_>>().join(", ")
        ),
        Tree::Map(entries) => format!(
            "{{{}}}",
            entries
                .iter()
                .map(|(k, v)| format!("{k}: {}", flow(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Render as a block mapping entry value at `indent`, choosing flow for some nodes.
fn block(tree: &Tree, indent: usize, use_flow: &mut impl Iterator<Item = bool>) -> String {
    let pad = " ".repeat(indent);
    match tree {
        Tree::Scalar(s) => format!(" {s}\n"),
        _ if use_flow.next().unwrap_or(false) => format!(" {}\n", flow(tree)),
        Tree::Seq(items) => {
            let mut out = String::from("\n");
            for item in items {
                let mut line = block(item, indent + 2, use_flow);
                if line.starts_with('\n') {
                    line = format!("\n{pad}  - {}", line.trim_start());
                    out.push_str(line.trim_start_matches('\n'));
                    out.push('\n');
                } else {
                    out.push_str(&format!("{pad}-{line}"));
                }
            }
            out
        }
        Tree::Map(entries) => {
            let mut out = String::from("\n");
            for (k, v) in entries {
                out.push_str(&format!("{pad}{k}:{}", block(v, indent + 2, use_flow)));
            }
            out
        }
    }
}

fn document(entries: &[(String, Tree)], flows: &[bool], comments: bool) -> String {
    let mut use_flow = flows.iter().copied().cycle();
    let mut out = String::new();
    if comments {
        out.push_str("# a comment\n");
    }
    for (k, v) in entries {
        out.push_str(&format!("{k}:{}", block(v, 2, &mut use_flow)));
        if comments {
            out.push_str("  # trailing\n");
        }
    }
    out
}

/// Valid values for the slots of [`spec_with`], in slot order.
const ORDINARY: [&str; 20] = [
    "web",
    "8080",
    "k",
    "v",
    "web",
    "storefront",
    "aws-prod",
    "3",
    "ami-1",
    "t3.micro",
    "subnet-a",
    "subnet-b",
    "sg-1",
    "ops",
    "x",
    "1",
    "30s",
    "8080",
    "/h",
    "false",
];

/// A spec in the shape of the design's example with random values in every slot
/// (slot order: four tag slots, then the fields from top to bottom).
fn spec_with(values: &[String], flow_tags: bool) -> String {
    let v = |i: usize| values[i % values.len()].as_str();
    let tags = if flow_tags {
        format!(
            "    tags: {{app: {}, port: {}, {}: {}}}\n",
            v(0),
            v(1),
            v(2),
            v(3)
        )
    } else {
        format!(
            "    tags:\n      app: {}\n      port: {}\n      {}: {}\n",
            v(0),
            v(1),
            v(2),
            v(3)
        )
    };
    format!(
        "apiVersion: phoenix/v1\nkind: InstanceGroup\nmetadata:\n  name: {}\n  labels: {{team: {}}}\nspec:\n  provider: {}\n  replicas: {}\n  template:\n    image: {}\n    instanceType: {}\n    subnetIds: [{}, {}]\n    securityGroupIds:\n    - {}\n    keyName: {}\n    userData: {}\n{tags}  rollout:\n    maxSurge: {}\n    bake: {}\n  health:\n    http: {{port: {}, path: {}}}\n  suspend: {}\n",
        v(4),
        v(5),
        v(6),
        v(7),
        v(8),
        v(9),
        v(10),
        v(11),
        v(12),
        v(13),
        v(14),
        v(15),
        v(16),
        v(17),
        v(18),
        v(19),
    )
}

/// One random edit: insert, delete or replace a character at `at`.
fn mutate(text: &str, at: usize, op: u8, ch: char) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    let at = at % (chars.len() + 1);
    match op % 3 {
        0 => chars.insert(at, ch),
        1 if at < chars.len() => {
            chars.remove(at);
        }
        _ if at < chars.len() => chars[at] = ch,
        _ => chars.push(ch),
    }
    chars.into_iter().collect()
}

fn yaml_char() -> impl Strategy<Value = char> {
    prop::sample::select(
        &[
            ' ', ' ', '\n', ':', '-', '#', '\'', '"', '[', ']', '{', '}', ',', '&', '*', '!', '|',
            '>', '?', '%', '@', '\\', '\t', '\r', '0', 'a', '.', '~', 'é',
        ][..],
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_documents_agree(
        entries in prop::collection::vec((key(), tree()), 1..5),
        flows in prop::collection::vec(any::<bool>(), 1..6),
        comments in any::<bool>(),
    ) {
        check_all(&document(&entries, &flows, comments));
    }

    #[test]
    fn random_specs_agree(
        values in prop::collection::vec(scalar(), 20),
        plain in prop::collection::vec(any::<bool>(), 20),
        flow_tags in any::<bool>(),
    ) {
        // Mostly ordinary words, with tricky scalars in a few random slots.
        let values: Vec<String> = values
            .iter()
            .zip(&plain)
            .enumerate()
            .map(|(i, (v, keep))| if *keep { ORDINARY[i].to_string() } else { v.clone() })
            .collect();
        check_all(&spec_with(&values, flow_tags));
    }

    #[test]
    fn mutated_specs_agree(
        i in 0usize..1000,
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), yaml_char()), 1..4),
    ) {
        let mut text = crate::spec_gen::spec(i);
        for (at, op, ch) in edits {
            text = mutate(&text, at, op, ch);
        }
        check_all(&text);
    }

    #[test]
    fn mutated_base_documents_agree(
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), yaml_char()), 1..3),
    ) {
        let mut text = BASE.to_string();
        for (at, op, ch) in edits {
            text = mutate(&text, at, op, ch);
        }
        check_all(&text);
    }
}
