//! The production counter of the status bar: cards done and failed today (UTC) and orders
//! waiting (approved, CARD_PROD_READY), counted from the store's states as the live poll reads
//! them ([`super::live`], every 2 s: a shared PostgreSQL store or this workstation's SQLite one).

use crate::domain::status::Status;
use crate::store::OrderState;

/// Seconds in a day.
const DAY: i64 = 86_400;

/// Today's production.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counter {
    /// CARD_PROD_DONE since midnight UTC.
    pub done: usize,
    /// CARD_PROD_FAILED since midnight UTC.
    pub failed: usize,
    /// CARD_PROD_READY (any day).
    pub waiting: usize,
}

impl Counter {
    /// Counts `states` for the UTC day holding `now` (Unix seconds).
    pub fn of<'a>(states: impl IntoIterator<Item = &'a OrderState>, now: i64) -> Counter {
        let midnight = now - now.rem_euclid(DAY);
        let mut c = Counter::default();
        for s in states {
            let today = s.updated_at >= midnight;
            match s.status {
                Status::Done if today => c.done += 1,
                Status::Failed if today => c.failed += 1,
                Status::Ready => c.waiting += 1,
                _ => {}
            }
        }
        c
    }

    /// `today: 3 done · 1 failed · 5 waiting`.
    pub fn label(&self) -> String {
        format!(
            "today: {} done · {} failed · {} waiting",
            self.done, self.failed, self.waiting
        )
    }
}

/// Draws the counter (nothing until the first read arrived).
pub fn ui(ui: &mut egui::Ui, counter: Option<&Counter>) {
    if let Some(c) = counter {
        ui.label(c.label())
            .on_hover_text("from the store, read every 2 s; done and failed since midnight UTC");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(status: Status, updated_at: i64) -> OrderState {
        OrderState {
            status,
            reason: None,
            approved: true,
            updated_at,
        }
    }

    #[test]
    fn only_todays_outcomes_count_and_every_ready_order_waits() {
        // 2026-12-02 12:00:00 UTC and the day before.
        let noon = 1_796_212_800;
        let yesterday = noon - DAY;
        let states = [
            state(Status::Done, noon - 3_600),
            state(Status::Done, yesterday),
            state(Status::Failed, noon),
            state(Status::Failed, noon - 12 * 3_600 - 1),
            state(Status::Ready, yesterday),
            state(Status::Ready, noon),
            state(Status::Ongoing, noon),
            state(Status::DataPrepared, noon),
        ];
        let c = Counter::of(&states, noon);
        assert_eq!(
            c,
            Counter {
                done: 1,
                failed: 1,
                waiting: 2
            }
        );
        assert_eq!(c.label(), "today: 1 done · 1 failed · 2 waiting");
    }
}
