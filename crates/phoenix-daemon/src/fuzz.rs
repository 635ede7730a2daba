//! The body of the `plan_document` fuzz target (issue 17): the decoder of the stored
//! plan documents (`plans.doc`, `steps.detail`), fed any bytes as the database column
//! could hold them (written by another version, edited by hand, damaged). Run by `fuzz/`
//! under libFuzzer and by `tests/it/fuzz_bodies.rs` on stable.

use crate::executor::doc::{PlanDoc, PruneDoc, StepDetail, step_summary};

/// Target `plan_document`: no panic whatever the text; a document that decodes is
/// written back and decodes to the same value (what the executor stores it reads).
pub fn plan_document(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(value) = serde_json::from_str::<serde_json::Value>(text) else {
        return;
    };
    if let Ok(doc) = serde_json::from_value::<PlanDoc>(value.clone()) {
        let written = serde_json::to_value(&doc).expect("a plan document serializes");
        let back: PlanDoc = serde_json::from_value(written).expect("what is written is read");
        assert_eq!(back, doc, "a plan document round-trips");
    }
    if let Ok(doc) = serde_json::from_value::<PruneDoc>(value.clone()) {
        let written = serde_json::to_value(&doc).expect("a prune document serializes");
        serde_json::from_value::<PruneDoc>(written).expect("what is written is read");
    }
    if let Ok(detail) = serde_json::from_value::<StepDetail>(value.clone()) {
        let written = serde_json::to_value(&detail).expect("a step detail serializes");
        serde_json::from_value::<StepDetail>(written).expect("what is written is read");
    }
    let _ = step_summary(&value);
}
