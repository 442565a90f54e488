//! `persodesk encode` against `persodesk sim-encoder`, both as built binaries, over a real
//! pseudo-terminal: every demo order written and read back, each failure mode with its named error
//! and exit code, refused tracks never reaching the device, the records log, and no clear track
//! data in any output or log at `RUST_LOG=trace`.
//!
//! Every child process is stopped (SIGTERM, then SIGKILL) and every temporary file removed by
//! guards, also when an assertion fails; every wait is bounded.
mod support;

use support::{TempDir, persodesk, persodesk_command, root};

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Output};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

const DEMO_ORDERS: &str = "assets/demo/orders.json";
/// How many orders assets/demo/orders.json holds (DEMO-MC-0001/0002, DEMO-VISA-0001/0002/0003,
/// DEMO-US-0001).
const DEMO_CARDS: usize = 6;

/// `persodesk sim-encoder` running as a child process.
struct Sim {
    child: Option<Child>,
    path: String,
    lines: mpsc::Receiver<String>,
    stderr: Option<thread::JoinHandle<String>>,
}

impl Sim {
    fn start(fail: &str, envs: &[(&str, &str)]) -> Sim {
        let args = ["sim-encoder", "--fail", fail, "--swipe-delay-ms", "5"];
        let mut child = persodesk_command(&args, envs)
            .spawn()
            .expect("start persodesk sim-encoder");
        let stdout = child.stdout.take().expect("stdout");
        let mut stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        let mut sim = Sim {
            child: Some(child),
            path: String::new(),
            lines,
            stderr: Some(stderr),
        };
        let first = sim
            .lines
            .recv_timeout(Duration::from_secs(20))
            .expect("sim-encoder prints its device path");
        sim.path = first
            .strip_prefix("encoder device: ")
            .expect("first line names the device")
            .to_owned();
        assert!(sim.path.starts_with("/dev/"), "{}", sim.path);
        sim
    }

    /// Stops the simulator with SIGTERM; returns everything it printed after the path line
    /// (stdout, then stderr).
    fn stop(mut self) -> (String, String) {
        let status = self.terminate();
        assert!(status, "sim-encoder stops cleanly on SIGTERM");
        let out: Vec<String> = self.lines.try_iter().collect();
        let err = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        (out.join("\n"), err)
    }

    /// SIGTERM, wait up to 5 s, then SIGKILL. True when it exited with status 0 on SIGTERM.
    fn terminate(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid"));
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.terminate();
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn encode(
    file: &str,
    order: &str,
    sim_path: &str,
    records: &Path,
    extra: &[&str],
    envs: &[(&str, &str)],
) -> Output {
    let records = records.to_string_lossy();
    let mut args = vec![
        "encode",
        file,
        "--order",
        order,
        "--encoder",
        sim_path,
        "--records",
        &records,
    ];
    args.extend_from_slice(extra);
    // The workstation store beside the records log of this test (encode records its outcomes
    // there since issue 13), never the user's own, and one per test: runs of the same order in
    // parallel tests would meet as "already running".
    let data_dir = Path::new(records.as_ref())
        .parent()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    let mut envs = envs.to_vec();
    envs.push(("PERSODESK_DATA_DIR", data_dir.as_str()));
    persodesk(&args, &envs)
}

fn read_records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per record line"))
        .collect()
}

/// Clear track text per demo order, from `prepare --reveal --json` (demo keys are test keys).
fn clear_tracks() -> Vec<(String, Vec<(String, String)>)> {
    let o = persodesk(&["prepare", DEMO_ORDERS, "--json", "--reveal"], &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let masked = persodesk(&["prepare", DEMO_ORDERS, "--json"], &[]);
    let clear: Vec<Value> = text(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let masked: Vec<Value> = text(&masked.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    clear
        .iter()
        .zip(&masked)
        .map(|(c, m)| {
            let id = c["id"].as_str().expect("id").to_owned();
            let tracks = ["track1", "track2", "track3"]
                .iter()
                .filter_map(|k| {
                    let clear = c["tracks"][k].as_str()?.to_owned();
                    let masked = m["tracks"][k].as_str()?.to_owned();
                    Some((clear, masked))
                })
                .collect();
            (id, tracks)
        })
        .collect()
}

#[test]
fn every_demo_order_is_written_and_read_back_without_leaking() {
    let tmp = TempDir::new("encode-demo");
    let records = tmp.path("records.jsonl");
    let trace = [("RUST_LOG", "trace")];
    let sim = Sim::start("none", &trace);
    let tracks = clear_tracks();
    assert_eq!(tracks.len(), DEMO_CARDS);

    let mut all_output = String::new();
    for (id, order_tracks) in &tracks {
        let o = encode(DEMO_ORDERS, id, &sim.path, &records, &[], &trace);
        let (out, err) = (text(&o.stdout), text(&o.stderr));
        assert_eq!(o.status.code(), Some(0), "{id}: {out}{err}");
        assert!(out.contains("written and verified"), "{id}: {out}");
        assert!(err.contains("swipe to write"), "swipe wait shown: {err}");
        assert!(err.contains("TRACE") || err.contains("DEBUG"), "trace on");
        // The masked tracks are what the operator sees.
        for (_, masked) in order_tracks {
            assert!(out.contains(masked.as_str()), "{id}: {out}");
        }
        all_output.push_str(&out);
        all_output.push_str(&err);
    }
    let sim_path = sim.path.clone();
    let (sim_out, sim_err) = sim.stop();
    assert!(
        sim_out.contains(&format!("{} ISO write(s)", DEMO_CARDS)),
        "{sim_out}"
    );
    all_output.push_str(&sim_out);
    all_output.push_str(&sim_err);

    let lines = read_records(&records);
    assert_eq!(lines.len(), DEMO_CARDS);
    for (record, (id, order_tracks)) in lines.iter().zip(&tracks) {
        assert_eq!(record["order"], id.as_str());
        assert_eq!(record["operation"], "encode");
        assert_eq!(record["outcome"], "written");
        // Issue 13, finding 4: the demo products have chip profiles, so a stripe-only run is
        // recorded as incomplete, never CARD_PROD_DONE.
        assert_eq!(record["status"], "CARD_PROD_FAILED", "{record}");
        assert_eq!(record["encoder"], sim_path.as_str());
        let written: Vec<u64> = record["tracks"]
            .as_array()
            .expect("tracks")
            .iter()
            .filter_map(Value::as_u64)
            .collect();
        assert_eq!(written.len(), order_tracks.len(), "{id}");
        assert!(record.get("error").is_none());
        assert!(record["at"].as_str().is_some_and(|t| t.ends_with('Z')));
    }
    let records_text = std::fs::read_to_string(&records).expect("records");
    all_output.push_str(&records_text);

    // Nothing clear anywhere: PANs, whole tracks, bodies, and the masked-out parts of tracks.
    let orders = std::fs::read_to_string(root().join(DEMO_ORDERS)).expect("orders");
    let demo: Value = serde_json::from_str(&orders).expect("demo orders");
    let mut secrets: Vec<String> = demo["cards"]
        .as_array()
        .expect("cards")
        .iter()
        .filter_map(|c| c["encryptedData"]["pan"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(secrets.len(), DEMO_CARDS);
    for (_, order_tracks) in &tracks {
        for (clear, masked) in order_tracks {
            secrets.push(clear.clone());
            secrets.push(clear[1..clear.len() - 1].to_owned());
            // The part after the PAN separator, when masking hides some of it (CVV/PVV).
            let sep = clear.find(['^', '=']).expect("separator");
            let tail = &clear[sep..];
            if !masked.contains(tail) {
                secrets.push(tail.to_owned());
            }
        }
    }
    for s in &secrets {
        assert!(
            !all_output.contains(s.as_str()),
            "clear track data leaked into output, logs or records"
        );
    }
}

/// Runs one encode of DEMO-MC-0001 against a simulator with `fail`; returns the encode output,
/// its record and the simulator's stop summary.
fn encode_with_fault(fail: &str, extra: &[&str]) -> (Output, Value, String) {
    let tmp = TempDir::new(&format!("encode-{}", fail.replace(':', "-")));
    let records = tmp.path("records.jsonl");
    let sim = Sim::start(fail, &[]);
    let o = encode(DEMO_ORDERS, "DEMO-MC-0001", &sim.path, &records, extra, &[]);
    let (sim_out, _) = sim.stop();
    let lines = read_records(&records);
    assert_eq!(lines.len(), 1, "one record per attempt");
    (o, lines.into_iter().next().expect("record"), sim_out)
}

fn assert_failure(o: &Output, record: &Value, kind: &str, step: Option<&str>, code: i32) {
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(o.status.code(), Some(code), "{kind}: {out}{err}");
    assert!(err.contains(&format!("[{kind}]")), "{kind}: {err}");
    assert!(out.contains(&format!("FAILED [{kind}]")), "{kind}: {out}");
    assert_eq!(record["outcome"], "failed");
    assert_eq!(record["error"]["kind"], kind);
    match step {
        Some(step) => assert_eq!(record["error"]["step"], step),
        None => assert!(record["error"].get("step").is_none()),
    }
    assert_eq!(record["tracks"], serde_json::json!([]));
    assert!(!format!("{out}{err}{record}").contains("5413330089012345"));
}

#[test]
fn write_error_is_named_with_exit_4() {
    let (o, record, _) = encode_with_fault("write-error", &[]);
    assert_failure(&o, &record, "write-error", Some("write"), 4);
    assert!(text(&o.stderr).contains("status 31"));
}

#[test]
fn bad_swipes_are_retried_then_named_with_exit_4() {
    let (o, record, sim) = encode_with_fault("bad-swipe", &[]);
    assert_failure(&o, &record, "bad-swipes", Some("write"), 4);
    // The first try and 3 retries (the default), each shown to the operator.
    assert!(sim.contains("4 ISO write(s)"), "{sim}");
    assert!(text(&o.stderr).contains("swipe to write again (attempt 4"));

    let (o, record, sim) = encode_with_fault("bad-swipe:2", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(record["outcome"], "written");
    assert_eq!(record["badSwipes"], 2);
    assert!(sim.contains("3 ISO write(s)"), "{sim}");
}

#[test]
fn no_swipe_times_out_with_exit_5() {
    let started = Instant::now();
    let (o, record, _) = encode_with_fault("no-swipe", &["--swipe-timeout", "0.5"]);
    assert_failure(&o, &record, "swipe-timeout", Some("write"), 5);
    assert!(text(&o.stderr).contains("no card swiped within"));
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn silent_device_times_out_with_exit_5() {
    let (o, record, _) = encode_with_fault("silent", &[]);
    assert_failure(&o, &record, "device-timeout", Some("set hi-co"), 5);
}

#[test]
fn read_back_mismatch_names_the_track_with_exit_4() {
    let (o, record, _) = encode_with_fault("corrupt:2", &[]);
    assert_failure(&o, &record, "read-back-mismatch", Some("read-back"), 4);
    assert!(
        record["error"]["message"]
            .as_str()
            .is_some_and(|m| m.ends_with("track(s) 2")),
        "{record}"
    );
}

#[test]
fn missing_port_is_named_with_exit_3() {
    let tmp = TempDir::new("encode-noport");
    let records = tmp.path("records.jsonl");
    let o = encode(
        DEMO_ORDERS,
        "DEMO-MC-0001",
        "/dev/persodesk-no-such-port",
        &records,
        &[],
        &[],
    );
    let record = read_records(&records).into_iter().next().expect("record");
    assert_failure(&o, &record, "port-not-found", None, 3);
}

#[test]
fn unknown_order_id_is_exit_2_without_record() {
    let tmp = TempDir::new("encode-noorder");
    let records = tmp.path("records.jsonl");
    let o = encode(DEMO_ORDERS, "NOPE", "/dev/null", &records, &[], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("no order with id NOPE"));
    assert!(!records.exists());
}

#[test]
fn refused_tracks_never_reach_the_device() {
    let tmp = TempDir::new("encode-refused");
    let records = tmp.path("records.jsonl");
    let orders = std::fs::read_to_string(root().join(DEMO_ORDERS)).expect("orders");
    let demo: Value = serde_json::from_str(&orders).expect("json");
    let base = demo["cards"][0].clone();

    // An illegal character on track 2 ('A' is not in the numeric set): refused by order validation.
    let mut illegal = base.clone();
    illegal["cardId"] = "ILLEGAL-CHAR".into();
    illegal["trackData"] = serde_json::json!({
        "track2": ";5413330089012345=2906201A000012300000?"
    });
    // A track 1 of 79 characters with sentinels: one too many once the LRC is counted (ISO 7813's
    // 79 include it); order validation and the encoder agree, so it is refused before the port.
    let mut long = base.clone();
    long["cardId"] = "TOO-LONG".into();
    let head = "%B5413330089012345^DOE/ALICE^2906201";
    let t1 = format!("{head}{}?", "0".repeat(78 - head.len()));
    assert_eq!(t1.len(), 79);
    long["trackData"] = serde_json::json!({ "track1": t1 });
    let file = tmp.path("orders.json");
    std::fs::write(
        &file,
        serde_json::json!({ "cards": [illegal, long] }).to_string(),
    )
    .expect("write orders");
    let file = file.to_string_lossy().into_owned();

    let sim = Sim::start("none", &[]);
    let o = encode(&file, "ILLEGAL-CHAR", &sim.path, &records, &[], &[]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("[invalid-order]"), "{err}");
    assert!(
        err.contains("trackData.track2") && err.contains("position 26"),
        "{err}"
    );

    let o = encode(&file, "TOO-LONG", &sim.path, &records, &[], &[]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("[invalid-order]"), "{err}");
    assert!(
        err.contains("trackData.track1: is 79 characters with sentinels, more than the 78"),
        "{err}"
    );

    let (sim_out, _) = sim.stop();
    assert!(
        sim_out.contains("served 0 command(s), 0 ISO write(s), 0 byte(s) received"),
        "{sim_out}"
    );
    let lines = read_records(&records);
    let kinds: Vec<&Value> = lines.iter().map(|r| &r["error"]["kind"]).collect();
    assert_eq!(kinds, ["invalid-order", "invalid-order"]);
    let all = format!(
        "{}{err}",
        std::fs::read_to_string(&records).expect("records")
    );
    assert!(!all.contains("5413330089012345") && !all.contains(&t1[1..78]));
}

#[test]
fn sim_encoder_rejects_an_unknown_failure_mode() {
    let o = persodesk(&["sim-encoder", "--fail", "explode"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("unknown failure"));
}
