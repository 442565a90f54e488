//! Issue 13: the attacks of the production probe, repeated against production mode (configured
//! through `PERSODESK_CONFIG`, which only counts when `/etc/persodesk/persodesk.toml` is absent).
//! Each test names the finding it covers; every one of them passed on the code before the fix
//! (the attack worked) and must now be refused, detected or impossible.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use persodesk::domain::approval::{Evidence, review_message};
use persodesk::domain::order::parse_order_file;
use persodesk::domain::review::{Role, Session};
use persodesk::keys::SoftwareKeyStore;
use persodesk::store::Store;
use rusqlite::Connection;

#[path = "support/live_token.rs"]
mod live_token;

use live_token::LiveToken;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A production desk (see [`Desk::new`]) whose `orders.json` was prepared with `--record`.
fn prepared_desk(name: &str) -> Option<Desk> {
    let desk = Desk::new(name)?;
    let o = desk.run(&["prepare", &desk.s("orders.json"), "--record"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    Some(desk)
}

/// The output `out` says `needle` (the whole output shown when not).
fn says(out: &[u8], needle: &str) {
    let out = text(out);
    assert!(out.contains(needle), "{needle:?} not in: {out}");
}

/// A production workstation in a temp dir: configuration, live-looking keys (random values,
/// an audit key) on a SoftHSM2 token that is not a test token (production refuses the software
/// store), the fixture profiles, a data dir. `soft.toml` holds the same values as a software
/// key file for what the test does in-process (the sealer of the audit trail, an approval).
struct Desk {
    dir: PathBuf,
    token: LiveToken,
}

impl Drop for Desk {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).expect("random");
    hex::encode_upper(b)
}

fn key_entry(usage: &str, algorithm: &str, value: &str) -> String {
    let bytes = hex::decode(value).expect("hex");
    let kcv = match algorithm {
        "aes" => persodesk::domain::crypto::kcv_aes(&bytes),
        _ => persodesk::domain::crypto::kcv_tdes(&bytes),
    }
    .expect("kcv");
    format!(
        "[[key]]\nusage = \"{usage}\"\nindex = 1\nalgorithm = \"{algorithm}\"\nvalue = \"{value}\"\nkcv = \"{}\"\ntest = false\n",
        hex::encode_upper(kcv)
    )
}

impl Desk {
    fn new(tag: &str) -> Option<Desk> {
        if Path::new(persodesk::config::SYSTEM_CONFIG).exists() {
            eprintln!("skipped: this machine has a system configuration that decides the mode");
            return None;
        }
        if !live_token::present(&format!("production_probe ({tag})")) {
            return None;
        }
        let dir =
            std::env::temp_dir().join(format!("persodesk-probe-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data")).expect("dir");
        let (cvk, audit) = (random_hex(16), random_hex(32));
        let token = LiveToken::make(
            &dir,
            &[
                ("cvk/1", "tdes", hex::decode(&cvk).expect("hex")),
                ("audit/1", "aes", hex::decode(&audit).expect("hex")),
            ],
        );
        let desk = Desk { dir, token };
        std::fs::write(
            desk.path("soft.toml"),
            format!(
                "{}{}",
                key_entry("cvk", "tdes", &cvk),
                key_entry("audit", "aes", &audit)
            ),
        )
        .expect("soft keys");
        desk.use_token();
        desk.write_config(&format!(
            "operator = [\"{}\"]\nsupervisor = [\"carol\"]\n",
            persodesk::store::os_user()
        ));
        desk.write_orders("orders.json", "C-0001", "4000000000000002", "DOE/JOHN");
        Some(desk)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn s(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    /// Puts a software key file where the configuration's key store is.
    fn write_keys(&self, text: &str) {
        std::fs::write(self.path("keys.toml"), text).expect("keys");
    }

    /// Puts the desk's token store file back where the configuration's key store is.
    fn use_token(&self) {
        std::fs::copy(&self.token.store_file, self.path("keys.toml")).expect("store file");
    }

    fn write_config(&self, roles: &str) {
        std::fs::write(
            self.path("persodesk.toml"),
            format!(
                "mode = \"production\"\nkeys = \"{}\"\nprofiles = \"{}\"\n[roles]\n{roles}",
                self.s("keys.toml"),
                root().join("tests/fixtures/profiles").display()
            ),
        )
        .expect("config");
    }

    fn write_orders(&self, file: &str, id: &str, pan: &str, name: &str) {
        std::fs::write(
            self.path(file),
            format!(
                r#"{{"cardId":"{id}","cardProductId":"STRICT","encryptedData":{{"pan":"{pan}","exp":"3012","encodedName":"{name}"}},"paymentApplication":{{"cvKeyIndex":1}}}}"#
            ),
        )
        .expect("orders");
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, self.path("persodesk.toml").as_os_str())
    }

    fn run_with(&self, args: &[&str], config: &std::ffi::OsStr) -> Output {
        let data = self.path("data");
        let envs = [
            ("PERSODESK_CONFIG", config),
            ("PERSODESK_DATA_DIR", data.as_os_str()),
        ];
        let mut cmd = live_token::run::persodesk_command(args, &envs);
        self.token.env(&mut cmd);
        let mut child = cmd.spawn().expect("run persodesk");
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait().expect("wait").is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("persodesk {args:?} hung");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().expect("output")
    }

    fn db(&self) -> PathBuf {
        self.path("data/persodesk.sqlite3")
    }

    /// The desk's key values as a software store (the token holds the same values).
    fn keys(&self) -> SoftwareKeyStore {
        SoftwareKeyStore::load(&self.path("soft.toml")).expect("keys")
    }

    /// The store as the workstation opens it, sealed with the desk's audit key.
    fn store(&self) -> Store {
        let sealer = self.keys().audit_sealer().expect("audit key");
        Store::open_sealed(&self.db(), sealer).expect("store")
    }

    /// A supervisor's approval of `file`'s order as the window records it.
    fn approve(&self, file: &str, id: &str, by: &str) {
        let keys = self.keys();
        let catalog =
            persodesk::catalog::load_products(&root().join("tests/fixtures/profiles")).expect("p");
        let text = std::fs::read_to_string(self.path(file)).expect("orders");
        let entries = parse_order_file(&text, &catalog.order_rules()).expect("parse");
        let order = entries[0].outcome.as_ref().expect("valid order");
        let product = catalog.get("STRICT").expect("STRICT");
        let data =
            persodesk::domain::prepare::prepare_tracks(order, product, &keys).expect("prepare");
        let mut store = self.store();
        store.record_preparation(&[(id, None)]).expect("prepared");
        let digest = store.review_digest(&review_message(&data)).expect("digest");
        let who = Session {
            user: by.into(),
            role: Role::Supervisor,
        };
        store
            .approve(id, &who, &Evidence::of(&data, digest))
            .expect("approved");
    }

    fn personalize(&self, file: &str, id: &str) -> (Output, serde_json::Value) {
        let o = self.run(&[
            "personalize",
            &self.s(file),
            "--order",
            id,
            "--encoder",
            "/nonexistent/ttyS9",
            "--json",
        ]);
        let j = serde_json::from_slice(&o.stdout).unwrap_or(serde_json::Value::Null);
        (o, j)
    }
}

/// Finding 1: a status and approved flag set in the operator-owned file are not an approval;
/// an approval covers exactly the reviewed data, by someone else.
#[test]
fn approvals_are_evidence_not_a_flag() {
    let Some(desk) = prepared_desk("approval") else {
        return;
    };
    Connection::open(desk.db())
        .expect("db")
        .execute(
            "UPDATE orders SET status = 'CARD_PROD_READY', approved = 1 WHERE order_id = 'C-0001'",
            [],
        )
        .expect("forge");
    let (o, j) = desk.personalize("orders.json", "C-0001");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stdout));
    assert_eq!(j["failedStep"], "authorization", "{j}");
    let v = desk.run(&["audit", "verify"]);
    assert_eq!(v.status.code(), Some(1), "{}", text(&v.stdout));
    assert!(
        text(&v.stdout).contains("order C-0001"),
        "{}",
        text(&v.stdout)
    );

    // A real approval by carol: the operator gets past authorization (to the missing encoder).
    let desk = Desk::new("approval2").expect("desk");
    desk.approve("orders.json", "C-0001", "carol");
    let (o, j) = desk.personalize("orders.json", "C-0001");
    assert_ne!(j["failedStep"], "authorization", "{j} {}", text(&o.stderr));
    // Another file, same cardId, another PAN and name: not what carol reviewed.
    desk.write_orders("other.json", "C-0001", "4111111111111111", "ROE/JANE");
    let (o, j) = desk.personalize("other.json", "C-0001");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        j["error"]
            .as_str()
            .unwrap_or("")
            .contains("differs from what the supervisor reviewed"),
        "{j}"
    );
    assert!(!text(&o.stdout).contains("4111111111111111"));

    // The approver cannot personalize what they approved (dual control).
    let desk = Desk::new("dual").expect("desk");
    desk.approve("orders.json", "C-0001", &persodesk::store::os_user());
    let (_, j) = desk.personalize("orders.json", "C-0001");
    assert!(
        j["error"].as_str().unwrap_or("").contains("dual control"),
        "{j}"
    );
}

/// Finding 2: no `--user` in production; roles come from the configuration.
#[test]
fn identity_is_the_account_and_roles_come_from_the_configuration() {
    let Some(desk) = Desk::new("identity") else {
        return;
    };
    let base = [
        "personalize",
        "tests/fixtures/kat_orders.json",
        "--order",
        "X",
    ];
    let mut with_user = base.to_vec();
    with_user.extend(["--user", "carol"]);
    let o = desk.run(&with_user);
    assert_eq!(o.status.code(), Some(1));
    says(&o.stderr, "--user is refused in production");
    let mut tester = base.to_vec();
    tester.extend(["--role", "tester"]);
    let o = desk.run(&tester);
    says(&o.stderr, "tester role is refused");
    desk.write_config("operator = [\"somebody-else\"]\nsupervisor = [\"carol\"]\n");
    let o = desk.run(&base);
    assert_eq!(o.status.code(), Some(1));
    says(&o.stderr, "is not a operator");
}

/// Finding 4: `encode` follows the role rules and the audit trail.
#[test]
fn encode_needs_an_approval_and_is_audited() {
    let Some(desk) = Desk::new("encode") else {
        return;
    };
    let o = desk.run(&[
        "encode",
        &desk.s("orders.json"),
        "--order",
        "C-0001",
        "--encoder",
        "/nonexistent/ttyS9",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stdout));
    says(&o.stdout, "approved orders only");
    let trail = desk.store().audit_trail(10).expect("trail");
    assert!(
        trail.iter().any(|r| r.action == "perso-refused"),
        "{trail:?}"
    );
    assert!(trail.iter().any(|r| r.action == "prepared"), "{trail:?}");
}

/// Finding 5: nothing but an absent configuration means test mode.
#[test]
fn broken_configurations_are_errors_never_test_mode() {
    let Some(desk) = Desk::new("config") else {
        return;
    };
    let reveal = ["prepare", "assets/demo/orders.json", "--reveal"];
    let empty = desk.path("empty.toml");
    std::fs::write(&empty, "").expect("empty");
    let comment = desk.path("comment.toml");
    std::fs::write(&comment, "# mode = \"production\"\n").expect("comment");
    let dangling = desk.path("dangling.toml");
    std::os::unix::fs::symlink(desk.path("nowhere.toml"), &dangling).expect("link");
    let fifo = desk.path("fifo.toml");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("fifo");
    let cases: Vec<(std::ffi::OsString, &str)> = vec![
        (empty.into(), "mode: is required"),
        (comment.into(), "mode: is required"),
        (dangling.into(), "symbolic link to nothing"),
        (fifo.into(), "not a regular file"),
        ("".into(), "set but empty"),
        (desk.path("missing.toml").into(), "cannot be read"),
    ];
    for (config, says) in cases {
        let o = desk.run_with(&reveal, &config);
        assert_eq!(o.status.code(), Some(2), "{config:?}: {}", text(&o.stderr));
        assert!(
            text(&o.stderr).contains(says),
            "{config:?}: {}",
            text(&o.stderr)
        );
        assert!(!text(&o.stdout).contains("5413330089012345"), "{config:?}");
    }
}

/// Finding 6: the gates are the configuration's, and demo or weak keys and demo data do not
/// pass whatever their flags or spelling.
#[test]
fn production_gates_cannot_be_set_by_the_operator() {
    let Some(desk) = Desk::new("gates") else {
        return;
    };
    let file = desk.s("orders.json");
    for flag in [
        ["--keys", "assets/demo/keys.toml"],
        ["--profiles", "profiles"],
    ] {
        let o = desk.run(&["prepare", &file, flag[0], flag[1]]);
        assert_eq!(o.status.code(), Some(2));
        assert!(text(&o.stderr).contains(&format!("{} is refused in production", flag[0])));
    }
    // The demo store's values with `test = false`, a published vector key, a weak key.
    let demo = std::fs::read_to_string(root().join("assets/demo/keys.toml")).expect("demo");
    let audit = key_entry("audit", "aes", &random_hex(32));
    for (keys, says) in [
        (
            demo.replace("test = true", "test = false"),
            "demo key value",
        ),
        (
            format!(
                "{}{audit}",
                key_entry("cvk", "tdes", "99999999999999998888888888888888")
            ),
            "published in test vectors",
        ),
        (
            format!(
                "{}{audit}",
                key_entry("cvk", "tdes", "11111111111111111111111111111110")
            ),
            "weak key",
        ),
        (
            format!("{}{audit}", key_entry("cvk", "tdes", &random_hex(16))),
            "is a software key store (keys in a file): production needs a PKCS#11 store",
        ),
    ] {
        desk.write_keys(&keys);
        let o = desk.run(&["prepare", &file]);
        assert_eq!(o.status.code(), Some(2), "{says}");
        assert!(
            text(&o.stderr).contains(says),
            "{says}: {}",
            text(&o.stderr)
        );
    }
    // Demo orders whatever the id's spelling, or with the id only in issuerRequestId.
    desk.use_token();
    let orders = desk.path("demo.json");
    std::fs::write(
        &orders,
        r#"{"cards":[
{"cardId":"demo-visa-1","cardProductId":"STRICT","encryptedData":{"pan":"4000000000000002","exp":"3012"},"paymentApplication":{"cvKeyIndex":1}},
{"issuerRequestId":"Demo_Visa","cardProductId":"STRICT","encryptedData":{"pan":"4000000000000010","exp":"3012"},"paymentApplication":{"cvKeyIndex":1}},
{"cardId":"C-9","issuerRequestId":"DEMO-9","cardProductId":"STRICT","encryptedData":{"pan":"4000000000000028","exp":"3012"},"paymentApplication":{"cvKeyIndex":1}},
{"cardId":"C-10","cardProductId":"STRICT","encryptedData":{"pan":"4761739001010010","exp":"3012"},"paymentApplication":{"cvKeyIndex":1}}
]}"#,
    )
    .expect("orders");
    let o = desk.run(&["validate", &orders.display().to_string()]);
    assert_eq!(o.status.code(), Some(1));
    says(&o.stdout, "4 orders: 0 valid, 4 invalid");
}

/// Findings 7 and 8: no test keys written, no tester overrides.
#[test]
fn test_key_tools_and_tester_overrides_are_refused() {
    let Some(desk) = Desk::new("tools") else {
        return;
    };
    let before = std::fs::read(desk.path("keys.toml")).expect("keys");
    let o = desk.run(&["keys", "demo-pki", "--keys", &desk.s("keys.toml")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("demo-pki (it writes test keys) is refused in production"));
    assert_eq!(std::fs::read(desk.path("keys.toml")).expect("keys"), before);
    let o = desk.run(&[
        "personalize",
        &desk.s("orders.json"),
        "--order",
        "C-0001",
        "--scp",
        "scp02:55",
    ]);
    assert_eq!(o.status.code(), Some(1));
    says(&o.stderr, "for testers only");
}

/// Finding 9: rewriting the trail needs the key; a wiped or replaced trail fails against an
/// exported head; dropped triggers are reported, not re-created.
#[test]
fn audit_rewrites_are_detected() {
    let Some(desk) = Desk::new("audit") else {
        return;
    };
    desk.approve("orders.json", "C-0001", "carol");
    let export = desk.run(&["audit", "export"]);
    assert_eq!(export.status.code(), Some(0), "{}", text(&export.stderr));
    let head = text(&export.stdout).trim().to_string();
    let ok = desk.run(&["audit", "verify", "--expect-head", &head]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stdout));
    assert!(text(&ok.stdout).contains("sealed"));

    // Recompute the whole chain without the key (the attacker's tool: the public hash rule).
    let c = Connection::open(desk.db()).expect("db");
    c.execute_batch("DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;")
        .expect("drop");
    let v = desk.run(&["audit", "verify"]);
    assert_eq!(v.status.code(), Some(1));
    assert!(
        text(&v.stdout).contains("trigger audit_no_update was dropped"),
        "{}",
        text(&v.stdout)
    );
    let triggers: i64 = c
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'trigger'",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(triggers, 0, "verify must not re-create dropped triggers");
    let chain = desk.store().audit_chain().expect("chain");
    let mut prev = persodesk::store::audit::GENESIS.to_string();
    for r in &chain {
        let mut rec = r.record.clone();
        rec.user = rec.user.replace("carol", "mallory");
        let seq = r.seq.expect("seq");
        let hash = persodesk::store::audit::record_hash(&prev, seq, &rec);
        c.execute(
            "UPDATE audit SET user = ?1, prev_hash = ?2, hash = ?3, seal = NULL WHERE seq = ?4",
            rusqlite::params![rec.user, prev, hash, i64::try_from(seq).expect("seq")],
        )
        .expect("rewrite");
        prev = hash;
    }
    c.execute(
        "UPDATE settings SET value = ?1 WHERE key = 'audit.head'",
        [&prev],
    )
    .expect("head");
    c.execute_batch(
        "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'x'); END;
         CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'x'); END;",
    )
    .expect("triggers back");
    let v = desk.run(&["audit", "verify"]);
    assert_eq!(v.status.code(), Some(1), "{}", text(&v.stdout));
    assert!(text(&v.stdout).contains("seal"), "{}", text(&v.stdout));

    // Wiped: trail, head and orders gone; only the exported head tells.
    drop(c);
    let c = Connection::open(desk.db()).expect("db");
    c.execute_batch(
        "DROP TRIGGER audit_no_delete; DELETE FROM audit; DELETE FROM settings; DELETE FROM orders;
         DELETE FROM approvals;
         CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'x'); END;",
    )
    .expect("wipe");
    let left: i64 = c
        .query_row("SELECT COUNT(*) FROM audit", [], |r| r.get(0))
        .expect("count");
    assert_eq!(left, 0, "wiped");
    let v = desk.run(&["audit", "verify", "--expect-head", &head]);
    assert_eq!(v.status.code(), Some(1), "{}", text(&v.stdout));
    assert!(
        text(&v.stdout).contains("exported head"),
        "{}",
        text(&v.stdout)
    );
}

/// Finding 10: preparation recorded by `prepare --record` is audited.
#[test]
fn every_status_change_is_audited() {
    let Some(desk) = prepared_desk("gaps") else {
        return;
    };
    let trail = desk.store().audit_trail(10).expect("trail");
    let prepared = trail
        .iter()
        .find(|r| r.action == "prepared")
        .expect("a prepared record");
    assert_eq!(prepared.order_id.as_deref(), Some("C-0001"));
    assert_eq!(prepared.outcome, "DATA_PREPARED");
    assert!(desk.store().verify_audit().expect("verify").intact());
}

/// Finding 11: no core dumps, not dumpable.
#[test]
fn the_process_is_not_dumpable() {
    let Some(desk) = Desk::new("dump") else {
        return;
    };
    let config = desk.path("persodesk.toml");
    let mut child = live_token::run::persodesk_command(
        &["sim-encoder", "--swipe-delay-ms", "5"],
        &[("PERSODESK_CONFIG", config.as_os_str())],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("sim-encoder");
    std::thread::sleep(Duration::from_millis(500));
    let limits =
        std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .expect("core limit line");
    let fields: Vec<&str> = core.split_whitespace().collect();
    assert_eq!(&fields[4..6], ["0", "0"], "{core}");
    persodesk::cli::harden_process().expect("harden");
    assert!(!nix::sys::prctl::get_dumpable().expect("dumpable"));
}

/// Finding 13: the store and the records log are private.
#[test]
fn store_and_records_are_private() {
    let Some(desk) = prepared_desk("modes") else {
        return;
    };
    let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode(&desk.path("data")), 0o700);
    assert_eq!(mode(&desk.db()), 0o600);
    desk.approve("orders.json", "C-0001", "carol");
    let _ = desk.personalize("orders.json", "C-0001");
    assert_eq!(mode(&desk.path("data/records.jsonl")), 0o600);
}

/// Finding 14: an order left ONGOING by a process that died is failed at the next open; a
/// writer waits for a lock held longer than 5 s instead of reporting what it did not store.
#[test]
fn a_dead_run_is_recovered_and_a_busy_store_is_waited_for() {
    let Some(desk) = Desk::new("limbo") else {
        return;
    };
    desk.approve("orders.json", "C-0001", "carol");
    let op = Session {
        user: "alice".into(),
        role: Role::Operator,
    };
    let mut store = desk.store();
    store
        .apply(
            "C-0001",
            &persodesk::domain::status::Event::Started {
                approval_bypass: false,
            },
            &op,
        )
        .expect("started");
    // The owner becomes a process that does not run (pid 1 did not start at tick 0).
    Connection::open(desk.db())
        .expect("db")
        .execute("UPDATE orders SET owner = '1:0'", [])
        .expect("owner");
    let o = desk.run(&["audit", "show"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let o = desk.run(&["prepare", &desk.s("orders.json"), "--record"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let st = desk
        .store()
        .state("C-0001")
        .expect("state")
        .expect("C-0001");
    assert_eq!(st.status, persodesk::domain::status::Status::Failed);
    assert!(st.reason.unwrap_or_default().starts_with("interrupted"));

    // Another writer holds the lock for 6 s: the outcome is stored after the wait.
    let db = desk.db();
    let holder = std::thread::spawn(move || {
        let c = Connection::open(db).expect("db");
        c.execute_batch("BEGIN IMMEDIATE").expect("lock");
        std::thread::sleep(Duration::from_secs(6));
        c.execute_batch("COMMIT").expect("unlock");
    });
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let mut store = desk.store();
    let done = store.apply(
        "C-0001",
        &persodesk::domain::status::Event::Started {
            approval_bypass: false,
        },
        &op,
    );
    holder.join().expect("holder");
    assert!(done.is_ok(), "{done:?}");
    assert!(started.elapsed() >= Duration::from_secs(5));
}

/// Finding 12: a PIN block that cannot be recovered says so, and nothing else.
#[test]
fn pin_recovery_failures_are_one_message() {
    use persodesk::domain::fields::{EncryptedPinBlock, Pan, PinBlockFormat};
    use persodesk::domain::keystore::{KeyRef, KeyStore, KeyUsage, PinBlockRef};
    let zpk = "0123456789ABCDEFFEDCBA9876543210";
    let keys = SoftwareKeyStore::from_toml(
        "t",
        &format!(
            "{}{}",
            key_entry("zpk", "tdes", zpk),
            key_entry("pvk", "tdes", &random_hex(16))
        ),
    )
    .expect("keys");
    let mut messages = std::collections::BTreeSet::new();
    for block in ["0412AC89ABCDEF67", "1412AC89ABCDEF67", "FFFFFFFFFFFFFFFF"] {
        for pan in ["4000000000000002", "4000000000000010"] {
            let b = EncryptedPinBlock::parse(block, PinBlockFormat::Iso0).expect("block");
            let e = keys
                .visa_pvv(
                    KeyRef::new(KeyUsage::Pvk, 1),
                    1,
                    &Pan::parse(pan).expect("pan"),
                    PinBlockRef {
                        format: PinBlockFormat::Iso0,
                        key: KeyRef::new(KeyUsage::Zpk, 1),
                        block: &b,
                    },
                )
                .map(|_| ());
            if let Err(e) = e {
                messages.insert(e.to_string());
            }
        }
    }
    assert_eq!(
        messages.into_iter().collect::<Vec<_>>(),
        vec!["PIN block cannot be recovered with key zpk #1".to_string()]
    );
}

/// Finding 15: ids, duplicates, tracks, size and empty files.
#[test]
fn order_inputs_are_checked() {
    let Some(desk) = Desk::new("inputs") else {
        return;
    };
    let validate = |body: &str| {
        let f = desk.path("in.json");
        std::fs::write(&f, body).expect("write");
        desk.run(&["validate", &f.display().to_string()])
    };
    let order = |id: &str, extra: &str| {
        format!(
            r#"{{"cardId":{id},"cardProductId":"STRICT","encryptedData":{{"pan":"4000000000000002","exp":"3012"{extra}}},"paymentApplication":{{"cvKeyIndex":1}}}}"#
        )
    };
    for (body, says) in [
        (
            order(r#""4000000000000002""#, ""),
            "run of 12 or more digits",
        ),
        (
            order(r#""C-1\nok       FORGED""#, ""),
            "control or non-ASCII",
        ),
        (order(r#""C-1\u001b[2J""#, ""), "control or non-ASCII"),
        (order(r#""C-1""#, r#","exp":"3101""#), "duplicate key `exp`"),
        (
            format!(
                "{{\"cards\":[{},{}]}}",
                order(r#""C-1""#, ""),
                order(r#""C-1""#, "")
            ),
            "duplicate order id",
        ),
        (
            order(r#""C-1""#, r#","encodedName":"4000 0000 0000 0002/X""#),
            "run of 12 or more digits",
        ),
        (r#"{"cards":[]}"#.to_string(), "holds no orders"),
    ] {
        let o = validate(&body);
        assert_ne!(o.status.code(), Some(0), "{says}");
        let all = format!("{}{}", text(&o.stdout), text(&o.stderr));
        assert!(all.contains(says), "{says}: {all}");
        assert!(
            !all.contains("FORGED\n") && !all.contains('\u{1b}'),
            "{all}"
        );
        assert!(!all.contains("4000000000000002"), "{all}");
    }
    let track = r#"{"cardId":"C-1","cardProductId":"STRICT","encryptedData":{"pan":"4000000000000002","exp":"3012"},"trackData":{"track2":";4000000000000002=?"},"paymentApplication":{"cvKeyIndex":1}}"#;
    let o = validate(track);
    says(&o.stdout, "service code");
    let big = desk.path("big.json");
    let f = std::fs::File::create(&big).expect("big");
    f.set_len(persodesk::cli::MAX_ORDER_FILE + 1).expect("size");
    let o = desk.run(&["validate", &big.display().to_string()]);
    assert_eq!(o.status.code(), Some(2));
    says(&o.stderr, "more than the limit");
}
