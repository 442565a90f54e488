//! The Log screen: application events captured through a `tracing` layer into a ring buffer, and
//! the audit trail from the store.
//!
//! Captured events are scrubbed on the way in: fields whose names are sensitive (PAN, tracks,
//! CVV/iCVV/PVV, PIN, PIN blocks, keys) are dropped as `<redacted>`, and every other value and the
//! message go through [`scrub_digit_runs`], so a stray PAN is masked even when a caller slips.

use std::collections::VecDeque;
use std::fmt::{self, Write as _};
use std::sync::{Arc, Mutex, MutexGuard};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

use super::Command;
use crate::domain::mask::scrub_digit_runs;
use crate::store::{AuditRecord, format_time};

/// How many events the buffer keeps.
pub const LOG_CAPACITY: usize = 5_000;

/// Field names whose values never reach the log screen.
const SENSITIVE_FIELDS: [&str; 15] = [
    "pan",
    "track",
    "track1",
    "track2",
    "track3",
    "cvv",
    "cvv1",
    "icvv",
    "pvv",
    "pin",
    "pin_block",
    "key",
    "value",
    "data",
    "tracks",
];

fn is_sensitive(name: &str) -> bool {
    SENSITIVE_FIELDS.contains(&name.to_ascii_lowercase().as_str())
}

/// One captured event, already scrubbed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Unix time.
    pub at: i64,
    /// Level.
    pub level: Level,
    /// Module target.
    pub target: String,
    /// Message and fields, scrubbed.
    pub text: String,
}

/// The ring buffer the layer writes and the Log screen reads.
#[derive(Debug, Clone, Default)]
pub struct LogBuffer(Arc<Mutex<VecDeque<LogLine>>>);

impl LogBuffer {
    fn lock(&self) -> MutexGuard<'_, VecDeque<LogLine>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends a line, dropping the oldest beyond [`LOG_CAPACITY`].
    pub fn push(&self, line: LogLine) {
        let mut q = self.lock();
        if q.len() >= LOG_CAPACITY {
            q.pop_front();
        }
        q.push_back(line);
    }

    /// A copy of the lines, oldest first.
    pub fn lines(&self) -> Vec<LogLine> {
        self.lock().iter().cloned().collect()
    }

    /// How many lines are held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when nothing was captured.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// The layer that fills this buffer.
    pub fn layer(&self) -> LogLayer {
        LogLayer {
            buffer: self.clone(),
        }
    }
}

/// A `tracing` layer that captures scrubbed events into a [`LogBuffer`].
#[derive(Debug, Clone)]
pub struct LogLayer {
    buffer: LogBuffer,
}

#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
}

impl Fields {
    fn add(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        let name = field.name();
        if name == "message" {
            let _ = write!(self.message, "{value}");
            return;
        }
        if !self.rest.is_empty() {
            self.rest.push(' ');
        }
        if is_sensitive(name) {
            let _ = write!(self.rest, "{name}=<redacted>");
        } else {
            let _ = write!(self.rest, "{name}={value}");
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.add(field, format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.add(field, format_args!("{value:?}"));
    }

    /// DGI ids in hex (`dgi=0101`), as every DGI is written elsewhere.
    fn record_u64(&mut self, field: &Field, value: u64) {
        if is_dgi(field.name()) {
            self.add(field, format_args!("{value:04X}"));
        } else {
            self.add(field, format_args!("{value}"));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        match u64::try_from(value) {
            Ok(v) => self.record_u64(field, v),
            Err(_) => self.add(field, format_args!("{value}")),
        }
    }
}

/// A field naming a DGI id.
fn is_dgi(name: &str) -> bool {
    name == "dgi" || name.ends_with("_dgi")
}

impl<S: Subscriber> Layer<S> for LogLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let text = if fields.rest.is_empty() {
            fields.message
        } else if fields.message.is_empty() {
            fields.rest
        } else {
            format!("{}  {}", fields.message, fields.rest)
        };
        self.buffer.push(LogLine {
            at: crate::store::now(),
            level: *event.metadata().level(),
            target: event.metadata().target().to_string(),
            text: scrub_digit_runs(&text),
        });
    }
}

/// The Log screen's state.
#[derive(Debug, Default)]
pub struct LogScreen {
    /// Show debug and trace events too.
    pub verbose: bool,
    /// The audit trail as last read from the store.
    pub audit: Vec<AuditRecord>,
}

/// One event in separate columns: time, level (coloured), target, text.
fn event_row(ui: &mut egui::Ui, line: &LogLine) {
    ui.horizontal(|ui| {
        let cell = |ui: &mut egui::Ui, width: f32, text: egui::RichText| {
            ui.add_sized([width, 0.0], egui::Label::new(text.monospace()).truncate());
        };
        cell(ui, 150.0, egui::RichText::new(format_time(line.at)));
        let level = egui::RichText::new(line.level.as_str());
        let level = match line.level {
            Level::ERROR => level.color(ui.visuals().error_fg_color),
            Level::WARN => level.color(ui.visuals().warn_fg_color),
            _ => level,
        };
        cell(ui, 50.0, level);
        cell(ui, 220.0, egui::RichText::new(&line.target));
        ui.separator();
        ui.monospace(&line.text);
    });
}

impl LogScreen {
    /// Draws the screen.
    pub fn ui(&mut self, ui: &mut egui::Ui, buffer: &LogBuffer, cmds: &mut Vec<Command>) {
        ui.horizontal(|ui| {
            ui.heading("Log");
            ui.checkbox(&mut self.verbose, "Show debug events");
            if ui.button("Refresh audit trail").clicked() {
                cmds.push(Command::RefreshAudit);
            }
        });
        ui.label("Application events (scrubbed: PANs masked, sensitive fields never shown).");
        let lines: Vec<LogLine> = buffer
            .lines()
            .into_iter()
            .filter(|l| self.verbose || l.level <= Level::INFO)
            .collect();
        let row_h = ui.text_style_height(&egui::TextStyle::Monospace);
        let avail = ui.available_height();
        egui::ScrollArea::vertical()
            .id_salt("log-events")
            .max_height(avail * 0.55)
            .stick_to_bottom(true)
            .auto_shrink([false, false])
            .show_rows(ui, row_h, lines.len(), |ui, range| {
                for line in lines.get(range).unwrap_or_default() {
                    event_row(ui, line);
                }
            });
        ui.separator();
        ui.heading("Audit trail");
        egui::ScrollArea::vertical()
            .id_salt("audit")
            .auto_shrink([false, false])
            .show(ui, |ui| {
                egui::Grid::new("audit-grid").striped(true).show(ui, |ui| {
                    for h in ["when (UTC)", "who", "role", "what", "order", "outcome"] {
                        ui.strong(h);
                    }
                    ui.end_row();
                    for r in &self.audit {
                        ui.label(format_time(r.at));
                        ui.label(&r.user);
                        ui.label(&r.role);
                        ui.label(&r.action);
                        ui.label(r.order_id.as_deref().unwrap_or("-"));
                        ui.label(&r.outcome);
                        ui.end_row();
                    }
                });
            });
    }
}
