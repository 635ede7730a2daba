//! What an alert says ([`AlertNotice`]) and how each receiver type spells it: the
//! versioned webhook body of design section 9, a Slack incoming-webhook message and an
//! Alertmanager v2 alert list. Bodies are rendered once, when the alert is enqueued, and
//! stored in the outbox, so every retry sends the same bytes.

use std::time::{Duration, SystemTime};

use phoenix_core::config::AlertEvent;
use phoenix_core::time::rfc3339_millis;
use phoenix_core::{GroupName, SpecHash};
use phoenix_store::{DeliveryId, IncidentId};
use serde_json::{Value, json};

/// The version of the webhook body (`"version"`).
pub const WEBHOOK_BODY_VERSION: &str = "1";

/// One incident an alert is about: Alertmanager gets one alert per incident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentRef {
    /// The incident id.
    pub id: IncidentId,
    /// Its kind: a drift kind, `plan_failed`, `rollback` or `source_error`.
    pub kind: String,
    /// When it opened.
    pub opened_at: SystemTime,
    /// When it resolved, for alerts that resolve it.
    pub resolved_at: Option<SystemTime>,
    /// Its own one-line summary.
    pub message: String,
}

/// One notification, before it is rendered for a receiver. Returned by
/// [`super::Alerts::observe_drift`] so the loop can log or stream what was announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertNotice {
    /// The event.
    pub event: AlertEvent,
    /// The group, or `None` for source events.
    pub group: Option<GroupName>,
    /// The incidents it covers, primary first; empty for `plan_started` and a
    /// `plan_succeeded` that resolves nothing.
    pub incidents: Vec<IncidentRef>,
    /// The hash Git wants.
    pub desired_hash: Option<SpecHash>,
    /// The hashes observed on the group's instances.
    pub observed_hashes: Vec<SpecHash>,
    /// The commit (revision id).
    pub commit: Option<String>,
    /// A human summary covering every incident.
    pub message: String,
    /// When it happened.
    pub at: SystemTime,
}

impl AlertNotice {
    /// The primary incident's id (`incident_id` in the webhook body).
    pub fn incident_id(&self) -> Option<&IncidentId> {
        self.incidents.first().map(|i| &i.id)
    }

    /// The primary incident's kind when it is a drift kind (`drift_kind`).
    pub fn drift_kind(&self) -> Option<&str> {
        self.incidents
            .first()
            .map(|i| i.kind.as_str())
            .filter(|kind| super::is_drift_kind(kind))
    }

    fn resolves(&self) -> bool {
        matches!(
            self.event,
            AlertEvent::DriftResolved | AlertEvent::PlanSucceeded | AlertEvent::SourceRecovered
        )
    }
}

fn to_string(value: &Value) -> String {
    serde_json::to_string(value).expect("a serde_json::Value always serialises")
}

/// The `type: webhook` body (design section 9), with keys in the documented order.
pub fn webhook_body(notice: &AlertNotice, delivery_id: &DeliveryId) -> String {
    // serde_json's map keeps insertion order only with `preserve_order`; build the object
    // by hand so the documented order is the wire order whatever features are on.
    let fields: [(&str, Value); 11] = [
        ("version", json!(WEBHOOK_BODY_VERSION)),
        ("delivery_id", json!(delivery_id.as_str())),
        ("event", json!(notice.event.as_str())),
        (
            "incident_id",
            json!(notice.incident_id().map(IncidentId::as_str)),
        ),
        ("group", json!(notice.group.as_ref().map(GroupName::as_str))),
        ("drift_kind", json!(notice.drift_kind())),
        (
            "desired_hash",
            json!(notice.desired_hash.map(|h| h.to_string())),
        ),
        (
            "observed_hashes",
            json!(
                notice
                    .observed_hashes
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
            ),
        ),
        ("commit", json!(notice.commit)),
        ("message", json!(notice.message)),
        ("timestamp", json!(rfc3339_millis(notice.at))),
    ];
    let mut body = String::from("{");
    for (i, (key, value)) in fields.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&to_string(&json!(key)));
        body.push(':');
        body.push_str(&to_string(value));
    }
    body.push('}');
    body
}

fn summary(notice: &AlertNotice, owner: &str) -> String {
    let subject = match &notice.group {
        Some(group) => format!("group `{group}`"),
        None => "the desired-state source".to_string(),
    };
    let what = match notice.event {
        AlertEvent::DriftDetected => "diverged from Git",
        AlertEvent::DriftResolved => "is back in sync with Git",
        AlertEvent::PlanStarted => "plan started",
        AlertEvent::PlanSucceeded => "plan succeeded",
        AlertEvent::PlanFailed => "plan FAILED",
        AlertEvent::Rollback => "rolled back",
        AlertEvent::SourceError => "has an error",
        AlertEvent::SourceRecovered => "recovered",
        AlertEvent::PolicyViolation => "names an image that breaks policy.images",
        AlertEvent::WindowOverride => {
            return format!("[{owner}] every change window is lifted by an operator's override");
        }
    };
    format!("[{owner}] {subject} {what}")
}

/// A Slack incoming-webhook message: `text` (the fallback and notification line) and
/// `blocks` (headline, summary, and a context line with incident, commit and hash).
pub fn slack_body(notice: &AlertNotice, owner: &str) -> String {
    let icon = if notice.resolves() {
        ":white_check_mark:"
    } else if notice.event == AlertEvent::PlanStarted {
        ":arrows_counterclockwise:"
    } else {
        ":rotating_light:"
    };
    let headline = format!("{icon} {}", summary(notice, owner));
    let mut context = vec![format!("event `{}`", notice.event.as_str())];
    if let Some(id) = notice.incident_id() {
        context.push(format!("incident `{id}`"));
    }
    if let Some(commit) = &notice.commit {
        context.push(format!("commit `{}`", short(commit)));
    }
    if let Some(hash) = &notice.desired_hash {
        context.push(format!("desired `{}`", hash.short()));
    }
    context.push(rfc3339_millis(notice.at));
    let body = json!({
        "text": headline,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": format!("*{headline}*\n{}", notice.message)}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": context.join(" · ")}]},
        ],
    });
    to_string(&body)
}

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

/// Settings of the Alertmanager rendering.
#[derive(Debug, Clone)]
pub struct AlertmanagerStyle<'a> {
    /// The daemon's `owner` (label `owner`).
    pub owner: &'a str,
    /// Base URL of this Phoenix's API, for `generatorURL`.
    pub external_url: Option<&'a str>,
    /// How far ahead `endsAt` is set on a firing alert; Phoenix re-sends open incidents
    /// well before it passes.
    pub firing_ttl: Duration,
}

fn alertname(kind: &str) -> &'static str {
    match kind {
        super::KIND_PLAN_FAILED => "PhoenixPlanFailed",
        super::KIND_ROLLBACK => "PhoenixRollback",
        super::KIND_SOURCE_ERROR => "PhoenixSourceError",
        _ => "PhoenixDrift",
    }
}

/// The Alertmanager `POST /api/v2/alerts` body: one alert per incident the notice
/// covers, `endsAt` = the resolve time for resolving events. `None` for notices about no
/// incident (`plan_started`, a `plan_succeeded` that resolves nothing): Alertmanager
/// tracks problems, not progress.
pub fn alertmanager_body(notice: &AlertNotice, style: &AlertmanagerStyle<'_>) -> Option<String> {
    if notice.incidents.is_empty() {
        return None;
    }
    let alerts: Vec<Value> = notice
        .incidents
        .iter()
        .map(|incident| {
            let mut labels = serde_json::Map::new();
            labels.insert("alertname".into(), json!(alertname(&incident.kind)));
            labels.insert("owner".into(), json!(style.owner));
            labels.insert("incident_id".into(), json!(incident.id.as_str()));
            labels.insert("kind".into(), json!(incident.kind));
            labels.insert("severity".into(), json!("warning"));
            if let Some(group) = &notice.group {
                labels.insert("group".into(), json!(group.as_str()));
            }
            if super::is_drift_kind(&incident.kind) {
                labels.insert("drift_kind".into(), json!(incident.kind));
            }
            let ends_at = match incident.resolved_at {
                Some(resolved) if notice.resolves() => resolved,
                _ => notice.at + style.firing_ttl,
            };
            let mut annotations = serde_json::Map::new();
            annotations.insert("summary".into(), json!(summary(notice, style.owner)));
            annotations.insert("description".into(), json!(incident.message));
            if let Some(commit) = &notice.commit {
                annotations.insert("commit".into(), json!(commit));
            }
            if let Some(hash) = &notice.desired_hash {
                annotations.insert("desired_hash".into(), json!(hash.to_string()));
            }
            let mut alert = json!({
                "labels": labels,
                "annotations": annotations,
                "startsAt": rfc3339_millis(incident.opened_at),
                "endsAt": rfc3339_millis(ends_at),
            });
            if let (Some(base), Some(object)) = (style.external_url, alert.as_object_mut()) {
                let base = base.trim_end_matches('/');
                let url = match &notice.group {
                    Some(group) => format!("{base}/api/v1/groups/{group}"),
                    None => format!("{base}/api/v1/status"),
                };
                object.insert("generatorURL".into(), json!(url));
            }
            alert
        })
        .collect();
    Some(to_string(&Value::Array(alerts)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(event: AlertEvent) -> AlertNotice {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        AlertNotice {
            event,
            group: Some(GroupName::new("web").expect("valid name")),
            incidents: vec![IncidentRef {
                id: IncidentId::new("inc-1"),
                kind: "modified".into(),
                opened_at: at,
                resolved_at: (event == AlertEvent::DriftResolved).then_some(at),
                message: "modified: 1 instance".into(),
            }],
            desired_hash: Some(
                "v1:sha256:0000000000000000000000000000000000000000000000000000000000000001"
                    .parse()
                    .expect("valid hash"),
            ),
            observed_hashes: vec![],
            commit: Some("0123456789abcdef".into()),
            message: "group `web` diverged".into(),
            at,
        }
    }

    #[test]
    fn webhook_body_has_the_documented_fields_in_order() {
        let body = webhook_body(
            &notice(AlertEvent::DriftDetected),
            &DeliveryId::new("inc-1:drift_detected:ops"),
        );
        assert_eq!(
            body,
            r#"{"version":"1","delivery_id":"inc-1:drift_detected:ops","event":"drift_detected","incident_id":"inc-1","group":"web","drift_kind":"modified","desired_hash":"v1:sha256:0000000000000000000000000000000000000000000000000000000000000001","observed_hashes":[],"commit":"0123456789abcdef","message":"group `web` diverged","timestamp":"2027-01-15T08:00:00.000Z"}"#
        );
    }

    #[test]
    fn alertmanager_resolve_sets_ends_at_to_the_resolve_time() {
        let style = AlertmanagerStyle {
            owner: "acme",
            external_url: Some("http://phoenix:8080/"),
            firing_ttl: Duration::from_secs(3600),
        };
        let firing: Value = serde_json::from_str(
            &alertmanager_body(&notice(AlertEvent::DriftDetected), &style).expect("an alert"),
        )
        .expect("json");
        assert_eq!(firing[0]["labels"]["alertname"], "PhoenixDrift");
        assert_eq!(firing[0]["labels"]["drift_kind"], "modified");
        assert_eq!(firing[0]["endsAt"], "2027-01-15T09:00:00.000Z");
        assert_eq!(
            firing[0]["generatorURL"],
            "http://phoenix:8080/api/v1/groups/web"
        );
        let resolved: Value = serde_json::from_str(
            &alertmanager_body(&notice(AlertEvent::DriftResolved), &style).expect("an alert"),
        )
        .expect("json");
        assert_eq!(resolved[0]["endsAt"], "2027-01-15T08:00:00.000Z");
    }

    #[test]
    fn alertmanager_skips_notices_without_incident() {
        let mut started = notice(AlertEvent::PlanStarted);
        started.incidents.clear();
        let style = AlertmanagerStyle {
            owner: "acme",
            external_url: None,
            firing_ttl: Duration::from_secs(60),
        };
        assert_eq!(alertmanager_body(&started, &style), None);
    }

    #[test]
    fn slack_message_has_text_and_blocks() {
        let body: Value =
            serde_json::from_str(&slack_body(&notice(AlertEvent::DriftDetected), "acme"))
                .expect("json");
        let text = body["text"].as_str().expect("text");
        assert!(
            text.contains("[acme] group `web` diverged from Git"),
            "{text}"
        );
        assert_eq!(body["blocks"].as_array().map(Vec::len), Some(2));
    }
}
