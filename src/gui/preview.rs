//! The Preview of the selected order: masked tracks with the source of each injected value, the
//! chip data section (DGI list and TLV tree, masked per tag), validation findings with their field
//! paths, the Model 1 / Model 2 choice, and the review and personalize actions the role allows.
//!
//! The chip section is [`ChipSection`], built by the preparation worker from the prepared chip
//! data (and again, with clear values, when a tester reveals them on test keys).

use crate::domain::chip::ChipData;
use crate::domain::chip::ChipModel;
use crate::domain::chip::preview::{DgiPreview, TlvNode, is_secret_dgi, preview};
use crate::domain::finding::Finding;
use crate::domain::prepare::PersoData;
use crate::domain::review::{self, OrderFacts, Role};
use crate::domain::track::TrackNo;

use super::worker::{OrderRow, Prepared};
use super::{App, Command};

/// The chip part of a preview: what [`domain::chip::preview`](crate::domain::chip::preview)
/// shows of the prepared chip data (DGI list and TLV tree with tag names, masked per tag; key and
/// PIN DGIs by length, keys by KCV only), with the model, profile and ODA summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChipSection {
    /// No chip data: a stripe-only card.
    StripeOnly,
    /// The chip data as it may be shown.
    Chip(Box<ChipView>),
}

/// The shown form of one card's chip data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChipView {
    /// `Model 1 (profile)`, with the AID.
    pub title: String,
    /// Where the data came from (`Model 2: issuer data under kek #1, MAC verified`).
    pub source: Option<String>,
    /// The DGIs in send order.
    pub dgis: Vec<DgiPreview>,
    /// The ICC master keys' KCVs (AC, SMI, SMC).
    pub kcvs: Option<String>,
    /// Offline data authentication summary.
    pub oda: Option<String>,
    /// Clear values are shown (tester, test keys).
    pub revealed: bool,
}

impl ChipSection {
    /// The section for prepared data: masked unless `reveal` (callers allow it for testers on
    /// test keys only; key and PIN DGIs stay hidden even then).
    pub fn of(data: &PersoData, reveal: bool) -> Self {
        let Some(chip) = &data.chip else {
            return ChipSection::StripeOnly;
        };
        ChipSection::from_chip(
            chip,
            data.sources.get("chip").map(ToString::to_string),
            reveal,
        )
    }

    /// The section for `chip`.
    pub fn from_chip(chip: &ChipData, source: Option<String>, reveal: bool) -> Self {
        let title = chip.title();
        let kcvs = chip.kcvs.map(|k| {
            format!(
                "MK-AC {}  MK-SMI {}  MK-SMC {}",
                hex::encode_upper(k.ac),
                hex::encode_upper(k.smi),
                hex::encode_upper(k.smc)
            )
        });
        let oda = chip.oda.as_ref().map(|o| {
            let icc = match o.icc_key_bits {
                Some(bits) => format!(
                    ", ICC key {bits} bits{}",
                    if o.icc_key_from_pool {
                        " (from the pool)"
                    } else {
                        ""
                    }
                ),
                None => String::new(),
            };
            format!(
                "{} with CA {} index {:02X}, issuer key {} bits{icc}",
                o.method.as_str().to_uppercase(),
                hex::encode_upper(o.rid),
                o.ca_index,
                o.issuer_key_bits
            )
        });
        ChipSection::Chip(Box::new(ChipView {
            title,
            source,
            dgis: preview(chip, reveal),
            kcvs,
            oda,
            revealed: reveal,
        }))
    }
}

/// What the preview shows of an order, and the state of its inputs.
#[derive(Debug, Default)]
pub struct PreviewState {
    /// The row shown.
    pub row: Option<usize>,
    /// The prepared data (None while preparing or on error).
    pub prepared: Option<Box<Prepared>>,
    /// Preparation errors of the shown row.
    pub errors: Vec<Finding>,
    /// A preview job is out.
    pub pending: bool,
    /// Clear values are shown (tester, test keys only).
    pub revealed: bool,
    /// The chip section with clear values, while revealed.
    pub revealed_chip: Option<ChipSection>,
    /// When the clear values were shown (egui time, seconds); they are masked again after the
    /// configured timeout.
    pub revealed_at: Option<f64>,
    /// The supervisor's rejection reason being typed.
    pub reject_reason: String,
}

fn facts(row: &OrderRow) -> OrderFacts {
    OrderFacts {
        status: row.status,
        approved: row.approved,
        test_keys_only: row.test_keys_only,
    }
}

fn tlv_tree(ui: &mut egui::Ui, nodes: &[TlvNode]) {
    for n in nodes {
        let name = n.name.unwrap_or("unknown tag");
        let text = format!("{}  {name}  {}", n.tag, n.value);
        if n.children.is_empty() {
            ui.monospace(text);
        } else {
            egui::CollapsingHeader::new(text)
                .default_open(true)
                .show(ui, |ui| tlv_tree(ui, &n.children));
        }
    }
}

fn chip_ui(ui: &mut egui::Ui, chip: &ChipSection) {
    let view = match chip {
        ChipSection::StripeOnly => {
            ui.label("No chip data: stripe only (no chip model chosen).");
            return;
        }
        ChipSection::Chip(view) => view,
    };
    ui.strong(format!("Chip data: {}", view.title));
    if view.revealed {
        ui.label("CLEAR VALUES (test keys); key and PIN DGIs stay hidden");
    }
    if let Some(src) = &view.source {
        ui.label(format!("Source: {src}"));
    }
    if let Some(k) = &view.kcvs {
        ui.monospace(format!("ICC master key KCVs: {k}"));
    }
    if let Some(o) = &view.oda {
        ui.label(format!("ODA: {o}"));
    }
    ui.label(format!("{} DGIs, in send order:", view.dgis.len()));
    for d in &view.dgis {
        let flag = if d.encrypted { ", encrypted" } else { "" };
        let name = d.name.unwrap_or("");
        let title = format!("DGI {}  {name}  ({} bytes{flag})", d.dgi, d.length);
        if d.tlv.is_empty() {
            let what = match (&d.kcv, &d.value) {
                (Some(k), _) => format!("KCV {k}"),
                (None, Some(v)) => v.clone(),
                (None, None)
                    if u16::from_str_radix(&d.dgi, 16)
                        .map_or(true, |id| is_secret_dgi(id, d.encrypted)) =>
                {
                    "key/PIN material, not shown".into()
                }
                (None, None) => "masked".into(),
            };
            ui.monospace(format!("{title}  {what}"));
        } else {
            egui::CollapsingHeader::new(title)
                .id_salt(("dgi", &d.dgi))
                .show(ui, |ui| {
                    if let Some(v) = &d.value {
                        ui.monospace(v);
                    }
                    tlv_tree(ui, &d.tlv);
                });
        }
    }
}

/// Draws the preview of the selected order.
pub fn ui(app: &App, state: &mut PreviewState, ui: &mut egui::Ui, cmds: &mut Vec<Command>) {
    let Some((index, row)) = app.selected_row() else {
        ui.heading("Preview");
        ui.label("Select an order to see its masked preview.");
        return;
    };
    if state.revealed {
        reveal_banner(ui, app.reveal_left(ui.ctx(), state.revealed_at));
    }
    head_ui(ui, row);
    findings_ui(ui, state, row);
    ui.separator();
    model_ui(ui, index, row, cmds);
    ui.separator();
    if let Some(session) = app.session.as_ref() {
        actions(app, state, ui, cmds, index, row, session.role);
        ui.separator();
    }
    if state.pending {
        ui.horizontal(|ui| {
            ui.spinner();
            ui.label("Preparing...");
        });
    }
    if let Some(p) = &state.prepared {
        egui::CollapsingHeader::new("Card picture")
            .default_open(true)
            .show(ui, |ui| {
                super::card_picture::ui(ui, &super::card_picture::CardPicture::of(row, p));
            });
        prepared_ui(ui, state, p);
    }
}

/// The red banner shown while clear values are on screen, with the seconds left.
fn reveal_banner(ui: &mut egui::Ui, left: Option<u64>) {
    let text = match left {
        Some(s) => format!(
            "CLEAR VALUES SHOWN (test keys): masked again in {s} s or when the selection changes"
        ),
        None => "CLEAR VALUES SHOWN (test keys): masked again when the selection changes".into(),
    };
    egui::Frame::new()
        .fill(egui::Color32::from_rgb(170, 20, 20))
        .inner_margin(6.0)
        .show(ui, |ui| {
            ui.set_width(ui.available_width());
            ui.add(
                egui::Label::new(
                    egui::RichText::new(text)
                        .strong()
                        .color(egui::Color32::WHITE),
                )
                .wrap(),
            );
        });
}

/// The order's id, product, masked PAN, status and approval. The names never wrap (the grid
/// would squeeze their column to a letter); the values wrap in what is left.
fn head_ui(ui: &mut egui::Ui, row: &OrderRow) {
    ui.heading(format!("Order {}", row.id));
    let key = |ui: &mut egui::Ui, name: &str| {
        ui.add(egui::Label::new(name).extend());
    };
    egui::Grid::new("preview-head")
        .num_columns(2)
        .show(ui, |ui| {
            key(ui, "Product");
            ui.label(&row.product);
            ui.end_row();
            key(ui, "PAN");
            ui.monospace(&row.masked_pan);
            ui.end_row();
            key(ui, "Status");
            ui.strong(row.status.as_str());
            ui.end_row();
            if let Some(reason) = &row.reason {
                key(ui, "Reason");
                ui.label(reason);
                ui.end_row();
            }
            key(ui, "Approved");
            ui.label(if row.approved { "yes" } else { "no" });
            ui.end_row();
        });
}

/// The Model 1 / Model 2 choice (only what the order and the product allow).
fn model_ui(ui: &mut egui::Ui, index: usize, row: &OrderRow, cmds: &mut Vec<Command>) {
    ui.horizontal(|ui| {
        ui.label("Chip data model:");
        for model in [ChipModel::Model1, ChipModel::Model2] {
            let allowed = row.allowed.allows(model);
            let r = ui
                .add_enabled(
                    allowed,
                    egui::RadioButton::new(row.model == Some(model), model.label()),
                )
                .on_disabled_hover_text(match model {
                    ChipModel::Model1 => {
                        "the product names no chip profile, or does not allow Model 1"
                    }
                    ChipModel::Model2 => {
                        "the order carries no tlvData, or the product does not allow Model 2"
                    }
                });
            if r.clicked() && row.model != Some(model) {
                cmds.push(Command::SetModel(index, model));
            }
        }
        if row.model.is_none() {
            ui.label("(stripe only)");
        }
    });
}

/// The prepared data: tracks (masked, or clear for a tester on test keys), sources, keys, chip.
fn prepared_ui(ui: &mut egui::Ui, state: &PreviewState, p: &Prepared) {
    ui.strong(if state.revealed {
        "Magnetic stripe (CLEAR VALUES: test keys)"
    } else {
        "Magnetic stripe (masked)"
    });
    // Rows that wrap to the panel's width (a grid would widen the panel instead).
    for no in [TrackNo::T1, TrackNo::T2, TrackNo::T3] {
        let Some(t) = p.data.tracks.get(no) else {
            continue;
        };
        let text = if state.revealed {
            t.reveal().to_string()
        } else {
            t.masked()
        };
        let source = p.data.sources.get(no.key()).map_or("", |s| s);
        value_row(ui, &format!("Track {}", no.number()), text, source);
    }
    for (k, v) in p
        .data
        .sources
        .iter()
        .filter(|(k, _)| !k.starts_with("track") && *k != "chip")
    {
        value_row(ui, k, value_text(&p.data, k, state.revealed), v);
    }
    if !p.data.keys_used.is_empty() {
        ui.horizontal_wrapped(|ui| {
            ui.label("Keys:");
            for k in &p.data.keys_used {
                let test = if k.test { " test" } else { "" };
                ui.add(
                    egui::Label::new(
                        egui::RichText::new(format!("{} KCV {}{test}", k.key, k.kcv)).monospace(),
                    )
                    .wrap(),
                );
            }
        });
    }
    ui.separator();
    egui::CollapsingHeader::new("Chip data")
        .default_open(true)
        .show(ui, |ui| match (&state.revealed_chip, state.revealed) {
            (Some(clear), true) => chip_ui(ui, clear),
            _ => chip_ui(ui, &p.chip),
        });
}

/// One value of the preview: its name, the value (monospace) and where it came from, wrapped.
fn value_row(ui: &mut egui::Ui, name: &str, value: String, source: &str) {
    ui.horizontal_wrapped(|ui| {
        ui.label(name);
        ui.add(egui::Label::new(egui::RichText::new(value).monospace()).wrap());
        ui.add(egui::Label::new(egui::RichText::new(source).weak()).wrap());
    });
}

/// Findings with identical field path and rule merged, in first-seen order, each with how many
/// times it was reported.
pub fn merged(findings: &[Finding]) -> Vec<(&Finding, usize)> {
    let mut out: Vec<(&Finding, usize)> = Vec::new();
    for f in findings {
        match out.iter_mut().find(|(g, _)| *g == f) {
            Some((_, n)) => *n += 1,
            None => out.push((f, 1)),
        }
    }
    out
}

/// The errors and the warnings shown for `row`: the preview's when it was prepared, else the load's.
pub fn findings_of<'a>(
    state: &'a PreviewState,
    row: &'a OrderRow,
) -> (&'a [Finding], &'a [Finding]) {
    let errors = if state.errors.is_empty() {
        &row.errors
    } else {
        &state.errors
    };
    let warnings = state
        .prepared
        .as_ref()
        .map_or(&row.warnings, |p| &p.warnings);
    (errors, warnings)
}

/// The errors and warnings of the order and its preparation, at the top, counted and merged.
fn findings_ui(ui: &mut egui::Ui, state: &PreviewState, row: &OrderRow) {
    let (errors, warnings) = findings_of(state, row);
    let (errors, warnings) = (merged(errors), merged(warnings));
    if errors.is_empty() && warnings.is_empty() {
        return;
    }
    ui.separator();
    ui.strong(format!(
        "Findings: {} error{}, {} warning{}",
        errors.len(),
        if errors.len() == 1 { "" } else { "s" },
        warnings.len(),
        if warnings.len() == 1 { "" } else { "s" }
    ));
    let (red, amber) = (ui.visuals().error_fg_color, ui.visuals().warn_fg_color);
    let lines = errors
        .iter()
        .map(|e| ("error", red, e))
        .chain(warnings.iter().map(|w| ("warning", amber, w)));
    for (kind, colour, (f, n)) in lines {
        let times = if *n > 1 {
            format!(" (reported {n} times)")
        } else {
            String::new()
        };
        ui.add(
            egui::Label::new(egui::RichText::new(format!("{kind}  {f}{times}")).color(colour))
                .wrap(),
        );
    }
}

/// What a value row shows: the clear value while revealed (CVV1 and PVV; the iCVV is in the
/// chip data), `***` otherwise; a PIN block never.
fn value_text(data: &PersoData, key: &str, revealed: bool) -> String {
    let clear = match key {
        "pin" => return "PIN block: never shown".into(),
        "cvv1" => data.cvv1.as_ref().map(|c| c.reveal().to_string()),
        "pvv" => data.pvv.as_ref().map(|c| c.reveal().to_string()),
        _ if revealed => return "clear in the chip data below".into(),
        _ => None,
    };
    match clear {
        Some(c) if revealed => c,
        _ => "***".into(),
    }
}

fn actions(
    app: &App,
    state: &mut PreviewState,
    ui: &mut egui::Ui,
    cmds: &mut Vec<Command>,
    index: usize,
    row: &OrderRow,
    role: Role,
) {
    let facts = facts(row);
    if role == Role::Supervisor {
        let allowed = review::may_review(role, facts);
        ui.horizontal(|ui| {
            let approve = ui
                .add_enabled(
                    allowed.is_ok() && row.status == crate::domain::status::Status::DataPrepared,
                    egui::Button::new("Approve"),
                )
                .on_hover_text(super::Shortcut::Approve.hover());
            if approve.clicked() {
                cmds.push(Command::Approve(index));
            }
        });
        ui.horizontal(|ui| {
            let label = ui.label("Rejection reason");
            ui.text_edit_singleline(&mut state.reject_reason)
                .labelled_by(label.id);
            let reject = ui.add_enabled(
                allowed.is_ok() && !state.reject_reason.trim().is_empty(),
                egui::Button::new("Reject"),
            );
            if reject.clicked() {
                cmds.push(Command::Reject(
                    index,
                    state.reject_reason.trim().to_string(),
                ));
            }
        });
        if let Err(d) = allowed {
            ui.label(d.rule);
        }
    } else {
        let allowed = review::may_personalize(role, facts);
        let busy = app.perso.is_running();
        let ready = state.prepared.is_some();
        ui.horizontal(|ui| {
            let b = ui
                .add_enabled(
                    allowed.is_ok() && !busy && ready,
                    egui::Button::new("Personalize this card"),
                )
                .on_hover_text(super::Shortcut::Personalize.hover());
            if b.clicked() {
                cmds.push(Command::Personalize(index));
            }
            match &allowed {
                Err(d) => {
                    ui.label(format!("Not allowed: {}", d.rule));
                }
                Ok(g) if g.approval_bypass => {
                    ui.label("Runs without approval (tester, test keys only).");
                }
                Ok(_) if busy => {
                    ui.label("A personalization is running.");
                }
                Ok(_) => {}
            }
        });
    }
    if role == Role::Tester && state.prepared.is_some() {
        let may = review::may_reveal(role, row.test_keys_only && app.mode.allows_reveal());
        ui.horizontal(|ui| {
            if may.is_ok() {
                let text = if state.revealed {
                    "Mask values"
                } else {
                    "Reveal clear values"
                };
                if ui.button(text).clicked() {
                    cmds.push(Command::Reveal(!state.revealed));
                }
            } else if let Err(d) = may {
                ui.label(format!("Reveal not allowed: {}", d.rule));
            }
        });
    }
}
