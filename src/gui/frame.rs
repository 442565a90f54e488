//! Drawing one frame: the keyboard shortcuts, the top bar, the status bar, the role choice and
//! the screen shown; the commands the frame gives are applied at its end.

use super::*;

impl App {
    fn shortcuts(&self, ctx: &egui::Context, cmds: &mut Vec<Command>) {
        let no_focus = ctx.memory(|m| m.focused().is_none());
        let table_keys = no_focus && self.screen == Screen::Orders;
        ctx.input_mut(|i| {
            for s in Shortcut::ALL {
                if s.in_table() && !table_keys {
                    continue;
                }
                if i.consume_shortcut(&s.keys())
                    && let Some(cmd) = s.command(self.selected)
                {
                    cmds.push(cmd);
                }
            }
            for f in &i.raw.dropped_files {
                let p = f.path();
                if !p.as_os_str().is_empty() {
                    cmds.push(Command::LoadFile(p.to_path_buf()));
                }
            }
        });
    }

    /// The F1 sheet: every shortcut, read from [`Shortcut::ALL`].
    fn help_window(&mut self, ctx: &egui::Context) {
        let mut open = self.help_open;
        egui::Window::new("Keyboard shortcuts")
            .open(&mut open)
            .collapsible(false)
            .resizable(false)
            .show(ctx, |ui| {
                egui::Grid::new("shortcut-sheet")
                    .num_columns(2)
                    .striped(true)
                    .show(ui, |ui| {
                        for s in Shortcut::ALL {
                            ui.monospace(s.text());
                            ui.label(s.label());
                            ui.end_row();
                        }
                    });
            });
        self.help_open = open && self.help_open;
    }

    /// Masks revealed clear values again once the configured time has passed (egui's clock),
    /// and keeps the banner's countdown ticking.
    fn reveal_timer(&mut self, ctx: &egui::Context) {
        if !self.preview.revealed {
            return;
        }
        let now = ctx.input(|i| i.time);
        let at = *self.preview.revealed_at.get_or_insert(now);
        let left = self.reveal_timeout.as_secs_f64() - (now - at);
        if left <= 0.0 {
            self.mask_again();
            self.info("Clear values masked again (time out)");
        } else {
            ctx.request_repaint_after(Duration::from_secs_f64(left.min(1.0)));
        }
    }

    fn role_choice(ui: &mut egui::Ui, user: &str, cmds: &mut Vec<Command>) {
        ui.vertical_centered(|ui| {
            ui.add_space(80.0);
            ui.heading("persodesk");
            ui.label("Card personalization workstation");
            ui.add_space(24.0);
            ui.label(format!("Signed in as {user}. Choose your role:"));
            ui.add_space(12.0);
            for (role, what) in [
                (Role::Operator, "personalizes approved orders"),
                (
                    Role::Supervisor,
                    "reviews masked previews, approves or rejects",
                ),
                (
                    Role::Tester,
                    "test keys and simulated devices, without approval",
                ),
            ] {
                let b =
                    egui::Button::new(format!("Work as {role}")).min_size(egui::vec2(260.0, 32.0));
                if ui.add(b).on_hover_text(what).clicked() {
                    cmds.push(Command::SignIn(role));
                }
                ui.label(what);
                ui.add_space(8.0);
            }
        });
    }

    /// Draws one frame and applies the commands it produced.
    pub fn draw(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        self.waker.set(&ctx);
        self.poll();
        if let Some(p) = &self.pool {
            p.set_idle(!self.busy());
        }
        self.reveal_timer(&ctx);
        let mut cmds = Vec::new();
        if self.session.is_some() {
            self.shortcuts(&ctx, &mut cmds);
        }

        self.top_bar(ui, &mut cmds);
        self.status_bar(ui);
        self.screen_ui(ui, &mut cmds);
        if self.help_open {
            self.help_window(&ctx);
        }
        self.scroll_to_selected = false;

        for cmd in cmds {
            self.apply(cmd);
        }
        if self.busy() {
            ctx.request_repaint_after(Duration::from_millis(200));
        }
    }

    /// The top bar: mode, screens, who is working.
    fn top_bar(&self, ui: &mut egui::Ui, cmds: &mut Vec<Command>) {
        egui::Panel::top("top-bar").show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.strong("persodesk");
                match self.mode {
                    Mode::Production => {
                        ui.colored_label(ui.visuals().warn_fg_color, "PRODUCTION")
                            .on_hover_text("live keys and orders; no demo data, no reveal");
                    }
                    Mode::Test => {
                        ui.label("TEST MODE")
                            .on_hover_text("demo orders, test keys and simulated devices allowed");
                    }
                }
                ui.separator();
                if self.session.is_some() {
                    for s in Screen::ALL {
                        if ui.selectable_label(self.screen == s, s.label()).clicked() {
                            cmds.push(Command::Show(s));
                        }
                    }
                }
                ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                    if let Some(s) = &self.session {
                        if ui.button("Switch role").clicked() {
                            cmds.push(Command::SignOut);
                        }
                        ui.label(format!("{} ({})", s.user, s.role));
                    }
                });
            });
        });
    }

    /// The status bar: the encoder and the store on the right, laid out first so that the
    /// notice, on the left, gets only the room that is left and is cut with `…` there (the full
    /// text on hover) instead of overprinting them.
    fn status_bar(&self, ui: &mut egui::Ui) {
        egui::Panel::bottom("status-bar").show(ui, |ui| {
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                let encoder = match &self.devices.encoder {
                    Some(EncoderChoice::Simulated) => "encoder: simulated".to_string(),
                    Some(EncoderChoice::Port(p)) => format!("encoder: {p}"),
                    _ => "encoder: none".to_string(),
                };
                let store = match &self.store {
                    Some(s) => format!("store: {}", s.path().display()),
                    None => "store: memory only".into(),
                };
                ui.add(egui::Label::new(&store).truncate())
                    .on_hover_text(&store);
                ui.separator();
                if let Some(p) = &self.pool {
                    ui.label(p.status())
                        .on_hover_text("ICC key pairs left in the store's pool (DDA/CDA)");
                    ui.separator();
                }
                ui.label(encoder);
                ui.separator();
                counter::ui(ui, self.counter.as_ref());
                ui.with_layout(egui::Layout::left_to_right(egui::Align::Center), |ui| {
                    let (text, colour) = match &self.notice {
                        Some(n) if n.error => (n.text.as_str(), Some(ui.visuals().error_fg_color)),
                        Some(n) => (n.text.as_str(), None),
                        None => ("Ready", None),
                    };
                    let mut rich = egui::RichText::new(text);
                    if let Some(c) = colour {
                        rich = rich.color(c);
                    }
                    ui.add(egui::Label::new(rich).truncate())
                        .on_hover_text(text);
                });
            });
        });
    }

    /// The role choice, or the screen shown.
    fn screen_ui(&mut self, ui: &mut egui::Ui, cmds: &mut Vec<Command>) {
        match (&self.session, self.screen) {
            (None, _) => {
                let user = self.user.clone();
                egui::CentralPanel::default().show(ui, |ui| Self::role_choice(ui, &user, cmds));
            }
            (Some(_), Screen::Orders) => {
                let mut preview = std::mem::take(&mut self.preview);
                egui::Panel::right("preview")
                    .resizable(true)
                    .default_size(620.0)
                    .min_size(380.0)
                    .max_size(780.0)
                    .show(ui, |ui| {
                        egui::ScrollArea::vertical()
                            .id_salt("preview-scroll")
                            .auto_shrink([false, true])
                            .show(ui, |ui| {
                                // Every text wraps at the panel's width: a long line (a card
                                // check's reason, a DGI's value) must not widen the panel.
                                ui.style_mut().wrap_mode = Some(egui::TextWrapMode::Wrap);
                                preview::ui(self, &mut preview, ui, cmds)
                            });
                    });
                self.preview = preview;
                let mut filter = self.filter.clone();
                let page = egui::CentralPanel::default()
                    .show(ui, |ui| {
                        // The table never reaches into the preview: what does not fit is cut
                        // here, so it can neither cover nor take the clicks of the preview's
                        // buttons (its first columns, order, PAN and status, stay visible).
                        ui.set_clip_rect(ui.max_rect().intersect(ui.clip_rect()));
                        orders::ui(self, &mut filter, ui, cmds)
                    })
                    .inner;
                self.filter = filter;
                self.page_rows = page;
            }
            (Some(s), Screen::Devices) => {
                let role = Some(s.role);
                let current = self.channel_override;
                egui::CentralPanel::default().show(ui, |ui| {
                    self.devices.ui(ui, role, cmds);
                    channel::ui(ui, role, current, cmds);
                });
            }
            (Some(_), Screen::Personalize) => {
                egui::CentralPanel::default().show(ui, |ui| self.perso.ui(ui, cmds));
            }
            (Some(_), Screen::Log) => {
                let logs = self.logs.clone();
                egui::CentralPanel::default().show(ui, |ui| self.log_screen.ui(ui, &logs, cmds));
            }
        }
    }
}
