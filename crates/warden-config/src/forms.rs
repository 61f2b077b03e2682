//! Values proxy.yaml accepts in more than one spelling.
//!
//! Hand-written visitors instead of `#[serde(untagged)]`: an untagged enum can only say
//! "data did not match any variant", while these name the accepted forms, and list items
//! keep their index in the error path.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::Deserialize;
use serde::de::value::{MapAccessDeserializer, StrDeserializer};
use serde::de::{self, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor};

/// One value or a list of them; a list means "any of".
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OneOrMany<T>(pub Vec<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(OneOrManyVisitor(PhantomData))
    }
}

struct OneOrManyVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for OneOrManyVisitor<T> {
    type Value = OneOrMany<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("one value or a list of values")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(OneOrMany(items))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        T::deserialize(StrDeserializer::<E>::new(v)).map(|v| OneOrMany(vec![v]))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        T::deserialize(v.into_deserializer()).map(|v| OneOrMany(vec![v]))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        T::deserialize(v.into_deserializer()).map(|v| OneOrMany(vec![v]))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        T::deserialize(v.into_deserializer()).map(|v| OneOrMany(vec![v]))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        T::deserialize(v.into_deserializer()).map(|v| OneOrMany(vec![v]))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map)).map(|v| OneOrMany(vec![v]))
    }
}

impl<T: JsonSchema> JsonSchema for OneOrMany<T> {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        format!("OneOrMany_{}", T::schema_name()).into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let one = generator.subschema_for::<T>();
        json_schema!({
            "anyOf": [
                one,
                { "type": "array", "items": one, "minItems": 1 }
            ]
        })
    }
}

/// Inclusive ranges, as written; bounds are checked by validation so that every bad range
/// is reported, not just the first.
pub(crate) type Ranges = Vec<(i64, i64)>;

/// `status`: `503`, `"500-599"`, `"404"`, `{from: 500, to: 599}` or a list of those.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StatusSpec(pub Ranges);

/// `jsonrpc_error`: `-32603`, `{from: -32099, to: -32000}` or a list of those.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CodeSpec(pub Ranges);

impl<'de> Deserialize<'de> for StatusSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(RangesVisitor::STATUS)
            .map(StatusSpec)
    }
}

impl<'de> Deserialize<'de> for CodeSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(RangesVisitor::JSONRPC)
            .map(CodeSpec)
    }
}

#[derive(Clone, Copy)]
struct RangesVisitor {
    /// Whether `"500-599"` is accepted (status codes are positive, so the dash is
    /// unambiguous; JSON-RPC codes are negative, so it is not).
    strings: bool,
    /// Inside a list, another list is not accepted.
    in_list: bool,
    forms: &'static str,
}

impl RangesVisitor {
    const STATUS: RangesVisitor = RangesVisitor {
        strings: true,
        in_list: false,
        forms: "a status code (503), a range string (\"500-599\"), {from, to} or a list of those",
    };
    const JSONRPC: RangesVisitor = RangesVisitor {
        strings: false,
        in_list: false,
        forms: "a JSON-RPC error code (-32603), {from, to} or a list of those",
    };

    fn whole<E: de::Error>(n: i128) -> Result<i64, E> {
        i64::try_from(n).map_err(|_| E::custom(format!("{n} is out of range")))
    }
}

impl<'de> Visitor<'de> for RangesVisitor {
    type Value = Ranges;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.forms)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Ranges, E> {
        Ok(vec![(v, v)])
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Ranges, E> {
        let v = Self::whole(v.into())?;
        Ok(vec![(v, v)])
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Ranges, E> {
        Err(E::custom(format!("{v} is not a whole number")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Ranges, E> {
        if !self.strings {
            return Err(E::invalid_type(de::Unexpected::Str(v), &self));
        }
        let bad = || E::custom(format!("`{v}` is not a status or a range like \"500-599\""));
        let number = |s: &str| -> Result<i64, E> {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            s.parse().map_err(|_| bad())
        };
        let (from, to) = match v.split_once('-') {
            Some((from, to)) => (number(from.trim())?, number(to.trim())?),
            None => {
                let n = number(v.trim())?;
                (n, n)
            }
        };
        Ok(vec![(from, to)])
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Ranges, A::Error> {
        let range = FromTo::deserialize(MapAccessDeserializer::new(map))?;
        Ok(vec![(range.from, range.to)])
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Ranges, A::Error> {
        if self.in_list {
            return Err(de::Error::invalid_type(de::Unexpected::Seq, &self));
        }
        let item = RangesVisitor {
            in_list: true,
            ..self
        };
        let mut out = Vec::new();
        while let Some(ranges) = seq.next_element_seed(item)? {
            out.extend(ranges);
        }
        Ok(out)
    }
}

impl<'de> de::DeserializeSeed<'de> for RangesVisitor {
    type Value = Ranges;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Ranges, D::Error> {
        deserializer.deserialize_any(self)
    }
}

/// An inclusive range written as a mapping.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FromTo {
    from: i64,
    to: i64,
}

impl JsonSchema for StatusSpec {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "StatusSpec".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let item = json_schema!({
            "anyOf": [
                { "type": "integer", "minimum": 100, "maximum": 599 },
                { "type": "string", "pattern": "^[1-5][0-9]{2}(-[1-5][0-9]{2})?$" },
                {
                    "type": "object",
                    "properties": {
                        "from": { "type": "integer", "minimum": 100, "maximum": 599 },
                        "to": { "type": "integer", "minimum": 100, "maximum": 599 }
                    },
                    "required": ["from", "to"],
                    "additionalProperties": false
                }
            ]
        });
        json_schema!({
            "description": "HTTP status: 503, \"500-599\", {from: 500, to: 599} or a list of those (any of).",
            "anyOf": [item, { "type": "array", "items": item, "minItems": 1 }]
        })
    }
}

impl JsonSchema for CodeSpec {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "CodeSpec".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let item = json_schema!({
            "anyOf": [
                { "type": "integer" },
                {
                    "type": "object",
                    "properties": { "from": { "type": "integer" }, "to": { "type": "integer" } },
                    "required": ["from", "to"],
                    "additionalProperties": false
                }
            ]
        });
        json_schema!({
            "description": "JSON-RPC error code: -32603, {from: -32099, to: -32000} or a list of those (any of).",
            "anyOf": [item, { "type": "array", "items": item, "minItems": 1 }]
        })
    }
}

/// A duration as written (`100ms`, `2s`, `5m`, `1h`); parsed by validation so that every
/// bad one is reported.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DurationStr(pub String);

impl<'de> Deserialize<'de> for DurationStr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DurationVisitor)
    }
}

struct DurationVisitor;

/// A bare number is kept as text so validation reports it ("`5` has no unit") along with
/// every other problem, instead of failing the whole section here.
impl Visitor<'_> for DurationVisitor {
    type Value = DurationStr;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as 100ms, 2s or 5m")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<DurationStr, E> {
        Ok(DurationStr(v.to_owned()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<DurationStr, E> {
        Ok(DurationStr(v.to_string()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<DurationStr, E> {
        Ok(DurationStr(v.to_string()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<DurationStr, E> {
        Ok(DurationStr(v.to_string()))
    }
}

impl JsonSchema for DurationStr {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^[0-9]+(ms|s|m|h)$",
            "examples": ["100ms", "2s", "5m"]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn status(v: serde_json::Value) -> Result<Ranges, String> {
        StatusSpec::deserialize(&v)
            .map(|s| s.0)
            .map_err(|e| e.to_string())
    }

    fn code(v: serde_json::Value) -> Result<Ranges, String> {
        CodeSpec::deserialize(&v)
            .map(|s| s.0)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn status_forms() {
        assert_eq!(status(json!(503)), Ok(vec![(503, 503)]));
        assert_eq!(status(json!("500-511")), Ok(vec![(500, 511)]));
        assert_eq!(status(json!("404")), Ok(vec![(404, 404)]));
        assert_eq!(
            status(json!({"from": 500, "to": 599})),
            Ok(vec![(500, 599)])
        );
        assert_eq!(
            status(json!([404, "500-502", {"from": 429, "to": 429}])),
            Ok(vec![(404, 404), (500, 502), (429, 429)])
        );
        assert_eq!(status(json!([])), Ok(vec![]));
        // Bounds are validation's business.
        assert_eq!(status(json!("599-500")), Ok(vec![(599, 500)]));
    }

    #[test]
    fn status_rejects_other_shapes() {
        for bad in [
            json!("5xx"),
            json!("500-"),
            json!("-500"),
            json!(""),
            json!(5.5),
            json!(true),
            json!([[500]]),
            json!({"from": 500}),
            json!({"from": 500, "to": 599, "step": 1}),
            json!(null),
        ] {
            assert!(status(bad.clone()).is_err(), "{bad}");
        }
        assert!(status(json!("5xx")).unwrap_err().contains("\"500-599\""));
    }

    #[test]
    fn jsonrpc_forms() {
        assert_eq!(code(json!(-32603)), Ok(vec![(-32603, -32603)]));
        assert_eq!(
            code(json!({"from": -32099, "to": -32000})),
            Ok(vec![(-32099, -32000)])
        );
        assert_eq!(code(json!([-1, 2])), Ok(vec![(-1, -1), (2, 2)]));
        assert!(code(json!("-32603")).is_err());
    }

    #[test]
    fn one_or_many() {
        let one: OneOrMany<String> = OneOrMany::deserialize(&json!("GET")).unwrap();
        assert_eq!(one.0, ["GET"]);
        let many: OneOrMany<String> = OneOrMany::deserialize(&json!(["GET", "POST"])).unwrap();
        assert_eq!(many.0, ["GET", "POST"]);
        assert!(OneOrMany::<String>::deserialize(&json!(1)).is_err());
    }

    #[test]
    fn durations_keep_numbers_as_text_for_validation() {
        assert_eq!(
            DurationStr::deserialize(&json!("2s")).unwrap(),
            DurationStr("2s".into())
        );
        assert_eq!(
            DurationStr::deserialize(&json!(2)).unwrap(),
            DurationStr("2".into())
        );
        assert!(DurationStr::deserialize(&json!([1])).is_err());
    }
}
