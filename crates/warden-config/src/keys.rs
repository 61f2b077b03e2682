//! The keys a raw section accepts, read from its derived `Deserialize`.
//!
//! `decode` walks the document, a connection and `policy` itself (so one broken item does
//! not hide the rest), and so needs their key lists; reading them from the types means a
//! field added to `raw` is known to the walk and to the schema at once.

use serde::Deserialize;
use serde::de::value::Error;
use serde::de::{self, Deserializer, Visitor};
use serde::forward_to_deserialize_any;

/// The keys of struct `T`, in declaration order (the order "expected one of" lists them);
/// empty for a type that is not a struct.
pub(crate) fn of<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
    let mut keys: &'static [&'static str] = &[];
    // Always an error: the probe stops the derived code as soon as it names its fields.
    let _stopped = T::deserialize(Probe(&mut keys));
    keys
}

/// A deserializer that records the field list a derived struct asks for, and nothing else.
struct Probe<'a>(&'a mut &'static [&'static str]);

impl<'de> Deserializer<'de> for Probe<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Error> {
        Err(de::Error::custom("not a struct"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Error> {
        *self.0 = fields;
        Err(de::Error::custom("fields recorded"))
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    #[allow(dead_code, reason = "only its field list is read")]
    struct Sample {
        first: u8,
        #[serde(rename = "second_key")]
        second: Option<String>,
    }

    #[test]
    fn reads_declared_keys_in_order() {
        assert_eq!(of::<Sample>(), ["first", "second_key"]);
        assert!(of::<u64>().is_empty());
    }
}
