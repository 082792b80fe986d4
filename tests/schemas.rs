//! The "copy schema" TypeScript text and the JSON Schemas describe what the crate really emits.

use std::collections::BTreeMap;

use fermion_webhooks::{EventKind, EventPayload, WebhookEvent};
use serde_json::{Value, json};

/// Reads the `key: type;` lines of one of our TypeScript types into (path, type) pairs.
fn typescript_fields(typescript: &str) -> BTreeMap<String, String> {
    let mut fields = BTreeMap::new();
    let mut prefix = String::new();
    for line in typescript.lines().skip(1) {
        let line = line.trim();
        if let Some(object) = line.strip_suffix(": {") {
            prefix = format!("{object}.");
        } else if let Some((key, ts_type)) = line.split_once(": ") {
            let ts_type = ts_type.strip_suffix(';').expect("every field ends with ;");
            fields.insert(format!("{prefix}{key}"), ts_type.to_owned());
        }
    }
    fields
}

/// Whether `value` is of the TypeScript type `ts_type` (the few forms our types use).
fn satisfies(value: &Value, ts_type: &str) -> bool {
    ts_type.split(" | ").any(|alternative| match alternative {
        "string" => value.is_string(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        literal if literal.starts_with('\'') => value.as_str() == Some(literal.trim_matches('\'')),
        other => panic!("unexpected TypeScript type {other}"),
    })
}

fn flatten(value: &Value) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for (key, field) in value.as_object().unwrap() {
        if key == "payload" {
            for (inner, v) in field.as_object().unwrap() {
                out.insert(format!("payload.{inner}"), v.clone());
            }
        } else {
            out.insert(key.clone(), field.clone());
        }
    }
    out
}

#[test]
fn free_course_enrollment_schema_is_the_one_from_fermions_documentation() {
    // Copied from Fermion's "Using Webhooks" page (indentation normalised).
    let documented = "type FermionWebhookEventFreeCourseEnrollmentType = {
  eventUniqueId: string;
  timestampIsoString: string;
  isTestEvent: boolean;
  payload: {
    eventType: 'free-course-enrollment';
    userId: string;
    userFullname: string;
    userEmail: string;
    userPhoneNumber: string | null;
    courseSlug: string;
    courseName: string;
  };
};
";
    assert_eq!(
        EventKind::FreeCourseEnrollment.typescript_schema(),
        documented
    );
}

#[test]
fn samples_have_exactly_the_fields_of_their_typescript_type() {
    for kind in EventKind::ALL {
        let typescript = kind.typescript_schema();
        assert!(typescript.starts_with(&format!("type {} = {{", kind.typescript_type_name())));
        let fields = typescript_fields(&typescript);
        for test in [false, true] {
            let event = if test {
                WebhookEvent::test(EventPayload::sample(kind))
            } else {
                WebhookEvent::new(EventPayload::sample(kind))
            };
            let sample = flatten(&serde_json::from_str(&event.to_json()).unwrap());
            assert_eq!(
                sample.keys().collect::<Vec<_>>(),
                fields.keys().collect::<Vec<_>>(),
                "{kind}: sample keys vs TypeScript keys"
            );
            for (path, ts_type) in &fields {
                assert!(
                    satisfies(&sample[path], ts_type),
                    "{kind}: {path} is not {ts_type}"
                );
            }
        }
    }
}

#[test]
fn the_typescript_types_describe_each_kinds_own_fields() {
    let fields = |kind: EventKind| typescript_fields(&kind.typescript_schema());
    assert_eq!(fields(EventKind::FreeCourseEnrollment).len(), 10);
    assert_eq!(
        fields(EventKind::PaidCourseSale)["payload.amountInSmallestUnit"],
        "number"
    );
    assert_eq!(
        fields(EventKind::PaymentFailed)["payload.failureReason"],
        "string | null"
    );
    assert_eq!(
        fields(EventKind::PaymentInitiatedNotCompleted)["payload.initiatedAtIsoString"],
        "string"
    );
    assert_eq!(
        fields(EventKind::PaymentInitiatedNotCompleted)["payload.eventType"],
        "'payment-initiated-not-completed'"
    );
}

/// A way to break a valid event.
type Breakage = Box<dyn Fn(&mut Value)>;

fn compile(kind: EventKind) -> (boon::Schemas, boon::SchemaIndex) {
    let mut schemas = boon::Schemas::new();
    let mut compiler = boon::Compiler::new();
    compiler.enable_format_assertions();
    let location = format!("file:///fermion/{kind}.schema.json");
    compiler
        .add_resource(&location, kind.json_schema())
        .unwrap();
    let index = compiler
        .compile(&location, &mut schemas)
        .unwrap_or_else(|e| panic!("{kind}: the JSON Schema does not compile: {e:#}"));
    (schemas, index)
}

#[test]
fn samples_satisfy_their_json_schema() {
    for kind in EventKind::ALL {
        let (schemas, index) = compile(kind);
        for event in [
            WebhookEvent::new(EventPayload::sample(kind)),
            WebhookEvent::test(EventPayload::sample(kind)),
        ] {
            let instance: Value = serde_json::from_str(&event.to_json()).unwrap();
            if let Err(error) = schemas.validate(&instance, index) {
                panic!("{kind}: sample fails its schema: {error:#}");
            }
        }
    }
}

#[test]
fn json_schemas_reject_events_that_break_the_contract() {
    for kind in EventKind::ALL {
        let (schemas, index) = compile(kind);
        let good: Value =
            serde_json::from_str(&WebhookEvent::new(EventPayload::sample(kind)).to_json()).unwrap();
        let mut breakages: Vec<(&str, Breakage)> = vec![
            (
                "missing userEmail",
                Box::new(|v| {
                    v["payload"].as_object_mut().unwrap().remove("userEmail");
                }),
            ),
            (
                "numeric userId",
                Box::new(|v| v["payload"]["userId"] = json!(7)),
            ),
            (
                "string isTestEvent",
                Box::new(|v| v["isTestEvent"] = json!("false")),
            ),
            (
                "bad timestamp",
                Box::new(|v| v["timestampIsoString"] = json!("yesterday")),
            ),
            (
                "another kind",
                Box::new(|v| v["payload"]["eventType"] = json!("lab-started")),
            ),
        ];
        if kind != EventKind::FreeCourseEnrollment {
            breakages.push((
                "fractional amount",
                Box::new(|v| v["payload"]["amountInSmallestUnit"] = json!(10.5)),
            ));
            breakages.push((
                "negative amount",
                Box::new(|v| v["payload"]["amountInSmallestUnit"] = json!(-1)),
            ));
            breakages.push((
                "lower-case currency",
                Box::new(|v| v["payload"]["currency"] = json!("inr")),
            ));
        }
        for (what, breakage) in breakages {
            let mut broken = good.clone();
            breakage(&mut broken);
            assert!(
                schemas.validate(&broken, index).is_err(),
                "{kind}: schema accepted {what}"
            );
        }
    }
}
