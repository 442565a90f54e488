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
    /// Select one page of visible rows down (+1) or up (-1).
    MovePage(i32),
    /// Select the first (false) or last (true) visible row.
    MoveToEnd(bool),
    /// Select the next order ready to personalize (after the selected one, wrapping).
    NextReady,
    /// Show or hide the shortcut sheet (F1).
    ToggleHelp,
    /// Show (true) or close the typed file path field.
    ShowPathField(bool),
    /// The typed file path changed.
    PathTyped(String),
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
    /// Enter in the table, on the selected order.
    PersonalizeSelected,
    /// Ctrl+Shift+A, on the selected order.
    Approve,
    /// Ctrl+N: the next order ready to personalize.
    NextReady,
    /// Arrow down in the table.
    NextRow,
    /// Arrow up in the table.
    PreviousRow,
    /// Page down in the table.
    PageDown,
    /// Page up in the table.
    PageUp,
    /// Home in the table.
    FirstRow,
    /// End in the table.
    LastRow,
    /// Esc.
    Cancel,
    /// F5.
    RefreshDevices,
    /// F1.
    Help,
}

impl Shortcut {
    /// Every shortcut, in the order the F1 sheet lists them.
    pub const ALL: [Shortcut; 15] = [
        Shortcut::OpenFile,
        Shortcut::DemoOrders,
        Shortcut::Personalize,
        Shortcut::PersonalizeSelected,
        Shortcut::Approve,
        Shortcut::NextReady,
        Shortcut::NextRow,
        Shortcut::PreviousRow,
        Shortcut::PageDown,
        Shortcut::PageUp,
        Shortcut::FirstRow,
        Shortcut::LastRow,
        Shortcut::Cancel,
        Shortcut::RefreshDevices,
        Shortcut::Help,
    ];

    /// What it does.
    pub fn label(self) -> &'static str {
        match self {
            Shortcut::OpenFile => "open file",
            Shortcut::DemoOrders => "demo orders",
            Shortcut::Personalize => "personalize",
            Shortcut::PersonalizeSelected => "personalize the selected order (table)",
            Shortcut::Approve => "approve",
            Shortcut::NextReady => "next order ready to personalize",
            Shortcut::NextRow => "next order (table)",
            Shortcut::PreviousRow => "previous order (table)",
            Shortcut::PageDown => "one page down (table)",
            Shortcut::PageUp => "one page up (table)",
            Shortcut::FirstRow => "first order (table)",
            Shortcut::LastRow => "last order (table)",
            Shortcut::Cancel => "cancel",
            Shortcut::RefreshDevices => "refresh devices",
            Shortcut::Help => "show the shortcuts",
        }
    }

    /// Its keys.
    pub fn keys(self) -> egui::KeyboardShortcut {
        use egui::{Key, KeyboardShortcut, Modifiers};
        let plain = |key| KeyboardShortcut::new(Modifiers::NONE, key);
        match self {
            Shortcut::OpenFile => KeyboardShortcut::new(Modifiers::COMMAND, Key::O),
            Shortcut::DemoOrders => KeyboardShortcut::new(Modifiers::COMMAND, Key::D),
            Shortcut::Personalize => KeyboardShortcut::new(Modifiers::COMMAND, Key::P),
            Shortcut::PersonalizeSelected => plain(Key::Enter),
            Shortcut::Approve => {
                KeyboardShortcut::new(Modifiers::COMMAND.plus(Modifiers::SHIFT), Key::A)
            }
            Shortcut::NextReady => KeyboardShortcut::new(Modifiers::COMMAND, Key::N),
            Shortcut::NextRow => plain(Key::ArrowDown),
            Shortcut::PreviousRow => plain(Key::ArrowUp),
            Shortcut::PageDown => plain(Key::PageDown),
            Shortcut::PageUp => plain(Key::PageUp),
            Shortcut::FirstRow => plain(Key::Home),
            Shortcut::LastRow => plain(Key::End),
            Shortcut::Cancel => plain(Key::Escape),
            Shortcut::RefreshDevices => plain(Key::F5),
            Shortcut::Help => plain(Key::F1),
        }
    }

    /// Its keys as text (`Ctrl+Shift+A`), for hover texts and the F1 sheet.
    pub fn text(self) -> String {
        self.keys().format(&egui::ModifierNames::NAMES, false)
    }

    /// Only on the Orders screen with no text field focused (the table's keys).
    pub fn in_table(self) -> bool {
        matches!(
            self,
            Shortcut::PersonalizeSelected
                | Shortcut::NextRow
                | Shortcut::PreviousRow
                | Shortcut::PageDown
                | Shortcut::PageUp
                | Shortcut::FirstRow
                | Shortcut::LastRow
        )
    }

    /// The command it gives, with the `selected` row for those that act on one.
    pub fn command(self, selected: Option<usize>) -> Option<Command> {
        match self {
            Shortcut::OpenFile => Some(Command::OpenFileDialog),
            Shortcut::DemoOrders => Some(Command::LoadDemo),
            Shortcut::Personalize | Shortcut::PersonalizeSelected => {
                selected.map(Command::Personalize)
            }
            Shortcut::Approve => selected.map(Command::Approve),
            Shortcut::NextReady => Some(Command::NextReady),
            Shortcut::NextRow => Some(Command::MoveSelection(1)),
            Shortcut::PreviousRow => Some(Command::MoveSelection(-1)),
            Shortcut::PageDown => Some(Command::MovePage(1)),
            Shortcut::PageUp => Some(Command::MovePage(-1)),
            Shortcut::FirstRow => Some(Command::MoveToEnd(false)),
            Shortcut::LastRow => Some(Command::MoveToEnd(true)),
            Shortcut::Cancel => Some(Command::CancelPerso),
            Shortcut::RefreshDevices => Some(Command::RefreshDevices),
            Shortcut::Help => Some(Command::ToggleHelp),
        }
    }

    /// `label (keys)`, the hover text of a button that has this shortcut.
    pub fn hover(self) -> String {
        format!("{} ({})", self.label(), self.text())
    }
}
