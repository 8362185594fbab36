//! Replays the fuzz corpus (`protocol/fuzz/corpus/<target>/`) through the properties the fuzz
//! targets check, so that every saved input is exercised by `cargo test`, without fuzzing.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::Path;

use referee_protocol::fuzz_checks;

fn replay(target: &str, check: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut count = 0;
    for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(
            outcome.is_ok(),
            "{} fails its fuzz property",
            path.display()
        );
        count += 1;
    }
    assert!(count > 0, "{} is empty", dir.display());
    count
}

#[test]
fn frame_message_corpus() {
    replay("frame_message", fuzz_checks::frame_message);
}

#[test]
fn control_message_corpus() {
    replay("control_message", fuzz_checks::control_message);
}

#[test]
fn signal_file_corpus() {
    replay("signal_file", fuzz_checks::signal_file);
}
