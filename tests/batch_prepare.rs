//! Batch preparation through the built binary: the streamed, multi-core pipeline gives exactly
//! the output of a single-threaded run (same lines, same order, same exit code) on a file mixing
//! valid and invalid orders, and JSON Lines gives the same output as the same orders in one
//! `{"cards": [...]}` document (read whole, the path that existed before streaming).

#[path = "support/run.rs"]
mod run;

use std::path::{Path, PathBuf};
use std::process::Output;

fn persodesk(args: &[&str]) -> Output {
    run::persodesk_command::<&str>(args, &[])
        .output()
        .expect("persodesk runs")
}

fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("persodesk-batch-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("tempdir");
    d
}

/// `count` generated orders, one JSON object per line.
fn generated(dir: &Path, count: usize) -> Vec<String> {
    let f = dir.join("gen.jsonl");
    let o = persodesk(&[
        "demo",
        "orders",
        "--count",
        &count.to_string(),
        "--out",
        f.to_str().expect("utf8"),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&f).expect("generated file");
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    assert_eq!(lines.len(), count);
    lines
}

/// Generated orders with invalid ones mixed in: broken JSON, a duplicate id, an unknown
/// product, a bad expiry month, a blank line.
fn mixed(dir: &Path) -> (Vec<String>, PathBuf) {
    let mut lines = generated(dir, 700);
    lines[3] = "{not json".into();
    lines[300] = lines[10].clone(); // the id of order #11 again
    lines[301] = lines[301].replace("DEMO_VISA_CREDIT", "NO_SUCH_PRODUCT");
    lines[520] = lines[520].replace("\"exp\":\"2812\"", "\"exp\":\"2813\"");
    lines.insert(600, String::new());
    let f = dir.join("mixed.jsonl");
    std::fs::write(&f, lines.join("\n") + "\n").expect("write");
    (lines, f)
}

fn prepare(file: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "prepare",
        file.to_str().expect("utf8"),
        "--model",
        "none",
        "--date",
        "250115",
    ];
    args.extend_from_slice(extra);
    persodesk(&args)
}

#[test]
fn parallel_output_equals_a_single_threaded_run() {
    let dir = tempdir("jobs");
    let (_, f) = mixed(&dir);
    for format in [&["--json"][..], &[][..]] {
        let one = prepare(&f, &[format, &["--jobs", "1"]].concat());
        let four = prepare(&f, &[format, &["--jobs", "4"]].concat());
        assert_eq!(one.status.code(), Some(1), "invalid orders: exit 1");
        assert_eq!(four.status.code(), one.status.code());
        assert_eq!(four.stderr, one.stderr);
        assert_eq!(four.stdout, one.stdout, "{format:?}");
    }
    let one = prepare(&f, &["--json", "--jobs", "1"]);
    let out: Vec<serde_json::Value> = String::from_utf8_lossy(&one.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    // One output line per non-blank input line, in input order.
    assert_eq!(out.len(), 700);
    for (i, v) in out.iter().enumerate() {
        if ![3, 300, 301, 520].contains(&i) {
            assert_eq!(v["id"], format!("GEN-{i:09}"), "line {i}");
            assert!(v["tracks"]["track2"].is_string(), "line {i}: {v}");
        }
    }
    assert_eq!(out[3]["id"], "#4");
    assert_eq!(out[3]["errors"][0]["path"], "line 4");
    let dup = out[300]["errors"].to_string();
    assert!(
        dup.contains("order #11 of this file has the same id"),
        "{dup}"
    );
    assert!(out[301]["errors"].to_string().contains("NO_SUCH_PRODUCT"));
    assert!(out[520]["errors"].to_string().contains("encryptedData.exp"));
}

#[test]
fn json_lines_stream_like_the_same_orders_in_one_document() {
    let dir = tempdir("doc");
    let mut lines = generated(&dir, 400);
    lines[200] = lines[7].clone();
    lines[201] = lines[201].replace("\"exp\":\"2812\"", "\"exp\":\"2800\"");
    let jsonl = dir.join("o.jsonl");
    std::fs::write(&jsonl, lines.join("\n")).expect("write");
    let doc = dir.join("o.json");
    std::fs::write(&doc, format!("{{\"cards\": [\n{}\n]}}", lines.join(",\n"))).expect("write");
    for format in [&["--json"][..], &[][..]] {
        let streamed = prepare(&jsonl, format);
        let whole = prepare(&doc, format);
        assert_eq!(streamed.status.code(), Some(1));
        assert_eq!(whole.status.code(), Some(1));
        assert_eq!(streamed.stdout, whole.stdout, "{format:?}");
    }
}

#[test]
fn order_selects_one_order_of_a_stream_and_a_missing_id_is_an_input_error() {
    let dir = tempdir("select");
    let (_, f) = mixed(&dir);
    let o = prepare(&f, &["--json", "--order", "GEN-000000042"]);
    assert_eq!(o.status.code(), Some(0));
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("\"id\":\"GEN-000000042\""), "{out}");
    let o = prepare(&f, &["--json", "--order", "NOT-THERE"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no order with id NOT-THERE"));
}

#[test]
fn duplicate_ids_are_found_when_the_id_table_spills_to_disk() {
    let dir = tempdir("spill");
    let mut lines = generated(&dir, 3_000);
    // With 64 memory slots (48 ids), the ids of orders #6 and #1,001 are long on disk when
    // they come again; #2,989 is still in memory.
    lines[2_500] = lines[5].clone();
    lines[2_990] = lines[1_000].clone();
    lines[2_999] = lines[2_988].clone();
    let f = dir.join("spill.jsonl");
    std::fs::write(&f, lines.join("\n") + "\n").expect("write");
    let args = [
        "prepare",
        f.to_str().expect("utf8"),
        "--model",
        "none",
        "--date",
        "250115",
        "--json",
        "--jobs",
        "2",
    ];
    let spilled = run::persodesk_command(&args, &[("PERSODESK_TEST_ID_SLOTS", "64")])
        .output()
        .expect("persodesk runs");
    let memory = persodesk(&args);
    assert_eq!(spilled.status.code(), Some(1), "duplicates: exit 1");
    assert_eq!(
        spilled.stdout, memory.stdout,
        "same output whatever the budget"
    );
    let out: Vec<serde_json::Value> = String::from_utf8_lossy(&spilled.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(out.len(), 3_000);
    let refused: Vec<(usize, String)> = out
        .iter()
        .enumerate()
        .filter(|(_, v)| v.get("errors").is_some())
        .map(|(i, v)| (i, v["errors"][0]["rule"].as_str().unwrap_or("").to_string()))
        .collect();
    let same = |n: usize| format!("duplicate order id: order #{n} of this file has the same id");
    assert_eq!(
        refused,
        vec![(2_500, same(6)), (2_990, same(1_001)), (2_999, same(2_989))]
    );
}
