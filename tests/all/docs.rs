//! The documents users build on are what they claim to be: the admin API's
//! OpenAPI document (`docs/admin-api.yaml`) is valid OpenAPI 3.1, checked by
//! the OpenAPI project's own validator (`scripts/setup` installs it).

use std::path::Path;

use crate::support::text;

#[test]
fn the_admin_api_document_is_valid_openapi() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let validator = root.join("docs/.venv/bin/openapi-spec-validator");
    let output = std::process::Command::new(&validator)
        .arg(root.join("docs/admin-api.yaml"))
        .output()
        .unwrap_or_else(|e| panic!("{} (scripts/setup installs it): {e}", validator.display()));
    assert!(
        output.status.success(),
        "docs/admin-api.yaml is not valid OpenAPI:\n{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
}
