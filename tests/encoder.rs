//! Magnetic stripe encoder: MSR206 protocol (sans-I/O) unit tests, and real serial I/O through a
//! pseudo-terminal against the independent simulated encoder.
//!
//! Every test is bounded in time: serial reads use short timeouts and channels use `recv_timeout`.

use std::io::{Read, Write};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use persodesk::devices::encoder::{
    CancelHandle, Encoder, EncoderError, EncoderEvent, SerialConfig, SerialEncoder,
};
use persodesk::domain::msr206::{
    Action, CharRole, Command, Density, DeviceError, Expect, Feed, FlowConfig, FlowError, FlowStep,
    ParseError, Response, ResponseKind, ResponseParser, Status, SwipePurpose, TrackBody,
    TrackError, TrackList, TrackNumber, TrackRule, TrackSet, Wait, WriteSession, preview,
};
use persodesk::sim::encoder::{
    SimCommand, SimConfig, SimEncoder, SimFault, run_sim_encoder_blocking,
};

const PAN: &str = "4000001234567899";
const T1: &str = "B4000001234567899^TEST/CARD^3012201000000000000";
const T2: &str = "4000001234567899=30122010000000000";
const T3: &str = "011234567890123456=724724100000000000030300";

fn tracks() -> TrackSet {
    TrackSet::new(Some(T1), Some(T2), Some(T3)).expect("valid tracks")
}

// ------------------------------------------------------------------------------------------------
// Validation
// ------------------------------------------------------------------------------------------------

fn rule_of(result: Result<TrackSet, TrackError>) -> (TrackNumber, TrackRule) {
    match result {
        Err(TrackError::Rule { track, rule }) => (track, rule),
        other => panic!("expected a track rule error, got {other:?}"),
    }
}

#[test]
fn character_sets_are_enforced_per_track() {
    let (t, r) = rule_of(TrackSet::new(Some("B123^doe"), None, None));
    assert_eq!(
        (t, r),
        (
            TrackNumber::One,
            TrackRule::IllegalCharacter { position: 6 }
        )
    );
    let (t, r) = rule_of(TrackSet::new(None, Some("4111D1234"), None));
    assert_eq!(
        (t, r),
        (
            TrackNumber::Two,
            TrackRule::IllegalCharacter { position: 5 }
        )
    );
    let (t, r) = rule_of(TrackSet::new(None, None, Some("12 34")));
    assert_eq!(
        (t, r),
        (
            TrackNumber::Three,
            TrackRule::IllegalCharacter { position: 3 }
        )
    );
    let (t, r) = rule_of(TrackSet::new(Some("B12é"), None, None));
    assert_eq!(
        (t, r),
        (
            TrackNumber::One,
            TrackRule::IllegalCharacter { position: 4 }
        )
    );
    // The whole legal sets pass: 0x20..=0x5F minus the sentinels, and 0-9 : < = >.
    let t1: String = (0x20u8..=0x5F)
        .filter(|b| *b != b'%' && *b != b'?')
        .map(char::from)
        .collect();
    assert!(TrackSet::new(Some(&t1), Some("0123456789:<=>"), Some("0123456789:<=>")).is_ok());
}

#[test]
fn sentinels_inside_a_body_are_rejected() {
    let (t, r) = rule_of(TrackSet::new(Some("%B123"), None, None));
    assert_eq!(
        (t, r),
        (TrackNumber::One, TrackRule::SentinelInBody { position: 1 })
    );
    let (t, r) = rule_of(TrackSet::new(None, Some("123?456"), None));
    assert_eq!(
        (t, r),
        (TrackNumber::Two, TrackRule::SentinelInBody { position: 4 })
    );
    let (t, r) = rule_of(TrackSet::new(None, None, Some("12;3")));
    assert_eq!(
        (t, r),
        (
            TrackNumber::Three,
            TrackRule::SentinelInBody { position: 3 }
        )
    );
    // ';' is not a track 1 sentinel.
    assert!(TrackSet::new(Some("B1;2"), None, None).is_ok());
}

#[test]
fn length_limits_count_sentinels_and_lrc() {
    for (track, max) in [
        (TrackNumber::One, 76),
        (TrackNumber::Two, 37),
        (TrackNumber::Three, 104),
    ] {
        assert_eq!(track.max_body_len(), max);
        assert!(
            TrackBody::new(track, &"1".repeat(max)).is_ok(),
            "track {track} at {max}"
        );
        assert_eq!(
            TrackBody::new(track, &"1".repeat(max + 1)),
            Err(TrackError::Rule {
                track,
                rule: TrackRule::TooLong { max, got: max + 1 }
            })
        );
    }
}

#[test]
fn empty_bodies_and_empty_sets_are_rejected() {
    let (t, r) = rule_of(TrackSet::new(None, Some(""), None));
    assert_eq!((t, r), (TrackNumber::Two, TrackRule::Empty));
    assert_eq!(TrackSet::new(None, None, None), Err(TrackError::NoTracks));
}

#[test]
fn errors_and_debug_never_show_track_content() {
    let err = TrackSet::new(None, Some("4000001234567899=30X"), None).expect_err("illegal");
    let text = err.to_string();
    assert!(
        text.contains("track 2") && text.contains("position 20"),
        "{text}"
    );
    assert!(!text.contains(PAN) && !format!("{err:?}").contains(PAN));

    let set = tracks();
    let debug = format!(
        "{set:?} {:?} {:?}",
        set.get(TrackNumber::Two),
        Command::IsoWrite(&set)
    );
    assert!(!debug.contains(PAN) && !debug.contains("TEST"), "{debug}");
    assert!(debug.contains("len: 34"), "{debug}");

    let p = preview(set.get(TrackNumber::Two).expect("track 2"));
    let debug = format!("{p:?} {:?}", p.chars);
    assert!(debug.contains("chars: 36"), "{debug}");
    assert!(!debug.contains("ch:") && !debug.contains("code"), "{debug}");

    let mut session = WriteSession::new(set, FlowConfig::default());
    let _ = session.start();
    let _ = session.sent();
    let write = session.handle(Response::Status(Status::Ok));
    let debug = format!("{write:?} {session:?}");
    assert!(!debug.contains(PAN), "{debug}");
    assert!(matches!(
        write,
        Action::Send {
            step: FlowStep::Write,
            ..
        }
    ));

    let reply = read_reply(Some("%B1?"), Some(";4000001234567899?"), None, 0x30);
    let response = parse_all(ResponseKind::IsoRead, &reply);
    assert!(!format!("{response:?}").contains(PAN));
}

// ------------------------------------------------------------------------------------------------
// Commands
// ------------------------------------------------------------------------------------------------

#[test]
fn simple_command_bytes_match_the_spec() {
    let cases: [(Command<'_>, &[u8]); 5] = [
        (Command::Reset, &[0x1B, 0x61]),
        (Command::CommTest, &[0x1B, 0x65]),
        (Command::HiCo, &[0x1B, 0x78]),
        (Command::LoCo, &[0x1B, 0x79]),
        (Command::IsoRead, &[0x1B, 0x72]),
    ];
    for (command, bytes) in cases {
        assert_eq!(command.to_bytes().as_slice(), bytes, "{command:?}");
    }
    // Bit density: ESC b and one byte per track and density.
    let bpi = [
        (TrackNumber::One, Density::Bpi210, 0xA1),
        (TrackNumber::One, Density::Bpi75, 0xA0),
        (TrackNumber::Two, Density::Bpi210, 0xD2),
        (TrackNumber::Two, Density::Bpi75, 0x4B),
        (TrackNumber::Three, Density::Bpi210, 0xC1),
        (TrackNumber::Three, Density::Bpi75, 0xC0),
    ];
    for (track, density, byte) in bpi {
        let command = Command::Bpi(track, density);
        assert_eq!(
            command.to_bytes().as_slice(),
            [0x1B, 0x62, byte],
            "{command:?}"
        );
    }
    assert_eq!(Command::Reset.reply_kind(), None);
    assert_eq!(Command::IsoRead.reply_kind(), Some(ResponseKind::IsoRead));
    assert_eq!(Command::HiCo.reply_kind(), Some(ResponseKind::Status));
}

#[test]
fn iso_write_sends_bodies_without_sentinels_and_empty_headers() {
    let set = TrackSet::new(Some("B1^A"), None, Some("12=3")).expect("valid");
    let mut expected = vec![0x1B, 0x77, 0x1B, 0x73, 0x1B, 0x01];
    expected.extend_from_slice(b"B1^A");
    expected.extend_from_slice(&[0x1B, 0x02, 0x1B, 0x03]);
    expected.extend_from_slice(b"12=3");
    expected.extend_from_slice(&[0x3F, 0x1C]);
    assert_eq!(
        Command::IsoWrite(&set).to_bytes().as_slice(),
        expected.as_slice()
    );

    let mut out = vec![0xAA];
    Command::IsoWrite(&set).encode(&mut out);
    assert_eq!(out.first(), Some(&0xAA), "encode appends");
    assert_eq!(out.len(), expected.len() + 1);
}

// ------------------------------------------------------------------------------------------------
// Reply parser
// ------------------------------------------------------------------------------------------------

fn read_reply(t1: Option<&str>, t2: Option<&str>, t3: Option<&str>, status: u8) -> Vec<u8> {
    let mut out = vec![0x1B, 0x73];
    for (marker, track) in [(1u8, t1), (2, t2), (3, t3)] {
        out.extend_from_slice(&[0x1B, marker]);
        out.extend_from_slice(track.unwrap_or("").as_bytes());
    }
    out.extend_from_slice(&[0x3F, 0x1C, 0x1B, status]);
    out
}

fn parse_all(kind: ResponseKind, bytes: &[u8]) -> Response {
    match ResponseParser::new(kind).feed(bytes) {
        Ok(Feed::Complete { response, consumed }) => {
            assert_eq!(consumed, bytes.len());
            response
        }
        other => panic!("expected a complete reply, got {other:?}"),
    }
}

fn track_bytes(response: &Response, track: TrackNumber) -> Option<Vec<u8>> {
    match response {
        Response::Read { tracks, .. } => tracks.get(track).map(|t| t.expose().to_vec()),
        Response::Status(_) => panic!("not a read reply"),
    }
}

#[test]
fn status_bytes_map_to_statuses_and_errors() {
    let cases = [
        (0x30, Status::Ok, None),
        (0x31, Status::ReadWriteError, Some(DeviceError::ReadWrite)),
        (
            0x32,
            Status::CommandFormatError,
            Some(DeviceError::CommandFormat),
        ),
        (
            0x34,
            Status::InvalidCommand,
            Some(DeviceError::InvalidCommand),
        ),
        (0x39, Status::BadSwipe, Some(DeviceError::BadSwipe)),
        (0x55, Status::Other(0x55), Some(DeviceError::Unknown(0x55))),
    ];
    for (byte, status, error) in cases {
        let response = parse_all(ResponseKind::Status, &[0x1B, byte]);
        assert_eq!(response, Response::Status(status));
        assert_eq!(status.byte(), byte);
        assert_eq!(status.check().err(), error);
    }
    assert!(parse_all(ResponseKind::Status, &[0x1B, 0x79]).is_comm_test_ok());
    assert!(!parse_all(ResponseKind::Status, &[0x1B, 0x30]).is_comm_test_ok());
    assert!(DeviceError::BadSwipe.to_string().contains("swipe"));
}

#[test]
fn status_reply_fed_one_byte_at_a_time() {
    let mut parser = ResponseParser::new(ResponseKind::Status);
    assert_eq!(parser.feed(&[]), Ok(Feed::NeedMore));
    assert_eq!(parser.feed(&[0x1B]), Ok(Feed::NeedMore));
    assert_eq!(
        parser.feed(&[0x39, 0xEE]),
        Ok(Feed::Complete {
            response: Response::Status(Status::BadSwipe),
            consumed: 1
        })
    );
    assert_eq!(parser.feed(&[0x1B]), Err(ParseError::Finished));
}

#[test]
fn iso_read_reply_parses_the_same_at_every_split() {
    let reply = read_reply(Some("%B123^A?"), Some(";123=45?"), Some(";011=9?"), 0x30);
    for split in 0..=reply.len() {
        let (a, b) = reply.split_at(split);
        let mut parser = ResponseParser::new(ResponseKind::IsoRead);
        let first = parser.feed(a).expect("first part");
        let response = match first {
            Feed::Complete { response, .. } => response,
            Feed::NeedMore => match parser.feed(b).expect("second part") {
                Feed::Complete { response, consumed } => {
                    assert_eq!(consumed, b.len());
                    response
                }
                Feed::NeedMore => panic!("incomplete at split {split}"),
            },
        };
        assert_eq!(response.status(), Status::Ok, "split {split}");
        assert_eq!(
            track_bytes(&response, TrackNumber::One),
            Some(b"%B123^A?".to_vec())
        );
        assert_eq!(
            track_bytes(&response, TrackNumber::Two),
            Some(b";123=45?".to_vec())
        );
        assert_eq!(
            track_bytes(&response, TrackNumber::Three),
            Some(b";011=9?".to_vec())
        );
    }
    // Byte by byte.
    let mut parser = ResponseParser::new(ResponseKind::IsoRead);
    let (last, init) = reply.split_last().expect("non-empty");
    for byte in init {
        assert_eq!(parser.feed(&[*byte]), Ok(Feed::NeedMore));
    }
    assert!(matches!(
        parser.feed(&[*last]),
        Ok(Feed::Complete { consumed: 1, .. })
    ));
}

#[test]
fn iso_read_reply_with_empty_tracks_and_error_status() {
    let reply = read_reply(None, Some(";12?"), None, 0x31);
    let response = parse_all(ResponseKind::IsoRead, &reply);
    assert_eq!(response.status(), Status::ReadWriteError);
    assert_eq!(track_bytes(&response, TrackNumber::One), None);
    assert_eq!(
        track_bytes(&response, TrackNumber::Two),
        Some(b";12?".to_vec())
    );
    assert_eq!(track_bytes(&response, TrackNumber::Three), None);
    // A read may also be answered by a bare status.
    assert_eq!(
        parse_all(ResponseKind::IsoRead, &[0x1B, 0x39]),
        Response::Status(Status::BadSwipe)
    );
}

#[test]
fn malformed_replies_are_errors_with_offsets() {
    let cases: [(&[u8], usize); 5] = [
        (&[0x30], 0),
        (&[0x1B, 0x73, 0x30], 2),
        (&[0x1B, 0x73, 0x1B, 0x02], 3),
        (&[0x1B, 0x73, 0x1B, 0x01, b'%', 0x1B, 0x03], 6),
        (
            &[0x1B, 0x73, 0x1B, 0x01, 0x1B, 0x02, 0x1B, 0x03, b'1', 0x1C],
            9,
        ),
    ];
    for (bytes, offset) in cases {
        let result = ResponseParser::new(ResponseKind::IsoRead).feed(bytes);
        assert!(
            matches!(result, Err(ParseError::Unexpected { offset: o, .. }) if o == offset),
            "{bytes:02X?} gave {result:?}"
        );
    }
    let mut long = vec![0x1B, 0x73, 0x1B, 0x01];
    long.extend(std::iter::repeat_n(b'A', 300));
    assert_eq!(
        ResponseParser::new(ResponseKind::IsoRead).feed(&long),
        Err(ParseError::TrackTooLong(TrackNumber::One))
    );
}

#[test]
fn parser_never_panics_on_arbitrary_bytes() {
    // A small LCG keeps the test deterministic; the alphabet favours protocol bytes.
    let alphabet = [
        0x1B, 0x73, 0x01, 0x02, 0x03, 0x3F, 0x1C, 0x30, 0x39, b'%', b';', b'1', 0xFF,
    ];
    let mut state: u32 = 0x1234_5678;
    let mut next = || {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        state >> 16
    };
    let mut completed = 0;
    for _ in 0..3000 {
        let len = (next() % 40) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                alphabet
                    .get(next() as usize % alphabet.len())
                    .copied()
                    .unwrap_or(0)
            })
            .collect();
        for kind in [ResponseKind::Status, ResponseKind::IsoRead] {
            let mut parser = ResponseParser::new(kind);
            for chunk in bytes.chunks(3) {
                match parser.feed(chunk) {
                    Ok(Feed::NeedMore) => {}
                    Ok(Feed::Complete { consumed, .. }) => {
                        assert!(consumed >= 1 && consumed <= chunk.len());
                        completed += 1;
                        break;
                    }
                    Err(_) => break,
                }
            }
        }
    }
    assert!(completed > 0);
}

// ------------------------------------------------------------------------------------------------
// Bit-level preview (docs/domain.md §7.1)
// ------------------------------------------------------------------------------------------------

#[test]
fn track2_preview_matches_hand_computation() {
    // Track 2 body "12345" is recorded as ; 1 2 3 4 5 ? LRC, code = ASCII - 0x30, 4 data bits
    // (least significant first) + odd parity:
    //   ;  0x3B -> 0xB = 1011b (three ones -> parity 0) bits 1101 0
    //   1  0x1  = 0001b (one            -> parity 0) bits 1000 0
    //   2  0x2  = 0010b (one            -> parity 0) bits 0100 0
    //   3  0x3  = 0011b (two            -> parity 1) bits 1100 1
    //   4  0x4  = 0100b (one            -> parity 0) bits 0010 0
    //   5  0x5  = 0101b (two            -> parity 1) bits 1010 1
    //   ?  0xF  = 1111b (four           -> parity 1) bits 1111 1
    // LRC = B^1^2^3^4^5^F: B^1=A, ^2=8, ^3=B, ^4=F, ^5=A, ^F=5 -> 0101b = '5', two ones -> parity 1.
    let body = TrackBody::new(TrackNumber::Two, "12345").expect("valid");
    let p = preview(&body);
    let expected = [
        (';', 0xB, "11010"),
        ('1', 0x1, "10000"),
        ('2', 0x2, "01000"),
        ('3', 0x3, "11001"),
        ('4', 0x4, "00100"),
        ('5', 0x5, "10101"),
        ('?', 0xF, "11111"),
    ];
    assert_eq!(p.track, TrackNumber::Two);
    assert_eq!(p.chars.len(), expected.len());
    for (c, (ch, code, bits)) in p.chars.iter().zip(expected) {
        assert_eq!(
            (c.ch, c.code, c.width, c.bit_string().as_str()),
            (ch, code, 4, bits)
        );
    }
    assert_eq!(
        p.chars.first().map(|c| c.role),
        Some(CharRole::StartSentinel)
    );
    assert_eq!(p.chars.get(1).map(|c| c.role), Some(CharRole::Data));
    assert_eq!(p.chars.last().map(|c| c.role), Some(CharRole::EndSentinel));
    assert_eq!(
        (p.lrc.role, p.lrc.ch, p.lrc.code, p.lrc.parity),
        (CharRole::Lrc, '5', 5, true)
    );
    assert_eq!(p.lrc.bit_string(), "10101");
}

#[test]
fn track1_preview_matches_hand_computation() {
    // Track 1 body "A": % A ? LRC, code = ASCII - 0x20, 6 data bits + odd parity:
    //   %  0x25 -> 0x05 = 000101b (two ones  -> parity 1) bits 101000 1
    //   A  0x41 -> 0x21 = 100001b (two ones  -> parity 1) bits 100001 1
    //   ?  0x3F -> 0x1F = 011111b (five ones -> parity 0) bits 111110 0
    // LRC = 05 ^ 21 ^ 1F = 24 ^ 1F = 3B = 111011b -> ASCII 0x5B '[', five ones -> parity 0.
    let body = TrackBody::new(TrackNumber::One, "A").expect("valid");
    let p = preview(&body);
    let got: Vec<(char, u8, String)> = p
        .chars
        .iter()
        .map(|c| (c.ch, c.code, c.bit_string()))
        .collect();
    assert_eq!(
        got,
        vec![
            ('%', 0x05, "1010001".to_owned()),
            ('A', 0x21, "1000011".to_owned()),
            ('?', 0x1F, "1111100".to_owned()),
        ]
    );
    assert_eq!(
        (p.lrc.ch, p.lrc.code, p.lrc.width, p.lrc.parity),
        ('[', 0x3B, 6, false)
    );
    assert_eq!(p.lrc.bits().len(), 7);
}

// ------------------------------------------------------------------------------------------------
// Write flow state machine
// ------------------------------------------------------------------------------------------------

/// Unpacks a `Send`, checking its step and expectation; returns the bytes and the attempt.
fn expect_send(action: Action, step: FlowStep, expect: Expect) -> (Vec<u8>, u32) {
    match action {
        Action::Send {
            bytes,
            expect: e,
            step: s,
            attempt,
        } => {
            assert_eq!((s, e), (step, expect));
            (bytes.to_vec(), attempt)
        }
        other => panic!("expected Send {step:?}, got {other:?}"),
    }
}

const WRITE_WAIT: Expect = Expect::Reply {
    kind: ResponseKind::Status,
    wait: Wait::Swipe(SwipePurpose::Write),
};
const READ_WAIT: Expect = Expect::Reply {
    kind: ResponseKind::IsoRead,
    wait: Wait::Swipe(SwipePurpose::ReadBack),
};

fn session_at_write(set: &TrackSet, config: FlowConfig) -> WriteSession {
    let mut session = WriteSession::new(set.clone(), config);
    let (bytes, _) = expect_send(session.start(), FlowStep::Reset, Expect::Nothing);
    assert_eq!(bytes, [0x1B, 0x61]);
    let hico = Expect::Reply {
        kind: ResponseKind::Status,
        wait: Wait::Device,
    };
    let (bytes, _) = expect_send(session.sent(), FlowStep::SetHiCo, hico);
    assert_eq!(bytes, [0x1B, 0x78]);
    session
}

fn good_read_back() -> Response {
    let t1 = format!("%{T1}?");
    let t2 = format!(";{T2}?");
    let t3 = format!(";{T3}?");
    parse_all(
        ResponseKind::IsoRead,
        &read_reply(Some(&t1), Some(&t2), Some(&t3), 0x30),
    )
}

#[test]
fn flow_happy_path_with_one_bad_swipe() {
    let set = tracks();
    let mut session = session_at_write(&set, FlowConfig::default());
    let (bytes, attempt) = expect_send(
        session.handle(Response::Status(Status::Ok)),
        FlowStep::Write,
        WRITE_WAIT,
    );
    assert_eq!(
        (bytes.as_slice(), attempt),
        (Command::IsoWrite(&set).to_bytes().as_slice(), 1)
    );
    let (again, attempt) = expect_send(
        session.handle(Response::Status(Status::BadSwipe)),
        FlowStep::Write,
        WRITE_WAIT,
    );
    assert_eq!((again, attempt), (bytes, 2));
    let (read, _) = expect_send(
        session.handle(Response::Status(Status::Ok)),
        FlowStep::ReadBack,
        READ_WAIT,
    );
    assert_eq!(read, [0x1B, 0x72]);
    match session.handle(good_read_back()) {
        Action::Done(outcome) => {
            assert_eq!(outcome.tracks, TrackNumber::ALL.to_vec());
            assert_eq!(outcome.bad_swipes, 1);
        }
        other => panic!("expected Done, got {other:?}"),
    }
    assert!(matches!(
        session.handle(Response::Status(Status::Ok)),
        Action::Failed(FlowError::OutOfOrder)
    ));
}

#[test]
fn flow_gives_up_after_too_many_bad_swipes() {
    let set = tracks();
    let mut session = session_at_write(&set, FlowConfig { max_bad_swipes: 2 });
    let _ = expect_send(
        session.handle(Response::Status(Status::Ok)),
        FlowStep::Write,
        WRITE_WAIT,
    );
    for attempt in 2..=3 {
        let (_, a) = expect_send(
            session.handle(Response::Status(Status::BadSwipe)),
            FlowStep::Write,
            WRITE_WAIT,
        );
        assert_eq!(a, attempt);
    }
    assert!(matches!(
        session.handle(Response::Status(Status::BadSwipe)),
        Action::Failed(FlowError::TooManyBadSwipes {
            step: FlowStep::Write,
            count: 3
        })
    ));
}

#[test]
fn flow_reports_device_errors_with_their_step() {
    let set = tracks();
    let mut session = session_at_write(&set, FlowConfig::default());
    assert!(matches!(
        session.handle(Response::Status(Status::InvalidCommand)),
        Action::Failed(FlowError::Device {
            step: FlowStep::SetHiCo,
            error: DeviceError::InvalidCommand
        })
    ));
    let mut session = session_at_write(&set, FlowConfig::default());
    let _ = expect_send(
        session.handle(Response::Status(Status::Ok)),
        FlowStep::Write,
        WRITE_WAIT,
    );
    assert!(matches!(
        session.handle(Response::Status(Status::ReadWriteError)),
        Action::Failed(FlowError::Device {
            step: FlowStep::Write,
            error: DeviceError::ReadWrite
        })
    ));
}

#[test]
fn flow_reports_mismatch_by_track_number_only() {
    let set = TrackSet::new(None, Some("1234=5678"), Some("999")).expect("valid");
    let mut session = session_at_write(&set, FlowConfig::default());
    let _ = expect_send(
        session.handle(Response::Status(Status::Ok)),
        FlowStep::Write,
        WRITE_WAIT,
    );
    let _ = expect_send(
        session.handle(Response::Status(Status::Ok)),
        FlowStep::ReadBack,
        READ_WAIT,
    );
    // Track 1 was not written, so whatever it holds is ignored; track 2 differs; track 3 matches.
    let reply = read_reply(Some("%OLD?"), Some(";1234=5679?"), Some(";999?"), 0x30);
    match session.handle(parse_all(ResponseKind::IsoRead, &reply)) {
        Action::Failed(e @ FlowError::Mismatch(_)) => {
            assert_eq!(e, FlowError::Mismatch(TrackList(vec![TrackNumber::Two])));
            let text = e.to_string();
            assert!(
                text.contains("track(s) 2") && !text.contains("1234"),
                "{text}"
            );
        }
        other => panic!("expected a mismatch, got {other:?}"),
    }
}

#[test]
fn flow_rejects_calls_out_of_order() {
    let mut session = WriteSession::new(tracks(), FlowConfig::default());
    assert!(matches!(
        session.sent(),
        Action::Failed(FlowError::OutOfOrder)
    ));
    let mut session = WriteSession::new(tracks(), FlowConfig::default());
    assert!(matches!(
        session.handle(Response::Status(Status::Ok)),
        Action::Failed(FlowError::OutOfOrder)
    ));
    let mut session = session_at_write(&tracks(), FlowConfig::default());
    assert!(matches!(
        session.start(),
        Action::Failed(FlowError::OutOfOrder)
    ));
}

// ------------------------------------------------------------------------------------------------
// Serial I/O against the simulated encoder
// ------------------------------------------------------------------------------------------------

fn start_sim() -> SimEncoder {
    SimEncoder::start(SimConfig {
        swipe_delay: Duration::from_millis(5),
        ..SimConfig::default()
    })
    .expect("simulated encoder")
}

fn test_config(path: &str) -> SerialConfig {
    let mut config = SerialConfig::new(path);
    config.reply_timeout = Duration::from_millis(500);
    config.swipe_timeout = Duration::from_secs(3);
    config.reset_settle = Duration::ZERO;
    config.poll_interval = Duration::from_millis(20);
    config
}

fn open_encoder(sim: &SimEncoder) -> (SerialEncoder, mpsc::Receiver<EncoderEvent>) {
    let (tx, rx) = mpsc::channel();
    let encoder = SerialEncoder::open(test_config(&sim.path().to_string_lossy()))
        .expect("open the simulated encoder's pty")
        .with_observer(move |event| {
            let _ = tx.send(event.clone());
        });
    (encoder, rx)
}

/// The simulated encoder set to fail with `fault`, and an encoder opened on it with its events.
fn faulty(fault: SimFault) -> (SimEncoder, SerialEncoder, mpsc::Receiver<EncoderEvent>) {
    let sim = start_sim();
    sim.set_fault(fault);
    let (encoder, events) = open_encoder(&sim);
    (sim, encoder, events)
}

/// The simulated encoder with nobody swiping, and an encoder on it that waits `swipe_timeout`.
fn nobody_swipes(swipe_timeout: Duration) -> (SimEncoder, SerialEncoder) {
    let sim = start_sim();
    sim.set_fault(SimFault::NoSwipe);
    let mut config = test_config(&sim.path().to_string_lossy());
    config.swipe_timeout = swipe_timeout;
    let encoder = SerialEncoder::open(config).expect("open");
    (sim, encoder)
}

fn swipe_waits(events: &mpsc::Receiver<EncoderEvent>) -> Vec<(SwipePurpose, u32)> {
    events
        .try_iter()
        .filter_map(|e| match e {
            EncoderEvent::WaitingForSwipe {
                purpose, attempt, ..
            } => Some((purpose, attempt)),
            EncoderEvent::Sending { .. } | EncoderEvent::BadSwipe { .. } => None,
        })
        .collect()
}

#[test]
fn serial_write_three_tracks_and_read_back_equal() {
    let sim = start_sim();
    let (mut encoder, events) = open_encoder(&sim);
    let outcome = encoder
        .write_and_verify(&tracks())
        .expect("written and verified");
    assert_eq!(outcome.tracks, TrackNumber::ALL.to_vec());
    assert_eq!(outcome.bad_swipes, 0);

    let card = sim.card();
    assert_eq!(
        (
            card.track(1).as_deref(),
            card.track(2).as_deref(),
            card.track(3).as_deref()
        ),
        (Some(T1), Some(T2), Some(T3))
    );
    assert!(!format!("{card:?}").contains(PAN));
    assert_eq!(
        sim.log().commands,
        vec![
            SimCommand::Reset,
            SimCommand::HiCo,
            SimCommand::IsoWrite,
            SimCommand::IsoRead
        ]
    );
    assert_eq!(
        swipe_waits(&events),
        vec![(SwipePurpose::Write, 1), (SwipePurpose::ReadBack, 1)]
    );

    // The same port serves a second card; tracks left out read back empty.
    let outcome = encoder
        .encode(None, Some("5555=1"), None)
        .expect("second card");
    assert_eq!(outcome.tracks, vec![TrackNumber::Two]);
    assert_eq!(sim.card().track(1), None);
}

#[test]
fn serial_write_error_is_a_device_error() {
    let (sim, mut encoder, _events) = faulty(SimFault::WriteError);
    let err = encoder
        .write_and_verify(&tracks())
        .expect_err("write error");
    assert!(
        matches!(
            err,
            EncoderError::Flow(FlowError::Device {
                step: FlowStep::Write,
                error: DeviceError::ReadWrite
            })
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("status 31"), "{err}");
    assert_eq!(sim.card().track(2), None);
}

#[test]
fn serial_bad_swipes_are_retried_and_visible() {
    let (sim, mut encoder, events) = faulty(SimFault::BadSwipes(2));
    let outcome = encoder
        .write_and_verify(&tracks())
        .expect("third swipe works");
    assert_eq!(outcome.bad_swipes, 2);
    assert_eq!(
        swipe_waits(&events),
        vec![
            (SwipePurpose::Write, 1),
            (SwipePurpose::Write, 2),
            (SwipePurpose::Write, 3),
            (SwipePurpose::ReadBack, 1)
        ]
    );
    assert_eq!(sim.log().writes(), 3);
}

#[test]
fn serial_too_many_bad_swipes() {
    let (sim, mut encoder, _events) = faulty(SimFault::BadSwipes(10));
    let err = encoder.write_and_verify(&tracks()).expect_err("gives up");
    assert!(
        matches!(
            err,
            EncoderError::Flow(FlowError::TooManyBadSwipes {
                step: FlowStep::Write,
                count: 4
            })
        ),
        "{err:?}"
    );
    assert_eq!(sim.log().writes(), 4, "first try + 3 retries");
}

#[test]
fn serial_no_swipe_times_out_visibly() {
    let (sim, encoder) = nobody_swipes(Duration::from_millis(300));
    let (tx, events) = mpsc::channel();
    let mut encoder = encoder.with_observer(move |e| {
        let _ = tx.send(e.clone());
    });
    let started = Instant::now();
    let err = encoder.write_and_verify(&tracks()).expect_err("no swipe");
    assert!(
        matches!(err, EncoderError::SwipeTimeout { purpose: SwipePurpose::Write, timeout } if timeout == Duration::from_millis(300)),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(swipe_waits(&events), vec![(SwipePurpose::Write, 1)]);
    // The adapter resets the device after giving up.
    thread::sleep(Duration::from_millis(100));
    assert_eq!(sim.log().commands.last(), Some(&SimCommand::Reset));
}

#[test]
fn serial_silent_device_is_a_device_timeout() {
    let (_sim, mut encoder, _events) = faulty(SimFault::Silent);
    let err = encoder.write_and_verify(&tracks()).expect_err("no answer");
    assert!(
        matches!(
            err,
            EncoderError::DeviceTimeout {
                step: FlowStep::SetHiCo,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("did not answer set hi-co"),
        "{err}"
    );
}

#[test]
fn serial_read_back_mismatch_names_the_track() {
    let (_sim, mut encoder, _events) = faulty(SimFault::CorruptReadBack(2));
    let err = encoder.write_and_verify(&tracks()).expect_err("mismatch");
    assert!(
        matches!(&err, EncoderError::Flow(FlowError::Mismatch(TrackList(t))) if t == &vec![TrackNumber::Two]),
        "{err:?}"
    );
    assert!(!err.to_string().contains(PAN));
}

#[test]
fn serial_cancel_while_waiting_for_swipe() {
    let (_sim, encoder) = nobody_swipes(Duration::from_secs(20));
    let (tx, events) = mpsc::channel();
    let cancel: CancelHandle = encoder.cancel_handle();
    let mut encoder = encoder.with_observer(move |e| {
        let _ = tx.send(e.clone());
    });
    let canceller = thread::Builder::new()
        .name("test-cancel".into())
        .spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(EncoderEvent::WaitingForSwipe { .. }) =
                    events.recv_timeout(Duration::from_millis(50))
                {
                    cancel.cancel();
                    return true;
                }
            }
            false
        })
        .expect("spawn");
    let started = Instant::now();
    let err = encoder.write_and_verify(&tracks()).expect_err("cancelled");
    assert!(
        matches!(
            err,
            EncoderError::Cancelled {
                step: FlowStep::Write
            }
        ),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(canceller.join().expect("join"));
}

#[test]
fn invalid_tracks_never_reach_the_device() {
    let sim = start_sim();
    let (mut encoder, _events) = open_encoder(&sim);
    let bad = [
        (
            Some("b4000001234567899^lower"),
            None,
            None,
            TrackNumber::One,
        ),
        (None, Some(&*"4".repeat(38)), None, TrackNumber::Two),
        (None, None, Some("12?34"), TrackNumber::Three),
        (
            Some(&*"B".repeat(77)),
            Some("1"),
            Some("1"),
            TrackNumber::One,
        ),
    ];
    for (t1, t2, t3, track) in bad {
        let err = encoder.encode(t1, t2, t3).expect_err("invalid");
        assert!(
            matches!(err, EncoderError::InvalidTrack(TrackError::Rule { track: t, .. }) if t == track),
            "{err:?}"
        );
        assert!(!err.to_string().contains("lower"));
    }
    thread::sleep(Duration::from_millis(100));
    let log = sim.log();
    assert_eq!((log.bytes_received, log.writes()), (0, 0));
    // The port still works afterwards.
    assert!(encoder.encode(None, Some("1234"), None).is_ok());
    assert_eq!(sim.log().writes(), 1);
}

#[test]
fn missing_port_is_port_not_found() {
    let err =
        SerialEncoder::open(SerialConfig::new("/dev/persodesk-no-such-port")).expect_err("missing");
    assert!(
        matches!(&err, EncoderError::PortNotFound { path } if path == "/dev/persodesk-no-such-port"),
        "{err:?}"
    );
    assert!(err.to_string().contains("not found"));
}

// ------------------------------------------------------------------------------------------------
// The simulator on its own (raw bytes, no host protocol code)
// ------------------------------------------------------------------------------------------------

fn raw_port(sim: &SimEncoder) -> Box<dyn serialport::SerialPort> {
    serialport::new(sim.path().to_string_lossy(), 9600)
        .timeout(Duration::from_millis(50))
        .open()
        .expect("open pty")
}

/// Sends `bytes` and collects the reply until `len` bytes or 2 s.
fn exchange(port: &mut Box<dyn serialport::SerialPort>, bytes: &[u8], len: usize) -> Vec<u8> {
    port.write_all(bytes).expect("write");
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while got.len() < len && Instant::now() < deadline {
        if let Ok(n) = port.read(&mut buf) {
            got.extend_from_slice(buf.get(..n).unwrap_or_default());
        }
    }
    got
}

#[test]
fn sim_answers_simple_commands() {
    let sim = start_sim();
    let mut port = raw_port(&sim);
    assert_eq!(exchange(&mut port, &[0x1B, 0x65], 2), [0x1B, 0x79]);
    assert_eq!(exchange(&mut port, &[0x1B, 0x78], 2), [0x1B, 0x30]);
    assert_eq!(exchange(&mut port, &[0x1B, 0x79], 2), [0x1B, 0x30]);
    assert_eq!(exchange(&mut port, &[0x1B, 0x62, 0xD2], 2), [0x1B, 0x30]);
    assert_eq!(exchange(&mut port, &[0x1B, 0x62, 0x11], 2), [0x1B, 0x32]);
    assert_eq!(exchange(&mut port, &[0x1B, 0x00], 2), [0x1B, 0x34]);
    // A command split across writes is still one command.
    port.write_all(&[0x1B]).expect("write");
    thread::sleep(Duration::from_millis(30));
    assert_eq!(exchange(&mut port, &[0x65], 2), [0x1B, 0x79]);
}

#[test]
fn sim_reads_back_with_sentinels_and_rejects_bad_bodies_itself() {
    let sim = start_sim();
    let mut port = raw_port(&sim);
    let mut write = vec![0x1B, 0x77, 0x1B, 0x73, 0x1B, 0x01];
    write.extend_from_slice(b"B1^X");
    write.extend_from_slice(&[0x1B, 0x02]);
    write.extend_from_slice(b"12=3");
    write.extend_from_slice(&[0x1B, 0x03, 0x3F, 0x1C]);
    assert_eq!(exchange(&mut port, &write, 2), [0x1B, 0x30]);
    let mut expected = vec![0x1B, 0x73, 0x1B, 0x01];
    expected.extend_from_slice(b"%B1^X?");
    expected.extend_from_slice(&[0x1B, 0x02]);
    expected.extend_from_slice(b";12=3?");
    expected.extend_from_slice(&[0x1B, 0x03, 0x3F, 0x1C, 0x1B, 0x30]);
    assert_eq!(exchange(&mut port, &[0x1B, 0x72], expected.len()), expected);

    // Lower case on track 1 is refused by the simulator's own rules; the card keeps its data.
    let mut bad = vec![0x1B, 0x77, 0x1B, 0x73, 0x1B, 0x01];
    bad.extend_from_slice(b"b1");
    bad.extend_from_slice(&[0x1B, 0x02, 0x1B, 0x03, 0x3F, 0x1C]);
    assert_eq!(exchange(&mut port, &bad, 2), [0x1B, 0x32]);
    assert_eq!(sim.card().track(1).as_deref(), Some("B1^X"));
    assert_eq!(sim.log().commands.last(), Some(&SimCommand::BadWrite));
}

// ------------------------------------------------------------------------------------------------
// `persodesk sim-encoder` runner
// ------------------------------------------------------------------------------------------------

struct ChannelWriter(mpsc::Sender<String>);

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = self.0.send(String::from_utf8_lossy(buf).into_owned());
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn blocking_runner_prints_the_path_serves_and_stops_on_sigterm() {
    use nix::sys::pthread::{pthread_kill, pthread_self};
    use nix::sys::signal::Signal;

    let (out_tx, out_rx) = mpsc::channel();
    let (id_tx, id_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    let runner = thread::Builder::new()
        .name("test-sim-runner".into())
        .spawn(move || {
            let _ = id_tx.send(pthread_self());
            let result = run_sim_encoder_blocking(SimConfig::default(), &mut ChannelWriter(out_tx));
            let _ = done_tx.send(result.is_ok());
        })
        .expect("spawn");
    let id = id_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("runner thread id");
    // The path is printed only after the signals are blocked, so signalling afterwards is safe.
    let first = out_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("path line");
    let path = first
        .trim()
        .strip_prefix("encoder device: ")
        .expect("path line format")
        .to_owned();
    assert!(path.starts_with("/dev/"), "{path}");

    let mut encoder = SerialEncoder::open(test_config(&path)).expect("open runner's pty");
    assert!(encoder.encode(None, Some("1234"), None).is_ok());

    pthread_kill(id, Signal::SIGTERM).expect("signal the runner");
    assert_eq!(done_rx.recv_timeout(Duration::from_secs(5)), Ok(true));
    runner.join().expect("join");
    let rest: String = out_rx.try_iter().collect();
    assert!(rest.contains("stopping"), "{rest}");
}

#[test]
fn encoders_can_move_to_a_worker_thread() {
    fn assert_send<T: Send>() {}
    assert_send::<SerialEncoder>();
    assert_send::<Box<dyn Encoder + Send>>();
    assert_send::<SimEncoder>();
    // A simulator and a serial encoder behind the trait object the GUI would hold.
    let sim = start_sim();
    let encoder = SerialEncoder::open(test_config(&sim.path().to_string_lossy())).expect("open");
    let mut boxed: Box<dyn Encoder + Send> = Box::new(encoder);
    let worker = thread::Builder::new()
        .name("test-encoder-worker".into())
        .spawn(move || boxed.encode(Some("B1^X"), None, None).map(|o| o.tracks))
        .expect("spawn");
    assert_eq!(
        worker.join().expect("join").expect("written"),
        vec![TrackNumber::One]
    );
}
