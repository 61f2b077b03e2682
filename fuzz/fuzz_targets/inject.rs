//! `warden inject` on arbitrary YAML: an error or a stream, never a panic; and what it writes
//! is YAML it accepts again without changing it (injection is idempotent).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code, unused_imports)]
#[path = "../../src/cli"]
mod cli {
    pub mod configmap;
    pub mod inject;

    /// `inject_stream` is visible to `cli` alone, as in the binary: the output's text,
    /// through this module.
    pub fn inject_text(src: &str, args: &inject::sidecar::SidecarArgs) -> anyhow::Result<String> {
        inject::inject_stream(src, args).map(|injected| injected.text)
    }
}

use cli::{inject::sidecar::SidecarArgs, inject_text};

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let args = SidecarArgs {
        image: "img:1".into(),
        config_map: "cfg".into(),
        admin_port: 9901,
    };
    if let Ok(once) = inject_text(src, &args) {
        let twice = inject_text(&once, &args).expect("injected output parses again");
        assert_eq!(once, twice, "a second injection changed the output");
    }
});
