//! The card picture: a card-shaped drawing of the selected order as it should come out of the
//! machine, for a supervisor to compare with the physical card. The front carries the
//! embossing line (masked PAN in groups of four, expiry, cardholder name) and, for a chip card,
//! the contact plate with the application's AID and label; the back shows the stripe's tracks
//! in their masked layout. Everything is masked: [`CardPicture`] holds no clear value.

use crate::domain::chip::preview::TlvNode;
use crate::domain::track::TrackNo;

use super::preview::ChipSection;
use super::worker::{OrderRow, Prepared};

/// ISO/IEC 7810 ID-1: 85.60 mm by 53.98 mm.
const ID1_RATIO: f32 = 53.98 / 85.60;

/// What the picture shows (masked values only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardPicture {
    /// The product (top left of the front).
    pub product: String,
    /// The masked PAN in groups of four (`5413 33** **** 2345`).
    pub pan: String,
    /// `MM/YY`.
    pub expiry: String,
    /// The name as embossed (`ALICE DOE` for the track's `DOE/ALICE`).
    pub name: Option<String>,
    /// The chip's AID in hex and its application label (tag 50), for a chip card.
    pub chip: Option<(String, Option<String>)>,
    /// The stripe's tracks, masked, by number.
    pub tracks: Vec<(u8, String)>,
}

impl CardPicture {
    /// The picture of a prepared order.
    pub fn of(row: &OrderRow, p: &Prepared) -> CardPicture {
        let exp = p.order.exp;
        let chip = match &p.chip {
            ChipSection::StripeOnly => None,
            ChipSection::Chip(_) => p.data.chip.as_ref().map(|c| {
                let label = match &p.chip {
                    ChipSection::Chip(v) => v.dgis.iter().find_map(|d| label_in(&d.tlv)),
                    ChipSection::StripeOnly => None,
                };
                (hex::encode_upper(&c.aid), label)
            }),
        };
        CardPicture {
            product: row.product.clone(),
            pan: grouped(&row.masked_pan),
            expiry: format!("{:02}/{:02}", exp.mm, exp.yy),
            name: p.data.name.as_ref().map(|n| embossed(n.as_str())),
            chip,
            tracks: [TrackNo::T1, TrackNo::T2, TrackNo::T3]
                .into_iter()
                .filter_map(|no| p.data.tracks.get(no).map(|t| (no.number(), t.masked())))
                .collect(),
        }
    }
}

/// The application label (tag 50) in a TLV tree, if present.
fn label_in(nodes: &[TlvNode]) -> Option<String> {
    nodes.iter().find_map(|n| {
        if n.tag == "50" && !n.value.is_empty() {
            Some(n.value.clone())
        } else {
            label_in(&n.children)
        }
    })
}

/// Groups of four characters, as a PAN is embossed.
pub fn grouped(pan: &str) -> String {
    let chars: Vec<char> = pan.chars().collect();
    chars
        .chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `SURNAME/FIRST` as embossed: `FIRST SURNAME` (a name without `/` stays as it is).
pub fn embossed(track_name: &str) -> String {
    match track_name.split_once('/') {
        Some((surname, first)) if !first.trim().is_empty() => {
            format!("{} {}", first.trim(), surname.trim())
        }
        _ => track_name.replace('/', " ").trim().to_string(),
    }
}

/// Draws the front and the back of the card.
pub fn ui(ui: &mut egui::Ui, card: &CardPicture) {
    // The frame's margins count in the width, so that the panel never grows to fit the card.
    const MARGIN: f32 = 14.0;
    let width = (ui.available_width() - 2.0 * MARGIN).clamp(200.0, 380.0);
    let height = width * ID1_RATIO;
    let white = egui::Color32::WHITE;
    egui::Frame::new()
        .fill(egui::Color32::from_rgb(22, 52, 96))
        .corner_radius(MARGIN)
        .inner_margin(MARGIN)
        .show(ui, |ui| {
            ui.set_width(width);
            ui.set_height(height);
            ui.label(egui::RichText::new(&card.product).color(white).strong());
            ui.add_space(height / 14.0);
            match &card.chip {
                Some((aid, label)) => {
                    ui.horizontal(|ui| {
                        let (r, _) = ui.allocate_exact_size(
                            egui::vec2(width / 8.0, width / 10.0),
                            egui::Sense::hover(),
                        );
                        ui.painter()
                            .rect_filled(r, 4.0, egui::Color32::from_rgb(212, 175, 55));
                        let text = format!("chip AID {aid}  {}", label.as_deref().unwrap_or(""));
                        ui.label(egui::RichText::new(text.trim_end()).color(white).small());
                    });
                }
                None => {
                    ui.label(
                        egui::RichText::new("no chip (stripe only)")
                            .color(white)
                            .small(),
                    );
                }
            }
            ui.add_space(height / 14.0);
            let emboss = |t: &str| egui::RichText::new(t).monospace().size(19.0).color(white);
            ui.label(emboss(&card.pan));
            ui.label(emboss(&format!("VALID THRU {}", card.expiry)));
            if let Some(name) = &card.name {
                ui.label(emboss(name));
            }
        });
    ui.add_space(4.0);
    egui::Frame::new()
        .fill(egui::Color32::from_gray(225))
        .corner_radius(MARGIN)
        .inner_margin(egui::Margin::symmetric(0, 10))
        .show(ui, |ui| {
            ui.set_width(width + 2.0 * MARGIN);
            egui::Frame::new()
                .fill(egui::Color32::from_gray(25))
                .inner_margin(6.0)
                .show(ui, |ui| {
                    ui.set_width(ui.available_width());
                    ui.label(
                        egui::RichText::new("Magnetic stripe (masked)")
                            .color(white)
                            .small(),
                    );
                    for (no, t) in &card.tracks {
                        ui.add(
                            egui::Label::new(
                                egui::RichText::new(format!("T{no} {t}"))
                                    .monospace()
                                    .color(white),
                            )
                            .wrap(),
                        );
                    }
                    if card.tracks.is_empty() {
                        ui.label(egui::RichText::new("no tracks").color(white).small());
                    }
                });
        });
}
