//! How domain values are encoded in columns: parameter lists and argv as JSON text.

use oneoff_core::StoredParam;
use serde_json::{json, Value};

use crate::StoreError;

pub fn encode_params(params: &[(String, StoredParam)]) -> String {
    let items: Vec<Value> = params
        .iter()
        .map(|(name, value)| match value {
            StoredParam::Text(text) => json!({ "name": name, "text": text }),
            StoredParam::Integer(number) => json!({ "name": name, "integer": number }),
            StoredParam::Boolean(flag) => json!({ "name": name, "boolean": flag }),
            StoredParam::Redacted => json!({ "name": name, "redacted": true }),
        })
        .collect();
    Value::Array(items).to_string()
}

pub fn decode_params(text: &str) -> Result<Vec<(String, StoredParam)>, StoreError> {
    let corrupt = || StoreError::Corrupt(format!("params column: {text}"));
    let items: Vec<Value> = serde_json::from_str(text).map_err(|_| corrupt())?;
    items
        .into_iter()
        .map(|item| {
            let name = item.get("name").and_then(Value::as_str).ok_or_else(corrupt)?.to_string();
            let value = if let Some(text) = item.get("text").and_then(Value::as_str) {
                StoredParam::Text(text.to_string())
            } else if let Some(number) = item.get("integer").and_then(Value::as_i64) {
                StoredParam::Integer(number)
            } else if let Some(flag) = item.get("boolean").and_then(Value::as_bool) {
                StoredParam::Boolean(flag)
            } else if item.get("redacted").is_some() {
                StoredParam::Redacted
            } else {
                return Err(corrupt());
            };
            Ok((name, value))
        })
        .collect()
}

pub fn encode_argv(argv: &[String]) -> String {
    Value::from(argv.to_vec()).to_string()
}

pub fn decode_argv(text: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text).map_err(|_| StoreError::Corrupt(format!("argv column: {text}")))
}
