//! Records as OCSF events, the schema SIEMs ingest.

use chrono::DateTime;
use serde_json::{json, Value};

use crate::Record;

/// OCSF schema version the mapping follows.
pub const OCSF_VERSION: &str = "1.3.0";

/// Maps a record to an OCSF event: file capabilities to *File System Activity* (1001),
/// network ones to *Network Activity* (4001), everything else to *API Activity* (6003). The
/// decision is in `action_id`/`disposition_id` (1 allowed, 2 denied/blocked) and the policy
/// reasons in `status_detail`; the full record rides along in `unmapped`.
pub fn to_ocsf(record: &Record) -> Value {
    let (class_uid, class_name, category_uid, category_name, activity_id, activity_name) =
        match record.capability.as_str() {
            "file" => {
                let (id, name) = match record.action.as_str() {
                    "create" => (1, "Create"),
                    "read" | "list" | "stat" => (2, "Read"),
                    "write" | "rename" | "chmod" => (3, "Update"),
                    "delete" => (4, "Delete"),
                    _ => (99, "Other"),
                };
                (1001, "File System Activity", 1, "System Activity", id, name)
            }
            "net" => (4001, "Network Activity", 4, "Network Activity", 1, "Open"),
            _ => (6003, "API Activity", 6, "Application Activity", 99, "Other"),
        };
    let time_ms = DateTime::parse_from_rfc3339(&record.time)
        .map(|t| t.timestamp_millis())
        .unwrap_or_default();
    let (action_id, action, disposition_id, disposition) = if record.allow {
        (1, "Allowed", 1, "Allowed")
    } else {
        (2, "Denied", 2, "Blocked")
    };
    let mut event = json!({
        "class_uid": class_uid,
        "class_name": class_name,
        "category_uid": category_uid,
        "category_name": category_name,
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": class_uid * 100 + activity_id,
        "time": time_ms,
        "severity_id": if record.allow { 1 } else { 3 },
        "severity": if record.allow { "Informational" } else { "Medium" },
        "action_id": action_id,
        "action": action,
        "disposition_id": disposition_id,
        "disposition": disposition,
        "status_detail": record.reasons.join("; "),
        "actor": {"user": {"name": record.subject["user"]}, "app_name": record.subject["agent"]},
        "metadata": {
            "version": OCSF_VERSION,
            "uid": record.id,
            "sequence": record.seq,
            "product": {"name": "cordon", "vendor_name": "cordon", "version": record.cordon_version},
            "log_name": "cordon-audit",
        },
        "unmapped": {"record": record},
    });
    match record.capability.as_str() {
        "file" => {
            event["file"] =
                json!({"path": record.resource["path"], "hashes": sha256(&record.resource)});
        }
        "net" => {
            event["dst_endpoint"] =
                json!({"hostname": record.resource["host"], "port": record.resource["port"]});
        }
        _ => {
            event["api"] = json!({"operation": format!("{}.{}", record.capability, record.action)});
        }
    }
    event
}

fn sha256(resource: &Value) -> Value {
    match resource["sha256"].as_str() {
        Some(hash) => json!([{"algorithm_id": 3, "algorithm": "SHA-256", "value": hash}]),
        None => json!([]),
    }
}
