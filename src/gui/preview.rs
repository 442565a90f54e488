//! The Preview of the selected order: masked tracks with the source of each injected value, the
//! chip data section (DGI list and TLV tree, masked per tag), validation findings with their field
//! paths, the Model 1 / Model 2 choice, and the review and personalize actions the role allows.
//!
//! The chip section is [`ChipSection`], built by the preparation worker from the prepared chip
//! data (and again, with clear values, when a tester reveals them on test keys).

use crate::domain::chip::ChipData;
use crate::domain::chip::ChipModel;
use crate::domain::chip::preview::{DgiPreview, TlvNode, is_secret_dgi, preview};
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
        ChipSection::from_chip(chip, data.sources.get("chip").cloned(), reveal)
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
    pub errors: Vec<crate::domain::finding::Finding>,
    /// A preview job is out.
    pub pending: bool,
    /// Clear values are shown (tester, test keys only).
    pub revealed: bool,
    /// The chip section with clear values, while revealed.
    pub revealed_chip: Option<ChipSection>,
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
        let text = format!(
            "{}  {}  {}",
            n.tag,
            n.name.unwrap_or("unknown tag"),
            n.value
        );
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
        let title = format!(
            "DGI {}  {}  ({} bytes{flag})",
            d.dgi,
            d.name.unwrap_or(""),
            d.length
        );
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
    head_ui(ui, row);
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
        prepared_ui(ui, state, p);
    }
    findings_ui(ui, state, row);
}

/// The order's id, product, masked PAN, status and approval.
fn head_ui(ui: &mut egui::Ui, row: &OrderRow) {
    ui.heading(format!("Order {}", row.id));
    egui::Grid::new("preview-head")
        .num_columns(2)
        .show(ui, |ui| {
            ui.label("Product");
            ui.label(&row.product);
            ui.end_row();
            ui.label("PAN");
            ui.monospace(&row.masked_pan);
            ui.end_row();
            ui.label("Status");
            ui.strong(row.status.as_str());
            ui.end_row();
            if let Some(reason) = &row.reason {
                ui.label("Reason");
                ui.label(reason);
                ui.end_row();
            }
            ui.label("Approved");
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
    egui::Grid::new("preview-tracks")
        .num_columns(3)
        .striped(true)
        .show(ui, |ui| {
            for no in [TrackNo::T1, TrackNo::T2, TrackNo::T3] {
                let Some(t) = p.data.tracks.get(no) else {
                    continue;
                };
                ui.label(format!("Track {}", no.number()));
                if state.revealed {
                    ui.monospace(t.reveal());
                } else {
                    ui.monospace(t.masked());
                }
                ui.label(p.data.sources.get(no.key()).map_or("", String::as_str));
                ui.end_row();
            }
            for (k, v) in p
                .data
                .sources
                .iter()
                .filter(|(k, _)| !k.starts_with("track") && k.as_str() != "chip")
            {
                ui.label(k);
                ui.monospace("***");
                ui.label(v);
                ui.end_row();
            }
        });
    if !p.data.keys_used.is_empty() {
        ui.horizontal_wrapped(|ui| {
            ui.label("Keys:");
            for k in &p.data.keys_used {
                let test = if k.test { " test" } else { "" };
                ui.monospace(format!("{} KCV {}{test}", k.key, k.kcv));
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

/// The errors and warnings of the order and its preparation.
fn findings_ui(ui: &mut egui::Ui, state: &PreviewState, row: &OrderRow) {
    let findings_errors = if state.errors.is_empty() {
        &row.errors
    } else {
        &state.errors
    };
    if !findings_errors.is_empty() || !row.warnings.is_empty() {
        ui.separator();
        ui.strong("Findings");
        for f in findings_errors {
            ui.colored_label(ui.visuals().error_fg_color, format!("error  {f}"));
        }
        let warnings = state
            .prepared
            .as_ref()
            .map_or(&row.warnings, |p| &p.warnings);
        for f in warnings {
            ui.colored_label(ui.visuals().warn_fg_color, format!("warning  {f}"));
        }
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
                .on_hover_text("Ctrl+Shift+A");
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
                .on_hover_text("Ctrl+P");
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
