//! `schema/proxy.schema.json` is generated; this keeps the checked-in copy current.

use std::path::Path;

#[test]
fn schema_file_is_current() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("the crate lives at <workspace>/crates/warden-config");
    let path = workspace.join("schema/proxy.schema.json");
    let generated = warden_config::json_schema();
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "{} is stale: run `UPDATE_SCHEMA=1 cargo test -p warden-config` and commit the result",
        path.display()
    );
}
