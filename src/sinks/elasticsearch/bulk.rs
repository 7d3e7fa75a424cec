//! The `_bulk` request of a batch and the reading of its answer, item by item.
//!
//! Each alert is a `create` action with `_id` = the alert's uuid, so that a document sent twice
//! (a retry after a lost answer, a restart) is refused as a version conflict (409), which counts
//! as delivered: the index holds each alert once. The document is the alert's Falco JSON plus
//! `@timestamp` (the alert's time; data streams need it).

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::alert::{Alert, format_time};

/// The NDJSON body of a `_bulk` request: an action line and a document line per alert.
pub fn body(alerts: &[&Alert], index: impl Fn(&Alert) -> String) -> Vec<u8> {
    let mut out = Vec::new();
    for a in alerts {
        let action = json!({"create": {"_index": index(a), "_id": a.uuid.to_string()}});
        let mut doc = Map::new();
        doc.insert("@timestamp".into(), Value::String(format_time(&a.time)));
        if let Ok(Value::Object(fields)) = serde_json::to_value(a) {
            doc.extend(fields);
        }
        // Serializing maps of JSON values cannot fail.
        out.extend(serde_json::to_vec(&action).unwrap_or_default());
        out.push(b'\n');
        out.extend(serde_json::to_vec(&doc).unwrap_or_default());
        out.push(b'\n');
    }
    out
}

/// The outcome of one item of a `_bulk` answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ItemOutcome {
    /// Indexed now, or already there (a version conflict on `create`).
    Indexed,
    /// A passing failure (429 rejected execution, 5xx, 408): send this item again.
    Retry(String),
    /// Refused for good (a mapping conflict, a bad document).
    Refused(String),
}

#[derive(Deserialize)]
struct Response {
    #[serde(default)]
    items: Vec<Map<String, Value>>,
}

fn reason(item: &Value) -> String {
    let e = &item["error"];
    match (e["type"].as_str(), e["reason"].as_str()) {
        (Some(t), Some(r)) => format!("{t}: {r}"),
        (Some(t), None) => t.to_string(),
        _ => e.to_string(),
    }
}

/// The outcome of each item of a `_bulk` answer, in request order; an answer that does not
/// hold exactly `n` items is an error (the request as a whole is retried).
pub fn outcomes(answer: &[u8], n: usize) -> Result<Vec<ItemOutcome>, String> {
    let r: Response =
        serde_json::from_slice(answer).map_err(|e| format!("unreadable _bulk answer: {e}"))?;
    if r.items.len() != n {
        return Err(format!(
            "_bulk answered {} items for {n} documents",
            r.items.len()
        ));
    }
    Ok(r.items
        .iter()
        .map(|item| {
            let Some(item) = item.values().next() else {
                return ItemOutcome::Retry("empty item in the _bulk answer".into());
            };
            let status = item["status"].as_u64().unwrap_or(0);
            match status {
                200..=299 | 409 => ItemOutcome::Indexed,
                408 | 429 | 500..=599 => {
                    ItemOutcome::Retry(format!("HTTP {status}: {}", reason(item)))
                }
                _ => ItemOutcome::Refused(format!("HTTP {status}: {}", reason(item))),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_are_judged_one_by_one() {
        let answer = br#"{"took":3,"errors":true,"items":[
            {"create":{"_index":"i","_id":"a","status":201,"result":"created"}},
            {"create":{"_index":"i","_id":"b","status":409,"error":{"type":"version_conflict_engine_exception","reason":"exists"}}},
            {"create":{"_index":"i","_id":"c","status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}},
            {"create":{"_index":"i","_id":"d","status":400,"error":{"type":"mapper_parsing_exception","reason":"bad field"}}}]}"#;
        let o = outcomes(answer, 4).unwrap();
        assert_eq!(o[0], ItemOutcome::Indexed);
        assert_eq!(o[1], ItemOutcome::Indexed);
        assert!(
            matches!(&o[2], ItemOutcome::Retry(r) if r.contains("es_rejected_execution_exception"))
        );
        assert!(
            matches!(&o[3], ItemOutcome::Refused(r) if r.contains("mapper_parsing_exception: bad field"))
        );
        assert!(outcomes(answer, 3).is_err());
        assert!(outcomes(b"<html>", 1).is_err());
    }
}
