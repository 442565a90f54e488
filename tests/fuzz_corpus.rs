//! Replays every committed fuzz corpus file (`fuzz/corpus/<target>/*`) and every regression input
//! (`fuzz/regressions/<target>/*`) through the same entry functions the cargo-fuzz targets call
//! (`fuzz/src/entries.rs`), on stable, in seconds. A panic here is a fuzz finding come back.

use std::path::{Path, PathBuf};

use persodesk::{domain, keys, sim};

#[path = "../fuzz/src/entries.rs"]
#[allow(dead_code)]
mod entries;

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = read
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs `entry` on every corpus and regression file of `target`; returns how many ran.
fn replay(target: &str, entry: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut count = 0;
    for dir in ["corpus", "regressions"] {
        for file in files(&root.join(dir).join(target)) {
            let data = std::fs::read(&file).expect("corpus file readable");
            let name = file.display().to_string();
            let result = std::panic::catch_unwind(|| entry(&data));
            assert!(result.is_ok(), "{target}: {name} panics");
            count += 1;
        }
    }
    count
}

macro_rules! corpus_test {
    ($name:ident, $min:expr) => {
        #[test]
        fn $name() {
            let n = replay(stringify!($name), entries::$name);
            assert!(
                n >= $min,
                "{}: only {n} corpus files (expected at least {})",
                stringify!($name),
                $min
            );
        }
    };
}

corpus_test!(order, 5);
corpus_test!(product, 3);
corpus_test!(keystore, 2);
corpus_test!(tlv, 5);
corpus_test!(dgi, 5);
corpus_test!(track, 5);
corpus_test!(msr206, 5);
corpus_test!(gp_session, 3);
corpus_test!(chip_profile, 3);
corpus_test!(model2, 3);
corpus_test!(vcard, 3);
corpus_test!(readback, 2);

/// Writes the seed inputs made from the demo data into `fuzz/corpus/<target>/` (run by hand when
/// the demo data or an input layout changes; the files are committed).
#[test]
#[ignore = "writes fuzz/corpus; run by hand"]
fn write_seeds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let seeds = entries::demo_seeds();
    assert!(seeds.len() >= 15, "only {} seeds", seeds.len());
    for (target, name, bytes) in seeds {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).expect("corpus dir");
        std::fs::write(dir.join(name), bytes).expect("seed written");
    }
}

// ------------------------------------------------------------------------------------------------
// Crashes found by fuzzing, as plain regression tests
// ------------------------------------------------------------------------------------------------

/// `track` fuzz target, 2026: a track 1 override whose name field held the PAN passed validation,
/// and its masked form showed the PAN in clear (the name field is visible when masked).
#[test]
fn regression_track1_name_field_holding_a_pan_is_refused() {
    use persodesk::domain::fields::Pan;
    use persodesk::domain::track::{Track, TrackError, TrackNo};

    let text = "%B4761739001010010^GARCIA4761739001010010^GARC0000?";
    let pan = Pan::parse("4761739001010010").expect("pan");
    for pan in [None, Some(&pan)] {
        let result = Track::from_order(TrackNo::T1, text, pan, None);
        assert!(
            matches!(result, Err(TrackError::Layout(rule)) if rule.contains("12 or more digits")),
            "{result:?}"
        );
    }
    // The crashing input itself (selector byte 00: track 1, no order PAN or expiry).
    let data = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/track/pan_in_name_field"),
    )
    .expect("regression input");
    assert_eq!(data.first(), Some(&0));
    entries::track(&data);
    // Digits in a name stay allowed below the PAN length.
    assert!(
        Track::from_order(
            TrackNo::T1,
            "%B4761739001010010^DOE 3RD/J^2805101?",
            None,
            None
        )
        .is_ok()
    );
}
