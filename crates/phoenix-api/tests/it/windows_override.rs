//! `POST /api/v1/windows/override` (design section 14, issue 21): the bearer token is
//! required, the body is checked field by field (400 naming the field, before the loop
//! hears of it), a valid request reaches the loop as a parsed command and its answer is
//! relayed as 202, and a loop that cannot record it answers 500.

use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use phoenix_api::*;
use serde_json::Value;

use crate::api::{TOKEN, assert_error, call, fixture, fixture_with, keys, within};

const PATH: &str = "/api/v1/windows/override";

fn request(token: Option<&str>, body: &str) -> Request<Body> {
    let mut builder = Request::post(PATH).header(header::CONTENT_TYPE, "application/json");
    if let Some(token) = token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    builder.body(Body::from(body.to_owned())).expect("request")
}

fn in_an_hour() -> String {
    phoenix_core::time::rfc3339(SystemTime::now() + Duration::from_secs(3600))
}

#[tokio::test]
async fn the_override_needs_the_token() {
    let mut f = fixture();
    let body = format!(r#"{{"until": "{}", "reason": "hotfix"}}"#, in_an_hour());
    for token in [None, Some("wrong")] {
        let (status, _, answer) = call(&f.router, request(token, &body)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}");
        assert_error(
            &serde_json::from_slice(&answer).expect("json"),
            "unauthorized",
        );
    }
    // Auth comes first: a bad body without the token is still 401.
    let (status, _, _) = call(&f.router, request(None, "{")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(f.commands.try_recv().is_err(), "nothing reached the loop");

    let f = fixture_with(ApiConfig::default(), 8, 16);
    let (status, _, answer) = call(&f.router, request(Some("anything"), &body)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_error(
        &serde_json::from_slice(&answer).expect("json"),
        "token_not_configured",
    );
}

#[tokio::test]
async fn every_bad_field_is_a_400_naming_it_and_nothing_reaches_the_loop() {
    let mut f = fixture();
    let past = phoenix_core::time::rfc3339(SystemTime::now() - Duration::from_secs(60));
    let far = phoenix_core::time::rfc3339(SystemTime::now() + Duration::from_secs(8 * 86_400));
    let soon = in_an_hour();
    let cases = [
        (r#"{"reason": "r"}"#.to_owned(), "invalid_field", "`until`"),
        (
            r#"{"until": "next friday", "reason": "r"}"#.to_owned(),
            "invalid_field",
            "`until`",
        ),
        (
            format!(r#"{{"until": "{past}", "reason": "r"}}"#),
            "invalid_field",
            "in the future",
        ),
        (
            format!(r#"{{"until": "{far}", "reason": "r"}}"#),
            "invalid_field",
            "7 days",
        ),
        (
            format!(r#"{{"until": "{soon}"}}"#),
            "invalid_field",
            "`reason`",
        ),
        (
            format!(r#"{{"until": "{soon}", "reason": "   "}}"#),
            "invalid_field",
            "`reason`",
        ),
        (
            format!(r#"{{"until": "{soon}", "reason": "r", "by": 7}}"#),
            "invalid_field",
            "`by`",
        ),
        (
            format!(r#"{{"until": "{soon}", "reason": "r", "group": "web"}}"#),
            "bad_request",
            "`group`",
        ),
        ("[1, 2]".to_owned(), "bad_request", "JSON object"),
        ("not json".to_owned(), "bad_request", "not JSON"),
    ];
    for (body, code, words) in cases {
        let (status, _, answer) = call(&f.router, request(Some(TOKEN), &body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let v: Value = serde_json::from_slice(&answer).expect("json");
        assert_error(&v, code);
        let message = v["error"]["message"].as_str().expect("a message");
        assert!(message.contains(words), "{body}: {message}");
    }
    assert!(f.commands.try_recv().is_err(), "nothing reached the loop");
}

#[tokio::test]
async fn a_valid_override_reaches_the_loop_and_its_record_is_answered_202() {
    let crate::api::Fixture {
        router,
        mut commands,
        ..
    } = fixture();
    let fake_loop = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(command) = commands.recv().await {
            match command {
                ApiCommand::WindowOverride { request, reply } if request.by == "fail" => {
                    let _ = reply.send(Err(WindowOverrideError::Store {
                        reason: "disk full".into(),
                    }));
                }
                ApiCommand::WindowOverride { request, reply } => {
                    let _ = reply.send(Ok(WindowOverrideAnswer {
                        id: 7,
                        until: request.until,
                        reason: request.reason.clone(),
                        by: request.by.clone(),
                        at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
                    }));
                    seen.push(request);
                }
                other => panic!("unexpected command {other:?}"),
            }
        }
        seen
    });
    let until = in_an_hour();
    let body = format!(r#"{{"until": "{until}", "reason": " hotfix CVE-1 ", "by": "alice"}}"#);
    let (status, _, answer) = call(&router, request(Some(TOKEN), &body)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let v: Value = serde_json::from_slice(&answer).expect("json");
    assert_eq!(keys(&v), ["at", "by", "id", "reason", "until"]);
    assert_eq!(v["id"], 7);
    assert_eq!(v["until"], until.as_str());
    assert_eq!(v["reason"], "hotfix CVE-1");
    assert_eq!(v["by"], "alice");
    assert_eq!(v["at"], "2027-01-15T08:00:00Z");

    let failing = format!(r#"{{"until": "{until}", "reason": "r", "by": "fail"}}"#);
    let (status, _, answer) = call(&router, request(Some(TOKEN), &failing)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let v: Value = serde_json::from_slice(&answer).expect("json");
    assert_error(&v, "override_failed");
    assert!(
        v["error"]["message"]
            .as_str()
            .expect("message")
            .contains("disk full")
    );

    drop(router);
    let seen = within(fake_loop).await.expect("the fake loop ends");
    assert_eq!(seen.len(), 1);
    assert_eq!(phoenix_core::time::rfc3339(seen[0].until), until);
    assert_eq!(seen[0].reason, "hotfix CVE-1");
}
