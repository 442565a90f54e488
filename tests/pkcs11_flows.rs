//! Every demo flow on a SoftHSM2 token holding the demo keys (issue #15), beyond what
//! tests/pkcs11.rs proves: the persisted ICC key pool (`keys pool fill`, then `prepare` taking
//! its pairs), the shared-store stations (`station run` through pcscd + vpcd on `sim-card`)
//! and the workstation window (egui_kittest), each with `--keys` a PKCS#11 store file.
//!
//! The token is made as a bureau would for a demo: `softhsm2-util --init-token`, then
//! `persodesk keys import --from assets/demo/keys.toml`. The card side stays independent of it:
//! a simulated card holds its own keys (the demo software key file), as a real card does.
//! SoftHSM2 reads `SOFTHSM2_CONF` once per process, so what opens the token in this process
//! (the window) runs in a child process of this test binary (`child_*`, ignored in a plain
//! run). Without SoftHSM2 (or pcscd for the stations) the tests say so loudly and skip.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use serde_json::Value;

mod support;
use support::softhsm::{self, TokenDir};

const PIN: &str = "246810";
const SO_PIN: &str = "13579111";
const TOKEN: &str = "persodesk-demo";
const PIN_ENV: &str = "PERSODESK_TEST_HSM_PIN";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn demo_keys_file() -> String {
    root().join("assets/demo/keys.toml").display().to_string()
}

/// A token directory with the demo keys imported into token [`TOKEN`], removed when dropped.
struct Hsm {
    dir: TokenDir,
    /// The PKCS#11 store file (`test = true`), `[[issuer]]` tables appended by the import.
    store: PathBuf,
}

/// A token `name` holding the demo keys, or `None` (loudly) when SoftHSM2 is not installed.
fn demo_token(test: &str, name: &str) -> Option<Hsm> {
    present(test).then(|| Hsm::with_demo_keys(name))
}

impl Hsm {
    /// A fresh token directory `name`, the token initialised and the demo keys imported.
    fn with_demo_keys(name: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("persodesk-p11f-{name}-{}", std::process::id()));
        let dir = TokenDir::new(path);
        dir.init_token(TOKEN, PIN, SO_PIN);
        let store = dir.store_file("store.toml", TOKEN, PIN_ENV, true, "");
        let hsm = Hsm { dir, store };
        let out = hsm.persodesk(
            &hsm.data("import"),
            &[
                "keys",
                "import",
                "--keys",
                &hsm.store_arg(),
                "--from",
                &demo_keys_file(),
            ],
        );
        assert!(out.status.success(), "keys import: {}", text(&out));
        hsm
    }

    fn store_arg(&self) -> String {
        self.store.display().to_string()
    }

    /// A data directory `name` (the workstation store) inside the token directory.
    fn data(&self, name: &str) -> PathBuf {
        let d = self.dir.dir.join(name);
        std::fs::create_dir_all(&d).expect("data dir");
        d
    }

    /// The binary with this token's SoftHSM2 configuration and PIN, its store under `data`.
    fn command(&self, data: &Path, args: &[&str]) -> Command {
        let envs: [(&str, &std::ffi::OsStr); 3] = [
            ("SOFTHSM2_CONF", self.dir.conf.as_os_str()),
            (PIN_ENV, PIN.as_ref()),
            ("PERSODESK_DATA_DIR", data.as_os_str()),
        ];
        let mut cmd = support::persodesk_command(args, &envs);
        cmd.env_remove("PERSODESK_CONFIG")
            .env_remove("PERSODESK_STORE");
        cmd
    }

    fn persodesk(&self, data: &Path, args: &[&str]) -> Output {
        self.command(data, args).output().expect("persodesk runs")
    }

    /// Runs the ignored test `child` of this binary with this token's SoftHSM2 configuration;
    /// the child finds the store file in `PERSODESK_TEST_HSM_STORE`.
    fn run_child(&self, child: &str) -> String {
        let envs: [(&str, &std::ffi::OsStr); 2] = [
            (PIN_ENV, PIN.as_ref()),
            ("PERSODESK_TEST_HSM_STORE", self.store.as_os_str()),
        ];
        support::softhsm::run_child(&self.dir.conf, child, &envs)
    }
}

impl Drop for Hsm {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir.dir);
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn present(test: &str) -> bool {
    softhsm::present(test, "")
}

// ---------------------------------------------------------------------------------------------
// The persisted ICC key pool on a token
// ---------------------------------------------------------------------------------------------

/// The demo Visa order (DDA, 1024-bit ICC key, e = 3), renamed `id`.
fn dda_order(id: &str) -> String {
    let mut order = support::demo::order_cards()
        .into_iter()
        .find(|c| c["cardId"] == "DEMO-VISA-0001")
        .expect("DEMO-VISA-0001");
    order["cardId"] = serde_json::json!(id);
    order.to_string()
}

/// `keys pool fill --bits 1024 --count N --keys KEYS` into the store under `data`.
fn fill(hsm: &Hsm, data: &Path, keys: &str, count: &str) {
    let args = [
        "keys", "pool", "fill", "--bits", "1024", "--count", count, "--keys", keys,
    ];
    let o = hsm.persodesk(data, &args);
    assert!(o.status.success(), "pool fill: {}", text(&o));
}

fn pool_status(hsm: &Hsm, data: &Path) -> String {
    let o = hsm.persodesk(data, &["keys", "pool", "status"]);
    assert!(o.status.success(), "pool status: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// `prepare FILE --json --model 1 --keys KEYS` of `n` DDA orders; returns the output.
fn prepare_dda(hsm: &Hsm, data: &Path, keys: &str, n: usize) -> Output {
    let lines: Vec<String> = (0..n).map(|i| dda_order(&format!("POOL-{i}"))).collect();
    let file = data.join("orders.jsonl");
    std::fs::write(&file, lines.join("\n")).expect("orders");
    let f = file.display().to_string();
    hsm.persodesk(
        data,
        &["prepare", &f, "--json", "--model", "1", "--keys", keys],
    )
}

/// How many prepared cards (JSON lines) took their ICC key from the pool, of how many.
fn from_pool(o: &Output) -> (usize, usize) {
    let stdout = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    let pooled = lines
        .iter()
        .filter(|v| v["chip"]["oda"]["iccKeyFromPool"] == true)
        .count();
    (pooled, lines.len())
}

/// The sealed pairs in the store under `data`.
fn sealed_rows(data: &Path) -> Vec<persodesk::store::key_pool::SealedPair> {
    let conn = rusqlite::Connection::open(data.join(persodesk::store::DB_FILE)).expect("sqlite");
    let mut stmt = conn
        .prepare("SELECT pair_id, sealed FROM icc_key_pool WHERE bits = 1024 AND exponent = 3")
        .expect("select");
    stmt.query_map([], |r| {
        Ok(persodesk::store::key_pool::SealedPair {
            pair_id: r.get(0)?,
            sealed: r.get(1)?,
        })
    })
    .expect("rows")
    .collect::<Result<_, _>>()
    .expect("rows")
}

/// Every byte of the store's files under `data` (database, WAL).
fn store_bytes(data: &Path) -> Vec<u8> {
    let db = persodesk::store::DB_FILE;
    [db.to_string(), format!("{db}-wal")]
        .iter()
        .filter_map(|f| std::fs::read(data.join(f)).ok())
        .flatten()
        .collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The pool filled through the token (`store/1`, AES-GCM in the token) holds no clear prime:
/// each blob is opened independently by the software store holding the same `store` key value
/// (the demo file the token was imported from), and neither prime appears in the database, as
/// bytes or hex. `prepare --keys <token>` takes the pairs, the count drops by the DDA cards.
#[test]
fn the_persisted_icc_pool_fills_and_serves_on_a_token() {
    let Some(hsm) = demo_token("the_persisted_icc_pool_fills_and_serves_on_a_token", "pool") else {
        return;
    };
    let data = hsm.data("pool");
    let token = hsm.store_arg();
    fill(&hsm, &data, &token, "3");
    assert!(
        pool_status(&hsm, &data).contains("1024 bits  e=3  3 pair(s) left"),
        "{}",
        pool_status(&hsm, &data)
    );

    let soft = persodesk::keys::SoftwareKeyStore::load(Path::new(&demo_keys_file())).expect("keys");
    let rows = sealed_rows(&data);
    assert_eq!(rows.len(), 3);
    let bytes = store_bytes(&data);
    let e = persodesk::domain::oda::RsaExponent::Three;
    for row in &rows {
        let pair = persodesk::keys::persisted_pool::open_pair(&soft, 1024, e, row).expect("opens");
        let crt = pair.crt_components().expect("crt");
        for prime in [crt.p.expose(), crt.q.expose()] {
            assert!(!contains(&bytes, prime), "clear prime (bytes) in the store");
            for h in [hex::encode(prime), hex::encode_upper(prime)] {
                assert!(
                    !contains(&bytes, h.as_bytes()),
                    "clear prime (hex) in the store"
                );
            }
        }
    }

    let o = prepare_dda(&hsm, &data, &token, 2);
    assert!(o.status.success(), "prepare: {}", text(&o));
    assert_eq!(from_pool(&o), (2, 2), "both DDA cards from the pool");
    let status = pool_status(&hsm, &data);
    assert!(
        status.contains("1024 bits  e=3  1 pair(s) left"),
        "{status}"
    );
}

/// A pool filled under the software store's `store` key opens on a token holding the same key
/// value; filled under another `store` key, the token refuses its pairs (fail closed: the card
/// is not prepared, and no key is generated in their place).
#[test]
fn a_software_filled_pool_opens_on_a_token_with_the_same_store_key_only() {
    let Some(hsm) = demo_token(
        "a_software_filled_pool_opens_on_a_token_with_the_same_store_key_only",
        "pool-sw",
    ) else {
        return;
    };
    let token = hsm.store_arg();
    let data = hsm.data("same");
    fill(&hsm, &data, &demo_keys_file(), "2");
    let o = prepare_dda(&hsm, &data, &token, 2);
    assert!(o.status.success(), "prepare: {}", text(&o));
    assert_eq!(
        from_pool(&o),
        (2, 2),
        "the software-sealed pairs open in the token"
    );
    assert!(pool_status(&hsm, &data).contains("ICC key pool: empty"));

    // The demo key file with another `store` key value (its KCV recomputed for the file).
    let other = [0x5Au8; 32];
    let demo = std::fs::read_to_string(demo_keys_file()).expect("keys");
    let kcv = persodesk::domain::crypto::kcv_aes(&other).expect("kcv");
    let changed = demo
        .replace(
            "203D107AD799B6B983ACFD6B4F4EC215B8C8D860549CFA9E8C3F07382EA57DDA",
            &hex::encode_upper(other),
        )
        .replace(
            "kcv = \"C3D934\"",
            &format!("kcv = \"{}\"", hex::encode_upper(kcv)),
        );
    assert_ne!(changed, demo, "the demo store key was replaced");
    let other_file = hsm.dir.dir.join("other-store-key.toml");
    std::fs::write(&other_file, changed).expect("write");
    let data = hsm.data("other");
    fill(&hsm, &data, &other_file.display().to_string(), "1");
    let o = prepare_dda(&hsm, &data, &token, 1);
    assert!(
        !o.status.success(),
        "a pair sealed under another key was used: {}",
        text(&o)
    );
    let all = text(&o);
    assert!(
        all.contains("a persisted ICC key pair does not open under the store key"),
        "{all}"
    );
    assert_eq!(from_pool(&o).0, 0, "{all}");
}

// ---------------------------------------------------------------------------------------------
// A station on a token
// ---------------------------------------------------------------------------------------------

/// `station run --keys <token>` through pcscd + vpcd: two queued demo Visa chip orders (DDA,
/// SCP02) are personalized to CARD_PROD_DONE with read-back, one `sim-card` each (the card's
/// keys from the demo software key file: the card side is not the token), and the store's
/// audit trail verifies, sealed by the token's `audit` key.
#[test]
fn a_station_personalizes_queued_orders_through_the_token() {
    use persodesk::domain::status::Status;
    if !present("a_station_personalizes_queued_orders_through_the_token") {
        return;
    }
    let Some(mut stack) = support::pcsc::start_stack() else {
        return;
    };
    let hsm = Hsm::with_demo_keys("station");
    let token = hsm.store_arg();
    let data = hsm.data("station");
    let ids = ["DEMO-VISA-0001", "DEMO-VISA-0002"];
    let cards: Vec<Value> = support::demo::order_cards()
        .into_iter()
        .filter(|c| ids.iter().any(|id| c["cardId"] == *id))
        .collect();
    assert_eq!(cards.len(), 2);
    let file = data.join("orders.json");
    std::fs::write(&file, serde_json::json!({ "cards": cards }).to_string()).expect("orders");
    let db = data.join("queue.sqlite3");
    let store = format!("sqlite:{}", db.display());
    let f = file.display().to_string();
    let o = hsm.persodesk(
        &data,
        &["queue", "import", &f, "--store", &store, "--keys", &token],
    );
    assert!(o.status.success(), "queue import: {}", text(&o));
    assert!(
        text(&o).contains("imported 2, already known 0, invalid 0"),
        "{}",
        text(&o)
    );

    // The in-process virtual card would need the host's keys in clear: refused before any
    // claim, the queue untouched.
    let s = persodesk::store::Store::open(&db).expect("store");
    let before: Vec<_> = ids.iter().map(|id| s.state(id).expect("state")).collect();
    drop(s);
    let virtual_station = [
        "station",
        "run",
        "--reader",
        "virtual",
        "--role",
        "tester",
        "--user",
        "tester-a",
        "--station",
        "v",
        "--store",
        &store,
        "--keys",
        &token,
    ];
    let o = hsm.persodesk(&data, &virtual_station);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--reader virtual") && err.contains("needs test keys in clear"),
        "{err}"
    );
    let s = persodesk::store::Store::open(&db).expect("store");
    let after: Vec<_> = ids.iter().map(|id| s.state(id).expect("state")).collect();
    drop(s);
    assert_eq!(
        format!("{before:?}"),
        format!("{after:?}"),
        "the queue changed"
    );

    let (mut card_args, _) = support::pcsc::card_stock("vis-1.6.3-vcps-2.2.4", "scp02");
    let keys_file = demo_keys_file();
    card_args.extend(["--keys", keys_file.as_str()]);
    let reader = stack.reader0.clone();
    let records = data.join("a.jsonl").display().to_string();
    // Station a, tester role, one order per run, the simulated encoder.
    let mut station: Vec<&str> = "station run --encoder sim --role tester --user tester-a \
                                  --station a --max 1"
        .split_whitespace()
        .collect();
    station.extend(["--reader", &reader, "--records", &records]);
    station.extend(["--store", &store, "--keys", &token]);
    // One card per order: a fresh card in the reader, one order, the card out.
    for _ in 0..2 {
        let card = support::pcsc::insert_card(&mut stack.cleanup, &reader, &card_args);
        let o = hsm.persodesk(&data, &station);
        assert!(o.status.success(), "station: {}", text(&o));
        let stdout = String::from_utf8_lossy(&o.stdout).trim().to_string();
        let summary: Value = serde_json::from_str(&stdout).expect("one JSON summary line");
        assert_eq!(summary["done"], 1, "{summary}");
        assert_eq!(summary["failed"], 0, "{summary}");
        support::pcsc::pull_card(&mut stack.cleanup, &reader, card);
    }

    let s = persodesk::store::Store::open(&db).expect("store");
    for id in ids {
        let state = s.state(id).expect("state").expect("order");
        assert_eq!(state.status, Status::Done, "{id}: {state:?}");
        // (The one flow records DONE only once the read-back passed.)
        let trail = s.audit_trail(100).expect("trail");
        assert!(
            trail
                .iter()
                .any(|r| r.order_id.as_deref() == Some(id) && r.action == "perso-done"),
            "{id}: perso-done audited"
        );
    }
    drop(s);
    let o = hsm.persodesk(
        &data,
        &["audit", "verify", "--store", &store, "--keys", &token],
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("audit trail intact"), "{out}");
    assert!(out.contains(", sealed"), "the seals were checked: {out}");
}

// ---------------------------------------------------------------------------------------------
// The workstation on a token
// ---------------------------------------------------------------------------------------------

#[test]
fn the_workstation_runs_on_a_token() {
    let Some(hsm) = demo_token("the_workstation_runs_on_a_token", "gui") else {
        return;
    };
    let log = hsm.run_child("child_workstation_on_the_token");
    assert!(log.contains("workstation on the token: DONE"), "{log}");
    for line in log.lines().filter(|l| l.contains("masked and KCV lines")) {
        eprintln!("{line}");
    }
}

/// Every label of the preview that shows a masked value or a KCV, in drawing order.
fn masked_and_kcv_labels(h: &egui_kittest::Harness<'_, persodesk::gui::App>) -> Vec<String> {
    use egui_kittest::kittest::{NodeT as _, Queryable as _};
    let mut out: Vec<String> = h
        .query_all_by_label_contains("******")
        .chain(h.query_all_by_label_contains("KCV"))
        .filter_map(|n| {
            // A `Role::Label` widget keeps its text in the value (as kittest's own filter reads).
            let node = n.accesskit_node();
            node.value().or_else(|| node.label())
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The window on `keys` (the virtual card's keys from the demo software file): signed in as a
/// tester, the demo orders loaded, DEMO-MC-0001 (Model 1, CDA, SCP03) selected; its preview's
/// masked values and KCVs.
fn window_on(
    dir: &support::TempDir,
    keys: Arc<persodesk::keys::LoadedKeys>,
    card_keys: Option<Arc<persodesk::keys::LoadedKeys>>,
) -> (
    egui_kittest::Harness<'static, persodesk::gui::App>,
    Vec<String>,
) {
    use support::gui::{harness, loaded, select, sign_in};
    let mut config = support::gui::config(dir, true);
    config.keys = keys;
    config.virtual_card_keys = card_keys;
    let app =
        persodesk::gui::App::new(config, persodesk::gui::log::LogBuffer::default()).expect("app");
    let mut h = harness(app);
    h.step();
    sign_in(&mut h, "tester");
    loaded(&mut h);
    select(&mut h, "DEMO-MC-0001");
    let labels = masked_and_kcv_labels(&h);
    (h, labels)
}

#[test]
#[ignore = "run by its parent test in a process with SOFTHSM2_CONF set"]
fn child_workstation_on_the_token() {
    use persodesk::domain::status::Status;
    use support::gui::{has, personalize_and_wait, status_of};
    let path = PathBuf::from(std::env::var_os("PERSODESK_TEST_HSM_STORE").expect("store file"));
    let token = Arc::new(persodesk::keys::load(&path).expect("the token opens"));
    assert!(matches!(*token, persodesk::keys::LoadedKeys::Pkcs11(_)));

    // The same window on the software store: the reference preview.
    let soft_dir = support::TempDir::new("p11f-gui-soft");
    let soft = Arc::new(persodesk::gui::demo_keys().expect("demo keys"));
    let (_soft_h, expected) = window_on(&soft_dir, soft, None);
    eprintln!("{} masked and KCV lines in the preview", expected.len());
    assert!(
        expected
            .iter()
            .any(|l| l.starts_with("ICC master key KCVs: MK-AC ")),
        "{expected:?}"
    );
    assert!(
        expected
            .iter()
            .any(|l| l.contains("%B541333******2345^DOE/ALICE^2906")),
        "{expected:?}"
    );

    let dir = support::TempDir::new("p11f-gui-token");
    let card_keys = Arc::new(persodesk::gui::demo_keys().expect("demo keys"));
    let (mut h, labels) = window_on(&dir, Arc::clone(&token), Some(card_keys));
    assert_eq!(
        labels, expected,
        "the token's preview differs from the software store's"
    );
    assert!(!has(&h, "5413330089012345"), "clear PAN shown");

    personalize_and_wait(&mut h);
    assert_eq!(
        status_of(&h, "DEMO-MC-0001"),
        Status::Done,
        "{:?}",
        h.state().perso.last
    );
    assert!(has(&h, "read-back passed"), "{:?}", h.state().perso.last);
    assert!(has(&h, "PASS  ARQC (9F26) per mc-cvn20 with imk-ac #1"));
    eprintln!("workstation on the token: DONE");

    // Without card keys of its own the virtual card would take the host's, a token: refused
    // by name, and the order is not done.
    let bare = support::TempDir::new("p11f-gui-bare");
    let (mut h, _) = window_on(&bare, Arc::clone(&token), None);
    personalize_and_wait(&mut h);
    assert_ne!(status_of(&h, "DEMO-MC-0001"), Status::Done);
    let failure = support::gui::last_failure(&h).expect("a failure");
    assert!(
        failure
            .message
            .contains("the simulated card needs test keys in clear"),
        "{failure:?}"
    );

    // Production refuses the test token; on the same token viewed as live (test = false) it
    // starts without the virtual card and without card keys of its own.
    let live = path.with_file_name("live.toml");
    let text = std::fs::read_to_string(&path).expect("store file");
    std::fs::write(&live, text.replace("test = true", "test = false")).expect("write");
    let config_text = |keys: &Path| {
        format!(
            "mode = \"production\"\nkeys = \"{}\"\nprofiles = \"{}\"\n[roles]\noperator = [\"alice\"]\n",
            keys.display(),
            root().join("profiles").display()
        )
    };
    let refused = persodesk::config::parse("test.toml", &config_text(&path)).expect("config");
    let err = persodesk::gui::AppConfig::production(&refused).expect_err("a test token");
    assert!(
        err.contains("production refuses") && err.contains("test key"),
        "{err}"
    );
    let ok = persodesk::config::parse("live.toml", &config_text(&live)).expect("config");
    let c = persodesk::gui::AppConfig::production(&ok).expect("a live token");
    assert!(!c.virtual_card && c.virtual_card_keys.is_none());
}
