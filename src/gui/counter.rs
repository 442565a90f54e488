//! The production counter of the status bar: cards done and failed today (UTC) and orders
//! waiting (approved, CARD_PROD_READY), counted from the store's states as the live poll reads
//! them ([`super::live`], every 2 s: a shared PostgreSQL store or this workstation's SQLite one),
//! and the same per station from the stations' claims (the station that claimed an order last).

use std::collections::BTreeMap;

use crate::domain::status::Status;
use crate::store::OrderState;
use crate::store::queue::StationTally;

/// Seconds in a day.
const DAY: i64 = 86_400;

/// The Unix time of midnight UTC starting the day that holds `now`.
pub fn midnight_utc(now: i64) -> i64 {
    now - now.rem_euclid(DAY)
}

/// Today's production.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counter {
    /// CARD_PROD_DONE since midnight UTC.
    pub done: usize,
    /// CARD_PROD_FAILED since midnight UTC.
    pub failed: usize,
    /// CARD_PROD_READY (any day).
    pub waiting: usize,
    /// Per station, done and failed since midnight UTC (empty when no station claimed any).
    pub stations: BTreeMap<String, StationTally>,
}

impl Counter {
    /// Counts `states` for the UTC day holding `now` (Unix seconds).
    pub fn of<'a>(states: impl IntoIterator<Item = &'a OrderState>, now: i64) -> Counter {
        let midnight = midnight_utc(now);
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

    /// The counter with each station's figures for today.
    pub fn with_stations(self, stations: BTreeMap<String, StationTally>) -> Counter {
        Counter { stations, ..self }
    }

    /// `today: 3 done · 1 failed · 5 waiting`, and `· 2 stations` when stations worked today.
    pub fn label(&self) -> String {
        let mut label = format!(
            "today: {} done · {} failed · {} waiting",
            self.done, self.failed, self.waiting
        );
        match self.stations.len() {
            0 => {}
            1 => label.push_str(" · 1 station"),
            n => label.push_str(&format!(" · {n} stations")),
        }
        label
    }

    /// One line per station: `station-a: 12 done · 1 failed`.
    pub fn station_lines(&self) -> Vec<String> {
        self.stations
            .iter()
            .map(|(name, t)| format!("{name}: {} done · {} failed", t.done, t.failed))
            .collect()
    }
}

/// Draws the counter (nothing until the first read arrived).
pub fn ui(ui: &mut egui::Ui, counter: Option<&Counter>) {
    if let Some(c) = counter {
        let mut hover =
            String::from("from the store, read every 2 s; done and failed since midnight UTC");
        for line in c.station_lines() {
            hover.push('\n');
            hover.push_str(&line);
        }
        ui.label(c.label()).on_hover_text(hover);
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
                waiting: 2,
                stations: BTreeMap::new(),
            }
        );
        assert_eq!(c.label(), "today: 1 done · 1 failed · 2 waiting");
    }

    #[test]
    fn stations_are_named_and_counted_in_the_label() {
        let tally = |done, failed| StationTally { done, failed };
        let stations = BTreeMap::from([
            ("station-b".to_string(), tally(0, 2)),
            ("station-a".to_string(), tally(12, 1)),
        ]);
        let c = Counter::of(&[], 0).with_stations(stations);
        assert_eq!(
            c.label(),
            "today: 0 done · 0 failed · 0 waiting · 2 stations"
        );
        assert_eq!(
            c.station_lines(),
            [
                "station-a: 12 done · 1 failed",
                "station-b: 0 done · 2 failed"
            ]
        );
    }
}
