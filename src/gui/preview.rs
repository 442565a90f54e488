//! The Preview of the selected order: masked tracks with the source of each injected value, the
//! chip data section (DGI list and TLV tree, masked per tag), validation findings with their field
//! paths, the Model 1 / Model 2 choice, and the review and personalize actions the role allows.
//!
//! Chip seam: [`ChipSection::for_model`] says "no chip data" until the Model 1 and Model 2
//! preparations land; they then hand their DGIs to [`ChipSection::from_dgis`], which masks them.

use crate::domain::chip_model::ChipModel;
use crate::domain::dgi::Dgi;
use crate::domain::mask;
use crate::domain::review::{self, OrderFacts, Role};
use crate::domain::tags::{self, Sensitivity};
use crate::domain::tlv::{RawTlv, Reader};
use crate::domain::track::TrackNo;

use super::worker::{OrderRow, Prepared};
use super::{App, Command};

/// One TLV of a chip preview, value already masked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlvView {
    /// Tag, hex.
    pub tag: String,
    /// Dictionary name, or `unknown tag`.
    pub name: String,
    /// The value as it may be shown (hex, masked PAN, or `*`).
    pub shown: String,
    /// Nested TLVs of a template.
    pub children: Vec<TlvView>,
}

/// One DGI of a chip preview.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DgiView {
    /// DGI id, hex.
    pub id: String,
    /// Dictionary name.
    pub name: String,
    /// Value length in bytes.
    pub len: usize,
    /// Key or PIN material: value never shown.
    pub secret: bool,
    /// The TLVs inside, when the value is BER-TLV.
    pub tlvs: Vec<TlvView>,
}

/// The chip part of a preview.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChipSection {
    /// Neither model applies: a stripe-only card.
    StripeOnly,
    /// The chosen model cannot produce data in this build yet.
    NotAvailable {
        /// The chosen model.
        model: ChipModel,
    },
    /// The DGIs to send, masked.
    Dgis(Vec<DgiView>),
}

fn tlv_views(bytes: &[u8], depth: usize) -> Option<Vec<TlvView>> {
    let mut r = Reader::new(bytes);
    let mut out = Vec::new();
    while !r.is_empty() {
        let raw = RawTlv::read(&mut r).ok()?;
        let info = tags::lookup(raw.tag);
        let children = if raw.tag.is_constructed() && depth < 8 {
            tlv_views(raw.value, depth + 1)?
        } else {
            Vec::new()
        };
        let shown = if raw.tag.is_constructed() {
            format!("{} bytes", raw.value.len())
        } else {
            match info.map(|i| i.sensitivity) {
                Some(Sensitivity::Public) => hex::encode_upper(raw.value),
                Some(Sensitivity::Pan) => {
                    let digits: String = hex::encode_upper(raw.value)
                        .chars()
                        .filter(char::is_ascii_digit)
                        .collect();
                    mask::mask_pan(&digits)
                }
                _ => mask::stars(raw.value.len() * 2),
            }
        };
        out.push(TlvView {
            tag: raw.tag.to_string(),
            name: info.map_or("unknown tag", |i| i.name).to_string(),
            shown,
            children,
        });
    }
    Some(out)
}

impl ChipSection {
    /// The section for an order with this model choice, before chip preparation exists.
    ///
    /// SEAM: the Model 1 and Model 2 preparations replace this with their DGIs
    /// ([`ChipSection::from_dgis`]) once `PersoData` carries chip data.
    pub fn for_model(model: Option<ChipModel>) -> Self {
        match model {
            None => ChipSection::StripeOnly,
            Some(model) => ChipSection::NotAvailable { model },
        }
    }

    /// A masked view of DGIs: secret DGIs by length only, TLV values per tag sensitivity.
    pub fn from_dgis(dgis: &[Dgi]) -> Self {
        ChipSection::Dgis(
            dgis.iter()
                .map(|d| {
                    let info = d.info();
                    let secret = d.is_secret();
                    DgiView {
                        id: format!("{:04X}", d.id()),
                        name: info.map_or("", |i| i.name).to_string(),
                        len: d.value().len(),
                        secret,
                        tlvs: if secret {
                            Vec::new()
                        } else {
                            tlv_views(d.value(), 0).unwrap_or_default()
                        },
                    }
                })
                .collect(),
        )
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

fn tlv_tree(ui: &mut egui::Ui, nodes: &[TlvView]) {
    for n in nodes {
        let text = format!("{}  {}  {}", n.tag, n.name, n.shown);
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
    match chip {
        ChipSection::StripeOnly => {
            ui.label("No chip data: the product has no chip profile and the order no tlvData.");
        }
        ChipSection::NotAvailable { model } => {
            ui.label(format!(
                "No chip data: {model} preparation is not available in this build yet."
            ));
        }
        ChipSection::Dgis(dgis) => {
            for d in dgis {
                let title = format!("DGI {}  {}  ({} bytes)", d.id, d.name, d.len);
                if d.secret {
                    ui.monospace(format!("{title}  key/PIN material, not shown"));
                } else {
                    egui::CollapsingHeader::new(title)
                        .id_salt(&d.id)
                        .show(ui, |ui| tlv_tree(ui, &d.tlvs));
                }
            }
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

    ui.separator();
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
                    ChipModel::Model1 => "the product names no chip profile",
                    ChipModel::Model2 => "the order carries no tlvData",
                });
            if r.clicked() && row.model != Some(model) {
                cmds.push(Command::SetModel(index, model));
            }
        }
        if row.model.is_none() {
            ui.label("(stripe only)");
        }
    });

    ui.separator();
    if state.pending {
        ui.horizontal(|ui| {
            ui.spinner();
            ui.label("Preparing...");
        });
    }
    let findings_errors = if state.errors.is_empty() {
        &row.errors
    } else {
        &state.errors
    };
    if let Some(p) = &state.prepared {
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
                    .filter(|(k, _)| !k.starts_with("track"))
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
            .show(ui, |ui| chip_ui(ui, &p.chip));
    }

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

    ui.separator();
    let Some(session) = app.session.as_ref() else {
        return;
    };
    actions(app, state, ui, cmds, index, row, session.role);
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
        let may = review::may_reveal(role, row.test_keys_only);
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
