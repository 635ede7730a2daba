//! The canonical spec hash (issue 2): presentation never changes it, values always do.
//!
//! Property tests render one random template in many YAML styles (key order, flow or
//! block, quoting, comments, indentation, anchors) and check every rendering hashes the
//! same, and that changing any single template leaf changes the hash.

use std::collections::BTreeMap;

use phoenix_core::{SpecHash, parse_group};
use proptest::prelude::*;

/// A template leaf value as the property tests generate it.
#[derive(Debug, Clone, PartialEq)]
enum Scalar {
    Str(String),
    Int(i64),
    Bool(bool),
}

#[derive(Debug, Clone)]
struct Model {
    name: String,
    image: String,
    instance_type: String,
    subnets: Vec<String>,
    sgs: Vec<String>,
    key_name: Option<String>,
    user_data: Option<String>,
    tags: BTreeMap<String, Scalar>,
    // Unhashed fields, varied to show they never matter.
    replicas: u32,
    suspend: bool,
    label: String,
}

/// How to render one document.
#[derive(Debug, Clone)]
struct Style {
    flow: bool,
    reverse_keys: bool,
    double_quote: bool,
    comments: bool,
    indent: usize,
    anchors: bool,
}

fn ident() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,10}[a-z0-9]"
}

fn text() -> impl Strategy<Value = String> {
    // Printable text including characters that need quoting in YAML.
    "[ -~]{0,20}"
}

fn scalar() -> impl Strategy<Value = Scalar> {
    prop_oneof![
        text().prop_map(Scalar::Str),
        any::<i32>().prop_map(|i| Scalar::Int(i64::from(i))),
        any::<bool>().prop_map(Scalar::Bool),
    ]
}

fn model() -> impl Strategy<Value = Model> {
    (
        (
            ident(),
            ident(),
            ident(),
            prop::collection::vec(ident(), 0..3),
            prop::collection::vec(ident(), 0..3),
        ),
        (
            prop::option::of(ident()),
            prop::option::of(text()),
            prop::collection::btree_map("[a-z]{1,8}", scalar(), 0..4),
        ),
        (0u32..100, any::<bool>(), ident()),
    )
        .prop_map(
            |(
                (name, image, instance_type, subnets, sgs),
                (key_name, user_data, tags),
                (replicas, suspend, label),
            )| Model {
                name,
                image,
                instance_type,
                subnets,
                sgs,
                key_name,
                user_data,
                tags,
                replicas,
                suspend,
                label,
            },
        )
}

fn style() -> impl Strategy<Value = Style> {
    (
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        2usize..5,
        any::<bool>(),
    )
        .prop_map(
            |(flow, reverse_keys, double_quote, comments, indent, anchors)| Style {
                flow,
                reverse_keys,
                double_quote,
                comments,
                indent,
                anchors,
            },
        )
}

/// Quote a string so YAML reads it back as exactly that string.
fn quote(s: &str, double: bool) -> String {
    if double {
        serde_json::to_string(s).expect("strings serialize")
    } else {
        format!("'{}'", s.replace('\'', "''"))
    }
}

fn render_scalar(v: &Scalar, style: &Style) -> String {
    match v {
        Scalar::Str(s) => quote(s, style.double_quote),
        Scalar::Int(i) => i.to_string(),
        Scalar::Bool(b) => b.to_string(),
    }
}

fn render_list(items: &[String], style: &Style, pad: &str) -> String {
    if style.flow || items.is_empty() {
        let inner: Vec<_> = items.iter().map(|s| quote(s, style.double_quote)).collect();
        format!(" [{}]", inner.join(", "))
    } else {
        items
            .iter()
            .map(|s| format!("\n{pad}- {}", quote(s, style.double_quote)))
            .collect()
    }
}

fn render(m: &Model, style: &Style) -> String {
    let i1 = " ".repeat(style.indent);
    let i2 = i1.repeat(2);
    let i3 = i1.repeat(3);
    let q = |s: &str| quote(s, style.double_quote);
    let mut template: Vec<String> = vec![
        format!("{i2}image: {}", q(&m.image)),
        format!("{i2}instanceType: {}", q(&m.instance_type)),
        format!("{i2}subnetIds:{}", render_list(&m.subnets, style, &i3)),
    ];
    if style.anchors && !m.sgs.is_empty() {
        // The list is anchored where it is defined; the tags below reuse nothing, but
        // anchors must never leak into the value.
        template.push(format!(
            "{i2}securityGroupIds: &sgs{}",
            render_list(&m.sgs, style, &i3)
        ));
    } else {
        template.push(format!(
            "{i2}securityGroupIds:{}",
            render_list(&m.sgs, style, &i3)
        ));
    }
    if let Some(k) = &m.key_name {
        template.push(format!("{i2}keyName: {}", q(k)));
    }
    if let Some(u) = &m.user_data {
        template.push(format!("{i2}userData: {}", q(u)));
    }
    let mut tags: Vec<String> = m
        .tags
        .iter()
        .map(|(k, v)| format!("{k}: {}", render_scalar(v, style)))
        .collect();
    if style.reverse_keys {
        template.reverse();
        tags.reverse();
    }
    if style.flow {
        template.push(format!("{i2}tags: {{{}}}", tags.join(", ")));
    } else if !tags.is_empty() {
        template.push(format!("{i2}tags:"));
        template.extend(tags.iter().map(|t| format!("{i3}{t}")));
    }
    let comment = if style.comments { "  # a comment" } else { "" };
    format!(
        "# leading comment\napiVersion: phoenix/v1\nkind: InstanceGroup{comment}\nmetadata:\n{i1}name: {}\n{i1}labels:\n{i2}team: {}\nspec:\n{i1}provider: p{comment}\n{i1}replicas: {}\n{i1}suspend: {}\n{i1}template:{comment}\n{}\n",
        q(&m.name),
        q(&m.label),
        m.replicas,
        m.suspend,
        template.join("\n")
    )
}

fn hash_of(text: &str) -> SpecHash {
    match parse_group(text) {
        Ok(parsed) => parsed.hash,
        Err(err) => panic!("rendered document must be valid: {err}\n---\n{text}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn presentation_never_changes_the_hash(m in model(), a in style(), b in style(), replicas in 0u32..50, label in ident()) {
        let mut other = m.clone();
        other.replicas = replicas;
        other.suspend = !m.suspend;
        other.label = label;
        prop_assert_eq!(hash_of(&render(&m, &a)), hash_of(&render(&other, &b)));
    }

    #[test]
    fn any_template_leaf_change_changes_the_hash(m in model(), s in style(), which in 0usize..7, fresh in ident()) {
        let mut changed = m.clone();
        match which {
            0 => changed.image = format!("{}x", m.image),
            1 => changed.instance_type = format!("{}x", m.instance_type),
            2 => changed.subnets.push(fresh),
            3 => changed.sgs.push(fresh),
            4 => changed.key_name = Some(format!("{}x", m.key_name.clone().unwrap_or_default())),
            5 => changed.user_data = Some(format!("{}x", m.user_data.clone().unwrap_or_default())),
            _ => { changed.tags.insert(format!("new{fresh}").chars().filter(char::is_ascii_lowercase).take(8).collect(), Scalar::Str(fresh)); }
        }
        prop_assert_ne!(hash_of(&render(&m, &s)), hash_of(&render(&changed, &s)));
    }

    #[test]
    fn renaming_the_group_changes_the_hash(m in model(), s in style()) {
        let mut renamed = m.clone();
        renamed.name = format!("{}0", m.name);
        prop_assert_ne!(hash_of(&render(&m, &s)), hash_of(&render(&renamed, &s)));
    }
}

const DOC: &str = "apiVersion: phoenix/v1\nkind: InstanceGroup\nmetadata:\n  name: web\nspec:\n  provider: p\n  replicas: 3\n  template:\n    image: ami-1\n    instanceType: t3.micro\n";

fn with_tags(tags: &str) -> SpecHash {
    hash_of(&format!("{DOC}    tags: {tags}\n"))
}

#[test]
fn integer_and_string_values_differ() {
    assert_ne!(with_tags("{port: 8080}"), with_tags("{port: \"8080\"}"));
}

#[test]
fn yaml_1_1_spellings_are_strings() {
    assert_eq!(with_tags("{flag: yes}"), with_tags("{flag: \"yes\"}"));
    assert_eq!(with_tags("{flag: on}"), with_tags("{flag: 'on'}"));
    assert_eq!(with_tags("{mode: 0755}"), with_tags("{mode: \"0755\"}"));
    assert_ne!(with_tags("{flag: true}"), with_tags("{flag: \"true\"}"));
}

#[test]
fn numbers_are_normalised() {
    assert_eq!(with_tags("{n: 0x10}"), with_tags("{n: 16}"));
    assert_eq!(with_tags("{n: 1.50}"), with_tags("{n: 1.5}"));
    assert_eq!(with_tags("{n: +7}"), with_tags("{n: 7}"));
}

#[test]
fn empty_collections_equal_absent_ones() {
    assert_eq!(with_tags("{}"), hash_of(DOC));
    assert_eq!(hash_of(&format!("{DOC}    subnetIds: []\n")), hash_of(DOC));
}

#[test]
fn unhashed_fields_never_change_the_hash() {
    let base = hash_of(DOC);
    let extra = "  rollout: {strategy: canary, maxSurge: 50%, bake: 1m, autoRollback: true}\n  health: {check: none, grace: 1s, deadline: 2s}\n  approval: manual\n  suspend: true\n";
    let changed = DOC
        .replace("replicas: 3", "replicas: 9")
        .replace("name: web", "name: web\n  labels: {a: b}");
    assert_eq!(hash_of(&format!("{changed}{extra}")), base);
}

#[test]
fn aliases_hash_like_the_values_they_stand_for() {
    let literal = hash_of(&format!(
        "{DOC}    subnetIds: [subnet-a]\n    securityGroupIds: [subnet-a]\n"
    ));
    let aliased = hash_of(&format!(
        "{DOC}    subnetIds: &s [subnet-a]\n    securityGroupIds: *s\n"
    ));
    assert_eq!(literal, aliased);
}

#[test]
fn known_vector_is_stable() {
    // Pinned so that an accidental change of the canonical form is caught: changing it
    // would replace every instance of every fleet. Computed from the canonical JSON
    // {"name":"web","template":{"image":"ami-1","instanceType":"t3.micro"}}.
    assert_eq!(
        phoenix_core::hash::canonical_json(
            "web",
            &parse_group(DOC).expect("valid").group.spec.template
        ),
        r#"{"name":"web","template":{"image":"ami-1","instanceType":"t3.micro"}}"#
    );
    let expected = {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(
            br#"{"name":"web","template":{"image":"ami-1","instanceType":"t3.micro"}}"#,
        );
        format!("v1:sha256:{}", hex::encode(digest))
    };
    assert_eq!(hash_of(DOC).to_string(), expected);
}
