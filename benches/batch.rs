//! Batch preparation through the streaming pipeline (`persodesk prepare FILE --json`'s code:
//! JSON Lines in, parse, validate, prepare, JSON Lines out, reorder buffer), cards per second:
//! tracks only on one core and on every core; Model 1 SDA; Model 1 DDA with a warm persisted ICC
//! key pool (real SQLite store, sealed pairs opened per card) and with inline generation. Orders
//! from `persodesk demo orders` (the demo Visa credit product, PIN block recovery, PVV and CVV
//! computed), demo keys. Run: `cargo bench --bench batch` (docs/performance.md).

/// The binary's allocator (`src/main.rs`), so that the pipeline is measured as it runs there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::Cursor;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use persodesk::cli::Exit;
use persodesk::cli::prepare::{Batch, BatchOptions, Source};
use persodesk::domain::chip::ChipProfiles;
use persodesk::domain::chip::keys::IccKeySource;
use persodesk::domain::chip::model1::PrepDate;
use persodesk::domain::oda::RsaExponent;
use persodesk::domain::order::IdHasher;
use persodesk::domain::prepare::ModelChoice;
use persodesk::domain::product::Catalog;
use persodesk::keys::persisted_pool::{PersistedPool, seal_pair};
use persodesk::keys::pool::{InlineKeys, generate};
use persodesk::keys::{LoadedKeys, SoftwareKeyStore};
use persodesk::store::Store;
use persodesk::store::key_pool::{IccKeyPoolStore, SealedPair};

struct Setup {
    root: PathBuf,
    catalog: Catalog,
    chip: ChipProfiles,
    keys: LoadedKeys,
}

/// The demo software store inside the loaded keys.
fn sw(keys: &LoadedKeys) -> &SoftwareKeyStore {
    keys.software().expect("the demo keys are a software store")
}

fn lines(keys: &SoftwareKeyStore, n: u64, product: &str) -> Arc<[u8]> {
    let mut text = String::new();
    for i in 0..n {
        let line = persodesk::cli::demo::order_line(i, keys).expect("order line");
        text.push_str(&line.replace("DEMO_VISA_CREDIT", product));
    }
    Arc::from(text.into_bytes())
}

fn batch<'a>(
    s: &'a Setup,
    model: ModelChoice,
    icc: &'a (dyn IccKeySource + Sync),
    persisted: Option<&'a PersistedPool<'a, Store>>,
) -> Batch<'a> {
    Batch {
        options: BatchOptions {
            json: true,
            ..BatchOptions::default()
        },
        catalog: &s.catalog,
        profiles: &s.root,
        rules: s.catalog.order_rules(),
        keys: &s.keys,
        mode: persodesk::config::Mode::Test,
        chip_profiles: &s.chip,
        date: PrepDate::new(25, 1, 15).expect("date"),
        icc,
        persisted,
        model,
        ids: IdHasher::default(),
    }
}

/// One pass over `data`; every order must prepare.
fn pass(b: &Batch<'_>, data: &Arc<[u8]>, jobs: usize) {
    let done = b.run(
        Source::lines(Cursor::new(Arc::clone(data))),
        jobs,
        &mut std::io::sink(),
    );
    assert_eq!(done.exit, Exit::Ok, "every order prepares");
}

fn tracks(c: &mut Criterion, s: &Setup) {
    const N: u64 = 4096;
    let data = lines(sw(&s.keys), N, "DEMO_VISA_CREDIT");
    let b = batch(s, ModelChoice::StripeOnly, &InlineKeys, None);
    let mut g = c.benchmark_group("batch tracks only");
    g.throughput(Throughput::Elements(N));
    g.sample_size(20);
    g.bench_function("1 core", |x| x.iter(|| pass(&b, &data, 1)));
    let all = persodesk::batch::default_jobs();
    g.bench_function(format!("all cores ({all})"), |x| {
        x.iter(|| pass(&b, &data, all))
    });
    g.finish();
}

fn model1(c: &mut Criterion, s: &Setup) {
    let all = persodesk::batch::default_jobs();
    let mut g = c.benchmark_group("batch model 1");
    g.sample_size(10);
    const N_SDA: u64 = 512;
    let sda = lines(sw(&s.keys), N_SDA, "DEMO_VISA_US");
    let b = batch(
        s,
        ModelChoice::parse("1").expect("model"),
        &InlineKeys,
        None,
    );
    g.throughput(Throughput::Elements(N_SDA));
    g.bench_function(format!("SDA, all cores ({all})"), |x| {
        x.iter(|| pass(&b, &sda, all))
    });

    // DDA from a warm persisted pool: a real store holding sealed pairs, refilled (untimed)
    // before each measurement so that every card takes a pooled pair. 512 orders: two chunks
    // of 256, one per worker on 2 cores (each chunk takes its pairs in one transaction).
    const N_DDA: u64 = 512;
    let dda = lines(sw(&s.keys), N_DDA, "DEMO_VISA_CREDIT");
    let dir = std::env::temp_dir().join(format!("persodesk-bench-pool-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("persodesk.sqlite3");
    let base: Vec<_> = (0..8)
        .map(|_| generate(1024, RsaExponent::Three).expect("key"))
        .collect();
    let refill = |store: &mut Store, n: usize| {
        let pairs: Vec<SealedPair> = (0..n)
            .map(|i| seal_pair(sw(&s.keys), &base[i % base.len()]).expect("seal"))
            .collect();
        store.put_pairs(1024, 3, &pairs).expect("put");
    };
    g.throughput(Throughput::Elements(N_DDA));
    g.bench_function(
        format!("DDA, persisted pool warm, all cores ({all})"),
        |x| {
            x.iter_custom(|iters| {
                let mut store = Store::open(&path).expect("store");
                refill(&mut store, (iters * N_DDA) as usize);
                let pool = PersistedPool::new(store, sw(&s.keys), &InlineKeys);
                let b = batch(
                    s,
                    ModelChoice::parse("1").expect("model"),
                    &pool,
                    Some(&pool),
                );
                let start = Instant::now();
                for _ in 0..iters {
                    pass(&b, &dda, all);
                }
                start.elapsed()
            })
        },
    );
    const N_INLINE: u64 = 16;
    let inline = lines(sw(&s.keys), N_INLINE, "DEMO_VISA_CREDIT");
    g.throughput(Throughput::Elements(N_INLINE));
    g.measurement_time(Duration::from_secs(20));
    g.bench_function(format!("DDA, inline generation, all cores ({all})"), |x| {
        x.iter(|| pass(&b, &inline, all))
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

fn bench(c: &mut Criterion) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let s = Setup {
        catalog: persodesk::catalog::load_products(&root.join("profiles")).expect("products"),
        chip: persodesk::catalog::load_chip_profiles(&root.join("profiles")).expect("profiles"),
        keys: LoadedKeys::Software(
            SoftwareKeyStore::load(&root.join("assets/demo/keys.toml")).expect("keys"),
        ),
        root: root.join("profiles"),
    };
    tracks(c, &s);
    model1(c, &s);
}

criterion_group!(benches, bench);
criterion_main!(benches);
