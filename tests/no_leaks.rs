//! Nothing sensitive leaks: the demo flows — prepare (Model 1 and Model 2), personalize on the
//! virtual card, read back, write the stripe on the simulated encoder, record in the store, and
//! a few bad inputs — run with tracing at TRACE into a buffer. Every PAN, track, key value, and
//! clear value of a sensitive DGI (keys, PIN block, ICC private key) or record DGI they used is
//! collected, and none may appear in the log, the error
//! messages, the `Debug` output of the public types, the APDU transcripts or the store.
//!
//! Values of 3 or 4 digits (CVV, iCVV, PVV, PIN) are checked as part of the tracks and DGIs that
//! carry them: on their own they occur everywhere by chance (dates, counters, lengths).

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use persodesk::devices::encoder::SerialConfig;
use persodesk::devices::transport::{CardTransport, TransportError, VirtualTransport};
use persodesk::domain::chip::preview::preview;
use persodesk::domain::order::parse_order_file;
use persodesk::domain::prepare::{ModelChoice, prepare_card};
use persodesk::domain::review::{Role, Session};
use persodesk::domain::track::TrackNo;
use persodesk::job::{self, CardConnector, CardJob, SerialStripe, StripeWriter};
use persodesk::sim::encoder::{SimConfig, SimEncoder};
use persodesk::store::Store;
use support::{demo, root};

/// A tracing writer into a shared buffer.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct OneCard(VirtualTransport);

impl CardConnector for OneCard {
    fn connect(&mut self) -> Result<Box<dyn CardTransport + '_>, TransportError> {
        self.0.card.reset();
        Ok(Box::new(&mut self.0))
    }
}

/// Hex values (keys, RSA parts) of the key store file: every quoted hex string of 16+ digits.
fn key_values(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| {
            ["value", "p ", "q ", "p=", "q="]
                .iter()
                .any(|k| l.trim_start().starts_with(k))
        })
        .filter_map(|l| l.split('"').nth(1))
        .filter(|v| v.len() >= 16 && v.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_string)
        .collect()
}

#[test]
fn no_flow_leaks_card_data_or_keys() {
    let log = Buffer::default();
    let writer = log.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let keys_text = std::fs::read_to_string(root().join("assets/demo/keys.toml")).expect("keys");
    let keys = demo::keys();
    let catalog = demo::catalog();
    let profiles = demo::chip_profiles();
    let dir = std::env::temp_dir().join(format!("persodesk-leaks-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let db = dir.join("store.sqlite3");
    let mut store = Store::open(&db).expect("store");
    let sim = SimEncoder::start(SimConfig {
        swipe_delay: Duration::from_millis(2),
        ..SimConfig::default()
    })
    .expect("simulated encoder");
    let who = Session {
        user: "leaks".into(),
        role: Role::Tester,
    };
    let inputs = demo::prep_inputs(&profiles, &keys);

    let mut secrets: Vec<(&str, String)> = key_values(&keys_text)
        .into_iter()
        .map(|k| ("key value", k))
        .collect();
    let mut outputs: Vec<(&str, String)> = Vec::new();
    let mut cards = 0;
    for file in [demo::ORDERS, demo::ORDERS_MODEL2] {
        let entries =
            parse_order_file(&demo::read(file), &catalog.order_rules()).expect("order file");
        for entry in &entries {
            outputs.push(("OrderEntry Debug", format!("{entry:?}")));
            let order = entry.outcome.as_ref().expect("valid demo order");
            let product = catalog.get(&order.card_product_id).expect("product");
            let data = prepare_card(order, product, ModelChoice::Auto, &inputs).expect("prepared");
            secrets.push(("PAN", order.pan.reveal().to_string()));
            for no in [TrackNo::T1, TrackNo::T2, TrackNo::T3] {
                if let Some(t) = data.tracks.get(no) {
                    secrets.push(("track", t.reveal().to_string()));
                    outputs.push(("masked track", t.masked()));
                }
            }
            let chip = data.chip.as_ref().expect("chip data");
            // Sensitive DGIs (keys, PIN, ICC private key: sent encrypted), records (PAN, track
            // 2 equivalent, names) and anything holding the PAN. Previews show the other DGIs'
            // values (FCI, AIP/AFL, ...) by design, masked per tag.
            let pan_hex = order.pan.reveal().to_string();
            for d in &chip.dgis {
                let hex_value = hex::encode_upper(d.dgi.value());
                let sensitive = d.encrypt || d.dgi.is_record() || hex_value.contains(&pan_hex);
                if sensitive && d.dgi.value().len() >= 8 {
                    secrets.push(("clear sensitive DGI", hex_value));
                }
            }
            outputs.push(("Order Debug", format!("{order:?}")));
            outputs.push(("PersoData Debug", format!("{data:?}")));
            outputs.push(("ChipData Debug", format!("{chip:?}")));
            outputs.push(("chip preview", format!("{:?}", preview(chip, false))));

            // Personalize, read back, stripe, record.
            store
                .record_preparation(&[(entry.id.as_str(), None)])
                .expect("prepared in store");
            let profile = profiles
                .get(product.chip_profile.as_deref().expect("chip profile"))
                .expect("profile");
            job::authorize(&mut store, &who, &entry.id, &data).expect("authorized");
            let mut card = OneCard(VirtualTransport::new(support::card_for(profile, &keys)));
            let mut config = SerialConfig::new(sim.path().display().to_string());
            config.swipe_timeout = Duration::from_secs(3);
            let mut stripe = SerialStripe {
                config,
                observer: |_: &persodesk::devices::encoder::EncoderEvent| {},
            };
            let job = CardJob {
                order,
                data: &data,
                keys: &keys,
                chip: Some((profile, profile.channel.clone())),
            };
            let report = job::run(
                &job,
                Some(&mut card as &mut dyn CardConnector),
                Some(&mut stripe as &mut dyn StripeWriter),
                &mut |e| outputs.push(("JobEvent Debug", format!("{e:?}"))),
            );
            assert!(report.succeeded(), "{}: {:?}", entry.id, report.failure);
            job::record(&mut store, &who, &entry.id, &report).expect("recorded");
            outputs.push(("JobReport Debug", format!("{report:?}")));
            outputs.push((
                "chip outcome JSON",
                serde_json::to_string(&report.chip).expect("json"),
            ));
            if let Some(t) = &report.transcript {
                outputs.push(("transcript", t.to_string()));
                outputs.push(("transcript Debug", format!("{t:?}")));
            }
            // The card as a terminal reads it, on its own.
            let rb =
                persodesk::verify::read_card(&mut card.0, None, Some(&chip.aid)).expect("read");
            outputs.push(("ReadBack Debug", format!("{rb:?}")));
            outputs.extend(rb.checks.iter().map(|c| ("read-back check", c.to_string())));
            cards += 1;
        }
    }

    // Bad input: errors carry paths and rules, never the values.
    let bad = r#"{"cardProductId":"DEMO_VISA_CREDIT","encryptedData":{"pan":"4761739001010010","exp":"3013","encodedName":"4761739001010010","cvv1":"12a"}}"#;
    for entry in parse_order_file(bad, &catalog.order_rules()).expect("parsed") {
        outputs.push(("OrderEntry Debug", format!("{entry:?}")));
        if let Err(findings) = &entry.outcome {
            outputs.extend(findings.iter().map(|f| ("finding", f.to_string())));
        }
    }
    sim.stop();
    drop(store);

    let mut stored = std::fs::read(&db).expect("store file");
    if let Ok(wal) = std::fs::read(db.with_extension("sqlite3-wal")) {
        stored.extend(wal);
    }
    let stored = String::from_utf8_lossy(&stored).into_owned();
    let logged = String::from_utf8_lossy(&log.0.lock().expect("log")).into_owned();
    assert!(
        logged.len() > 1000,
        "the flows logged at TRACE ({} bytes)",
        logged.len()
    );
    secrets.sort();
    secrets.dedup();
    let mut checked = 0;
    for (what, secret) in &secrets {
        for form in [secret.clone(), secret.to_ascii_lowercase()] {
            assert!(
                !logged.contains(&form),
                "log carries a secret ({} chars)",
                form.len()
            );
            assert!(!stored.contains(&form), "store carries a {what}");
            for (kind, o) in &outputs {
                assert!(!o.contains(&form), "{kind} carries a {what}");
            }
            checked += 1;
        }
    }
    println!(
        "{cards} cards, {} secrets (PANs, tracks, key values, clear DGIs) in upper and lower case, \
         against {} bytes of log, {} outputs and the store: {checked} checks, no leak",
        secrets.len(),
        logged.len(),
        outputs.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
