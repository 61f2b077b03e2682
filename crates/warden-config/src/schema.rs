//! The JSON Schema of proxy.yaml, generated from the raw input types so it cannot drift
//! from what the loader accepts.

use schemars::generate::SchemaSettings;

use crate::raw::RawConfig;

/// The JSON Schema for proxy.yaml, pretty-printed with a trailing newline (the content of
/// `schema/proxy.schema.json`).
///
/// Draft-07, not schemars' default 2020-12: the YAML language server behind the VS Code and
/// other editors' YAML support validates draft-07, the point of shipping a schema at all.
pub fn json_schema() -> String {
    let schema = SchemaSettings::draft07()
        .into_generator()
        .into_root_schema_for::<RawConfig>();
    let mut text = serde_json::to_string_pretty(&schema)
        .expect("a schema is a JSON value with string keys, which always serializes");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys;
    use crate::raw::{RawConfig, RawConnection, RawPolicy};
    use serde_json::Value;

    fn property_names(schema: &Value) -> Vec<String> {
        schema["properties"]
            .as_object()
            .expect("object with properties")
            .keys()
            .cloned()
            .collect()
    }

    fn sorted(keys: &[&str]) -> Vec<String> {
        let mut keys: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
        keys.sort();
        keys
    }

    /// `decode` walks these containers itself, against the keys serde reads from the raw
    /// types; schemars reads the same types but its own attributes, so the two must agree.
    #[test]
    fn walked_key_lists_match_the_schema() {
        let schema: Value = serde_json::from_str(&json_schema()).unwrap();
        let mut root = property_names(&schema);
        root.sort();
        assert_eq!(root, sorted(keys::of::<RawConfig>()));
        let mut conn = property_names(&schema["definitions"]["Connection"]);
        conn.sort();
        assert_eq!(conn, sorted(keys::of::<RawConnection>()));
        let mut policy = property_names(&schema["definitions"]["Policy"]);
        policy.sort();
        assert_eq!(policy, sorted(keys::of::<RawPolicy>()));
    }

    /// Descriptions are doc comments, which cannot name a constant: the bounds they state
    /// ("at most 10", "1 to 63 characters") must be the ones `bounds` puts in the schema.
    #[test]
    fn descriptions_state_the_schema_bounds() {
        fn number_after<'a>(text: &'a str, phrase: &str) -> Option<&'a str> {
            let rest = &text[text.find(phrase)? + phrase.len()..];
            let digits = rest.split(|c: char| !c.is_ascii_digit()).next()?;
            (!digits.is_empty()).then_some(digits)
        }
        fn walk(value: &Value, path: &str, checked: &mut usize) {
            match value {
                Value::Object(map) => {
                    if let Some(Value::String(description)) = map.get("description") {
                        for (phrase, key) in [("at most ", "maximum"), ("at least ", "minimum")] {
                            if let Some(n) = number_after(description, phrase) {
                                assert_eq!(map[key].to_string(), n, "{path}: {description}");
                                *checked += 1;
                            }
                        }
                        if let Some(n) = number_after(description, "1 to ") {
                            let pattern = map["pattern"].as_str().unwrap_or_default();
                            assert!(pattern.contains(&format!("{{1,{n}}}")), "{path}");
                            *checked += 1;
                        }
                    }
                    for (key, child) in map {
                        walk(child, &format!("{path}.{key}"), checked);
                    }
                }
                Value::Array(items) => items.iter().for_each(|v| walk(v, path, checked)),
                _ => {}
            }
        }
        let schema: Value = serde_json::from_str(&json_schema()).unwrap();
        let mut checked = 0;
        walk(&schema, "", &mut checked);
        // events_per_connection, max_attempts, max_header_bytes, connection name.
        assert_eq!(checked, 4);
    }

    #[test]
    fn is_draft07_and_closed() {
        let schema: Value = serde_json::from_str(&json_schema()).unwrap();
        assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
        assert_eq!(schema["additionalProperties"], false);
        assert_eq!(
            schema["required"],
            serde_json::json!(["version", "connections"])
        );
    }

    /// The whole example also decodes in one piece as `RawConfig`, so the hand-walked
    /// decoding and the schema's types agree on a real file.
    #[test]
    fn example_decodes_as_the_schema_type() {
        let source =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../proxy.yaml"))
                .unwrap();
        let mut diags = crate::diag::Diags::default();
        let doc = crate::located::parse(&source, &mut diags).unwrap();
        let raw: Result<RawConfig, _> = serde_path_to_error::deserialize(&doc.value);
        if let Err(err) = raw {
            panic!("{}: {}", err.path(), err.inner());
        }
    }
}
