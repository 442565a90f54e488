//! The tester's secure channel override on the Devices screen (the window's `--scp` and
//! `--kmc-index`): the protocol and "i", and the KMC index of the key store, instead of the chip
//! profile's `[channel]`. Only a tester sees the widget; [`super::App::set_channel_override`]
//! refuses other roles, and the job refuses an override it is not allowed.

use crate::domain::gp::session::Protocol;
use crate::domain::review::Role;
use crate::job::ChannelOverride;

use super::Command;

/// The protocols a tester may choose (the ones the virtual card and the session implement).
pub const PROTOCOLS: [Protocol; 5] = [
    Protocol::Scp02 { i: 0x15 },
    Protocol::Scp02 { i: 0x55 },
    Protocol::Scp03 { i: 0x00 },
    Protocol::Scp03 { i: 0x10 },
    Protocol::Scp03 { i: 0x70 },
];

/// Draws the override for a tester; other roles see that the chip profile decides.
pub fn ui(
    ui: &mut egui::Ui,
    role: Option<Role>,
    current: ChannelOverride,
    cmds: &mut Vec<Command>,
) {
    ui.separator();
    ui.strong("Secure channel");
    if role != Some(Role::Tester) {
        ui.label("The chip profile's [channel] (overrides are for testers only).");
        return;
    }
    ui.horizontal_wrapped(|ui| {
        ui.label("Protocol (tester override):");
        if ui
            .radio(current.protocol.is_none(), "Chip profile's")
            .clicked()
        {
            cmds.push(Command::SetChannelOverride(ChannelOverride {
                protocol: None,
                ..current
            }));
        }
        for p in PROTOCOLS {
            if ui
                .radio(current.protocol == Some(p), p.to_string())
                .clicked()
            {
                cmds.push(Command::SetChannelOverride(ChannelOverride {
                    protocol: Some(p),
                    ..current
                }));
            }
        }
    });
    ui.horizontal(|ui| {
        let mut on = current.kmc_index.is_some();
        if ui.checkbox(&mut on, "KMC index override").changed() {
            cmds.push(Command::SetChannelOverride(ChannelOverride {
                kmc_index: on.then_some(current.kmc_index.unwrap_or(1)),
                ..current
            }));
        }
        if let Some(i) = current.kmc_index {
            let mut index = i;
            if ui
                .add(
                    egui::DragValue::new(&mut index)
                        .range(1..=99)
                        .prefix("kmc #"),
                )
                .changed()
            {
                cmds.push(Command::SetChannelOverride(ChannelOverride {
                    kmc_index: Some(index),
                    ..current
                }));
            }
        }
    });
    if !current.is_empty() {
        ui.colored_label(
            ui.visuals().warn_fg_color,
            "The next personalization uses this channel instead of the chip profile's.",
        );
    }
}
