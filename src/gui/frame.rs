//! Drawing one frame: the keyboard shortcuts, the top bar, the status bar, the role choice and
//! the screen shown; the commands the frame gives are applied at its end.

use super::*;

impl App {
    fn shortcuts(&self, ctx: &egui::Context, cmds: &mut Vec<Command>) {
        let no_focus = ctx.memory(|m| m.focused().is_none());
        ctx.input_mut(|i| {
            for s in Shortcut::ALL {
                if i.consume_shortcut(&s.keys())
                    && let Some(cmd) = s.command(self.selected)
                {
                    cmds.push(cmd);
                }
            }
            if no_focus && self.screen == Screen::Orders {
                if i.consume_key(egui::Modifiers::NONE, egui::Key::ArrowDown) {
                    cmds.push(Command::MoveSelection(1));
                }
                if i.consume_key(egui::Modifiers::NONE, egui::Key::ArrowUp) {
                    cmds.push(Command::MoveSelection(-1));
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
        let mut cmds = Vec::new();
        if self.session.is_some() {
            self.shortcuts(&ctx, &mut cmds);
        }

        self.top_bar(ui, &mut cmds);
        self.status_bar(ui);
        self.screen_ui(ui, &mut cmds);

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

    /// The status bar: the notice, the encoder, the store.
    fn status_bar(&self, ui: &mut egui::Ui) {
        egui::Panel::bottom("status-bar").show(ui, |ui| {
            ui.horizontal(|ui| {
                match &self.notice {
                    Some(n) if n.error => {
                        ui.colored_label(ui.visuals().error_fg_color, &n.text);
                    }
                    Some(n) => {
                        ui.label(&n.text);
                    }
                    None => {
                        ui.label("Ready");
                    }
                }
                ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                    counter::ui(ui, self.counter.as_ref());
                    let encoder = match &self.devices.encoder {
                        Some(EncoderChoice::Simulated) => "encoder: simulated".to_string(),
                        Some(EncoderChoice::Port(p)) => format!("encoder: {p}"),
                        _ => "encoder: none".to_string(),
                    };
                    ui.label(encoder);
                    ui.separator();
                    if let Some(p) = &self.pool {
                        ui.label(p.status())
                            .on_hover_text("ICC key pairs left in the store's pool (DDA/CDA)");
                        ui.separator();
                    }
                    ui.label(match &self.store {
                        Some(s) => format!("store: {}", s.path().display()),
                        None => "store: memory only".into(),
                    });
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
                        ui.set_min_width(600.0);
                        egui::ScrollArea::both()
                            .id_salt("preview-scroll")
                            .show(ui, |ui| preview::ui(self, &mut preview, ui, cmds));
                    });
                self.preview = preview;
                let mut filter = self.filter.clone();
                egui::CentralPanel::default()
                    .show(ui, |ui| orders::ui(self, &mut filter, ui, cmds));
                self.filter = filter;
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
