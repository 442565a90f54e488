//! What the user asks for: every [`Command`] a screen or the keyboard gives (applied at the end of
//! the frame by [`App::apply`](super::App::apply)), and the keyboard [`Shortcut`]s, each owning its
//! label and keys (the F1 sheet reads [`Shortcut::ALL`]); no dispatch on strings.

use std::path::PathBuf;

use crate::domain::chip::ChipModel;
use crate::domain::review::Role;
use crate::sim::encoder::SimFault;

use super::Screen;
use super::devices::{CardFault, EncoderChoice, ReaderChoice};

/// An action asked for by the user, applied at the end of the frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Start working in a role.
    SignIn(Role),
    /// Back to the role choice.
    SignOut,
    /// Show a screen.
    Show(Screen),
    /// Open the file dialog (on a thread).
    OpenFileDialog,
    /// Load the embedded demo orders.
    LoadDemo,
    /// Load an order file.
    LoadFile(PathBuf),
    /// The filter changed.
    FilterChanged,
    /// Select a row.
    Select(usize),
    /// Select the next (+1) or previous (-1) visible row.
    MoveSelection(i32),
    /// Choose the chip model of a row.
    SetModel(usize, ChipModel),
    /// Approve a row (supervisor).
    Approve(usize),
    /// Reject a row with a reason (supervisor).
    Reject(usize, String),
    /// Show or hide clear values (tester, test keys).
    Reveal(bool),
    /// Personalize a row.
    Personalize(usize),
    /// Cancel the running personalization.
    CancelPerso,
    /// The answer to "cancel after the chip was written?": `true` cancels (the card is spoiled).
    ConfirmCancel(bool),
    /// A tester's secure channel override (refused for other roles).
    SetChannelOverride(crate::job::ChannelOverride),
    /// Scan readers and ports again.
    RefreshDevices,
    /// Choose the encoder.
    SelectEncoder(EncoderChoice),
    /// Choose the chip reader.
    SelectReader(Option<ReaderChoice>),
    /// Put a fresh card in the virtual reader.
    InsertFreshCard,
    /// Make the next fresh virtual card fail (tester).
    SetCardFault(CardFault),
    /// Make the simulated encoder fail (tester).
    SetSimFault(SimFault),
    /// Read the audit trail again.
    RefreshAudit,
}

/// A command the keyboard gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shortcut {
    /// Ctrl+O.
    OpenFile,
    /// Ctrl+D.
    DemoOrders,
    /// Ctrl+P, on the selected order.
    Personalize,
    /// Ctrl+Shift+A, on the selected order.
    Approve,
    /// Esc.
    Cancel,
    /// F5.
    RefreshDevices,
}

impl Shortcut {
    /// Every shortcut, in the order the F1 sheet lists them.
    pub const ALL: [Shortcut; 6] = [
        Shortcut::OpenFile,
        Shortcut::DemoOrders,
        Shortcut::Personalize,
        Shortcut::Approve,
        Shortcut::Cancel,
        Shortcut::RefreshDevices,
    ];

    /// What it does.
    pub fn label(self) -> &'static str {
        match self {
            Shortcut::OpenFile => "open file",
            Shortcut::DemoOrders => "demo orders",
            Shortcut::Personalize => "personalize",
            Shortcut::Approve => "approve",
            Shortcut::Cancel => "cancel",
            Shortcut::RefreshDevices => "refresh devices",
        }
    }

    /// Its keys.
    pub fn keys(self) -> egui::KeyboardShortcut {
        use egui::{Key, KeyboardShortcut, Modifiers};
        match self {
            Shortcut::OpenFile => KeyboardShortcut::new(Modifiers::COMMAND, Key::O),
            Shortcut::DemoOrders => KeyboardShortcut::new(Modifiers::COMMAND, Key::D),
            Shortcut::Personalize => KeyboardShortcut::new(Modifiers::COMMAND, Key::P),
            Shortcut::Approve => {
                KeyboardShortcut::new(Modifiers::COMMAND.plus(Modifiers::SHIFT), Key::A)
            }
            Shortcut::Cancel => KeyboardShortcut::new(Modifiers::NONE, Key::Escape),
            Shortcut::RefreshDevices => KeyboardShortcut::new(Modifiers::NONE, Key::F5),
        }
    }

    /// The command it gives, with the `selected` row for those that act on one.
    pub fn command(self, selected: Option<usize>) -> Option<Command> {
        match self {
            Shortcut::OpenFile => Some(Command::OpenFileDialog),
            Shortcut::DemoOrders => Some(Command::LoadDemo),
            Shortcut::Personalize => selected.map(Command::Personalize),
            Shortcut::Approve => selected.map(Command::Approve),
            Shortcut::Cancel => Some(Command::CancelPerso),
            Shortcut::RefreshDevices => Some(Command::RefreshDevices),
        }
    }
}
