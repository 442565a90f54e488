//! The workstation window with 100,000 orders (issue 18's acceptance, issue 19): the load of a
//! 100,000-order file (read, validate, prepare every order's tracks, record the statuses in a
//! SQLite store, on the preparation worker) and the frame loop of the egui_kittest harness while
//! the table scrolls (a page down per frame, wrapping to the top), with 1,000 and with 100,000
//! orders in the table: the table lays out only its visible rows (egui_extras `rows`), so a frame
//! must cost the same with both. No GPU: the harness runs egui's layout and tessellation input,
//! not a renderer. Orders from `persodesk demo orders` (`cli::demo::order_line`), demo keys.
//! Run: `cargo bench --bench window` (docs/performance.md, "Window").

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable as _;
use persodesk::domain::chip::ChipModel;
use persodesk::domain::prepare::AllowedModels;
use persodesk::domain::review::Role;
use persodesk::domain::status::Status;
use persodesk::gui::log::LogBuffer;
use persodesk::gui::orders::Filter;
use persodesk::gui::worker::OrderRow;
use persodesk::gui::{App, AppConfig, demo_catalog, demo_chip_profiles, demo_keys};
use persodesk::sim::encoder::SimConfig;

const ORDERS: u64 = 100_000;

/// A fresh directory under the target's temporary directory.
fn temp_dir(tag: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "persodesk-bench-window-{tag}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temporary directory");
    dir
}

fn config(store: &Path, open: Option<PathBuf>) -> AppConfig {
    AppConfig {
        catalog: demo_catalog().expect("demo products"),
        chip_profiles: demo_chip_profiles().expect("demo chip profiles"),
        keys: Arc::new(demo_keys().expect("demo keys")),
        key_pool: false,
        virtual_card: true,
        virtual_card_keys: None,
        store: Some(persodesk::store::StoreLocation::Sqlite(store.to_path_buf())),
        live_every: Duration::from_secs(3600),
        start_sim_encoder: false,
        sim: SimConfig::default(),
        load_demo: false,
        scan_devices: false,
        user: "bench".into(),
        swipe_timeout: Duration::from_secs(5),
        reveal_timeout: persodesk::gui::config::DEFAULT_REVEAL_TIMEOUT,
        open,
        mode: persodesk::config::Mode::Test,
        roles: None,
    }
}

/// `persodesk demo orders --count 100000` into `dir/orders.jsonl`.
fn order_file(dir: &Path) -> PathBuf {
    let keys = demo_keys().expect("demo keys");
    let sw = keys.software().expect("software store");
    let mut text = String::new();
    for i in 0..ORDERS {
        text.push_str(&persodesk::cli::demo::order_line(i, sw).expect("order line"));
    }
    let path = dir.join("orders.jsonl");
    std::fs::write(&path, text).expect("order file");
    path
}

/// Opens the window's state on `file` and polls until its orders are loaded.
fn load_once(file: &Path, dir: &Path, n: u64) -> Duration {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let store = dir.join(format!(
        "load-{}.sqlite3",
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let start = Instant::now();
    let mut app = App::new(
        config(&store, Some(file.to_path_buf())),
        LogBuffer::default(),
    )
    .expect("app");
    while app.loading.is_some() || app.rows.len() as u64 != n {
        app.poll();
        assert!(
            app.loading.is_some() || app.rows.len() as u64 == n,
            "{:?}",
            app.notice
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let took = start.elapsed();
    let _ = std::fs::remove_file(&store);
    took
}

fn bench_load(c: &mut Criterion) {
    let dir = temp_dir("load");
    let file = order_file(&dir);
    let mut g = c.benchmark_group("window_load");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(30));
    g.bench_function("100000_orders", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| load_once(&file, &dir, ORDERS)).sum())
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

fn row(i: usize) -> OrderRow {
    OrderRow {
        id: format!("BULK-{i:06}"),
        product: "DEMO_VISA_CREDIT".into(),
        masked_pan: "476173******0010".into(),
        allowed: AllowedModels {
            model1: true,
            model2: false,
        },
        model: Some(ChipModel::Model1),
        status: if i.is_multiple_of(3) {
            Status::DataException
        } else {
            Status::DataPrepared
        },
        reason: None,
        approved: false,
        test_keys_only: true,
        errors: Vec::new(),
        warnings: Vec::new(),
    }
}

/// A signed-in harness whose table holds `n` orders.
fn harness(dir: &Path, n: usize) -> Harness<'static, App> {
    let app = App::new(
        config(&dir.join("frames.sqlite3"), None),
        LogBuffer::default(),
    )
    .expect("app");
    let mut h = Harness::builder()
        .with_size(egui::vec2(1360.0, 820.0))
        .build_ui_state(|ui, app: &mut App| app.draw(ui), app);
    h.state_mut().sign_in(Role::Supervisor);
    h.state_mut().rows = (0..n).map(row).collect();
    h.state_mut().set_filter(Filter::default());
    h.step();
    h
}

/// One frame of scrolling: a page down, or back to the top from the last row.
fn scroll_frame(h: &mut Harness<'static, App>) {
    let at_end = h
        .state()
        .selected
        .is_some_and(|s| s + 1 == h.state().rows.len());
    h.key_press(if at_end {
        egui::Key::Home
    } else {
        egui::Key::PageDown
    });
    h.step();
}

/// How many of the table's rows a frame lays out (each row's id is a label).
fn laid_out_rows(h: &Harness<'static, App>) -> usize {
    h.query_all_by_label_contains("BULK-").count()
}

/// The mean of `frames` scrolling frames, after a few to warm up.
fn mean_frame(h: &mut Harness<'static, App>, frames: u32) -> Duration {
    for _ in 0..5 {
        scroll_frame(h);
    }
    let start = Instant::now();
    for _ in 0..frames {
        scroll_frame(h);
    }
    start.elapsed() / frames
}

/// What makes a frame's cost independent of the number of orders, checked before timing: a
/// frame lays out the same rows with 1,000 and with 100,000 orders (the visible page, not the
/// table); and the two means side by side, the ratio printed.
fn check_same_work_per_frame() {
    let frames = 20;
    let mut seen = Vec::new();
    for n in [1_000usize, 100_000] {
        let dir = temp_dir("same-work");
        let mut h = harness(&dir, n);
        scroll_frame(&mut h);
        let rows = laid_out_rows(&h);
        assert!(rows > 5 && rows < 100, "{n} orders: {rows} rows laid out");
        let mean = mean_frame(&mut h, frames);
        seen.push((n, rows, mean));
        drop(h);
        let _ = std::fs::remove_dir_all(&dir);
    }
    let (small, large) = (seen[0], seen[1]);
    assert_eq!(
        small.1, large.1,
        "rows laid out per frame: {} with 1,000 orders, {} with 100,000",
        small.1, large.1
    );
    println!(
        "window frame (mean of {frames}): 1,000 orders {:?}, 100,000 orders {:?} (ratio {:.2}); {} rows laid out per frame with both",
        small.2,
        large.2,
        large.2.as_secs_f64() / small.2.as_secs_f64(),
        small.1
    );
}

fn bench_frames(c: &mut Criterion) {
    check_same_work_per_frame();
    let mut g = c.benchmark_group("window_frame_scrolling");
    g.sample_size(30);
    for n in [1_000usize, 100_000] {
        let dir = temp_dir("frames");
        let mut h = harness(&dir, n);
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| scroll_frame(&mut h))
        });
        drop(h);
        let _ = std::fs::remove_dir_all(&dir);
    }
    g.finish();
}

criterion_group!(benches, bench_frames, bench_load);
criterion_main!(benches);
