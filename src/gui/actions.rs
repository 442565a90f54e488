//! The app's state changes, one method each (testable without a window), and [`App::apply`],
//! which maps a [`Command`] to them.

use super::config::{SETTING_ENCODER, SETTING_READER};
use super::*;

impl App {
    /// Starts working in `role`.
    pub fn sign_in(&mut self, role: Role) {
        // The same rules as the command line: the account and the configured roles.
        let session =
            match review::session_for(self.mode, &self.user, None, role, self.roles.as_ref()) {
                Ok(s) => s,
                Err(rule) => {
                    self.error(rule);
                    return;
                }
            };
        if let Some(store) = self.store.as_mut() {
            match store.recover_interrupted(&session) {
                Ok(0) => {}
                Ok(n) => tracing::warn!(orders = n, "interrupted personalizations marked failed"),
                Err(e) => tracing::warn!(error = %e, "could not check interrupted runs"),
            }
            let _ = store.audit(&session, "sign-in", None, "ok");
        }
        tracing::info!(user = %session.user, role = %role, "signed in");
        self.session = Some(session);
        self.preview.revealed = false;
        self.info(format!("Working as {role}"));
    }

    /// Back to the role choice.
    pub fn sign_out(&mut self) {
        self.session = None;
        self.preview.revealed = false;
    }

    /// Loads orders in the background.
    pub fn load(&mut self, source: OrderSource) {
        self.generation += 1;
        self.loading = Some(Loading {
            source: source.clone(),
            progress: None,
        });
        if self
            .prep_tx
            .send(PrepJob::Load {
                generation: self.generation,
                source,
            })
            .is_err()
        {
            self.loading = None;
            self.error("the preparation worker stopped; restart the application");
        }
    }

    /// Opens the file dialog on a thread, in the last file's folder; the chosen file is loaded
    /// when it returns. When no dialog can open (no desktop portal, no zenity) or it fails at once,
    /// the window says so and offers the path field ([`dialog_failed`](Self::dialog_failed)).
    pub fn open_file_dialog(&mut self) {
        if self.file_rx.is_some() {
            return;
        }
        if let Err(why) = dialog_available() {
            self.dialog_failed(why);
            return;
        }
        let (tx, rx) = channel();
        let waker = self.waker.clone();
        let start = self.start_folder();
        let spawned = super::worker::spawn_named("persodesk-file-dialog", move || {
            let mut d = rfd::FileDialog::new()
                .set_title("Open an order file")
                .add_filter("orders", &["json", "jsonl", "ndjson"]);
            if let Some(dir) = start {
                d = d.set_directory(dir);
            }
            let opened = std::time::Instant::now();
            let picked = d.pick_file();
            // rfd reports "no dialog" as a cancel; nobody cancels within a quarter second.
            let answer = match picked {
                None if opened.elapsed() < Duration::from_millis(250) => {
                    Err("the system file dialog could not open".to_string())
                }
                other => Ok(other),
            };
            let _ = tx.send(answer);
            waker.wake();
        });
        match spawned {
            Ok(_) => self.file_rx = Some(rx),
            Err(e) => self.dialog_failed(format!("cannot open the file dialog: {e}")),
        }
    }

    /// The folder the file dialog and the path field start in: the last file's.
    pub fn start_folder(&self) -> Option<PathBuf> {
        self.last_file
            .as_ref()
            .and_then(|p| p.parent())
            .filter(|p| !p.as_os_str().is_empty())
            .map(PathBuf::from)
    }

    /// The file dialog could not open: says why, and offers the path field, filled with the last
    /// folder.
    pub fn dialog_failed(&mut self, why: impl Into<String>) {
        let why = format!("{}: type the file's path below", why.into());
        self.error(why.clone());
        self.dialog_error = Some(why);
        self.show_path_field(true);
    }

    /// Shows (filled with the last folder) or closes the typed path field.
    pub fn show_path_field(&mut self, on: bool) {
        if !on {
            self.path_field = None;
            self.dialog_error = None;
            return;
        }
        if self.path_field.is_none() {
            let folder = self
                .start_folder()
                .map(|p| format!("{}{}", p.display(), std::path::MAIN_SEPARATOR))
                .unwrap_or_default();
            self.path_field = Some(folder);
        }
    }

    /// Changes the filter text or status and recomputes the visible rows.
    pub fn set_filter(&mut self, filter: Filter) {
        self.filter = filter;
        self.refilter();
    }

    pub(super) fn refilter(&mut self) {
        self.visible = self.filter.apply_tagged(&self.rows, &self.pan_tags);
    }

    /// Selects a row and prepares its preview in the background.
    pub fn select(&mut self, row: usize) {
        if row >= self.rows.len() {
            return;
        }
        if self.selected != Some(row) {
            self.preview = PreviewState::default();
        }
        self.selected = Some(row);
        self.request_preview();
    }

    /// Moves the selection `delta` visible rows (clamped to the first and last), scrolling the
    /// table to it.
    pub fn move_selection(&mut self, delta: i32) {
        if self.visible.is_empty() {
            return;
        }
        let pos = self.selected_position();
        let last = self.visible.len() - 1;
        let step = delta.unsigned_abs() as usize;
        let next = match pos {
            None if delta < 0 => last,
            None => 0,
            Some(p) if delta < 0 => p.saturating_sub(step),
            Some(p) => p.saturating_add(step).min(last),
        };
        self.select_visible(next);
    }

    /// Moves the selection one page (the rows the table showed last frame) down or up.
    pub fn move_page(&mut self, direction: i32) {
        let page = i32::try_from(self.page_rows.max(1)).unwrap_or(i32::MAX);
        self.move_selection(direction.signum().saturating_mul(page));
    }

    /// Selects the first or the last visible row.
    pub fn move_to_end(&mut self, last: bool) {
        if !self.visible.is_empty() {
            self.select_visible(if last { self.visible.len() - 1 } else { 0 });
        }
    }

    /// Selects the next visible order ready to personalize (CARD_PROD_READY), after the
    /// selected one and wrapping around.
    pub fn next_ready(&mut self) -> Result<(), String> {
        let n = self.visible.len();
        let pos = self.selected_position();
        let start = pos.map_or(0, |p| p + 1);
        let found = (0..n)
            .map(|k| (start + k) % n)
            .find(|&p| {
                self.visible
                    .get(p)
                    .and_then(|&i| self.rows.get(i))
                    .is_some_and(|r| r.status == Status::Ready)
            })
            .ok_or_else(|| "no order shown is CARD_PROD_READY".to_string())?;
        self.select_visible(found);
        Ok(())
    }

    fn select_visible(&mut self, pos: usize) {
        if let Some(&row) = self.visible.get(pos) {
            self.select(row);
            self.scroll_to_selected = true;
        }
    }

    pub(super) fn request_preview(&mut self) {
        let Some((row, r)) = self.selected_row() else {
            return;
        };
        let model = r.model;
        self.preview.row = Some(row);
        self.preview.pending = true;
        self.preview.revealed = false;
        self.preview.revealed_chip = None;
        self.preview_generation = self.generation;
        let _ = self.prep_tx.send(PrepJob::Preview {
            generation: self.generation,
            row,
            model,
        });
    }

    /// Chooses the chip model of a row (only one the order and product allow).
    pub fn set_model(&mut self, row: usize, model: ChipModel) -> Result<(), String> {
        let r = self
            .rows
            .get_mut(row)
            .ok_or_else(|| "no such order".to_string())?;
        if !r.allowed.allows(model) {
            return Err(format!("order {}: {model} is not allowed for it", r.id));
        }
        let before = r.model.replace(model);
        // The approval covered the data of the other model: withdrawn, audited.
        if before != Some(model) && r.status == Status::Ready {
            let reason = format!(
                "chip model changed from {} to {model}: the new data needs a new review",
                before.map_or_else(|| "none".to_string(), |m| m.to_string())
            );
            let who = self.session().unwrap_or_else(|_| Session {
                user: self.user.clone(),
                role: Role::Operator,
            });
            self.transition(row, &Event::ApprovalWithdrawn { reason }, &who)?;
        }
        if self.selected == Some(row) {
            self.request_preview();
        }
        Ok(())
    }

    pub(super) fn facts(&self, row: usize) -> Result<(OrderFacts, String), String> {
        let r = self
            .rows
            .get(row)
            .ok_or_else(|| "no such order".to_string())?;
        Ok((
            OrderFacts {
                status: r.status,
                approved: r.approved,
                test_keys_only: r.test_keys_only,
            },
            r.id.clone(),
        ))
    }

    pub(super) fn session(&self) -> Result<Session, String> {
        self.session
            .clone()
            .ok_or_else(|| "choose a role first".to_string())
    }

    /// Refuses unless a tester is working: only testers change `what` (a simulated device).
    fn tester_only(&self, what: &str) -> Result<(), String> {
        if self.session()?.role == Role::Tester {
            Ok(())
        } else {
            Err(format!("only testers change {what}"))
        }
    }

    /// The in-process virtual reader, when this session offers it.
    fn virtual_reader(&self) -> Result<&super::devices::SharedVirtualReader, String> {
        self.devices
            .virtual_reader
            .as_ref()
            .ok_or_else(|| "the virtual card is not offered in this session".to_string())
    }

    /// Applies an event to a row through the store (or in memory without one).
    pub(super) fn transition(
        &mut self,
        row: usize,
        event: &Event,
        who: &Session,
    ) -> Result<(), String> {
        let r = self
            .rows
            .get(row)
            .ok_or_else(|| "no such order".to_string())?;
        let id = r.id.clone();
        let (to, reason, approved) = match self.store.as_mut() {
            Some(store) => {
                let st = store.apply(&id, event, who).map_err(|e| e.to_string())?;
                (st.status, st.reason, st.approved)
            }
            None => {
                let to = status::next(r.status, event).map_err(|e| format!("order {id}: {e}"))?;
                let approved = match event {
                    Event::Approved => true,
                    Event::Rejected { .. } => false,
                    _ => r.approved,
                };
                (to, event.reason().map(str::to_string), approved)
            }
        };
        if let Some(r) = self.rows.get_mut(row) {
            r.status = to;
            r.reason = reason;
            r.approved = approved;
        }
        tracing::info!(order = %id, event = event.name(), status = %to, user = %who.user, "order status");
        self.refilter();
        Ok(())
    }

    pub(super) fn refuse(&mut self, row: usize, action: &str, d: &review::Denied) -> String {
        if let (Some(store), Some(session), Some(r)) =
            (&self.store, &self.session, self.rows.get(row))
        {
            let _ = store.audit(
                session,
                action,
                Some(&r.id),
                &format!("refused: {}", d.rule),
            );
        }
        d.to_string()
    }

    /// Approves a row's data (supervisor).
    pub fn approve(&mut self, row: usize) -> Result<(), String> {
        let who = self.session()?;
        let (facts, id) = self.facts(row)?;
        if let Err(d) = review::may_review(who.role, facts) {
            return Err(self.refuse(row, "approve", &d));
        }
        if self.store.is_some() {
            // The approval records what was reviewed: the previewed data of this row.
            let data = match &self.preview.prepared {
                Some(p) if self.preview.row == Some(row) && !self.preview.pending => &p.data,
                _ => return Err(format!("order {id}: its preview is not ready yet")),
            };
            let approved = self.store.as_mut().map(|store| {
                let evidence = crate::job::evidence(store, data)?;
                store.approve(&id, &who, &evidence)
            });
            if let Some(result) = approved {
                let st = result.map_err(|e| e.to_string())?;
                if let Some(r) = self.rows.get_mut(row) {
                    r.status = st.status;
                    r.reason = st.reason;
                    r.approved = st.approved;
                }
                self.refilter();
            }
        } else {
            self.transition(row, &Event::Approved, &who)?;
        }
        self.info(format!("Order {id} approved"));
        Ok(())
    }

    /// Rejects a row's data with a reason (supervisor).
    pub fn reject(&mut self, row: usize, reason: &str) -> Result<(), String> {
        let who = self.session()?;
        let (facts, id) = self.facts(row)?;
        if let Err(d) = review::may_review(who.role, facts) {
            return Err(self.refuse(row, "reject", &d));
        }
        if reason.trim().is_empty() {
            return Err("a rejection needs a reason".into());
        }
        let event = Event::Rejected {
            reason: format!("rejected by {}: {}", who.user, reason.trim()),
        };
        self.transition(row, &event, &who)?;
        self.preview.reject_reason.clear();
        self.info(format!("Order {id} rejected"));
        Ok(())
    }

    /// Shows or hides clear values of the previewed order (tester, test keys only).
    pub fn set_reveal(&mut self, on: bool) -> Result<(), String> {
        if !on {
            self.mask_again();
            return Ok(());
        }
        let who = self.session()?;
        let row = self
            .selected
            .ok_or_else(|| "select an order first".to_string())?;
        let prepared = self
            .preview
            .prepared
            .as_ref()
            .ok_or_else(|| "the preview is not ready".to_string())?;
        let test_only = prepared.data.non_test_keys().is_empty() && self.mode.allows_reveal();
        if let Err(d) = review::may_reveal(who.role, test_only) {
            return Err(self.refuse(row, "reveal", &d));
        }
        if let (Some(store), Some(r)) = (&self.store, self.rows.get(row)) {
            let _ = store.audit(&who, "reveal", Some(&r.id), "ok (test keys)");
        }
        self.preview.revealed_chip = Some(preview::ChipSection::of(&prepared.data, true));
        self.preview.revealed = true;
        // Stamped with egui's clock by the next frame (`frame.rs`), which masks again after
        // the timeout.
        self.preview.revealed_at = None;
        Ok(())
    }

    /// Hides the clear values again.
    pub fn mask_again(&mut self) {
        self.preview.revealed = false;
        self.preview.revealed_chip = None;
        self.preview.revealed_at = None;
    }

    /// Starts personalizing a row on the worker (its preview must be ready): the role rules
    /// against the store ([`crate::job::authorize_in`]), then [`crate::job::run_cancellable`] on
    /// the worker; [`poll`](Self::poll) records the outcome ([`crate::job::record`]).
    pub fn personalize(&mut self, row: usize) -> Result<(), String> {
        let who = self.session()?;
        if self.perso.is_running() {
            return Err("a personalization is already running".into());
        }
        let id = self
            .rows
            .get(row)
            .map(|r| r.id.clone())
            .ok_or_else(|| "no such order".to_string())?;
        let (data, order, profile) = match &self.preview.prepared {
            Some(p) if self.preview.row == Some(row) && !self.preview.pending => {
                (p.data.clone(), p.order.clone(), p.profile.clone())
            }
            _ => return Err(format!("order {id}: its preview is not ready yet")),
        };
        self.channel_override
            .allowed_for(who.role)
            .map_err(|e| format!("order {id}: {e}"))?;
        let target = PersoTarget {
            encoder_port: self.devices.encoder_port(),
            swipe_timeout: self.swipe_timeout,
            card: CardTarget::of(
                self.devices.reader.as_ref(),
                self.devices.virtual_reader.as_ref(),
            ),
        };
        // The command line's input rules: a reader for chip data, something to personalize.
        if data.chip.is_some() && matches!(target.card, CardTarget::None) {
            return Err(format!(
                "order {id} has chip data: choose a reader (or the virtual card) on the Devices screen"
            ));
        }
        if data.chip.is_none() && target.encoder_port.is_none() {
            return Err(format!(
                "order {id}: nothing to personalize: no chip data and no encoder chosen"
            ));
        }
        let mode = self.mode;
        let Some(store) = self.store.as_mut() else {
            return Err(
                "personalization needs the workstation store (statuses are in memory only)".into(),
            );
        };
        let authorized = crate::job::authorize_in(store, &who, &id, &data, mode);
        self.sync_row(row);
        authorized.map_err(|f| f.message)?;
        let job = PersoJob {
            channel: profile.as_ref().map(|p| self.channel_override.apply(p)),
            data,
            order,
            profile,
            keys: Arc::clone(&self.keys),
        };
        if let Err(e) = self
            .perso
            .start(row, who.clone(), job, target, self.waker.clone())
        {
            let report = crate::job::JobReport {
                failure: Some(crate::job::StepFailure::new(
                    crate::job::Step::Connect,
                    format!("cannot start the personalization worker: {e}"),
                    crate::job::FailureKind::DeviceUnavailable,
                )),
                ..Default::default()
            };
            let _ = self.record_run(row, &id, &who, &report);
            return Err(format!("cannot start the personalization worker: {e}"));
        }
        self.screen = Screen::Personalize;
        self.info(format!("Personalizing order {id}"));
        Ok(())
    }

    /// Reads a row's status, reason and approval back from the store.
    pub(super) fn sync_row(&mut self, row: usize) {
        let Some(r) = self.rows.get(row) else {
            return;
        };
        let state = self
            .store
            .as_ref()
            .and_then(|s| s.state(&r.id).ok().flatten());
        if let (Some(st), Some(r)) = (state, self.rows.get_mut(row)) {
            r.status = st.status;
            r.reason = st.reason;
            r.approved = st.approved;
        }
        self.refilter();
    }

    /// Records a run's outcome through the job, in the name of who ran it.
    pub(super) fn record_run(
        &mut self,
        row: usize,
        id: &str,
        who: &Session,
        report: &crate::job::JobReport,
    ) -> Result<(), String> {
        let store = self
            .store
            .as_mut()
            .ok_or_else(|| "the workstation store is gone".to_string())?;
        let recorded = crate::job::record(store, who, id, report);
        self.sync_row(row);
        let state = recorded.map_err(|e| {
            format!("order {id}: the outcome could not be recorded ({e}); check the card")
        })?;
        tracing::info!(order = %id, status = %state.status, user = %who.user, "outcome stored");
        Ok(())
    }

    /// Cancels the running personalization; once a STORE DATA was sent this asks for
    /// confirmation first ([`Command::ConfirmCancel`]: the card is spoiled).
    pub fn cancel_personalization(&mut self) {
        self.perso.cancel();
    }

    /// Scans readers and ports in the background.
    pub fn refresh_devices(&mut self) {
        self.devices.scanning = self.dev_tx.send(()).is_ok();
    }

    /// Chooses the encoder (remembered).
    pub fn select_encoder(&mut self, choice: EncoderChoice) {
        self.remember(SETTING_ENCODER, &choice.to_setting());
        self.devices.encoder = Some(choice);
    }

    /// Chooses the chip reader (remembered).
    pub fn select_reader(&mut self, reader: Option<ReaderChoice>) {
        self.remember(
            SETTING_READER,
            &reader
                .as_ref()
                .map(ReaderChoice::to_setting)
                .unwrap_or_default(),
        );
        self.devices.reader = reader;
    }

    /// Puts a fresh (blank) card in the virtual reader, made for the chip profile of the order
    /// personalized on it; the card that was there is discarded.
    pub fn insert_fresh_card(&mut self) -> Result<(), String> {
        let vr = self.virtual_reader()?;
        let mut r = lock_reader(vr);
        if matches!(r.slot, VirtualSlot::InUse) {
            return Err("the virtual card is in use by a personalization".into());
        }
        r.slot = VirtualSlot::Fresh;
        drop(r);
        if let (Some(store), Some(session)) = (&self.store, &self.session) {
            let _ = store.audit(session, "insert-card", None, "virtual card: fresh card");
        }
        self.info("A fresh card is in the virtual reader");
        Ok(())
    }

    /// Makes the next fresh virtual card fail (tester only).
    pub fn set_card_fault(&mut self, fault: CardFault) -> Result<(), String> {
        self.tester_only("the virtual card")?;
        let vr = self.virtual_reader()?;
        lock_reader(vr).fault = fault;
        Ok(())
    }

    /// Tells the simulated encoder to fail (tester only).
    pub fn set_sim_fault(&mut self, fault: SimFault) -> Result<(), String> {
        self.tester_only("the simulated encoder")?;
        let sim = self
            .devices
            .sim
            .as_ref()
            .ok_or_else(|| "the simulated encoder is not running".to_string())?;
        sim.set_fault(fault);
        self.devices.sim_fault = fault;
        Ok(())
    }

    /// Reads the audit trail for the Log screen.
    pub fn refresh_audit(&mut self) {
        if let Some(store) = &self.store {
            match store.audit_trail(500) {
                Ok(a) => self.log_screen.audit = a,
                Err(e) => self.error(e.to_string()),
            }
        }
    }

    /// Applies one command.
    pub fn apply(&mut self, cmd: Command) {
        let result = match cmd {
            Command::SignIn(role) => {
                self.sign_in(role);
                Ok(())
            }
            Command::SignOut => {
                self.sign_out();
                Ok(())
            }
            Command::Show(screen) => {
                self.screen = screen;
                if screen == Screen::Log {
                    self.refresh_audit();
                }
                Ok(())
            }
            Command::OpenFileDialog => {
                self.open_file_dialog();
                Ok(())
            }
            Command::LoadDemo => {
                self.load(OrderSource::Demo);
                Ok(())
            }
            Command::LoadFile(p) => {
                self.load(OrderSource::File(p));
                Ok(())
            }
            c @ (Command::FilterChanged
            | Command::Select(_)
            | Command::MoveSelection(_)
            | Command::MovePage(_)
            | Command::MoveToEnd(_)) => {
                self.navigate(c);
                Ok(())
            }
            Command::NextReady => self.next_ready(),
            Command::ToggleHelp => {
                self.help_open = !self.help_open;
                Ok(())
            }
            Command::ShowPathField(on) => {
                self.show_path_field(on);
                Ok(())
            }
            Command::PathTyped(text) => {
                if self.path_field.is_some() {
                    self.path_field = Some(text);
                }
                Ok(())
            }
            Command::SetModel(i, m) => self.set_model(i, m),
            Command::Approve(i) => self.approve(i),
            Command::Reject(i, reason) => self.reject(i, &reason),
            Command::Reveal(on) => self.set_reveal(on),
            Command::Personalize(i) => self.personalize(i),
            Command::CancelPerso => {
                self.cancel_personalization();
                Ok(())
            }
            Command::SetChannelOverride(o) => self.set_channel_override(o),
            Command::ConfirmCancel(cancel) => {
                self.perso.confirm_cancel(cancel);
                Ok(())
            }
            Command::RefreshDevices => {
                self.refresh_devices();
                Ok(())
            }
            Command::SelectEncoder(c) => {
                self.select_encoder(c);
                Ok(())
            }
            Command::SelectReader(r) => {
                self.select_reader(r);
                Ok(())
            }
            Command::SetSimFault(f) => self.set_sim_fault(f),
            Command::InsertFreshCard => self.insert_fresh_card(),
            Command::SetCardFault(f) => self.set_card_fault(f),
            Command::RefreshAudit => {
                self.refresh_audit();
                Ok(())
            }
        };
        if let Err(e) = result {
            self.error(e);
        }
    }

    /// The table's filter and selection commands (none of them can fail).
    fn navigate(&mut self, cmd: Command) {
        match cmd {
            Command::FilterChanged => self.refilter(),
            Command::Select(i) => self.select(i),
            Command::MoveSelection(d) => self.move_selection(d),
            Command::MovePage(d) => self.move_page(d),
            Command::MoveToEnd(last) => self.move_to_end(last),
            _ => {}
        }
    }
}

/// Can a system file dialog open here? On Linux rfd needs the desktop portal (a D-Bus session
/// bus) or `zenity`; without both it returns "cancelled" and the user would see nothing.
fn dialog_available() -> Result<(), String> {
    if !cfg!(target_os = "linux") {
        return Ok(());
    }
    let bus = std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some_and(|v| !v.is_empty());
    let zenity = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("zenity").is_file()));
    if bus || zenity {
        Ok(())
    } else {
        Err("no system file dialog: no desktop portal (D-Bus session) and no zenity".into())
    }
}
