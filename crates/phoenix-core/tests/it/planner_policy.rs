//! Issue 18: the planner with `policy.images` verdicts. A group whose image breaks the
//! policy gets the `policy_violation` finding (field `image`, the rule in `observed`)
//! and no plan, without using the termination budget, while the rest of the fleet is
//! planned as usual; an image that could not be checked is not launched either.

use crate::planner_support::*;
use phoenix_core::drift::{DriftKind, Field};
use phoenix_core::plan::{GroupStatus, Step};
use phoenix_core::policy::{ImageVerdicts, Verdict, Violation};

fn verdicts(entries: &[(&str, Verdict)]) -> ImageVerdicts {
    let mut verdicts = ImageVerdicts::enforced();
    for (image, verdict) in entries {
        verdicts.insert(PROVIDER, image, verdict.clone());
    }
    verdicts
}

#[test]
fn a_violating_group_gets_a_finding_and_no_plan_while_the_rest_proceeds() {
    let web = group_with_image("web", 3, "ami-untagged", "");
    let db = group_with_image("db", 1, "ami-golden", "");
    let violation = Violation::Tag {
        key: "source-commit".into(),
        value: None,
        pattern: "*".into(),
    };
    let mut pass = Pass {
        images: verdicts(&[
            ("ami-untagged", Verdict::Denied(violation.clone())),
            ("ami-golden", Verdict::Allowed),
        ]),
        ..Pass::default()
    };
    // One termination per pass: the blocked group must not take it.
    pass.config.max_replacements = 1;
    let observed = vec![
        old("i-w1", &web),
        old("i-w2", &web),
        old("i-w3", &web),
        old("i-d1", &db),
    ];
    let outcome = run(&pass, &[web, db], &[inventory(observed)]);
    let groups = &outcome.document.groups;
    let db = groups.iter().find(|g| g.name.as_str() == "db").expect("db");
    let web = groups
        .iter()
        .find(|g| g.name.as_str() == "web")
        .expect("web");

    assert_eq!(web.status, GroupStatus::Drifted);
    assert!(web.steps.is_empty(), "{:?}", web.steps);
    let finding = &web.drift[0];
    assert_eq!(finding.kind, DriftKind::PolicyViolation);
    assert_eq!(finding.field, Some(Field::Image));
    assert_eq!(finding.expected.as_deref(), Some("ami-untagged"));
    assert_eq!(
        finding.observed.as_deref(),
        Some(violation.to_string().as_str())
    );
    assert!(
        web.notes.iter().any(|n| n.contains("require_tags")),
        "{:?}",
        web.notes
    );

    assert_eq!(db.status, GroupStatus::Planned);
    assert!(
        matches!(db.steps.first(), Some(Step::Launch { count: 1 })),
        "{:?}",
        db.steps
    );
    assert!(
        db.drift
            .iter()
            .all(|f| f.kind != DriftKind::PolicyViolation)
    );
    assert_eq!(outcome.document.budget.used, 1);
}

#[test]
fn an_image_that_could_not_be_checked_is_not_launched() {
    let web = group_with_image("web", 2, "ami-x", "");
    let pass = Pass {
        images: verdicts(&[("ami-x", Verdict::Unknown("DescribeImages timed out".into()))]),
        ..Pass::default()
    };
    let outcome = run(&pass, std::slice::from_ref(&web), &[inventory(vec![])]);
    let report = &outcome.document.groups[0];
    assert!(report.steps.is_empty());
    assert!(
        report
            .drift
            .iter()
            .all(|f| f.kind != DriftKind::PolicyViolation)
    );
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("DescribeImages timed out"))
    );
    // An image missing from the verdicts entirely is treated the same way.
    let pass = Pass {
        images: ImageVerdicts::enforced(),
        ..Pass::default()
    };
    let outcome = run(&pass, &[web], &[inventory(vec![])]);
    assert!(outcome.document.groups[0].steps.is_empty());
}

#[test]
fn without_a_policy_nothing_changes() {
    let web = group_with_image("web", 2, "ami-anything", "");
    let outcome = run(&Pass::default(), &[web], &[inventory(vec![])]);
    assert!(matches!(
        outcome.document.groups[0].steps.first(),
        Some(Step::Launch { count: 2 })
    ));
}
