//! The config loader, from YAML text to a config or diagnostics: never a panic, and every
//! diagnostic has a key or a position.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(err) = warden_config::parse(text, "fuzz.yaml") {
        let _ = err.to_string();
        for d in err.diagnostics() {
            let _ = (&d.path, d.line, d.column, &d.message);
        }
    }
});
