//! What a personalization shows while it runs and after: the per-DGI list (STORE DATA by DGI,
//! in hex, PASS/FAIL from the card's status word once the transcript is in), the "Swipe the card
//! now" prompt with the seconds left, the bad swipes retried, and whether the chip was written
//! (Cancel then asks for confirmation). Everything here is masked by construction: DGI ids,
//! status words, track layouts with the PAN and secrets masked.

use std::time::{Duration, Instant};

use crate::domain::gp::session::StepName;
use crate::job::JobEvent;
use crate::perso::Transcript;

/// One DGI of the session as the list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DgiLine {
    /// The DGI id in hex (`0101`).
    pub dgi: String,
    /// `None` while in flight, `Some(true)` answered 9000, `Some(false)` refused or no answer.
    pub passed: Option<bool>,
}

/// The encoder waits for the operator to swipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwipePrompt {
    /// `swipe to write`, `swipe to read back`.
    pub purpose: String,
    /// 1, or more after bad swipes.
    pub attempt: u32,
    /// When the encoder gives up.
    pub deadline: Instant,
}

impl SwipePrompt {
    /// Whole seconds left (rounded up), 0 once past the deadline.
    pub fn seconds_left(&self, now: Instant) -> u64 {
        let left = self.deadline.saturating_duration_since(now);
        left.as_secs() + u64::from(left.subsec_nanos() > 0)
    }
}

/// The progress of the run in flight (reset when a run starts).
#[derive(Debug, Clone, Default)]
pub struct RunProgress {
    /// The DGIs sent so far, in order.
    pub dgis: Vec<DgiLine>,
    /// A STORE DATA has been sent: the chip is (partly) written.
    pub chip_written: bool,
    /// The encoder waits for a swipe.
    pub swipe: Option<SwipePrompt>,
    /// Bad swipes retried so far.
    pub bad_swipes: u32,
    /// The last bad swipe (step and attempt; never track data).
    pub last_bad_swipe: Option<String>,
}

impl RunProgress {
    /// Takes a job event: each STORE DATA names its DGI; the previous one was answered 9000
    /// (the session stops at the first refusal).
    pub fn on_event(&mut self, event: &JobEvent) {
        match event {
            JobEvent::Perso(p) if p.step == StepName::StoreData => {
                self.chip_written = true;
                let dgi = p.dgi.map(|d| format!("{d:04X}")).unwrap_or_default();
                if self.dgis.last().is_some_and(|l| l.dgi == dgi) {
                    return;
                }
                if let Some(l) = self.dgis.last_mut() {
                    l.passed = Some(true);
                }
                self.dgis.push(DgiLine { dgi, passed: None });
            }
            JobEvent::ReadBack | JobEvent::Stripe | JobEvent::Perso(_) => {
                if self.chip_written
                    && let Some(l) = self.dgis.last_mut()
                {
                    l.passed.get_or_insert(true);
                }
            }
        }
        if !matches!(event, JobEvent::Stripe) {
            self.swipe = None;
        }
    }

    /// The encoder waits for a swipe of `purpose` for `timeout`.
    pub fn waiting(&mut self, purpose: String, attempt: u32, timeout: Duration) {
        self.swipe = Some(SwipePrompt {
            purpose,
            attempt,
            deadline: Instant::now() + timeout,
        });
    }

    /// The encoder reported a bad swipe at `step` and retries.
    pub fn bad_swipe(&mut self, step: String, failed_attempt: u32) {
        self.bad_swipes += 1;
        self.last_bad_swipe = Some(format!(
            "{step}, attempt {failed_attempt}: bad swipe, swipe the card again (status 39)"
        ));
    }

    /// Draws the swipe prompt (large) and the bad swipes.
    pub fn swipe_ui(&self, ui: &mut egui::Ui) {
        if let Some(s) = &self.swipe {
            ui.add_space(8.0);
            ui.label(
                egui::RichText::new("Swipe the card now")
                    .size(32.0)
                    .strong(),
            );
            let again = if s.attempt > 1 { " (again)" } else { "" };
            ui.label(
                egui::RichText::new(format!(
                    "{}{again}: {} seconds left",
                    s.purpose,
                    s.seconds_left(Instant::now())
                ))
                .size(20.0),
            );
            ui.ctx().request_repaint_after(Duration::from_millis(250));
        }
        if let Some(last) = &self.last_bad_swipe {
            ui.colored_label(
                ui.visuals().warn_fg_color,
                format!("Bad swipes retried: {} (last: {last})", self.bad_swipes),
            );
        }
    }
}

/// The DGI list of a finished run, from its masked transcript: every STORE DATA's DGI with
/// PASS when the card answered 9000, FAIL otherwise.
pub fn dgi_lines(transcript: &Transcript) -> Vec<DgiLine> {
    let mut out: Vec<DgiLine> = Vec::new();
    for e in &transcript.entries {
        let Some(dgi) = &e.dgi else { continue };
        let ok = e.sw.as_deref() == Some("9000");
        match out.last_mut() {
            // A DGI split over several STORE DATA commands passes when all of them did.
            Some(l) if &l.dgi == dgi => l.passed = Some(l.passed == Some(true) && ok),
            _ => out.push(DgiLine {
                dgi: dgi.clone(),
                passed: Some(ok),
            }),
        }
    }
    out
}

/// The colour of PASS (readable on the light and the dark theme).
pub const PASS_GREEN: egui::Color32 = egui::Color32::from_rgb(0, 150, 70);

/// PASS in green, FAIL in red, `...` while in flight.
pub fn verdict(ui: &mut egui::Ui, passed: Option<bool>) {
    match passed {
        Some(true) => ui.colored_label(PASS_GREEN, "PASS"),
        Some(false) => ui.colored_label(ui.visuals().error_fg_color, "FAIL"),
        None => ui.label("..."),
    };
}

/// The per-DGI list (`DGI 0101  PASS`).
pub fn dgi_list_ui(ui: &mut egui::Ui, lines: &[DgiLine]) {
    if lines.is_empty() {
        return;
    }
    egui::CollapsingHeader::new(format!("DGIs stored ({})", lines.len()))
        .id_salt("dgi-list")
        .default_open(true)
        .show(ui, |ui| {
            egui::Grid::new("dgi-list-grid")
                .striped(true)
                .show(ui, |ui| {
                    for l in lines {
                        ui.monospace(format!("DGI {}", l.dgi));
                        verdict(ui, l.passed);
                        ui.end_row();
                    }
                });
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::gp::session::Progress;

    fn store_data(n: u16, dgi: u16) -> JobEvent {
        JobEvent::Perso(Progress {
            step: StepName::StoreData,
            store_data_sent: n,
            store_data_total: 3,
            dgi: Some(dgi),
            commands_sent: n + 3,
            commands_total: 6,
        })
    }

    #[test]
    fn the_list_follows_the_store_data_commands_and_marks_the_chip_written() {
        let mut p = RunProgress::default();
        assert!(!p.chip_written);
        p.on_event(&store_data(1, 0x0101));
        p.on_event(&store_data(2, 0x0101));
        p.on_event(&store_data(3, 0x8000));
        assert!(p.chip_written);
        assert_eq!(
            p.dgis,
            vec![
                DgiLine {
                    dgi: "0101".into(),
                    passed: Some(true)
                },
                DgiLine {
                    dgi: "8000".into(),
                    passed: None
                },
            ]
        );
        p.on_event(&JobEvent::ReadBack);
        assert_eq!(p.dgis[1].passed, Some(true));
    }

    #[test]
    fn the_finished_list_comes_from_the_status_words() {
        let mut t = Transcript::default();
        let d = Duration::from_micros(1);
        t.record(
            "STORE DATA",
            Some(0x0101),
            &[0x80, 0xE2, 0, 0, 1, 0],
            Some((&[0x90, 0x00], 1)),
            d,
        );
        t.record(
            "STORE DATA",
            Some(0x9102),
            &[0x80, 0xE2, 0, 1, 1, 0],
            Some((&[0x6A, 0x80], 1)),
            d,
        );
        let lines = dgi_lines(&t);
        assert_eq!(lines.len(), 2);
        assert_eq!(
            (lines[0].dgi.as_str(), lines[0].passed),
            ("0101", Some(true))
        );
        assert_eq!(
            (lines[1].dgi.as_str(), lines[1].passed),
            ("9102", Some(false))
        );
    }

    #[test]
    fn the_seconds_left_round_up_and_stop_at_zero() {
        let now = Instant::now();
        let s = SwipePrompt {
            purpose: "swipe to write".into(),
            attempt: 1,
            deadline: now + Duration::from_millis(4_200),
        };
        assert_eq!(s.seconds_left(now), 5);
        assert_eq!(s.seconds_left(now + Duration::from_secs(10)), 0);
    }
}
