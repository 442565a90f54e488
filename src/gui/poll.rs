//! Polling of the workers (preparation, device scans, the file dialog, the personalization),
//! once per frame: their news becomes state; a finished personalization is recorded through the
//! job ([`crate::job::record`]).

use super::config::SETTING_LAST_FILE;
use super::*;

impl App {
    /// Reads every worker's news. Called each frame; tests may call it directly.
    pub fn poll(&mut self) {
        loop {
            match self.prep_rx.try_recv() {
                Ok(msg) => self.on_prep(msg),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    if self.loading.take().is_some() || self.preview.pending {
                        self.preview.pending = false;
                        self.error("the preparation worker stopped; restart the application");
                    }
                    break;
                }
            }
        }
        while let Ok(scan) = self.dev_rx.try_recv() {
            self.devices.scanning = false;
            self.devices.scan = Some(scan);
        }
        self.poll_file_dialog();
        if let Some(live) = &self.live
            && let Some(read) = live.latest()
        {
            let shared = live.is_shared();
            let counter = counter::Counter::of(read.states.values(), store::now());
            self.counter = Some(counter.with_stations(read.stations.unwrap_or_default()));
            if shared {
                self.apply_live(&read.states);
            }
        }
        if let Some(ended) = self.perso.poll() {
            let recorded = self.record_run(ended.row, &ended.order_id, &ended.who, &ended.report);
            if let Some(stripe) = &ended.report.stripe {
                self.devices.last_tracks = std::mem::take(&mut self.perso.masked_tracks)
                    .into_iter()
                    .filter(|(no, _)| stripe.tracks.contains(no))
                    .collect();
            }
            self.perso.show(&ended.order_id, &ended.report);
            let id = &ended.order_id;
            let outcome = match (&recorded, &ended.report.failure) {
                (Err(e), _) => Err(e.clone()),
                (Ok(()), None) => Ok(match &self.perso.last {
                    Some(personalize::Finished { result: Ok(r), .. }) => {
                        format!("Order {id}: CARD_PROD_DONE ({})", r.summary)
                    }
                    _ => format!("Order {id}: CARD_PROD_DONE"),
                }),
                (Ok(()), Some(f)) => Err(format!(
                    "Order {id}: failed at {}: {}",
                    f.step.label(),
                    f.message
                )),
            };
            match outcome {
                Ok(text) => self.info(text),
                Err(text) => self.error(text),
            }
        }
    }

    /// The file dialog's answer: a file to load, nothing (closed), or why it could not open, in
    /// which case the path field is offered.
    fn poll_file_dialog(&mut self) {
        let Some(rx) = &self.file_rx else {
            return;
        };
        let answer = match rx.try_recv() {
            Ok(a) => a,
            Err(TryRecvError::Empty) => return,
            Err(TryRecvError::Disconnected) => {
                Err("the file dialog stopped without an answer".to_string())
            }
        };
        self.file_rx = None;
        match answer {
            Ok(Some(path)) => self.load(OrderSource::File(path)),
            Ok(None) => {}
            Err(why) => self.dialog_failed(why),
        }
    }

    /// Takes the statuses other stations wrote into the shared store.
    fn apply_live(&mut self, states: &std::collections::HashMap<String, crate::store::OrderState>) {
        let mut changed = false;
        for r in &mut self.rows {
            if let Some(st) = states.get(&r.id)
                && (r.status != st.status || r.reason != st.reason || r.approved != st.approved)
            {
                r.status = st.status;
                r.reason = st.reason.clone();
                r.approved = st.approved;
                changed = true;
            }
        }
        if changed {
            self.refilter();
        }
    }

    pub(super) fn on_prep(&mut self, msg: PrepMsg) {
        match msg {
            PrepMsg::Progress {
                generation,
                done,
                total,
            } if generation == self.generation => {
                if let Some(l) = &mut self.loading {
                    l.progress = Some((done, total));
                }
            }
            PrepMsg::Loaded {
                generation,
                source,
                rows,
                pan_tags,
                store_error,
            } if generation == self.generation => {
                self.loading = None;
                let n = rows.len();
                let exceptions = rows.iter().filter(|r| !r.errors.is_empty()).count();
                self.rows = rows;
                self.pan_tags = pan_tags;
                self.selected = None;
                self.preview = PreviewState::default();
                self.refilter();
                if let OrderSource::File(p) = &source {
                    self.remember(SETTING_LAST_FILE, &p.display().to_string());
                    self.last_file = Some(p.clone());
                }
                if let (Some(store), Some(session)) = (&self.store, &self.session) {
                    let _ = store.audit(
                        session,
                        "load",
                        None,
                        &format!("{}: {n} orders, {exceptions} with errors", source.label()),
                    );
                }
                self.source = Some(source);
                match store_error {
                    Some(e) => self.error(format!("statuses not saved: {e}")),
                    None => self.info(format!("{n} orders loaded, {exceptions} with errors")),
                }
            }
            PrepMsg::LoadFailed {
                generation,
                source: _,
                error,
            } if generation == self.generation => {
                self.loading = None;
                self.error(error);
            }
            PrepMsg::Preview {
                generation,
                row,
                model,
                result,
            } if generation == self.preview_generation
                && self.preview.row == Some(row)
                && self.rows.get(row).is_some_and(|r| r.model == model) =>
            {
                self.preview.pending = false;
                match result {
                    Ok(p) => {
                        self.preview.prepared = Some(p);
                        self.preview.errors.clear();
                    }
                    Err(errors) => {
                        self.preview.prepared = None;
                        self.preview.errors = errors;
                    }
                }
            }
            _ => {}
        }
    }
}
