//! Taskwarrior 2.6 JSON (`task export` / `task import`) to and from taskchampion maps.
//!
//! Dates are `20261129T093000Z`; `tags` and `depends` are arrays (a comma-separated
//! `depends` string, as older versions wrote, is accepted); `annotations` are
//! `[{entry, description}]`; every other property is a UDA and round-trips unchanged.

use jiff::Timestamp;
use serde_json::{json, Map, Value};
use taskchampion::storage::TaskMap;
use uuid::Uuid;

use super::model::{self, Task, DATE_KEYS, UDA_PROGRESS, UDA_PROGRESS_DONE, UDA_PROGRESS_TOTAL};
use super::TaskError;

/// UDAs written as JSON numbers (Taskwarrior `numeric` UDAs and its own `imask`).
const NUMERIC_KEYS: &[&str] = &[UDA_PROGRESS, UDA_PROGRESS_DONE, UDA_PROGRESS_TOTAL, "imask"];

/// `20261129T093000Z`.
pub fn format_tw_date(t: Timestamp) -> String {
    t.strftime("%Y%m%dT%H%M%SZ").to_string()
}

/// Parse `20261129T093000Z`.
pub fn parse_tw_date(s: &str) -> Option<Timestamp> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let dt = jiff::fmt::strtime::parse("%Y%m%dT%H%M%SZ", s)
        .ok()?
        .to_datetime()
        .ok()?;
    dt.to_zoned(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp())
}

/// One task as `task export` writes it (`id` is the working-set number, 0 when not pending).
pub fn export_task(task: &Task, map: &TaskMap, id: usize) -> Value {
    let mut o = Map::new();
    o.insert("id".into(), json!(id));
    o.insert("description".into(), json!(task.description));
    for key in DATE_KEYS {
        if let Some(t) = model::get_time(map, key) {
            o.insert((*key).into(), json!(format_tw_date(t)));
        }
    }
    // Taskwarrior 2.6 writes a waiting task as `pending` with its `wait`; so do we.
    let status = map.get("status").map_or("pending", String::as_str);
    o.insert("status".into(), json!(status));
    o.insert("uuid".into(), json!(task.uuid.to_string()));
    if let Some(p) = &task.project {
        o.insert("project".into(), json!(p));
    }
    if let Some(p) = map.get("priority").filter(|p| !p.is_empty()) {
        o.insert("priority".into(), json!(p));
    }
    if !task.tags.is_empty() {
        o.insert("tags".into(), json!(task.tags));
    }
    if !task.depends.is_empty() {
        let d: Vec<String> = task.depends.iter().map(Uuid::to_string).collect();
        o.insert("depends".into(), json!(d));
    }
    if !task.annotations.is_empty() {
        let a: Vec<Value> = task
            .annotations
            .iter()
            .map(|a| json!({"entry": format_tw_date(a.entry), "description": a.description}))
            .collect();
        o.insert("annotations".into(), Value::Array(a));
    }
    for (k, v) in map {
        if model::is_known_key(k)
            && !matches!(
                k.as_str(),
                UDA_PROGRESS | UDA_PROGRESS_DONE | UDA_PROGRESS_TOTAL
            )
        {
            continue;
        }
        let val = if NUMERIC_KEYS.contains(&k.as_str()) {
            v.parse::<i64>()
                .map(Value::from)
                .or_else(|_| v.parse::<f64>().map(Value::from))
                .unwrap_or_else(|_| json!(v))
        } else {
            json!(v)
        };
        o.insert(k.clone(), val);
    }
    o.insert("urgency".into(), json!((task.urgency * 1e4).round() / 1e4));
    Value::Object(o)
}

/// Split an import document into (line, task object): a JSON array (line = its 1-based
/// position) or one JSON object per line, as `task import` accepts.
pub fn split_import(text: &str) -> Result<Vec<(usize, Value)>, TaskError> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        let v: Value = serde_json::from_str(text).map_err(|e| TaskError::Import {
            line: e.line(),
            field: "document".into(),
            message: format!("not valid JSON: {e}"),
        })?;
        let arr = v.as_array().cloned().unwrap_or_default();
        return Ok(arr
            .into_iter()
            .enumerate()
            .map(|(i, t)| (i + 1, t))
            .collect());
    }
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let l = line.trim();
        if l.is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(l).map_err(|e| TaskError::Import {
            line: line_no,
            field: "line".into(),
            message: format!("not a JSON object: {e}"),
        })?;
        out.push((line_no, v));
    }
    Ok(out)
}

fn bad(line: usize, field: &str, message: impl Into<String>) -> TaskError {
    TaskError::Import {
        line,
        field: field.to_owned(),
        message: message.into(),
    }
}

/// One Taskwarrior JSON task into its UUID and taskchampion map; `line` names it in errors.
pub fn import_task(v: &Value, line: usize) -> Result<(Uuid, TaskMap), TaskError> {
    let obj = v
        .as_object()
        .ok_or_else(|| bad(line, "task", "must be a JSON object"))?;
    let uuid = obj
        .get("uuid")
        .ok_or_else(|| bad(line, "uuid", "is required"))?
        .as_str()
        .and_then(|s| Uuid::parse_str(s).ok())
        .ok_or_else(|| bad(line, "uuid", "must be a UUID string"))?;
    let mut map = TaskMap::new();
    let string = |k: &str, v: &Value| -> Result<String, TaskError> {
        v.as_str()
            .map(str::to_owned)
            .ok_or_else(|| bad(line, k, "must be a string"))
    };
    for (k, val) in obj {
        match k.as_str() {
            "uuid" | "id" | "urgency" => {}
            "description" => {
                let d = string(k, val)?;
                if d.trim().is_empty() {
                    return Err(bad(line, k, "must not be empty"));
                }
                map.insert(k.clone(), d);
            }
            "status" => {
                let s = string(k, val)?;
                let s = match s.as_str() {
                    "pending" | "waiting" => "pending",
                    "completed" | "deleted" | "recurring" => s.as_str(),
                    other => {
                        return Err(bad(
                            line,
                            k,
                            format!(
                            "{other:?} is not pending, waiting, completed, deleted or recurring"
                        ),
                        ))
                    }
                };
                map.insert(k.clone(), s.to_owned());
            }
            key if DATE_KEYS.contains(&key) => {
                let s = string(k, val)?;
                let t = parse_tw_date(&s)
                    .or_else(|| model::parse_time(&s))
                    .ok_or_else(|| {
                        bad(
                            line,
                            k,
                            format!("{s:?} is not a date like 20261129T093000Z"),
                        )
                    })?;
                map.insert(k.clone(), t.as_second().to_string());
            }
            "tags" => {
                let arr = val
                    .as_array()
                    .ok_or_else(|| bad(line, k, "must be an array of strings"))?;
                for t in arr {
                    let t = t
                        .as_str()
                        .filter(|t| model::valid_tag(t))
                        .ok_or_else(|| bad(line, k, format!("{t} is not a valid tag")))?;
                    map.insert(format!("tag_{t}"), String::new());
                }
            }
            "depends" => {
                let items: Vec<String> = match val {
                    Value::String(s) => s.split(',').map(|x| x.trim().to_owned()).collect(),
                    Value::Array(a) => a
                        .iter()
                        .map(|x| x.as_str().map(str::to_owned))
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| bad(line, k, "must be an array of UUID strings"))?,
                    _ => return Err(bad(line, k, "must be an array of UUIDs")),
                };
                for d in items.iter().filter(|d| !d.is_empty()) {
                    let u = Uuid::parse_str(d)
                        .map_err(|_| bad(line, k, format!("{d:?} is not a UUID")))?;
                    map.insert(format!("dep_{u}"), String::new());
                }
            }
            "annotations" => {
                let arr = val
                    .as_array()
                    .ok_or_else(|| bad(line, k, "must be an array of {entry, description}"))?;
                for (i, a) in arr.iter().enumerate() {
                    let f = format!("annotations[{i}]");
                    let entry = a
                        .get("entry")
                        .and_then(Value::as_str)
                        .and_then(|s| parse_tw_date(s).or_else(|| model::parse_time(s)))
                        .ok_or_else(|| {
                            bad(
                                line,
                                &format!("{f}.entry"),
                                "must be a date like 20261129T093000Z",
                            )
                        })?;
                    let d = a
                        .get("description")
                        .and_then(Value::as_str)
                        .ok_or_else(|| {
                            bad(line, &format!("{f}.description"), "must be a string")
                        })?;
                    let mut at = entry.as_second();
                    while map.contains_key(&format!("annotation_{at}")) {
                        at += 1;
                    }
                    map.insert(format!("annotation_{at}"), d.to_owned());
                }
            }
            "priority" | "project" => {
                let s = string(k, val)?;
                if !s.is_empty() {
                    map.insert(k.clone(), s);
                }
            }
            _ => {
                if k.starts_with("tag_") || k.starts_with("dep_") || k.starts_with("annotation_") {
                    return Err(bad(line, k, "is not a Taskwarrior property"));
                }
                let s = match val {
                    Value::String(s) => s.clone(),
                    // Taskwarrior writes numeric UDAs it imported as `5.000000`.
                    Value::Number(n) => match n.as_f64() {
                        Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
                        _ => n.to_string(),
                    },
                    _ => {
                        return Err(bad(
                            line,
                            k,
                            "user-defined attribute must be a string or a number",
                        ))
                    }
                };
                map.insert(k.clone(), s);
            }
        }
    }
    if !map.contains_key("description") {
        return Err(bad(line, "description", "is required"));
    }
    map.entry("status".into())
        .or_insert_with(|| "pending".into());
    Ok((uuid, map))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_use_taskwarriors_basic_format() {
        let t: Timestamp = "2026-11-29T09:30:00Z".parse().unwrap();
        assert_eq!(format_tw_date(t), "20261129T093000Z");
        assert_eq!(parse_tw_date("20261129T093000Z"), Some(t));
        assert_eq!(parse_tw_date("2026-11-29"), None);
        assert_eq!(parse_tw_date("20261329T093000Z"), None);
    }

    #[test]
    fn import_errors_name_the_line_and_field() {
        let doc = "{\"uuid\":\"9f3c2f9e-6a1b-4b7e-9d55-2f1f0c6f7a10\",\"description\":\"ok\"}\n\
                   {\"uuid\":\"9f3c2f9e-6a1b-4b7e-9d55-2f1f0c6f7a11\",\"description\":\"x\",\"due\":\"tomorrow\"}\n";
        let items = split_import(doc).unwrap();
        assert!(import_task(&items[0].1, items[0].0).is_ok());
        let err = import_task(&items[1].1, items[1].0)
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2") && err.contains("due"), "{err}");
        let err = import_task(&json!({"description": "x"}), 7)
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 7") && err.contains("uuid"), "{err}");
        let err = import_task(
            &json!({"uuid": "9f3c2f9e-6a1b-4b7e-9d55-2f1f0c6f7a10", "description": "x", "tags": ["a b"]}),
            1,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("tags"), "{err}");
    }

    #[test]
    fn import_maps_taskwarrior_properties_to_taskchampion_keys() {
        let v = json!({
            "uuid": "9f3c2f9e-6a1b-4b7e-9d55-2f1f0c6f7a10", "description": "fix fence",
            "status": "waiting", "entry": "20260101T080000Z", "wait": "20270101T000000Z",
            "tags": ["home", "next"], "depends": "9f3c2f9e-6a1b-4b7e-9d55-2f1f0c6f7a11",
            "annotations": [{"entry": "20260102T080000Z", "description": "buy posts"}],
            "progress": 40, "estimate": "2h", "id": 3, "urgency": 12.5
        });
        let (_, m) = import_task(&v, 1).unwrap();
        assert_eq!(m["status"], "pending");
        assert_eq!(m["entry"], "1767254400");
        assert!(m.contains_key("tag_home") && m.contains_key("tag_next"));
        assert!(m.contains_key("dep_9f3c2f9e-6a1b-4b7e-9d55-2f1f0c6f7a11"));
        assert_eq!(m["annotation_1767340800"], "buy posts");
        assert_eq!(m["progress"], "40");
        assert_eq!(m["estimate"], "2h");
        assert!(!m.contains_key("id") && !m.contains_key("urgency"));
    }
}
