//! `warden inject` on arbitrary YAML: an error or a stream, never a panic; and what it writes
//! is YAML it accepts again without changing it (injection is idempotent).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code, unused_imports)]
#[path = "../../src/cli"]
mod cli {
    pub mod configmap;
    pub mod inject;
}

use cli::inject::{inject_stream, sidecar::SidecarArgs};

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let args = SidecarArgs {
        image: "img:1".into(),
        config_map: "cfg".into(),
        admin_port: 9901,
    };
    if let Ok(once) = inject_stream(src, &args) {
        let twice = inject_stream(&once.text, &args).expect("injected output parses again");
        assert_eq!(once.text, twice.text, "a second injection changed the output");
    }
});
