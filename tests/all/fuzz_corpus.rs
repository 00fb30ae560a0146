//! The fuzz targets' corpus and every crash input kept from fuzzing, run
//! through the same target code (`fuzz/targets.rs`) as a regression test on
//! stable: no fuzzing here, only what fuzzing found. `fuzz/README.md` says
//! how to fuzz and where new inputs go.

use std::path::Path;

#[path = "../../fuzz/targets.rs"]
mod targets;

#[test]
fn every_fuzz_input_on_record_still_passes() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    for (name, target) in targets::TARGETS {
        let mut inputs = 0;
        for kind in ["corpus", "regressions"] {
            let dir = fuzz.join(kind).join(name);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                if path.file_name().is_some_and(|n| n == ".gitkeep") {
                    continue;
                }
                let data = std::fs::read(&path).unwrap();
                let outcome = std::panic::catch_unwind(|| target(&data));
                assert!(outcome.is_ok(), "{name}: {} fails", path.display());
                inputs += 1;
            }
        }
        assert!(inputs > 0, "the fuzz target `{name}` has no corpus");
    }
}
