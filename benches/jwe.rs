//! Order intake, orders per second: the six demo orders plain (`assets/demo/orders.json`) beside
//! the same orders as JWE (`assets/demo/orders-jwe.json`: ECDH-ES P-256 key agreement, Concat
//! KDF, AES-256-GCM per order), validated with the demo key store. Run:
//! `cargo bench --bench jwe` (docs/jwe.md, "Performance").

use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use persodesk::domain::order::parse_orders;
use persodesk::keys::SoftwareKeyStore;

fn bench(c: &mut Criterion) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let catalog = persodesk::catalog::load_products(&root.join("profiles")).expect("products");
    let rules = catalog.order_rules();
    let keys = SoftwareKeyStore::load(&root.join("assets/demo/keys.toml")).expect("keys");
    let plain = std::fs::read_to_string(root.join("assets/demo/orders.json")).expect("orders");
    let sealed =
        std::fs::read_to_string(root.join("assets/demo/orders-jwe.json")).expect("jwe orders");
    for text in [&plain, &sealed] {
        let entries = parse_orders(text, &rules, &keys).expect("parses");
        assert!(
            entries.iter().all(|e| e.outcome.is_ok()),
            "every order valid"
        );
    }
    let n = parse_orders(&plain, &rules, &keys).expect("parses").len();

    let mut g = c.benchmark_group("intake");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("plain", |b| {
        b.iter(|| parse_orders(&plain, &rules, &keys).expect("parses"))
    });
    g.bench_function("jwe", |b| {
        b.iter(|| parse_orders(&sealed, &rules, &keys).expect("parses"))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
