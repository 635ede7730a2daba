//! The pull-request comment `phoenix plan --format markdown` prints (issue 21, item 1):
//! snapshots of the rendering for a mixed fleet and for one in sync, and a check that text
//! coming from the fleet cannot break the comment's table or inject HTML.

#![allow(clippy::unwrap_used)]

use crate::planner_support::*;
use phoenix_core::markdown::{MARKER, render_markdown};
use phoenix_core::model::InstanceHealth;

#[test]
fn markdown_comment_for_a_mixed_fleet() {
    let web = group("web", 3, "");
    let api = group("api", 2, "  approval: manual");
    let db = group("db", 1, "");
    let observed = vec![
        old("i-w1", &web),
        old("i-w2", &web),
        cur("i-w3", &web).health(InstanceHealth::Unhealthy),
        cur("i-a1", &api).itype("t3.large"),
        cur("i-d1", &db),
        inst("i-gone", "legacy", "v1:sha256:00"),
    ];
    let outcome = run(&Pass::default(), &[web, api, db], &[inventory(observed)]);
    let text = render_markdown(&outcome.document);
    assert!(text.starts_with(MARKER), "{text}");
    insta::assert_snapshot!("markdown_mixed", text);
}

#[test]
fn markdown_comment_for_a_fleet_in_sync() {
    let web = group("web", 2, "");
    let observed = vec![cur("i-1", &web), cur("i-2", &web)];
    let outcome = run(&Pass::default(), &[web], &[inventory(observed)]);
    insta::assert_snapshot!("markdown_in_sync", render_markdown(&outcome.document));
}

#[test]
fn hostile_fleet_text_cannot_break_the_table_or_add_html() {
    let web = group("web", 1, "");
    let observed = vec![cur("i-1|<b>x</b>", &web).itype("t3|<img src=x>\nnew row")];
    let outcome = run(&Pass::default(), &[web], &[inventory(observed)]);
    let text = render_markdown(&outcome.document);
    // Outside code spans (where markdown shows `<` literally) no HTML but our own tags.
    for l in text.lines() {
        let outside: String = l.split('`').step_by(2).collect();
        let own = [
            "<!-- phoenix-plan -->",
            "<details>",
            "<summary>",
            "<code>",
            "</code>",
            "</summary>",
            "</details>",
        ];
        let rest = own.iter().fold(outside, |s, tag| s.replace(tag, ""));
        assert!(!rest.contains('<'), "HTML outside a code span: {l}");
    }
    for row in text.lines().filter(|l| l.starts_with("| modified")) {
        // A drift row has exactly the table's seven pipes.
        assert_eq!(row.matches('|').count(), 7, "{row}");
    }
    assert!(text.lines().any(|l| l.starts_with("| modified")), "{text}");
}
