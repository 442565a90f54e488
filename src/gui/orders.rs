//! The Orders screen: open a file (dialog or drag and drop) or the demo orders; a table of orders
//! (id, product, masked PAN, model, status) with virtual scrolling, so only the visible rows are
//! laid out; filter by status and text.

use egui_extras::{Column, TableBuilder};

use crate::domain::status::Status;

use super::worker::OrderRow;
use super::{App, Command};

/// The table filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this status.
    pub status: Option<Status>,
    /// Id, product or masked PAN contains this (case-insensitive).
    pub text: String,
}

impl Filter {
    /// Does `row` pass?
    pub fn matches(&self, row: &OrderRow, needle_upper: &str) -> bool {
        if self.status.is_some_and(|s| s != row.status) {
            return false;
        }
        needle_upper.is_empty()
            || row.id.to_uppercase().contains(needle_upper)
            || row.product.to_uppercase().contains(needle_upper)
            || row.masked_pan.contains(needle_upper)
    }

    /// Indices of the rows that pass, in file order.
    pub fn apply(&self, rows: &[OrderRow]) -> Vec<usize> {
        let needle = self.text.trim().to_uppercase();
        rows.iter()
            .enumerate()
            .filter(|(_, r)| self.matches(r, &needle))
            .map(|(i, _)| i)
            .collect()
    }
}

/// Draws the toolbar and the table.
pub fn ui(app: &App, filter: &mut Filter, ui: &mut egui::Ui, cmds: &mut Vec<Command>) {
    toolbar_ui(app, filter, ui, cmds);
    table_ui(app, ui, cmds);
}

/// Open, demo, reopen; the filter; the load in progress and where the orders came from.
fn toolbar_ui(app: &App, filter: &mut Filter, ui: &mut egui::Ui, cmds: &mut Vec<Command>) {
    ui.horizontal_wrapped(|ui| {
        if ui.button("Open file...").on_hover_text("Ctrl+O").clicked() {
            cmds.push(Command::OpenFileDialog);
        }
        if ui.button("Demo orders").on_hover_text("Ctrl+D").clicked() {
            cmds.push(Command::LoadDemo);
        }
        if let Some(last) = &app.last_file
            && ui
                .button("Reopen last file")
                .on_hover_text(last.display().to_string())
                .clicked()
        {
            cmds.push(Command::LoadFile(last.clone()));
        }
        ui.label("or drop an order file on the window");
    });
    ui.horizontal(|ui| {
        let before = filter.clone();
        egui::ComboBox::from_label("Status")
            .selected_text(filter.status.map_or("all", Status::as_str))
            .show_ui(ui, |ui| {
                ui.selectable_value(&mut filter.status, None, "all");
                for s in Status::ALL {
                    ui.selectable_value(&mut filter.status, Some(s), s.as_str());
                }
            });
        let label = ui.label("Search");
        ui.add(
            egui::TextEdit::singleline(&mut filter.text)
                .hint_text("id, product or PAN digits")
                .desired_width(200.0),
        )
        .labelled_by(label.id);
        if *filter != before {
            cmds.push(Command::FilterChanged);
        }
        ui.label(format!(
            "{} of {} orders",
            app.visible_rows().len(),
            app.rows.len()
        ));
    });
    if let Some(load) = &app.loading {
        ui.horizontal(|ui| {
            ui.spinner();
            match load.progress {
                Some((done, total)) => ui.label(format!(
                    "Loading {}: {done} of {total} orders prepared",
                    load.source.label()
                )),
                None => ui.label(format!("Loading {}...", load.source.label())),
            };
        });
    }
    if let Some(title) = &app.source {
        ui.label(format!("Orders from {}", title.label()));
    }
    ui.separator();
}

/// The orders table, laid out only for the visible rows.
fn table_ui(app: &App, ui: &mut egui::Ui, cmds: &mut Vec<Command>) {
    let visible = app.visible_rows();
    let selected = app.selected;
    let row_h = ui.text_style_height(&egui::TextStyle::Body) + 6.0;
    TableBuilder::new(ui)
        .id_salt("orders-table")
        .striped(true)
        .sense(egui::Sense::click())
        .auto_shrink([false, false])
        .cell_layout(egui::Layout::left_to_right(egui::Align::Center))
        .column(Column::auto().at_least(130.0))
        .column(Column::auto().at_least(140.0))
        .column(Column::auto().at_least(150.0))
        .column(Column::auto().at_least(70.0))
        .column(Column::remainder().at_least(150.0))
        .header(row_h, |mut h| {
            for title in ["Order", "Product", "PAN", "Model", "Status"] {
                h.col(|ui| {
                    ui.strong(title);
                });
            }
        })
        .body(|body| {
            body.rows(row_h, visible.len(), |mut tr| {
                let Some(&index) = visible.get(tr.index()) else {
                    return;
                };
                let Some(row) = app.rows.get(index) else {
                    return;
                };
                let is_sel = selected == Some(index);
                tr.set_selected(is_sel);
                let mut clicked = false;
                tr.col(|ui| {
                    clicked |= ui.selectable_label(is_sel, &row.id).clicked();
                });
                tr.col(|ui| {
                    ui.label(&row.product);
                });
                tr.col(|ui| {
                    ui.monospace(&row.masked_pan);
                });
                tr.col(|ui| {
                    ui.label(row.model.map_or("stripe", |m| m.label()));
                });
                tr.col(|ui| {
                    ui.label(row.status.as_str());
                });
                if clicked || tr.response().clicked() {
                    cmds.push(Command::Select(index));
                }
            });
        });
}
