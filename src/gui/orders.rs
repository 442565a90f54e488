//! The Orders screen: open a file (dialog, typed path, or drag and drop) or the demo orders; a
//! table of orders (id, masked PAN, status in colour, findings, model, product) with virtual
//! scrolling, so only the visible rows are laid out; filter by status and text (a full PAN is
//! matched through [`PanTag`]s, never shown).

use egui_extras::{Column, TableBuilder};

use crate::domain::status::Status;

use super::pan_search::PanTag;
use super::preview::merged;
use super::worker::OrderRow;
use super::{App, Command, Shortcut};

/// The table filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this status.
    pub status: Option<Status>,
    /// Id, product or masked PAN contains this (case-insensitive); or a full PAN.
    pub text: String,
}

impl Filter {
    /// Does `row` pass? `full_pan` is the tag of the search text when it is a full PAN (then
    /// only the row's tag is compared).
    pub fn matches(
        &self,
        row: &OrderRow,
        needle_upper: &str,
        full_pan: Option<(PanTag, Option<&PanTag>)>,
    ) -> bool {
        if self.status.is_some_and(|s| s != row.status) {
            return false;
        }
        if let Some((wanted, tag)) = full_pan {
            return tag == Some(&wanted);
        }
        needle_upper.is_empty()
            || row.id.to_uppercase().contains(needle_upper)
            || row.product.to_uppercase().contains(needle_upper)
            || row.masked_pan.contains(needle_upper)
    }

    /// Indices of the rows that pass, in file order (no PAN tags: a full PAN finds nothing).
    pub fn apply(&self, rows: &[OrderRow]) -> Vec<usize> {
        self.apply_tagged(rows, &[])
    }

    /// Indices of the rows that pass, with each row's PAN tag (`tags[i]` for `rows[i]`).
    pub fn apply_tagged(&self, rows: &[OrderRow], tags: &[Option<PanTag>]) -> Vec<usize> {
        let needle = self.text.trim().to_uppercase();
        let wanted = PanTag::of_search(&self.text);
        rows.iter()
            .enumerate()
            .filter(|(i, r)| {
                let full = wanted.map(|w| (w, tags.get(*i).and_then(Option::as_ref)));
                self.matches(r, &needle, full)
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// What the search does with its text, for the line under the search field.
    pub fn search_hint(&self) -> Option<&'static str> {
        let t = self.text.trim();
        if t.is_empty() || !t.chars().any(|c| c.is_ascii_digit()) {
            return None;
        }
        Some(if PanTag::of_search(t).is_some() {
            "full PAN: matched against the orders' PANs in memory, never shown"
        } else {
            "digits match the masked PAN (first 6, last 4) or the id; type all digits to find a full PAN"
        })
    }
}

/// The colour of a status in the table and the preview.
pub fn status_colour(status: Status, v: &egui::Visuals) -> egui::Color32 {
    match status {
        Status::DataException | Status::Failed => v.error_fg_color,
        Status::Requested | Status::DataPrepared => v.warn_fg_color,
        Status::Ready => egui::Color32::from_rgb(60, 140, 230),
        Status::Ongoing => egui::Color32::from_rgb(200, 120, 230),
        Status::Done => egui::Color32::from_rgb(40, 170, 80),
    }
}

/// Draws the toolbar and the table; returns how many rows one page of the table holds.
pub fn ui(app: &App, filter: &mut Filter, ui: &mut egui::Ui, cmds: &mut Vec<Command>) -> usize {
    toolbar_ui(app, filter, ui, cmds);
    table_ui(app, ui, cmds)
}

/// Open, demo, reopen; the typed path when the dialog cannot open; where the orders came from.
fn toolbar_ui(app: &App, filter: &mut Filter, ui: &mut egui::Ui, cmds: &mut Vec<Command>) {
    ui.horizontal_wrapped(|ui| {
        let open = ui.button("Open file...");
        if open.on_hover_text(Shortcut::OpenFile.hover()).clicked() {
            cmds.push(Command::OpenFileDialog);
        }
        let demo = ui.button("Demo orders");
        if demo.on_hover_text(Shortcut::DemoOrders.hover()).clicked() {
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
        if ui.button("Type a path...").clicked() {
            cmds.push(Command::ShowPathField(true));
        }
        ui.label("or drop an order file on the window");
    });
    path_field_ui(app, ui, cmds);
    filter_ui(app, filter, ui, cmds);
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
        ui.add(egui::Label::new(format!("Orders from {}", title.label())).wrap());
    }
    ui.separator();
}

/// The path field offered when the system file dialog cannot open (or when asked).
fn path_field_ui(app: &App, ui: &mut egui::Ui, cmds: &mut Vec<Command>) {
    let Some(path) = &app.path_field else {
        return;
    };
    if let Some(why) = &app.dialog_error {
        ui.colored_label(ui.visuals().error_fg_color, why);
    }
    let mut text = path.clone();
    ui.horizontal(|ui| {
        let label = ui.label("Order file path");
        let edit = ui
            .add(egui::TextEdit::singleline(&mut text).desired_width(420.0))
            .labelled_by(label.id);
        let enter = edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
        if (ui.button("Open this file").clicked() || enter) && !text.trim().is_empty() {
            cmds.push(Command::LoadFile(text.trim().into()));
            cmds.push(Command::ShowPathField(false));
        }
        if ui.button("Close").clicked() {
            cmds.push(Command::ShowPathField(false));
        }
    });
    if &text != path {
        cmds.push(Command::PathTyped(text));
    }
}

/// The status and text filter and the count of orders shown.
fn filter_ui(app: &App, filter: &mut Filter, ui: &mut egui::Ui, cmds: &mut Vec<Command>) {
    ui.horizontal_wrapped(|ui| {
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
                .hint_text("id, product, masked or full PAN")
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
    if let Some(hint) = filter.search_hint() {
        ui.small(hint);
    }
}

/// The findings cell: `2 E` / `1 W` in colour, empty without findings.
fn findings_cell(ui: &mut egui::Ui, row: &OrderRow) {
    let v = ui.visuals().clone();
    // Counted as the preview lists them: the same finding twice is one.
    let (errors, warnings) = (merged(&row.errors).len(), merged(&row.warnings).len());
    if errors > 0 {
        ui.colored_label(v.error_fg_color, format!("{errors} E"))
            .on_hover_text("errors: see the preview");
    }
    if warnings > 0 {
        ui.colored_label(v.warn_fg_color, format!("{warnings} W"))
            .on_hover_text("warnings: see the preview");
    }
}

/// The orders table, laid out only for the visible rows; returns the rows one page holds.
fn table_ui(app: &App, ui: &mut egui::Ui, cmds: &mut Vec<Command>) -> usize {
    let visible = app.visible_rows();
    let selected = app.selected;
    let row_h = ui.text_style_height(&egui::TextStyle::Body) + 6.0;
    let page = ((ui.available_height() - row_h) / row_h).floor().max(1.0) as usize;
    let mut table = TableBuilder::new(ui)
        .id_salt("orders-table")
        .striped(true)
        .sense(egui::Sense::click())
        .auto_shrink([false, false])
        .cell_layout(egui::Layout::left_to_right(egui::Align::Center))
        // Order, PAN and Status first and never clipped; Product takes what is left.
        .column(Column::auto().at_least(120.0))
        .column(Column::auto().at_least(150.0))
        .column(Column::auto().at_least(150.0))
        .column(Column::exact(60.0))
        .column(Column::auto().at_least(60.0).clip(true))
        .column(Column::remainder().at_least(40.0).clip(true));
    if app.scroll_to_selected
        && let Some(pos) = app.selected_position()
    {
        table = table.scroll_to_row(pos, None);
    }
    table
        .header(row_h, |mut h| {
            for title in ["Order", "PAN", "Status", "Findings", "Model", "Product"] {
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
                    ui.monospace(&row.masked_pan);
                });
                tr.col(|ui| {
                    let c = status_colour(row.status, ui.visuals());
                    ui.colored_label(c, row.status.as_str());
                });
                tr.col(|ui| findings_cell(ui, row));
                tr.col(|ui| {
                    ui.label(row.model.map_or("stripe", |m| m.label()));
                });
                tr.col(|ui| {
                    ui.label(&row.product);
                });
                if clicked || tr.response().clicked() {
                    cmds.push(Command::Select(index));
                }
            });
        });
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Statuses in colour: failures in the theme's error colour, the waiting ones in its warning
    /// colour, ready, running and done each in a colour of their own.
    #[test]
    fn statuses_are_coloured_by_what_they_ask_of_the_operator() {
        for v in [egui::Visuals::dark(), egui::Visuals::light()] {
            let c = |s| status_colour(s, &v);
            assert_eq!(c(Status::Failed), v.error_fg_color);
            assert_eq!(c(Status::DataException), v.error_fg_color);
            assert_eq!(c(Status::Requested), v.warn_fg_color);
            assert_eq!(c(Status::DataPrepared), v.warn_fg_color);
            let own = [c(Status::Ready), c(Status::Ongoing), c(Status::Done)];
            for (i, a) in own.iter().enumerate() {
                assert!(*a != v.error_fg_color && *a != v.warn_fg_color, "{a:?}");
                assert!(own[i + 1..].iter().all(|b| b != a), "{own:?}");
            }
        }
    }
}
