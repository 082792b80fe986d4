//! The dashboard's "copy schema" text (TypeScript) and a JSON Schema for each kind, both made
//! from one field table so they cannot disagree with each other.

use serde_json::{Map, Value, json};

use super::EventKind;

/// The type of one payload field on the wire.
#[derive(Clone, Copy)]
enum FieldType {
    EventType,
    Text,
    NullableText,
    Amount,
    Currency,
    Timestamp,
}

const USER_AND_COURSE: [(&str, FieldType); 6] = [
    ("userId", FieldType::Text),
    ("userFullname", FieldType::Text),
    ("userEmail", FieldType::Text),
    ("userPhoneNumber", FieldType::NullableText),
    ("courseSlug", FieldType::Text),
    ("courseName", FieldType::Text),
];

const ORDER: [(&str, FieldType); 3] = [
    ("orderId", FieldType::Text),
    ("amountInSmallestUnit", FieldType::Amount),
    ("currency", FieldType::Currency),
];

/// The payload fields of `kind`, in wire order.
fn payload_fields(kind: EventKind) -> Vec<(&'static str, FieldType)> {
    let mut fields = vec![("eventType", FieldType::EventType)];
    fields.extend(USER_AND_COURSE);
    match kind {
        EventKind::FreeCourseEnrollment => {}
        EventKind::PaidCourseSale => fields.extend(ORDER),
        EventKind::PaymentFailed => {
            fields.extend(ORDER);
            fields.push(("failureReason", FieldType::NullableText));
        }
        EventKind::PaymentInitiatedNotCompleted => {
            fields.extend(ORDER);
            fields.push(("initiatedAtIsoString", FieldType::Timestamp));
        }
    }
    fields
}

impl EventKind {
    /// The TypeScript type name, such as `FermionWebhookEventPaidCourseSaleType`.
    pub fn typescript_type_name(self) -> String {
        let pascal: String = self
            .as_str()
            .split('-')
            .map(|word| {
                let mut chars = word.chars();
                chars.next().map_or_else(String::new, |first| {
                    first.to_ascii_uppercase().to_string() + chars.as_str()
                })
            })
            .collect();
        format!("FermionWebhookEvent{pascal}Type")
    }

    /// The TypeScript type of this kind's events, as the dashboard's "copy schema" button gives.
    ///
    /// ```
    /// use fermion_webhooks::EventKind;
    ///
    /// let ts = EventKind::FreeCourseEnrollment.typescript_schema();
    /// assert!(ts.starts_with("type FermionWebhookEventFreeCourseEnrollmentType = {"));
    /// assert!(ts.contains("  userPhoneNumber: string | null;"));
    /// ```
    pub fn typescript_schema(self) -> String {
        let mut text = format!(
            "type {} = {{\n  eventUniqueId: string;\n  timestampIsoString: string;\n  \
             isTestEvent: boolean;\n  payload: {{\n",
            self.typescript_type_name()
        );
        for (key, field_type) in payload_fields(self) {
            let ts_type = match field_type {
                FieldType::EventType => format!("'{}'", self.as_str()),
                FieldType::Text | FieldType::Currency | FieldType::Timestamp => "string".into(),
                FieldType::NullableText => "string | null".into(),
                FieldType::Amount => "number".into(),
            };
            text.push_str(&format!("    {key}: {ts_type};\n"));
        }
        text.push_str("  };\n};\n");
        text
    }

    /// A JSON Schema (draft 2020-12) for this kind's events.
    ///
    /// It describes the keys this crate emits, all required. It does not forbid extra keys, so
    /// an integrator validating incoming events with it keeps working when Fermion adds fields.
    pub fn json_schema(self) -> Value {
        let mut properties = Map::new();
        let mut required = Vec::new();
        for (key, field_type) in payload_fields(self) {
            let schema = match field_type {
                FieldType::EventType => json!({ "const": self.as_str() }),
                FieldType::Text => json!({ "type": "string" }),
                FieldType::NullableText => json!({ "type": ["string", "null"] }),
                FieldType::Amount => json!({
                    "type": "integer",
                    "minimum": 0,
                    "description": "Amount in the currency's smallest unit (paise for INR, cents for USD)."
                }),
                FieldType::Currency => json!({
                    "type": "string",
                    "pattern": "^[A-Z]{3}$",
                    "description": "ISO 4217 currency code, such as INR."
                }),
                FieldType::Timestamp => json!({ "type": "string", "format": "date-time" }),
            };
            properties.insert(key.to_owned(), schema);
            required.push(key);
        }
        json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": self.typescript_type_name(),
            "description": format!("Fermion webhook event: {}.", self.title()),
            "type": "object",
            "required": ["eventUniqueId", "timestampIsoString", "isTestEvent", "payload"],
            "properties": {
                "eventUniqueId": { "type": "string", "minLength": 1 },
                "timestampIsoString": { "type": "string", "format": "date-time" },
                "isTestEvent": { "type": "boolean" },
                "payload": {
                    "type": "object",
                    "required": required,
                    "properties": properties
                }
            }
        })
    }
}
