//! The serde layer of parsing: reads a JSON object's known keys into loosely typed slots.
//!
//! This step only fails on bytes that are not JSON; whether each slot holds the right type is
//! decided afterwards, once the event's kind is known.

use std::fmt;

use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// The envelope's keys, in wire order; `payload` must stay last (see [`Envelope`]).
pub(super) const ENVELOPE_KEYS: [&str; 4] = [
    "eventUniqueId",
    "timestampIsoString",
    "isTestEvent",
    "payload",
];

/// Every key a known payload can have, in wire order.
pub(crate) const PAYLOAD_KEYS: [&str; 12] = [
    "eventType",
    "userId",
    "userFullname",
    "userEmail",
    "userPhoneNumber",
    "courseSlug",
    "courseName",
    "orderId",
    "amountInSmallestUnit",
    "currency",
    "failureReason",
    "initiatedAtIsoString",
];

/// A JSON value read loosely: strings and numbers kept, nested values skipped.
pub(super) enum Scalar {
    Null,
    Bool(bool),
    Str(String),
    U64(u64),
    I64(i64),
    F64(f64),
    Array,
    Object,
}

impl Scalar {
    /// Describes the value for an error message, quoting at most a short prefix of strings.
    pub(super) fn describe(&self) -> String {
        match self {
            Scalar::Null => "null".to_owned(),
            Scalar::Bool(value) => value.to_string(),
            Scalar::Str(text) if text.chars().count() > 40 => {
                let prefix: String = text.chars().take(40).collect();
                format!("the string {prefix:?}…")
            }
            Scalar::Str(text) => format!("the string {text:?}"),
            Scalar::U64(value) => format!("the number {value}"),
            Scalar::I64(value) => format!("the number {value}"),
            Scalar::F64(value) => format!("the number {value}"),
            Scalar::Array => "an array".to_owned(),
            Scalar::Object => "an object".to_owned(),
        }
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Scalar, E> {
        Ok(Scalar::Null)
    }
    fn visit_none<E>(self) -> Result<Scalar, E> {
        Ok(Scalar::Null)
    }
    fn visit_bool<E>(self, value: bool) -> Result<Scalar, E> {
        Ok(Scalar::Bool(value))
    }
    fn visit_u64<E>(self, value: u64) -> Result<Scalar, E> {
        Ok(Scalar::U64(value))
    }
    fn visit_i64<E>(self, value: i64) -> Result<Scalar, E> {
        Ok(u64::try_from(value).map_or(Scalar::I64(value), Scalar::U64))
    }
    fn visit_f64<E>(self, value: f64) -> Result<Scalar, E> {
        Ok(Scalar::F64(value))
    }
    fn visit_str<E>(self, value: &str) -> Result<Scalar, E> {
        Ok(Scalar::Str(value.to_owned()))
    }
    fn visit_string<E>(self, value: String) -> Result<Scalar, E> {
        Ok(Scalar::Str(value))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Array)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Object)
    }
}

/// A top-level value: the object we want, or a note of what came instead.
pub(super) enum TopLevel<T> {
    Object {
        fields: T,
        /// The index of the first key that appeared twice.
        duplicate: Option<usize>,
    },
    Other(&'static str),
}

/// The envelope's known keys, read loosely. The payload is read as `P`: loose slots for the
/// fast path, or raw text when an unknown payload must be kept verbatim.
pub(super) struct Envelope<P> {
    pub(super) slots: [Option<Scalar>; 3],
    pub(super) payload: Option<P>,
}

impl<P> Default for Envelope<P> {
    fn default() -> Self {
        Self {
            slots: Default::default(),
            payload: None,
        }
    }
}

/// The payload's known keys, read loosely.
pub(super) type PayloadSlots = TopLevel<[Option<Scalar>; 12]>;

/// How an object's known keys are read into slots.
pub(super) trait Slots: Default {
    /// The known keys; a slot's index is its key's index here.
    const KEYS: &'static [&'static str];
    /// Reads the value of key `index`; returns whether that key had been read before.
    fn read_value<'de, A: MapAccess<'de>>(
        &mut self,
        index: usize,
        map: &mut A,
    ) -> Result<bool, A::Error>;
}

impl<P: for<'de> Deserialize<'de>> Slots for Envelope<P> {
    const KEYS: &'static [&'static str] = &ENVELOPE_KEYS;
    fn read_value<'de, A: MapAccess<'de>>(
        &mut self,
        index: usize,
        map: &mut A,
    ) -> Result<bool, A::Error> {
        Ok(match self.slots.get_mut(index) {
            Some(slot) => slot.replace(map.next_value()?).is_some(),
            None => self.payload.replace(map.next_value()?).is_some(),
        })
    }
}

impl Slots for [Option<Scalar>; 12] {
    const KEYS: &'static [&'static str] = &PAYLOAD_KEYS;
    fn read_value<'de, A: MapAccess<'de>>(
        &mut self,
        index: usize,
        map: &mut A,
    ) -> Result<bool, A::Error> {
        Ok(self[index].replace(map.next_value()?).is_some())
    }
}

impl<'de, T: Slots> Deserialize<'de> for TopLevel<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TopLevelVisitor(std::marker::PhantomData))
    }
}

struct TopLevelVisitor<T>(std::marker::PhantomData<T>);

impl<'de, T: Slots> Visitor<'de> for TopLevelVisitor<T> {
    type Value = TopLevel<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = T::default();
        let mut duplicate = None;
        while let Some(index) = map.next_key_seed(KeyIndex(T::KEYS))? {
            match index {
                Some(index) => {
                    if fields.read_value(index, &mut map)? {
                        duplicate.get_or_insert(index);
                    }
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(TopLevel::Object { fields, duplicate })
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(TopLevel::Other("an array"))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(TopLevel::Other("null"))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(TopLevel::Other("a boolean"))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(TopLevel::Other("a number"))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(TopLevel::Other("a number"))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(TopLevel::Other("a number"))
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(TopLevel::Other("a string"))
    }
}

/// Reads an object key as its index in a list of known keys, without allocating.
struct KeyIndex(&'static [&'static str]);

impl<'de> DeserializeSeed<'de> for KeyIndex {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyIndex {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_str<E>(self, key: &str) -> Result<Self::Value, E> {
        Ok(self.0.iter().position(|known| *known == key))
    }
}
