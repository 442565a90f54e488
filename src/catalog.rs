//! Loads the product catalog from `profiles/products/*.toml` and the chip profiles from
//! `profiles/chip/*.toml`.

use std::path::{Path, PathBuf};

use crate::domain::finding::Finding;
use crate::domain::product::{Catalog, Product};

/// The `*.toml` files of a directory in file name order, each with its text.
fn toml_files(dir: &Path, what: &str) -> Result<Vec<(PathBuf, String)>, Finding> {
    let label = dir.display().to_string();
    let read = std::fs::read_dir(dir).map_err(|e| {
        Finding::new(
            &label,
            format!("cannot read the {what} directory: {}", e.kind()),
        )
    })?;
    let mut paths: Vec<_> = read
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).map_err(|e| {
                Finding::new(
                    p.display().to_string(),
                    format!("cannot be read: {}", e.kind()),
                )
            })?;
            Ok((p, text))
        })
        .collect()
}

/// Reads every `*.toml` under `<profiles>/products`, in file name order.
pub fn load_products(profiles: &Path) -> Result<Catalog, Finding> {
    let products = toml_files(&profiles.join("products"), "products")?
        .iter()
        .map(|(p, text)| Product::from_toml(&p.display().to_string(), text))
        .collect::<Result<Vec<_>, _>>()?;
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
    let out = toml_files(&dir, "chip profile")?
        .iter()
        .map(|(p, text)| {
            let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
            ChipProfile::from_toml(&p.display().to_string(), stem, text)
        })
        .collect::<Result<Vec<_>, _>>()?;
    ChipProfiles::new(out)
}
