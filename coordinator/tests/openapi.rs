//! The checked-in OpenAPI document (`api/openapi.json`, from which the
//! TypeScript types of the JS host and the demo are generated) is the one
//! the code generates: a change to an API type without regenerating fails
//! here. `UPDATE_OPENAPI=1 cargo test -p coordinator --test openapi`
//! rewrites it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[test]
fn checked_in_openapi_document_is_current() {
    let doc = coordinator::api::openapi::document()
        .to_pretty_json()
        .unwrap()
        + "\n";
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../api/openapi.json");
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(path, &doc).unwrap();
    }
    let stored = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        stored == doc,
        "api/openapi.json is stale: run UPDATE_OPENAPI=1 cargo test -p coordinator --test openapi"
    );
    let v: serde_json::Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(v["openapi"], "3.1.0");
}
