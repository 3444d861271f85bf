//! The OpenAPI 3 document, written by hand in `openapi.json` beside this file and checked against the
//! route table by a test (both ways), so it cannot drift from the router.
use axum::http::header;
use axum::response::IntoResponse;

/// The document's text.
pub const DOCUMENT: &str = include_str!("openapi.json");

/// `GET /openapi.json` (no auth).
pub async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn documented() -> BTreeSet<(String, String)> {
        let value: serde_json::Value = serde_json::from_str(DOCUMENT).expect("openapi.json parses");
        assert_eq!(value["openapi"].as_str().map(|v| &v[..2]), Some("3."));
        let mut set = BTreeSet::new();
        for (path, item) in value["paths"].as_object().expect("paths object") {
            for (method, operation) in item.as_object().expect("path item object") {
                if method == "parameters" {
                    continue;
                }
                assert!(
                    operation["responses"].is_object() && operation["summary"].is_string(),
                    "{method} {path} needs a summary and responses"
                );
                set.insert((method.to_uppercase(), path.clone()));
            }
        }
        set
    }

    #[test]
    fn every_route_is_documented_and_every_documented_operation_is_routed() {
        let routed: BTreeSet<(String, String)> = crate::api::routes()
            .iter()
            .map(|route| (route.method.as_str().to_string(), route.path.to_string()))
            .collect();
        assert!(
            routed.len() >= 20,
            "the route table looks empty: {routed:?}"
        );
        let documented = documented();
        let undocumented: Vec<_> = routed.difference(&documented).collect();
        assert!(
            undocumented.is_empty(),
            "routes missing from openapi.json: {undocumented:?}"
        );
        let unrouted: Vec<_> = documented.difference(&routed).collect();
        assert!(
            unrouted.is_empty(),
            "openapi.json describes routes that do not exist: {unrouted:?}"
        );
    }

    #[test]
    fn every_schema_reference_resolves() {
        let value: serde_json::Value = serde_json::from_str(DOCUMENT).expect("openapi.json parses");
        let mut references = Vec::new();
        fn walk(value: &serde_json::Value, out: &mut Vec<String>) {
            match value {
                serde_json::Value::Object(map) => {
                    for (key, item) in map {
                        if key == "$ref" {
                            out.extend(item.as_str().map(str::to_string));
                        }
                        walk(item, out);
                    }
                }
                serde_json::Value::Array(items) => items.iter().for_each(|item| walk(item, out)),
                _ => {}
            }
        }
        walk(&value, &mut references);
        for reference in references {
            let pointer = reference.trim_start_matches('#');
            assert!(
                value.pointer(pointer).is_some(),
                "dangling $ref {reference}"
            );
        }
    }
}
