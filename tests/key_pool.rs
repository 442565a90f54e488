//! The persisted ICC key pool through the built binary: `keys pool fill` keeps sealed pairs in the
//! workstation store, two preparation processes running at once take each pair exactly once,
//! the pool is empty afterwards, and the store file never holds a pair's clear primes.

#[path = "support/run.rs"]
mod run;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use persodesk::domain::oda::RsaExponent;
use persodesk::keys::SoftwareKeyStore;
use persodesk::keys::persisted_pool::open_pair;
use persodesk::store::key_pool::SealedPair;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn command(data: &Path, args: &[&str]) -> Command {
    run::persodesk_command(args, &[("PERSODESK_DATA_DIR", data)])
}

fn run(data: &Path, args: &[&str]) -> Output {
    command(data, args).output().expect("persodesk runs")
}

/// `prepare FILE --json --model 1 --keys KEYS`.
fn prepare_model1<'a>(file: &'a Path, keys: &'a str) -> [&'a str; 7] {
    let file = file.to_str().expect("utf8");
    ["prepare", file, "--json", "--model", "1", "--keys", keys]
}

fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("persodesk-pool-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("tempdir");
    d
}

/// `keys pool fill --bits 1024 --count N` into the store under `data`; it must succeed.
fn fill(data: &Path, keys: &str, count: &str) {
    let o = run(
        data,
        &[
            "keys", "pool", "fill", "--bits", "1024", "--count", count, "--keys", keys,
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Every byte of the store's files (database, WAL).
fn store_bytes(data: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for f in ["persodesk.sqlite3", "persodesk.sqlite3-wal"] {
        if let Ok(b) = std::fs::read(data.join(f)) {
            all.extend(b);
        }
    }
    all
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The demo Visa order (DDA, 1024-bit ICC key, e = 3), renamed `id`.
fn dda_order(id: &str) -> String {
    let text = std::fs::read_to_string(root().join("assets/demo/orders.json")).expect("orders");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    let mut order = v["cards"]
        .as_array()
        .expect("cards")
        .iter()
        .find(|c| c["cardId"] == "DEMO-VISA-0001")
        .expect("DEMO-VISA-0001")
        .clone();
    order["cardId"] = serde_json::json!(id);
    order.to_string()
}

#[test]
fn pairs_are_sealed_taken_once_across_processes_and_leave_no_clear_key() {
    let data = tempdir("fill");
    let keys = "assets/demo/keys.toml";
    // Four pairs for five cards: scarce, yet neither process can empty the pool before the
    // other starts (each takes only what its cards need: 2 leave 2, 3 leave 1), so both start
    // on a warm persisted pool and no in-memory pool (whose pairs also count as pooled) runs.
    fill(&data, keys, "4");
    let status = run(&data, &["keys", "pool", "status"]);
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("1024 bits  e=3  4 pair(s) left"),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );

    // The clear primes of the four pairs, opened independently of preparation: none of them
    // appears in the store's files.
    let store = SoftwareKeyStore::load(&root().join(keys)).expect("keys");
    let conn = rusqlite::Connection::open(data.join("persodesk.sqlite3")).expect("sqlite");
    let rows: Vec<SealedPair> = conn
        .prepare("SELECT pair_id, sealed FROM icc_key_pool WHERE bits = 1024 AND exponent = 3")
        .expect("select")
        .query_map([], |r| {
            Ok(SealedPair {
                pair_id: r.get(0)?,
                sealed: r.get(1)?,
            })
        })
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows");
    drop(conn);
    assert_eq!(rows.len(), 4);
    let bytes = store_bytes(&data);
    let mut moduli = Vec::new();
    for row in &rows {
        let pair = open_pair(&store, 1024, RsaExponent::Three, row).expect("opens");
        let crt = pair.crt_components().expect("crt");
        assert!(
            !contains(&bytes, crt.p.expose()) && !contains(&bytes, crt.q.expose()),
            "clear prime in store"
        );
        moduli.push(pair.modulus().to_vec());
    }
    // A blob bound to one pair id does not open as another.
    let swapped = SealedPair {
        pair_id: rows[1].pair_id.clone(),
        sealed: rows[0].sealed.clone(),
    };
    assert!(open_pair(&store, 1024, RsaExponent::Three, &swapped).is_err());

    // Two processes at once, two and three DDA cards: exactly four cards get a pooled pair.
    let dir = tempdir("orders");
    let fa = dir.join("a.jsonl");
    let fb = dir.join("b.jsonl");
    std::fs::write(&fa, format!("{}\n{}\n", dda_order("A-1"), dda_order("A-2"))).expect("write");
    let b_lines = [dda_order("B-1"), dda_order("B-2"), dda_order("B-3")];
    std::fs::write(&fb, b_lines.join("\n")).expect("write");
    let spawn = |file: &Path| {
        command(&data, &prepare_model1(file, keys))
            .spawn()
            .expect("spawn preparation")
    };
    let (a, b) = (spawn(&fa), spawn(&fb));
    let outs = [
        a.wait_with_output().expect("a"),
        b.wait_with_output().expect("b"),
    ];
    let mut from_pool = 0;
    let mut cards = 0;
    for o in &outs {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        for line in String::from_utf8_lossy(&o.stdout).lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("json line");
            cards += 1;
            if v["chip"]["oda"]["iccKeyFromPool"] == true {
                from_pool += 1;
            }
        }
    }
    assert_eq!(cards, 5);
    assert_eq!(from_pool, 4, "each of the four pairs used exactly once");
    let status = run(&data, &["keys", "pool", "status"]);
    assert!(String::from_utf8_lossy(&status.stdout).contains("ICC key pool: empty"));
    moduli.sort();
    moduli.dedup();
    assert_eq!(moduli.len(), 4, "four different pairs were filled");
}

#[test]
fn a_key_store_without_a_store_key_is_refused() {
    let data = tempdir("refuse");
    let dir = tempdir("refuse-keys");
    let text = std::fs::read_to_string(root().join("assets/demo/keys.toml")).expect("keys");
    // The same store without its `store` entry.
    let without: Vec<&str> = text
        .split("[[key]]")
        .filter(|k| !k.contains("usage = \"store\""))
        .collect();
    let f = dir.join("keys.toml");
    std::fs::write(&f, without.join("[[key]]")).expect("write");
    let o = run(
        &data,
        &[
            "keys",
            "pool",
            "fill",
            "--bits",
            "1024",
            "--count",
            "1",
            "--keys",
            f.to_str().expect("utf8"),
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("sealed only"));
    assert!(!data.join("persodesk.sqlite3").exists(), "nothing kept");
}

/// One process, one chunk of three orders of which one is refused: the chunk takes the two
/// pairs its valid DDA orders need (one transaction), not three; the third pair stays.
#[test]
fn a_chunk_takes_only_the_pairs_its_valid_dda_orders_need() {
    let data = tempdir("chunk");
    let keys = "assets/demo/keys.toml";
    fill(&data, keys, "3");
    let dir = tempdir("chunk-orders");
    let f = dir.join("c.jsonl");
    let mut refused: serde_json::Value = serde_json::from_str(&dda_order("C-2")).expect("json");
    refused["cardProductId"] = serde_json::json!("NO_SUCH_PRODUCT");
    let text = format!("{}\n{refused}\n{}\n", dda_order("C-1"), dda_order("C-3"));
    std::fs::write(&f, text).expect("write");
    let o = run(&data, &prepare_model1(&f, keys));
    assert_eq!(o.status.code(), Some(1), "one order refused");
    let stdout = String::from_utf8_lossy(&o.stdout);
    let from_pool = stdout
        .lines()
        .filter(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json line");
            v["chip"]["oda"]["iccKeyFromPool"] == true
        })
        .count();
    assert_eq!(from_pool, 2, "{stdout}");
    let status = run(&data, &["keys", "pool", "status"]);
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("1024 bits  e=3  1 pair(s) left"),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );
}
