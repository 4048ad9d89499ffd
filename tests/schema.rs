//! The published contract checks itself: the schema file compiles, it
//! accepts the events the docs show and rejects broken ones, and the man
//! page documents every error kind the schema allows.

mod common;

use serde_json::{json, Value};

fn schema() -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(common::root().join("schema/event.schema.json")).unwrap(),
    )
    .unwrap()
}

fn is_valid(ev: &Value) -> bool {
    jsonschema::validator_for(&schema()).unwrap().is_valid(ev)
}

fn sample() -> Value {
    json!({"v":1,"type":"result","check":"web","probe":"http",
     "target":"https://example.org/","status":"down",
     "ts":"2026-11-23T20:10:53.123Z","duration_ms":231.4,
     "reason":"expected status 200-299, got 503",
     "error":{"layer":"protocol","kind":"status_mismatch"},
     "phases":{"dns_ms":1.2,"connect_ms":3.4,"tls_ms":20.1,"ttfb_ms":200.3},
     "assertions":[{"what":"status","expected":"200-299","actual":"503","ok":false}],
     "fingerprint":"sha256:0123456789abcdef0123456789abcdef","tags":{"team":"web"},"details":{}})
}

#[test]
fn the_documented_example_validates() {
    common::validate(&sample());
}

type Breaker = Box<dyn Fn(&mut Value)>;

#[test]
fn broken_events_are_rejected() {
    let breakers: Vec<(&str, Breaker)> = vec![
        ("wrong version", Box::new(|e| e["v"] = json!(2))),
        ("bad status", Box::new(|e| e["status"] = json!("sideways"))),
        (
            "local time",
            Box::new(|e| e["ts"] = json!("2026-11-23 20:10:53")),
        ),
        (
            "unknown http kind",
            Box::new(|e| e["error"]["kind"] = json!("no_such_kind")),
        ),
        (
            "bad layer",
            Box::new(|e| e["error"]["layer"] = json!("moon")),
        ),
        (
            "down without error",
            Box::new(|e| {
                e.as_object_mut().unwrap().remove("error");
            }),
        ),
        ("up with error", Box::new(|e| e["status"] = json!("up"))),
        (
            "negative phase",
            Box::new(|e| e["phases"]["dns_ms"] = json!(-1)),
        ),
        (
            "result without target",
            Box::new(|e| {
                e.as_object_mut().unwrap().remove("target");
            }),
        ),
        ("tag not a string", Box::new(|e| e["tags"]["n"] = json!(1))),
    ];
    for (what, f) in breakers {
        let mut ev = sample();
        f(&mut ev);
        assert!(!is_valid(&ev), "schema accepted an event with {what}: {ev}");
    }
}

#[test]
fn the_man_page_lists_every_error_kind_in_the_schema() {
    let page = std::fs::read_to_string(common::root().join("man/pup-events.7")).unwrap();
    let s = schema();
    for (name, def) in s["$defs"].as_object().unwrap() {
        if !name.ends_with("_kinds") {
            continue;
        }
        for kind in def["enum"].as_array().unwrap() {
            let k = kind.as_str().unwrap();
            // roff escapes '_' nowhere, so the word appears as is.
            assert!(
                page.contains(&format!(".B {k}")) || page.contains(&format!("\\fB{k}\\fR")),
                "man/pup-events.7 does not document {name} kind {k}"
            );
        }
    }
}
