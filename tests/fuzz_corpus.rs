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

/// One test per fuzz target: `name: at least this many corpus files`.
macro_rules! corpus_tests {
    ($($name:ident: $min:expr),* $(,)?) => {$(
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
    )*};
}

corpus_tests! {
    order: 5, product: 3, keystore: 2, tlv: 5, dgi: 5, track: 5, msr206: 5, gp_session: 3,
    chip_profile: 3, model2: 3, vcard: 3, readback: 2,
}

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

/// `readback` fuzz target, 2026: a card whose PAN sequence number (5F34) was longer than its one
/// byte had the whole value shown in the read-back summary, PAN digits included; the cardholder
/// name (5F20) and label (50) were shown verbatim too. 5F34 now shows one byte, and digit runs
/// of 12+ in the name and label are masked.
#[test]
fn regression_readback_summary_never_shows_a_pan_from_card_fields() {
    use persodesk::domain::readback::{ReadBackSession, ReadStep, TerminalData};

    let data = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/readback/pan_in_card_summary"),
    )
    .expect("regression input");
    entries::readback(&data);

    // A hand-made card: PPSE lists the Visa AID, FCI, GPO with one record holding 5A, 5F34 with
    // the PAN's digits, and 5F20 with the PAN as the name.
    let pan = "4761739001010010";
    let tlv = |tag: &[u8], value: &[u8]| {
        let mut out = tag.to_vec();
        out.push(u8::try_from(value.len()).expect("short"));
        out.extend_from_slice(value);
        out
    };
    let aid = hex::decode("A0000000031010").expect("aid");
    let ppse = tlv(
        &[0x6F],
        &tlv(
            &[0xA5],
            &tlv(&[0xBF, 0x0C], &tlv(&[0x61], &tlv(&[0x4F], &aid))),
        ),
    );
    let fci = tlv(
        &[0x6F],
        &[
            tlv(&[0x84], &aid),
            tlv(&[0xA5], &tlv(&[0x50], pan.as_bytes())),
        ]
        .concat(),
    );
    let gpo = tlv(
        &[0x77],
        &[tlv(&[0x82], &[0x00, 0x00]), tlv(&[0x94], &[0x08, 1, 1, 0])].concat(),
    );
    let pan_bcd = hex::decode(pan).expect("pan");
    let record = tlv(
        &[0x70],
        &[
            tlv(&[0x5A], &pan_bcd),
            tlv(&[0x5F, 0x34], &[&[0x01][..], &pan_bcd].concat()),
            tlv(&[0x5F, 0x20], pan.as_bytes()),
        ]
        .concat(),
    );
    let ok = |mut data: Vec<u8>| {
        data.extend_from_slice(&[0x90, 0x00]);
        data
    };
    let mut answers = vec![ok(ppse), ok(fci), ok(gpo), ok(record)].into_iter();
    let terminal = TerminalData {
        un: [1, 2, 3, 4],
        date: [0x25, 0x06, 0x15],
        amount: [0, 0, 0, 0, 0x10, 0x00],
        country: [0x08, 0x40],
    };
    let (mut session, _) = ReadBackSession::start(terminal, None, Vec::new());
    let result = loop {
        let answer = answers.next().unwrap_or_else(|| vec![0x6A, 0x82]);
        match session.handle(&answer) {
            ReadStep::Transmit(_) => {}
            ReadStep::Done(result) => break result,
        }
    };
    assert_eq!(result.pan.as_deref().map(String::as_str), Some(pan));
    let card = &result.card;
    assert_eq!(card.psn.as_deref(), Some("01"));
    assert_eq!(card.pan_masked.as_deref(), Some("476173******0010"));
    let shown = format!("{:?} {:?}", card.label, card.name);
    assert!(!shown.contains(pan), "{shown}");
    assert!(shown.contains("476173******0010"), "{shown}");
}
