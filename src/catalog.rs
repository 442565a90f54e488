//! Loads the product catalog from `profiles/products/*.toml`.

use std::path::Path;

use crate::domain::finding::Finding;
use crate::domain::product::{Catalog, Product};

/// Reads every `*.toml` under `<profiles>/products`, in file name order.
pub fn load_products(profiles: &Path) -> Result<Catalog, Finding> {
    let dir = profiles.join("products");
    let label = dir.display().to_string();
    let read = std::fs::read_dir(&dir).map_err(|e| {
        Finding::new(
            &label,
            format!("cannot read the products directory: {}", e.kind()),
        )
    })?;
    let mut paths: Vec<_> = read
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    let mut products = Vec::with_capacity(paths.len());
    for p in paths {
        let name = p.display().to_string();
        let text = std::fs::read_to_string(&p)
            .map_err(|e| Finding::new(&name, format!("cannot be read: {}", e.kind())))?;
        products.push(Product::from_toml(&name, &text)?);
    }
    Catalog::new(products)
}

/// Reads every `*.toml` under `<profiles>/chip` as a chip profile named after its file stem, in
/// file name order. A missing `chip` directory is an empty set (products then have no chip data).
pub fn load_chip_profiles(profiles: &Path) -> Result<crate::domain::chip::ChipProfiles, Finding> {
    use crate::domain::chip::{ChipProfile, ChipProfiles};
    let dir = profiles.join("chip");
    if !dir.is_dir() {
        return Ok(ChipProfiles::default());
    }
    let label = dir.display().to_string();
    let read = std::fs::read_dir(&dir).map_err(|e| {
        Finding::new(
            &label,
            format!("cannot read the chip profile directory: {}", e.kind()),
        )
    })?;
    let mut paths: Vec<_> = read
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    let mut out = Vec::with_capacity(paths.len());
    for p in paths {
        let name = p.display().to_string();
        let stem = p
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        let text = std::fs::read_to_string(&p)
            .map_err(|e| Finding::new(&name, format!("cannot be read: {}", e.kind())))?;
        out.push(ChipProfile::from_toml(&name, &stem, &text)?);
    }
    ChipProfiles::new(out)
}
