//! The fault matrix: for every step of a personalization — SELECT, INITIALIZE UPDATE, EXTERNAL
//! AUTHENTICATE, each STORE DATA, the read-back (GPO and GENERATE AC) and the stripe write — and
//! every fault that can hit it — card removed, reader gone, timeout, an error status word, a
//! corrupted response, a truncated response, a wrong MAC — one run of `persodesk::job` with the
//! in-process virtual card and the simulated encoder on a real pty, against a fresh store.
//!
//! Each case asserts: the failure names the step; the order is CARD_PROD_FAILED with that step in
//! its reason; the audit trail's last record is `perso-failed` naming it, and no `perso-done`
//! was recorded; no success was reported (no stripe written after a chip failure); then a retry
//! on a fresh card (and a healthy encoder) ends in CARD_PROD_DONE. The matrix prints its size.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use persodesk::devices::encoder::SerialConfig;
use persodesk::devices::transport::{CardTransport, TransportError};
use persodesk::domain::chip::ChipModel;
use persodesk::domain::chip::ChipProfiles;
use persodesk::domain::order::{Order, parse_order_file};
use persodesk::domain::prepare::PersoData;
use persodesk::domain::prepare::{ModelChoice, prepare_card};
use persodesk::domain::product::Catalog;
use persodesk::domain::review::{Role, Session};
use persodesk::job::{self, CardConnector, CardJob, SerialStripe, StripeWriter};
use persodesk::keys::SoftwareKeyStore;
use persodesk::sim::card::channel::{CardKeySource, CardProtocol, KmcMethod};
use persodesk::sim::card::{CardConfig, CardCvn, VirtualCard};
use persodesk::sim::encoder::{SimConfig, SimEncoder, SimFault};
use persodesk::store::Store;
use support::demo;

const ORDER: &str = "DEMO-VISA-0001";

/// What goes wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    CardRemoved,
    ReaderGone,
    Timeout,
    ErrorStatus,
    Corrupted,
    Truncated,
    WrongMac,
}

const FAULTS: [Fault; 7] = [
    Fault::CardRemoved,
    Fault::ReaderGone,
    Fault::Timeout,
    Fault::ErrorStatus,
    Fault::Corrupted,
    Fault::Truncated,
    Fault::WrongMac,
];

/// Which command: the connection (0 personalization, 1 read-back), its INS and occurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Target {
    connection: u32,
    ins: u8,
    nth: u32,
}

/// A step of the matrix and the step name the failure must carry.
#[derive(Debug, Clone)]
enum Step {
    Card {
        label: String,
        target: Target,
        expect: &'static str,
    },
    Stripe,
}

/// The virtual card behind a connector that counts commands and injects one fault.
struct Rig {
    card: VirtualCard,
    connections: u32,
    plan: Option<(Target, Fault)>,
    count: u32,
    fired: bool,
}

impl Rig {
    /// A fresh virtual card, no fault planned yet.
    fn fresh(d: &Demo) -> Rig {
        Rig {
            card: fresh_card(d),
            connections: 0,
            plan: None,
            count: 0,
            fired: false,
        }
    }
}

/// An empty directory `persodesk-<name>-<pid>` under the temporary directory.
fn fresh_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("persodesk-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

struct Link<'a> {
    rig: &'a mut Rig,
    connection: u32,
}

impl CardConnector for Rig {
    fn connect(&mut self) -> Result<Box<dyn CardTransport + '_>, TransportError> {
        if self.fired && matches!(self.plan, Some((_, Fault::CardRemoved | Fault::ReaderGone))) {
            return Err(TransportError::NoCard("virtual".into()));
        }
        self.card.reset();
        let connection = self.connections;
        self.connections += 1;
        self.count = 0;
        Ok(Box::new(Link {
            rig: self,
            connection,
        }))
    }
}

fn flip_mac(apdu: &mut [u8]) {
    if let Some(last) = apdu.last_mut() {
        *last ^= 0x01;
    }
}

impl CardTransport for Link<'_> {
    fn transmit_raw(&mut self, apdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        let rig = &mut *self.rig;
        if rig.fired && matches!(rig.plan, Some((_, Fault::CardRemoved))) {
            return Err(TransportError::CardRemoved);
        }
        let ins = apdu.get(1).copied().unwrap_or(0);
        let hit = match rig.plan {
            Some((t, fault)) if t.connection == self.connection && t.ins == ins && !rig.fired => {
                rig.count += 1;
                (rig.count == t.nth).then_some(fault)
            }
            _ => None,
        };
        let Some(fault) = hit else {
            return Ok(rig.card.process(apdu));
        };
        rig.fired = true;
        match fault {
            Fault::CardRemoved => Err(TransportError::CardRemoved),
            Fault::ReaderGone => Err(TransportError::ReaderGone("virtual".into())),
            Fault::Timeout => Err(TransportError::Timeout),
            Fault::ErrorStatus => {
                let _ = rig.card.process(apdu);
                Ok(vec![0x6F, 0x00])
            }
            Fault::Corrupted => Ok(rig.card.process(apdu).iter().map(|b| b ^ 0x5A).collect()),
            Fault::Truncated => Ok(rig.card.process(apdu).into_iter().take(1).collect()),
            Fault::WrongMac => {
                if ins == 0x50 {
                    // The card's cryptogram (last 8 data bytes) does not verify.
                    let mut r = rig.card.process(apdu);
                    let n = r.len();
                    if let Some(b) = r.get_mut(n.saturating_sub(3)) {
                        *b ^= 0x01;
                    }
                    Ok(r)
                } else if ins == 0xAE {
                    // The application cryptogram (9F26) does not verify.
                    let mut r = rig.card.process(apdu);
                    if let Some(i) = r.windows(3).position(|w| w == [0x9F, 0x26, 0x08])
                        && let Some(b) = r.get_mut(i + 3)
                    {
                        *b ^= 0x01;
                    }
                    Ok(r)
                } else {
                    // The host's C-MAC (last bytes of the command) does not verify.
                    let mut bad = apdu.to_vec();
                    flip_mac(&mut bad);
                    Ok(rig.card.process(&bad))
                }
            }
        }
    }

    fn reader_name(&self) -> &str {
        "virtual"
    }
}

struct Demo {
    keys: SoftwareKeyStore,
    catalog: Catalog,
    profiles: ChipProfiles,
    order: Order,
    data: PersoData,
    kmc: Vec<u8>,
}

fn demo() -> Demo {
    demo_of(ORDER)
}

fn demo_of(id: &str) -> Demo {
    let keys = demo::keys();
    let catalog = demo::catalog();
    let profiles = demo::chip_profiles();
    let order = parse_order_file(&demo::read(demo::ORDERS), &catalog.order_rules())
        .expect("order file")
        .into_iter()
        .find(|e| e.id == id)
        .expect("demo order")
        .outcome
        .expect("valid order");
    let product = catalog.get(&order.card_product_id).expect("product");
    let inputs = demo::prep_inputs(&profiles, &keys);
    let data = prepare_card(
        &order,
        product,
        ModelChoice::Only(ChipModel::Model1),
        &inputs,
    )
    .expect("prepared");
    let (kmc, _) = keys.test_kmc(1).expect("kmc #1");
    Demo {
        kmc: kmc.to_vec(),
        keys,
        catalog,
        profiles,
        order,
        data,
    }
}

fn fresh_card(d: &Demo) -> VirtualCard {
    let keys = CardKeySource::Kmc {
        kmc: zeroize::Zeroizing::new(d.kmc.clone()),
        method: KmcMethod::EmvCps11,
    };
    let mut config = CardConfig::new(CardProtocol::Scp02 { i: 0x55 }, keys, [1, 2, 3, 4]);
    config.cvn = CardCvn::Visa18;
    VirtualCard::new(config).expect("virtual card")
}

fn job<'a>(d: &'a Demo) -> CardJob<'a> {
    let product = d.catalog.get(&d.order.card_product_id).expect("product");
    let name = product.chip_profile.as_deref().expect("chip product");
    let profile = d.profiles.get(name).expect("profile");
    CardJob {
        order: &d.order,
        data: &d.data,
        keys: &d.keys,
        chip: Some((profile, profile.channel.clone())),
    }
}

fn tester() -> Session {
    Session {
        user: "matrix".into(),
        role: Role::Tester,
    }
}

fn store(dir: &Path, case: usize) -> Store {
    let mut s = Store::open(&dir.join(format!("case-{case}.sqlite3"))).expect("store");
    s.record_preparation(&[(ORDER, None)]).expect("prepared");
    s
}

fn stripe(sim: &SimEncoder) -> SerialStripe<fn(&persodesk::devices::encoder::EncoderEvent)> {
    let mut config = SerialConfig::new(sim.path().display().to_string());
    config.reply_timeout = Duration::from_millis(300);
    config.swipe_timeout = Duration::from_millis(300);
    config.flow.max_bad_swipes = 1;
    SerialStripe {
        config,
        observer: |_| {},
    }
}

/// One personalization through the job: authorize, run, record.
fn attempt(d: &Demo, store: &mut Store, rig: &mut Rig, sim: &SimEncoder) -> job::JobReport {
    job::authorize(store, &tester(), ORDER, &d.data).expect("authorized");
    let mut writer = stripe(sim);
    let report = job::run(
        &job(d),
        Some(rig as &mut dyn CardConnector),
        Some(&mut writer as &mut dyn StripeWriter),
        &mut |_| {},
    );
    job::record(store, &tester(), ORDER, &report).expect("recorded");
    report
}

fn steps(store_data_commands: u32) -> Vec<Step> {
    let card = |label: String, connection, ins, nth, expect| Step::Card {
        label,
        target: Target {
            connection,
            ins,
            nth,
        },
        expect,
    };
    let mut v = vec![
        card("SELECT".into(), 0, 0xA4, 1, "SELECT"),
        card("INITIALIZE UPDATE".into(), 0, 0x50, 1, "INITIALIZE UPDATE"),
        card(
            "EXTERNAL AUTHENTICATE".into(),
            0,
            0x82,
            1,
            "EXTERNAL AUTHENTICATE",
        ),
    ];
    for n in 1..=store_data_commands {
        v.push(card(format!("STORE DATA #{n}"), 0, 0xE2, n, "STORE DATA"));
    }
    v.push(card("read-back GPO".into(), 1, 0xA8, 1, job::READ_BACK));
    v.push(card(
        "read-back GENERATE AC".into(),
        1,
        0xAE,
        1,
        job::READ_BACK,
    ));
    v.push(Step::Stripe);
    v
}

fn stripe_fault(fault: Fault) -> Option<SimFault> {
    match fault {
        Fault::CardRemoved | Fault::Timeout => Some(SimFault::NoSwipe),
        Fault::ReaderGone => Some(SimFault::Silent),
        Fault::ErrorStatus => Some(SimFault::WriteError),
        Fault::Corrupted => Some(SimFault::CorruptReadBack(2)),
        Fault::Truncated => Some(SimFault::BadSwipes(u32::MAX)),
        Fault::WrongMac => None,
    }
}

#[test]
fn every_step_and_every_fault_fails_cleanly_and_a_retry_works() {
    let d = demo();
    let dir = fresh_dir("matrix");
    let sim = SimEncoder::start(SimConfig {
        swipe_delay: Duration::from_millis(2),
        ..SimConfig::default()
    })
    .expect("simulated encoder");

    // A clean run first: it must pass, and it tells how many STORE DATA commands there are.
    let mut clean = Rig {
        card: fresh_card(&d),
        connections: 0,
        plan: Some((
            Target {
                connection: 9,
                ins: 0,
                nth: 0,
            },
            Fault::Timeout,
        )),
        count: 0,
        fired: false,
    };
    let mut s = store(&dir, 0);
    let report = attempt(&d, &mut s, &mut clean, &sim);
    assert!(report.succeeded(), "clean run: {:?}", report.failure);
    // Every STORE DATA of the first connection: the application's, then the PPSE instance's.
    let transcript = report.transcript.as_ref().expect("transcript");
    let store_data = u32::try_from(
        transcript
            .entries
            .iter()
            .filter(|e| e.header.get(3..5) == Some("E2"))
            .count(),
    )
    .expect("count");
    assert!(store_data >= 21, "{store_data} STORE DATA commands");

    let started = Instant::now();
    let mut cases = 0usize;
    for step in steps(store_data) {
        for fault in FAULTS {
            let mut rig = Rig::fresh(&d);
            let (label, expect) = match &step {
                Step::Card {
                    label,
                    target,
                    expect,
                } => {
                    if fault == Fault::WrongMac && (target.ins == 0xA4 || target.ins == 0xA8) {
                        continue; // no MAC on SELECT and GPO
                    }
                    rig.plan = Some((*target, fault));
                    (label.clone(), *expect)
                }
                Step::Stripe => {
                    let Some(f) = stripe_fault(fault) else {
                        continue;
                    };
                    sim.set_fault(f);
                    ("stripe write".to_string(), "stripe")
                }
            };
            cases += 1;
            let case = format!("{label} × {fault:?}");
            let mut store = store(&dir, cases);
            let report = attempt(&d, &mut store, &mut rig, &sim);
            sim.set_fault(SimFault::None);

            let failure = report
                .failure
                .as_ref()
                .unwrap_or_else(|| panic!("{case}: reported success"));
            assert!(
                failure.step.to_string().starts_with(expect),
                "{case}: failed at {} ({})",
                failure.step,
                failure.message
            );
            if !matches!(step, Step::Stripe) {
                assert!(
                    report.stripe.is_none(),
                    "{case}: stripe written after a chip failure"
                );
                let kind = match fault {
                    Fault::Timeout => job::FailureKind::Timeout,
                    Fault::ReaderGone => job::FailureKind::DeviceUnavailable,
                    _ => job::FailureKind::CardFailed,
                };
                assert_eq!(failure.kind, kind, "{case}");
            }
            let state = store.state(ORDER).expect("state").expect("order");
            assert_eq!(state.status.as_str(), "CARD_PROD_FAILED", "{case}");
            assert!(
                state
                    .reason
                    .as_deref()
                    .is_some_and(|r| r.starts_with(expect)),
                "{case}: reason {:?}",
                state.reason
            );
            let trail = store.audit_trail(10).expect("audit");
            let last = trail.first().expect("an audit record");
            assert_eq!(last.action, "perso-failed", "{case}");
            assert!(last.outcome.contains(expect), "{case}: {}", last.outcome);
            assert!(
                trail.iter().all(|r| r.action != "perso-done"),
                "{case}: a perso-done was recorded"
            );

            // A fresh card (and a healthy encoder): the same order goes through.
            let mut retry = Rig::fresh(&d);
            let again = attempt(&d, &mut store, &mut retry, &sim);
            assert!(
                again.succeeded(),
                "{case}: retry failed: {:?}",
                again.failure
            );
            let state = store.state(ORDER).expect("state").expect("order");
            assert_eq!(state.status.as_str(), "CARD_PROD_DONE", "{case}: retry");
        }
    }
    sim.stop();
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "fault matrix: {cases} cases ({} steps incl. {store_data} STORE DATA commands × {} faults, \
         minus the MAC-less ones), each failed cleanly and retried on a fresh card, in {:?}",
        steps(store_data).len(),
        FAULTS.len(),
        started.elapsed()
    );
    assert!(cases >= 180, "{cases} cases");
}

/// CDA (the M/Chip demo profile announces it): the AC travels inside the card's signature, so a
/// bit flipped in the signed dynamic data (9F4B) of GENERATE AC fails the read-back, and the
/// same card read back untouched passes.
#[test]
fn a_tampered_cda_signature_fails_the_read_back() {
    let d = demo_of("DEMO-MC-0001");
    let product = d.catalog.get(&d.order.card_product_id).expect("product");
    let profile = d
        .profiles
        .get(product.chip_profile.as_deref().expect("chip"))
        .expect("profile");
    let job = CardJob {
        order: &d.order,
        data: &d.data,
        keys: &d.keys,
        chip: Some((profile, profile.channel.clone())),
    };
    let mut rig = Rig {
        card: support::card_for(profile, &d.keys),
        connections: 0,
        plan: None,
        count: 0,
        fired: false,
    };
    let report = job::run(
        &job,
        Some(&mut rig as &mut dyn CardConnector),
        None,
        &mut |_| {},
    );
    assert!(report.succeeded(), "{:?}", report.failure);
    let checks = &report.chip.expect("chip").read_back;
    assert!(
        checks
            .iter()
            .any(|c| c.check.starts_with("CDA:") && c.status == "pass"),
        "CDA was verified"
    );

    // Read the same card again through a transport that flips one bit of the SDAD.
    struct FlipSdad<'a>(&'a mut VirtualCard);
    impl CardTransport for FlipSdad<'_> {
        fn transmit_raw(&mut self, apdu: &[u8]) -> Result<Vec<u8>, TransportError> {
            let mut r = self.0.process(apdu);
            if apdu.get(1) == Some(&0xAE)
                && let Some(i) = r.windows(3).position(|w| w[..2] == [0x9F, 0x4B])
                && let Some(b) = r.get_mut(i + 20)
            {
                *b ^= 0x01;
            }
            Ok(r)
        }
        fn reader_name(&self) -> &str {
            "flip"
        }
    }
    rig.card.reset();
    let ca = persodesk::verify::ca_for(&d.keys, d.data.chip.as_ref(), &profile.aid);
    let rb = persodesk::verify::read_card(&mut FlipSdad(&mut rig.card), ca, Some(&profile.aid))
        .expect("read");
    let cda = rb
        .checks
        .iter()
        .find(|c| c.name.starts_with("CDA:"))
        .expect("a CDA check");
    assert!(
        matches!(cda.outcome, persodesk::domain::readback::Outcome::Fail(_)),
        "{cda}"
    );
    assert!(rb.arqc.is_none(), "no ARQC taken from a bad signature");
}

fn rig_with(card: VirtualCard) -> Rig {
    Rig {
        card,
        connections: 0,
        plan: None,
        count: 0,
        fired: false,
    }
}

/// The order's audit actions, oldest first.
fn actions(store: &Store) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = store
        .audit_trail(200)
        .expect("audit trail")
        .into_iter()
        .filter(|r| r.order_id.as_deref() == Some(ORDER))
        .map(|r| (r.action, r.outcome))
        .collect();
    v.reverse();
    v
}

/// Issue #18 item 1: a card that is already personalized (the virtual card answers 6985 to the
/// first STORE DATA, GlobalPlatform's "conditions of use not satisfied") or whose secure channel
/// differs from the plan (SCP03 planned, the card reports SCP02 in its INITIALIZE UPDATE answer)
/// is refused at the card check before anything is written: the approved order goes back to
/// CARD_PROD_READY (not FAILED), audited as `perso-refused`; a fresh card then goes through.
#[test]
fn a_card_that_is_not_fresh_is_refused_before_the_order_is_touched() {
    use persodesk::domain::gp::session::Protocol;
    use persodesk::domain::status::Status;
    let d = demo();
    let dir = fresh_dir("cardcheck");
    let supervisor = Session {
        user: "sam".into(),
        role: Role::Supervisor,
    };
    let approved_store = |case| {
        let mut s = store(&dir, case);
        let evidence = job::evidence(&s, &d.data).expect("evidence");
        s.approve(ORDER, &supervisor, &evidence).expect("approved");
        s
    };
    let run = |store: &mut Store, rig: &mut Rig, chip: CardJob<'_>| {
        job::authorize(store, &tester(), ORDER, &d.data).expect("authorized");
        let report = job::run(
            &chip,
            Some(rig as &mut dyn CardConnector),
            None,
            &mut |_| {},
        );
        job::record(store, &tester(), ORDER, &report).expect("recorded");
        report
    };

    // A first card, personalized for the order.
    let mut rig = rig_with(fresh_card(&d));
    let mut first = approved_store(100);
    assert!(run(&mut first, &mut rig, job(&d)).succeeded());

    // The same card again (another store: the order is ready there).
    let mut second = approved_store(101);
    let report = run(&mut second, &mut rig, job(&d));
    let f = report.failure.as_ref().expect("refused");
    assert_eq!(f.kind, job::FailureKind::CardNotFresh, "{f:?}");
    assert_eq!(f.step, job::Step::CardCheck);
    assert!(f.message.contains("already personalized"), "{}", f.message);
    assert!(f.message.contains("6985"), "{}", f.message);
    assert!(f.message.contains("insert a fresh card"), "{}", f.message);
    assert!(!f.chip_written, "the refused STORE DATA wrote nothing");
    let state = second.state(ORDER).expect("state").expect("order");
    assert_eq!(state.status, Status::Ready, "{state:?}");
    assert!(state.approved, "the approval stands");
    let trail = actions(&second);
    let (last, outcome) = trail.last().expect("audited");
    assert_eq!(last, "perso-refused", "{trail:?}");
    assert!(
        outcome.starts_with("CARD_PROD_READY: card check: "),
        "{outcome}"
    );
    assert!(!trail.iter().any(|(a, _)| a == "perso-failed"), "{trail:?}");

    // A fresh card of another secure channel than the plan's.
    let product = d.catalog.get(&d.order.card_product_id).expect("product");
    let profile = d
        .profiles
        .get(product.chip_profile.as_deref().expect("chip"))
        .expect("profile");
    let scp03 = job::ChannelOverride {
        protocol: Some(Protocol::Scp03 { i: 0x70 }),
        // The demo key store's AES KMC.
        kmc_index: Some(2),
    };
    let other = CardJob {
        chip: Some((profile, scp03.apply(profile))),
        ..job(&d)
    };
    let mut fresh = rig_with(fresh_card(&d));
    let report = run(&mut second, &mut fresh, other);
    let f = report.failure.as_ref().expect("refused");
    assert_eq!(f.kind, job::FailureKind::CardNotFresh, "{f:?}");
    assert!(
        f.message.contains("secure channel differs"),
        "{}",
        f.message
    );
    assert_eq!(
        second.state(ORDER).expect("state").expect("order").status,
        Status::Ready
    );

    // The same fresh card with the profile's channel: done.
    assert!(run(&mut second, &mut fresh, job(&d)).succeeded());
    assert_eq!(
        second.state(ORDER).expect("state").expect("order").status,
        Status::Done
    );
}

/// Issue #18 item 2: a run cancelled after its first STORE DATA was sent knows the chip is
/// written; the stored reason says the card is spoiled. One cancelled before any STORE DATA
/// does not.
#[test]
fn a_cancel_after_store_data_stores_that_the_chip_is_partly_written() {
    use persodesk::domain::gp::session::StepName;
    let d = demo();
    let dir = fresh_dir("cancel");
    let cancel_at = |store_data: u16| {
        let mut s = store(&dir, usize::from(store_data) + 200);
        job::authorize(&mut s, &tester(), ORDER, &d.data).expect("authorized");
        let token = job::CancelToken::new();
        let mut rig = rig_with(fresh_card(&d));
        let report = job::run_cancellable(
            &job(&d),
            Some(&mut rig as &mut dyn CardConnector),
            None,
            &token,
            &mut |e| match e {
                job::JobEvent::Perso(p)
                    if p.step == StepName::StoreData && p.store_data_sent >= store_data =>
                {
                    token.cancel()
                }
                job::JobEvent::Perso(p)
                    if store_data == 0 && p.step == StepName::ExternalAuthenticate =>
                {
                    token.cancel()
                }
                _ => {}
            },
        );
        job::record(&mut s, &tester(), ORDER, &report).expect("recorded");
        let reason = s.state(ORDER).expect("state").expect("order").reason;
        (report.failure.expect("cancelled"), reason.expect("reason"))
    };
    // Cancelled while the third STORE DATA is about to go: two were sent and answered.
    let (f, reason) = cancel_at(3);
    assert_eq!(f.kind, job::FailureKind::Cancelled);
    assert!(f.chip_written);
    assert!(reason.contains(job::CHIP_PARTLY_WRITTEN), "{reason}");
    assert!(reason.contains("destroy this card"), "{reason}");
    // Cancelled at EXTERNAL AUTHENTICATE: nothing written.
    let (f, reason) = cancel_at(0);
    assert_eq!(f.kind, job::FailureKind::Cancelled);
    assert!(!f.chip_written, "{f:?}");
    assert!(!reason.contains(job::CHIP_PARTLY_WRITTEN), "{reason}");
}
