//! `persodesk prepare`: tracks and sources per order, text or JSON Lines, masked unless
//! `--reveal` (refused when any key used is not a test key).

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::json;

mod jsonl;

use super::{Exit, catalog_at, check_order_mode, keys_path, open_store, read_keys};
use crate::batch::seen::SeenIds;
use crate::batch::{Line, Lines};
use crate::domain::chip::ChipData;
use crate::domain::chip::model1::PrepDate;
use crate::domain::chip::preview::{TlvNode, preview};
use crate::domain::envelope::EnvelopeSettings;
use crate::domain::finding::Finding;
use crate::domain::order::{
    IdHasher, IdKey, OrderEntry, OrderRules, duplicate_finding, entry_from_line, flag, refused_line,
};
use crate::domain::prepare::PersoData;
use crate::domain::prepare::{ModelChoice, PrepInputs, prepare_card};
use crate::domain::product::Catalog;
use crate::domain::track::{Track, TrackNo};
use crate::keys::LoadedKeys;
use crate::keys::persisted_pool::PersistedPool;
use crate::keys::pool::KeyPools;

/// Arguments of `prepare`.
#[derive(Debug, Args)]
pub struct PrepareArgs {
    /// Order file: one order, {"cards": [...]}, or JSON Lines.
    file: PathBuf,
    /// Only the order with this id.
    #[arg(long)]
    order: Option<String>,
    /// Directory holding products/ (and chip/) [default: profiles; production: the
    /// configuration's, and this flag is refused].
    #[arg(long)]
    profiles: Option<PathBuf>,
    /// Key store file [default: assets/demo/keys.toml; production: the configuration's, and
    /// this flag is refused].
    #[arg(long)]
    keys: Option<PathBuf>,
    /// One JSON object per order per line.
    #[arg(long)]
    json: bool,
    /// Show clear values; refused unless every key the order used is a test key.
    #[arg(long)]
    reveal: bool,
    /// Chip data model: 1 (computed here), 2 (issuer-prepared tlvData), auto (2 for orders with
    /// tlvData, else 1 when the product has a chip profile), none (tracks only).
    #[arg(long, default_value = "auto")]
    model: String,
    /// Preparation date YYMMDD (default: today); 5F25 when an order has no effectiveDate.
    #[arg(long)]
    date: Option<String>,
    /// Record each order's outcome (DATA_PREPARED or DATA_EXCEPTION with the findings) in the
    /// workstation store, as the workstation does when it loads a file (audited, as the
    /// operating-system account).
    #[arg(long)]
    record: bool,
    /// Worker threads preparing orders [default: the cores available]; output order is the
    /// file's whatever the number.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    jobs: Option<u16>,
}

pub(crate) fn parse_date(s: &str) -> Option<PrepDate> {
    if s.len() != 6 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |i: usize| s.get(i..i + 2).and_then(|x| x.parse::<u8>().ok());
    PrepDate::new(n(0)?, n(2)?, n(4)?)
}

fn chip_json(chip: &ChipData, reveal: bool) -> serde_json::Value {
    let dgis: Vec<serde_json::Value> = preview(chip, reveal)
        .into_iter()
        .map(|d| {
            let mut v = json!({
                "dgi": d.dgi,
                "encrypted": d.encrypted,
                "length": d.length,
                "tlv": d.tlv,
            });
            if let Some(x) = d.value {
                v["value"] = json!(x);
            }
            if let Some(k) = d.kcv {
                v["kcv"] = json!(k);
            }
            v
        })
        .collect();
    let kcv = chip.kcvs.map(|k| {
        json!({"ac": hex::encode_upper(k.ac), "smi": hex::encode_upper(k.smi), "smc": hex::encode_upper(k.smc)})
    });
    let oda = chip.oda.as_ref().map(|o| {
        json!({
            "method": o.method.as_str().to_uppercase(),
            "rid": hex::encode_upper(o.rid),
            "caIndex": format!("{:02X}", o.ca_index),
            "issuerKeyBits": o.issuer_key_bits,
            "iccKeyBits": o.icc_key_bits,
            "iccKeyFromPool": o.icc_key_from_pool,
        })
    });
    json!({
        "profile": chip.profile,
        "model": chip.model.number(),
        "aid": hex::encode_upper(&chip.aid),
        "dgis": dgis,
        "kcv": kcv,
        "oda": oda,
        "pinGenerated": chip.pin_generated,
    })
}

fn print_tlv(out: &mut Vec<u8>, nodes: &[TlvNode], depth: usize) {
    for n in nodes {
        let name = n.name.unwrap_or("?");
        let _ = writeln!(
            out,
            "  {:width$}{} {name}: {}",
            "",
            n.tag,
            n.value,
            width = 4 + depth * 2
        );
        print_tlv(out, &n.children, depth + 1);
    }
}

fn print_chip(out: &mut Vec<u8>, chip: &ChipData, reveal: bool) {
    let _ = writeln!(out, "  chip     {}", chip.title());
    for d in preview(chip, reveal) {
        let flag = if d.encrypted { " encrypted" } else { "" };
        let kcv = d.kcv.map(|k| format!(" KCV {k}")).unwrap_or_default();
        let _ = writeln!(
            out,
            "    DGI {} ({} bytes{flag}){kcv} {}",
            d.dgi,
            d.length,
            d.name.unwrap_or("")
        );
        if d.tlv.is_empty()
            && let Some(v) = &d.value
        {
            let _ = writeln!(out, "      {v}");
        }
        print_tlv(out, &d.tlv, 0);
    }
}

fn show(t: Option<&Track>, reveal: bool) -> Option<String> {
    t.map(|t| {
        if reveal {
            t.reveal().to_string()
        } else {
            t.masked()
        }
    })
}

/// A JSON output line of an order that failed; fields in the order `json!` wrote them
/// (sorted keys).
#[derive(serde::Serialize)]
struct ErrorLine<'a> {
    #[serde(rename = "cardProductId")]
    card_product_id: Option<&'a str>,
    errors: &'a [Finding],
    id: &'a str,
}

/// Writes `line` as one JSON line (serialized straight into the output buffer).
fn json_line(out: &mut Vec<u8>, line: &impl serde::Serialize) {
    if serde_json::to_writer(&mut *out, line).is_ok() {
        out.push(b'\n');
    }
}

fn print_errors(
    out: &mut Vec<u8>,
    json: bool,
    id: &str,
    product: Option<&str>,
    errors: &[Finding],
) {
    if json {
        let line = ErrorLine {
            card_product_id: product,
            errors,
            id,
        };
        json_line(out, &line);
    } else {
        let _ = writeln!(out, "{id}  {}  FAILED", product.unwrap_or("-"));
        for e in errors {
            let _ = writeln!(out, "  error    {e}");
        }
    }
}

fn print_data(out: &mut Vec<u8>, json: bool, data: &PersoData, reveal: bool, warnings: &[Finding]) {
    let t = &data.tracks;
    if json {
        let chip = data.chip.as_ref().map(|c| chip_json(c, reveal));
        jsonl::data_line(out, data, chip.as_ref(), reveal, warnings);
        return;
    }
    let name = data.name.as_ref().map_or("-", |n| n.as_str());
    let _ = writeln!(
        out,
        "{}  {}  {}  {name}",
        data.order_id, data.card_product_id, data.masked_pan
    );
    for no in [TrackNo::T1, TrackNo::T2, TrackNo::T3] {
        if let Some(s) = show(t.get(no), reveal) {
            let src = data.sources.get(no.key()).map_or("", |s| s);
            let _ = writeln!(out, "  {}   {s}   ({src})", no.key());
        }
    }
    for (k, v) in data.sources.iter().filter(|(k, _)| !k.starts_with("track")) {
        let _ = writeln!(out, "  {k:<7}  {v}");
    }
    if let Some(chip) = &data.chip {
        print_chip(out, chip, reveal);
    }
    for w in warnings {
        let _ = writeln!(out, "  warning  {w}");
    }
}

/// One order as it enters the pipeline.
enum Input {
    /// A JSON Lines line and its position among the non-blank lines (streamed input).
    Line(Line, usize),
    /// An order of a file read whole (one document: an order, a batch or an array).
    Entry(Box<OrderEntry>),
}

/// An order's output text and whether it holds clear values (`--reveal`): then the bytes
/// written are zeroized on drop (not the spare capacity, which holds nothing). Masked output
/// holds nothing secret (masked PANs and tracks, sources, findings) and is not wiped: that
/// cost about 400 instructions a card, on the one thread that writes.
struct OutBuf(Vec<u8>, bool);

impl Drop for OutBuf {
    fn drop(&mut self) {
        if self.1 {
            zeroize::Zeroize::zeroize(self.0.as_mut_slice());
        }
    }
}

/// An order validated by a worker, not yet prepared.
struct Staged {
    entry: OrderEntry,
    id_key: Option<IdKey>,
    line: Option<(crate::domain::wipe::WipedString, usize)>,
    selected: bool,
}

/// One order's result, rendered by a worker, written by the sink in file order.
struct Outcome {
    /// 1-based position in the file.
    position: usize,
    /// The id's key for the duplicate rule (streamed input; `None` for positional ids).
    id_key: Option<IdKey>,
    /// The line, kept to redo the order should its id turn out to repeat an earlier one.
    line: Option<(crate::domain::wipe::WipedString, usize)>,
    /// Chosen by `--order` (every order without it).
    selected: bool,
    /// Standard output text (zeroized when dropped if it holds clear values).
    out: OutBuf,
    /// Standard error text (refusals).
    err: String,
    exit: Exit,
    /// The order's id and findings for `--record`.
    record: Option<(String, Option<String>)>,
}

/// Output and selection options of a batch.
#[derive(Debug, Clone, Default)]
pub struct BatchOptions {
    /// JSON Lines output (else text).
    pub json: bool,
    /// Clear values (refused per order unless every key it used is a test key).
    pub reveal: bool,
    /// Only the order with this id.
    pub order: Option<String>,
    /// Keep each order's outcome for the store (`--record`).
    pub record: bool,
}

/// Everything the workers share (all `Sync`): one batch's products, keys and options.
pub struct Batch<'a> {
    /// Output and selection.
    pub options: BatchOptions,
    /// The products.
    pub catalog: &'a Catalog,
    /// The profiles directory (named in errors).
    pub profiles: &'a Path,
    /// Rules from the products applied while validating.
    pub rules: OrderRules,
    /// The key store.
    pub keys: &'a LoadedKeys,
    /// The machine's mode (production refuses demo orders and test products).
    pub mode: crate::config::Mode,
    /// The chip profiles.
    pub chip_profiles: &'a crate::domain::chip::ChipProfiles,
    /// Preparation date.
    pub date: PrepDate,
    /// ICC key pairs for DDA/CDA.
    pub icc: &'a (dyn crate::domain::chip::keys::IccKeySource + Sync),
    /// The persisted ICC key pool, when warm: each chunk takes its pairs in one transaction.
    pub persisted: Option<&'a PersistedPool<'a, crate::store::Store>>,
    /// Chip data model.
    pub model: ModelChoice,
    /// Keys ids for the duplicate rule.
    pub ids: IdHasher,
}

impl Batch<'_> {
    /// Validates a streamed line (with the finding `dup`: its id repeats an earlier order's, or
    /// could not be checked) and prepares it.
    fn line(&self, line: Line, position: usize, dup: Option<Finding>) -> Outcome {
        let staged = self.stage_line(line, position, dup);
        self.finish(staged, self.icc)
    }

    /// Validates a streamed line and applies the mode rules, not preparing it yet.
    fn stage_line(&self, line: Line, position: usize, dup: Option<Finding>) -> Staged {
        let (mut entry, text) = match line {
            Line::Text { text, line_no } => {
                let e = entry_from_line(&text, position, line_no, &self.rules, self.keys.port());
                (e, Some((text, line_no)))
            }
            Line::Refused { line_no, rule } => (refused_line(position, line_no, rule), None),
        };
        let id_key = if dup.is_none() {
            self.ids.key(&entry.id)
        } else {
            None
        };
        if let Some(f) = dup {
            flag(&mut entry, f);
        }
        let mut staged = self.stage_entry(entry);
        staged.id_key = id_key;
        staged.line = text.filter(|_| id_key.is_some());
        staged
    }

    /// Applies the machine's mode rules to a validated entry, not preparing it yet.
    fn stage_entry(&self, mut entry: OrderEntry) -> Staged {
        check_order_mode(&mut entry, self.catalog, self.mode);
        Staged {
            selected: self.options.order.as_ref().is_none_or(|id| *id == entry.id),
            entry,
            id_key: None,
            line: None,
        }
    }

    /// The ICC key pair a staged order will use (selected, valid, Model 1 DDA/CDA).
    fn icc_need(&self, s: &Staged) -> Option<(usize, crate::domain::oda::RsaExponent)> {
        let order = s.entry.outcome.as_ref().ok().filter(|_| s.selected)?;
        let product = self.catalog.get(&order.card_product_id)?;
        crate::domain::prepare::icc_key_need(order, product, self.model, self.chip_profiles)
    }

    /// Prepares a staged entry when selected, with ICC key pairs from `icc`.
    fn finish(&self, staged: Staged, icc: &dyn crate::domain::chip::keys::IccKeySource) -> Outcome {
        let Staged {
            entry,
            id_key,
            line,
            selected,
        } = staged;
        let mut o = Outcome {
            position: entry.position,
            id_key,
            line,
            selected,
            out: OutBuf(Vec::with_capacity(512), self.options.reveal),
            err: String::new(),
            exit: Exit::Ok,
            record: None,
        };
        if o.selected {
            let findings = self.prepare(&entry, &mut o, icc);
            if self.options.record {
                o.record = Some((entry.id, findings));
            }
        }
        o
    }

    /// Prepares a chunk of the batch: validates every order, takes the ICC key pairs the
    /// chunk's DDA/CDA orders need from the persisted pool in one transaction per size, then
    /// prepares each order in turn (pairs left unused are dropped, still sealed).
    fn chunk(&self, chunk: Vec<Input>) -> Vec<Outcome> {
        let stage = |input| match input {
            Input::Line(line, position) => self.stage_line(line, position, None),
            Input::Entry(entry) => self.stage_entry(*entry),
        };
        let Some(pool) = self.persisted else {
            // Order by order: nothing to take for the chunk as a whole.
            return chunk
                .into_iter()
                .map(|input| self.finish(stage(input), self.icc))
                .collect();
        };
        let staged: Vec<Staged> = chunk.into_iter().map(stage).collect();
        let needs: Vec<_> = staged.iter().filter_map(|s| self.icc_need(s)).collect();
        let reserve = pool.reserve(&needs);
        staged
            .into_iter()
            .map(|s| self.finish(s, &reserve))
            .collect()
    }

    /// Prepares one selected entry into `o`; returns the findings to record.
    fn prepare(
        &self,
        entry: &OrderEntry,
        o: &mut Outcome,
        icc: &dyn crate::domain::chip::keys::IccKeySource,
    ) -> Option<String> {
        let json = self.options.json;
        let product_id = entry.card_product_id.as_deref();
        let order = match &entry.outcome {
            Ok(order) => order,
            Err(errors) => {
                print_errors(&mut o.out.0, json, &entry.id, product_id, errors);
                o.exit = Exit::Invalid;
                return Some(Finding::join(errors));
            }
        };
        let Some(product) = self.catalog.get(&order.card_product_id) else {
            let f = Finding::new(
                "cardProductId",
                format!(
                    "product {} is not in {}",
                    order.card_product_id,
                    self.profiles.join("products").display()
                ),
            );
            print_errors(
                &mut o.out.0,
                json,
                &entry.id,
                product_id,
                std::slice::from_ref(&f),
            );
            o.exit = Exit::Invalid;
            return Some(Finding::join(&[f]));
        };
        let inputs = PrepInputs {
            profiles: self.chip_profiles,
            date: self.date,
            keys: self.keys.port(),
            icc_keys: icc,
            envelope: EnvelopeSettings::default(),
        };
        match prepare_card(order, product, self.model, &inputs) {
            Ok(data) => {
                let non_test = data.non_test_keys();
                if self.options.reveal && !non_test.is_empty() {
                    let names: Vec<String> = non_test.iter().map(ToString::to_string).collect();
                    let _ = writeln!(
                        o.err,
                        "error: order {}: --reveal refused: key {} is not a test key",
                        entry.id,
                        names.join(", ")
                    );
                    o.exit = Exit::Invalid;
                    return None;
                }
                tracing::debug!(order = %entry.id, product = %data.card_product_id, "prepared");
                let mut warnings = entry.warnings.clone();
                warnings.extend(data.warnings.iter().cloned());
                print_data(&mut o.out.0, json, &data, self.options.reveal, &warnings);
                None
            }
            Err(errors) => {
                print_errors(&mut o.out.0, json, &entry.id, product_id, &errors);
                o.exit = Exit::Invalid;
                Some(Finding::join(&errors))
            }
        }
    }
}

/// Where the orders come from: JSON Lines streamed line by line, or a file read whole.
pub enum Source {
    /// JSON Lines, read line by line; the read error that ended it, if any, is kept; the
    /// number of orders expected (file size / first line), to size the duplicate-id table.
    Stream(Box<dyn Iterator<Item = Line> + Send>, ReadError, usize),
    /// A document read whole.
    Whole(Vec<OrderEntry>),
}

/// Where a streamed source keeps the read error that ended it.
pub type ReadError = std::sync::Arc<std::sync::Mutex<Option<std::io::Error>>>;

impl Source {
    /// A JSON Lines stream from any reader (benchmarks, tests).
    pub fn lines<R: std::io::BufRead + Send + 'static>(reader: R) -> Self {
        let lines = Lines::new(reader);
        let error = std::sync::Arc::clone(&lines.error);
        Source::Stream(Box::new(lines), error, 0)
    }
}

/// Opens the order file. JSON Lines (a first non-blank line that is one JSON value, and more
/// lines) is streamed: memory does not grow with the file, and the file size limit does not
/// apply (each line is bounded by [`crate::batch::MAX_LINE`]). Anything else (one order, a
/// batch or an array, possibly over several lines) is one JSON document, read whole under
/// [`super::MAX_ORDER_FILE`] as before.
fn open_source(file: &Path, rules: &OrderRules, keys: &LoadedKeys) -> Result<Source, Exit> {
    let fail = |what: String| super::unreadable(format!("{}: {what}", file.display()));
    let meta =
        std::fs::metadata(file).map_err(|e| fail(format!("cannot be read: {}", e.kind())))?;
    if !meta.is_file() {
        return Err(fail("is not a regular file".into()));
    }
    let f = std::fs::File::open(file).map_err(|e| fail(format!("cannot be read: {}", e.kind())))?;
    let mut lines = Lines::new(std::io::BufReader::with_capacity(256 * 1024, f));
    let error = std::sync::Arc::clone(&lines.error);
    let first = lines.next();
    let first_len = match &first {
        Some(Line::Text { text, .. })
            if crate::domain::order::first_line_is_an_order_line(text) =>
        {
            Some(text.len() + 1)
        }
        _ => None,
    };
    if let Some(len) = first_len
        && let Some(second) = lines.next()
    {
        // Sizes the duplicate-id table's memory part (at most its 32 MiB budget; beyond, ids
        // spill to disk: `batch::seen`).
        let expected = usize::try_from(meta.len() / len as u64)
            .unwrap_or(usize::MAX)
            .min(2_000_000);
        let head = first.into_iter().chain(std::iter::once(second));
        return Ok(Source::Stream(Box::new(head.chain(lines)), error, expected));
    }
    drop(lines);
    let text = super::read_order_text(file)?;
    crate::domain::order::parse_orders(&text, rules, keys.port())
        .map(Source::Whole)
        .map_err(|e| fail(e.to_string()))
}

/// What a batch run ends with.
#[derive(Debug)]
pub struct Finished {
    /// The worst outcome of any order.
    pub exit: Exit,
    /// Orders read.
    pub count: usize,
    /// Whether any order was selected (`--order`).
    pub any_selected: bool,
    /// The outcomes to record (`--record`).
    pub records: Vec<(String, Option<String>)>,
    /// The output could not be written.
    pub write_error: Option<std::io::Error>,
    /// The input could not be read to its end.
    pub read_error: Option<std::io::Error>,
}

/// Writes each outcome in file order, applies the duplicate-id rule to streamed orders, and
/// collects the exit code and what `--record` stores.
struct Sink<'a, 'b> {
    batch: &'a Batch<'b>,
    seen: SeenIds,
    out: &'a mut dyn std::io::Write,
    done: Finished,
}

impl Sink<'_, '_> {
    fn take(&mut self, mut o: Outcome) {
        self.done.count += 1;
        let dup = o
            .id_key
            .and_then(|key| match self.seen.check(key, o.position) {
                Ok(at) => at.map(duplicate_finding),
                // Fails closed: an order whose id could not be checked is refused.
                Err(e) => Some(Finding::new(
                    "cardId",
                    format!("the duplicate-id check failed: {}", e.kind()),
                )),
            });
        if let Some(f) = dup
            && let Some((text, line_no)) = o.line.take()
        {
            // Rare: redone here, in order, with the finding.
            let line = Line::Text { text, line_no };
            o = self.batch.line(line, o.position, Some(f));
        }
        if !o.selected {
            return;
        }
        self.done.any_selected = true;
        if self.done.write_error.is_none()
            && let Err(e) = self.out.write_all(&o.out.0)
        {
            self.done.write_error = Some(e);
        }
        if !o.err.is_empty() {
            let _ = self.out.flush();
            eprint!("{}", o.err);
        }
        self.done.exit = self.done.exit.max(o.exit);
        self.done.records.extend(o.record);
    }
}

impl Batch<'_> {
    /// Prepares every order of `source` on `jobs` threads, writing the results to `out` in
    /// input order (flushed at the end).
    pub fn run(&self, source: Source, jobs: usize, out: &mut dyn std::io::Write) -> Finished {
        let expected = match &source {
            Source::Stream(_, _, n) => *n,
            Source::Whole(_) => 0,
        };
        let mut sink = Sink {
            batch: self,
            seen: SeenIds::with_capacity(expected),
            out,
            done: Finished {
                exit: Exit::Ok,
                count: 0,
                any_selected: false,
                records: Vec::new(),
                write_error: None,
                read_error: None,
            },
        };
        match source {
            Source::Stream(lines, error, _) => {
                let input = lines.enumerate().map(|(i, l)| Input::Line(l, i + 1));
                crate::batch::run_ordered_chunks(input, jobs, |c| self.chunk(c), |o| sink.take(o));
                sink.done.read_error = error.lock().unwrap_or_else(|p| p.into_inner()).take();
            }
            Source::Whole(entries) => {
                let input = entries.into_iter().map(|e| Input::Entry(Box::new(e)));
                crate::batch::run_ordered_chunks(input, jobs, |c| self.chunk(c), |o| sink.take(o));
            }
        }
        if let Err(e) = sink.out.flush()
            && sink.done.write_error.is_none()
        {
            sink.done.write_error = Some(e);
        }
        sink.done
    }
}

/// Runs `prepare`.
pub fn run(args: &PrepareArgs) -> Exit {
    let (profiles, catalog) = match catalog_at(args.profiles.as_deref()) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let Some(model) = ModelChoice::parse(&args.model) else {
        eprintln!("error: --model must be 1, 2, auto or none");
        return Exit::Unreadable;
    };
    let date = match &args.date {
        None => crate::job::today(),
        Some(d) => match parse_date(d) {
            Some(d) => d,
            None => {
                eprintln!("error: --date must be a valid YYMMDD date");
                return Exit::Unreadable;
            }
        },
    };
    let chip_profiles = if model == ModelChoice::StripeOnly {
        crate::domain::chip::ChipProfiles::default()
    } else {
        match crate::catalog::load_chip_profiles(&profiles) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("error: {e}");
                return Exit::Unreadable;
            }
        }
    };
    let mode = match super::mode() {
        Ok(m) => m,
        Err(e) => return e,
    };
    if args.reveal && !mode.allows_reveal() {
        eprintln!("error: --reveal refused: this workstation runs in {mode} mode");
        return Exit::Invalid;
    }
    let keys = match keys_path(args.keys.as_deref()).and_then(|p| read_keys(&p)) {
        Ok(k) => k,
        Err(e) => return e,
    };
    let rules = catalog.order_rules();
    let source = match open_source(&args.file, &rules, &keys) {
        Ok(s) => s,
        Err(e) => return e,
    };
    // A warm persisted pool makes the in-memory pool's background generation useless.
    let store = persisted_store(&chip_profiles, model, &keys);
    let pools = if store.is_some() {
        KeyPools::default()
    } else {
        start_pools(&chip_profiles, model, &source)
    };
    let persisted = store.and_then(|s| Some(PersistedPool::new(s, keys.store_seal()?, &pools)));
    let icc: &(dyn crate::domain::chip::keys::IccKeySource + Sync) = match &persisted {
        Some(p) => p,
        None => &pools,
    };
    let batch = Batch {
        options: BatchOptions {
            json: args.json,
            reveal: args.reveal,
            order: args.order.clone(),
            record: args.record,
        },
        catalog: &catalog,
        profiles: &profiles,
        rules,
        keys: &keys,
        mode,
        chip_profiles: &chip_profiles,
        date,
        icc,
        persisted: persisted.as_ref(),
        model,
        ids: IdHasher::default(),
    };
    let jobs = args
        .jobs
        .map_or_else(crate::batch::default_jobs, usize::from);
    let mut stdout = std::io::BufWriter::with_capacity(256 * 1024, std::io::stdout().lock());
    let done = batch.run(source, jobs, &mut stdout);
    drop(stdout);
    finish(args, done, &keys)
}

/// ICC key pairs for DDA/CDA profiles come from pools filled in the background (and inline
/// generation on every worker when they run dry).
fn start_pools(
    chip_profiles: &crate::domain::chip::ChipProfiles,
    model: ModelChoice,
    source: &Source,
) -> KeyPools {
    let specs = icc_specs(chip_profiles, model);
    if specs.is_empty() {
        return KeyPools::default();
    }
    let target = match source {
        Source::Whole(entries) => entries.len().clamp(1, 4),
        Source::Stream(..) => 4,
    };
    KeyPools::start(&specs, target).unwrap_or_default()
}

/// The ICC key pair sizes the chip profiles need (DDA/CDA), none for tracks only.
fn icc_specs(
    chip_profiles: &crate::domain::chip::ChipProfiles,
    model: ModelChoice,
) -> Vec<(usize, crate::domain::oda::RsaExponent)> {
    if model == ModelChoice::StripeOnly {
        return Vec::new();
    }
    chip_profiles
        .profiles()
        .iter()
        .filter(|p| p.oda.method.needs_icc_key())
        .map(|p| (p.oda.icc_key_bits, p.oda.icc_exponent))
        .collect()
}

/// The workstation store when its persisted ICC key pool holds pairs of a size the profiles
/// need and the key store can open them (a `store` key); else `None` (nothing is created).
fn persisted_store(
    chip_profiles: &crate::domain::chip::ChipProfiles,
    model: ModelChoice,
    keys: &LoadedKeys,
) -> Option<crate::store::Store> {
    use crate::store::key_pool::IccKeyPoolStore;
    let specs = icc_specs(chip_profiles, model);
    if specs.is_empty() {
        return None;
    }
    // The store `--store` / `$PERSODESK_STORE` / the configuration names; an SQLite file that
    // does not exist yet is not created for this.
    let location = super::store_location().ok()?;
    if let crate::store::StoreLocation::Sqlite(path) = &location
        && !path.is_file()
    {
        return None;
    }
    if keys
        .store_seal()
        .is_none_or(|seal| seal.store_seal("icc-key:probe", b"").is_err())
    {
        tracing::info!("no store key: the persisted ICC key pool is not used");
        return None;
    }
    let store = match crate::store::Store::open_at(&location, keys.audit_sealer()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "persisted ICC key pool unavailable");
            return None;
        }
    };
    let counts = store.pool_counts().ok()?;
    let warm = specs.iter().any(|(bits, e)| {
        counts
            .iter()
            .any(|c| c.bits == *bits && c.exponent == e.value() && c.count > 0)
    });
    warm.then_some(store)
}

/// Reports read and write failures and the `--order` id not found, and records the outcomes
/// (`--record`).
fn finish(args: &PrepareArgs, done: Finished, keys: &LoadedKeys) -> Exit {
    let file = &args.file;
    let mut exit = done.exit;
    if let Some(e) = done.write_error {
        eprintln!("error: standard output: {}", e.kind());
        exit = exit.max(Exit::Unreadable);
    }
    if let Some(e) = done.read_error {
        eprintln!("error: {}: cannot be read: {}", file.display(), e.kind());
        return exit.max(Exit::Unreadable);
    }
    tracing::info!(file = %file.display(), orders = done.count, "order file prepared");
    if let Some(id) = &args.order
        && !done.any_selected
    {
        eprintln!("error: no order with id {id} in {}", file.display());
        return exit.max(Exit::Unreadable);
    }
    if args.record {
        let mut store = match open_store(keys) {
            Ok(s) => s,
            Err(e) => return exit.max(e),
        };
        let refs: Vec<(&str, Option<&str>)> = done
            .records
            .iter()
            .map(|(id, r)| (id.as_str(), r.as_deref()))
            .collect();
        match store.record_preparation(&refs) {
            Ok(states) => eprintln!(
                "recorded {} order(s) in the workstation store",
                states.len()
            ),
            Err(e) => {
                eprintln!("error: workstation store: {e}");
                exit = exit.max(Exit::Unreadable);
            }
        }
    }
    exit
}
