//! Drawing the [`UiModel`]: every function here only reads the model, draws, and calls the
//! model's intent methods when the user does something. No IO, no engine calls.
//!
//! Every control has an accessible name (AccessKit), which is also how the tests find them.

use super::model::{
    AudioDevice, AudioDevices, Authorization, CallPhase, CallView, Contact, LoginMode, MyStatus,
    Now, Quality, SYSTEM_DEFAULT_DEVICE, Screen, TEXT_SCALE_RANGE, Tick, ToastKind, UiModel,
    format_clock, format_duration, meter_fill,
};
use super::{resources, theme};
use crate::events::{EndReason, PathKind, Status};
use egui::{
    Align, Align2, Button, Color32, Frame, Id, Key, KeyboardShortcut, Layout, Modifiers, RichText,
    ScrollArea, Sense, Stroke, TextEdit, Vec2,
};
use proto::UserName;

/// Id of the contact search box (Ctrl+F focuses it).
pub const SEARCH_ID: &str = "contact-search";
/// Id of the message input.
pub const MESSAGE_ID: &str = "message-input";

/// Draws the whole app.
pub fn app_ui(ui: &mut egui::Ui, model: &mut UiModel, now: Now) {
    match model.screen {
        Screen::Login => login_ui(ui, model),
        Screen::Main => main_ui(ui, model, now),
    }
    incoming_call_ui(ui, model);
    toasts_ui(ui, model);
}

// ----- login -----

fn login_ui(ui: &mut egui::Ui, model: &mut UiModel) {
    egui::CentralPanel::default().show(ui, |ui| {
        ui.vertical_centered(|ui| {
            ui.add_space((ui.available_height() * 0.08).max(8.0));
            let icon = resources::icon_texture(ui.ctx());
            ui.add(
                egui::Image::new(&icon)
                    .fit_to_exact_size(Vec2::splat(72.0))
                    .alt_text("Peerphone logo"),
            );
            ui.heading(RichText::new("Peerphone").size(28.0).strong());
            ui.label(RichText::new("Calls and chat, peer to peer").color(theme::MUTED_TEXT));
            ui.add_space(12.0);
            Frame::group(ui.style())
                .fill(Color32::WHITE)
                .corner_radius(theme::ROUNDING)
                .inner_margin(egui::Margin::same(18))
                .show(ui, |ui| {
                    ui.set_width(320.0);
                    login_form_ui(ui, model);
                });
            ui.add_space(10.0);
            if let Some(network) = &model.network {
                let text = if network.embedded {
                    format!(
                        "Built-in local network on {}: accounts live on this computer only.",
                        network.login_server
                    )
                } else {
                    format!("Login server {}", network.login_server)
                };
                ui.label(RichText::new(text).color(theme::MUTED_TEXT));
                if let Some(echo) = &network.echo_user {
                    ui.label(
                        RichText::new(format!(
                            "After signing in, call \u{201c}{echo}\u{201d} to test your microphone and speaker."
                        ))
                        .color(theme::MUTED_TEXT),
                    );
                }
            }
            server_form_ui(ui, model);
        });
    });
}

fn login_form_ui(ui: &mut egui::Ui, model: &mut UiModel) {
    ui.horizontal(|ui| {
        let form = &mut model.login;
        ui.selectable_value(&mut form.mode, LoginMode::Register, "New account");
        ui.selectable_value(&mut form.mode, LoginMode::Login, "I have an account");
    });
    ui.separator();
    let register = model.login.mode == LoginMode::Register;
    let mut submit = false;
    egui::Grid::new("login-grid")
        .num_columns(2)
        .spacing([10.0, 8.0])
        .show(ui, |ui| {
            let label = ui.label("User name");
            let r = ui.add(
                TextEdit::singleline(&mut model.login.user)
                    .hint_text("e.g. alice")
                    .desired_width(200.0),
            );
            submit |= entered(ui, &r);
            r.labelled_by(label.id);
            ui.end_row();
            if register {
                let label = ui.label("Display name");
                let r = ui.add(
                    TextEdit::singleline(&mut model.login.display_name)
                        .hint_text("optional")
                        .desired_width(200.0),
                );
                submit |= entered(ui, &r);
                r.labelled_by(label.id);
                ui.end_row();
            }
            let label = ui.label("Password");
            let r = ui.add(
                TextEdit::singleline(&mut model.login.password)
                    .password(true)
                    .desired_width(200.0),
            );
            submit |= entered(ui, &r);
            r.labelled_by(label.id);
            ui.end_row();
        });
    if let Some(error) = &model.login.error {
        ui.add_space(4.0);
        ui.label(RichText::new(error).color(theme::DANGER));
    }
    ui.add_space(8.0);
    let text = match (model.login.busy, register) {
        (true, true) => "Creating account…",
        (true, false) => "Signing in…",
        (false, true) => "Create account and sign in",
        (false, false) => "Sign in",
    };
    let button = Button::new(RichText::new(text).color(Color32::WHITE).strong())
        .fill(theme::ACCENT)
        .min_size(Vec2::new(ui.available_width(), 32.0));
    if ui.add_enabled(!model.login.busy, button).clicked() || submit {
        model.submit_login();
    }
}

/// "Use another login server": address and authority key.
fn server_form_ui(ui: &mut egui::Ui, model: &mut UiModel) {
    ui.add_space(10.0);
    // A fixed-width column, centred like the card above it.
    let width = 360.0;
    ui.allocate_ui_with_layout(Vec2::new(width, 0.0), Layout::top_down(Align::Min), |ui| {
        ui.set_width(width);
        server_form_inner_ui(ui, model);
    });
}

fn server_form_inner_ui(ui: &mut egui::Ui, model: &mut UiModel) {
    egui::CollapsingHeader::new("Use another login server")
        .default_open(false)
        .show(ui, |ui| {
            egui::Grid::new("server-grid")
                .num_columns(2)
                .spacing([10.0, 8.0])
                .show(ui, |ui| {
                    let label = ui.label("Login server");
                    ui.add(
                        TextEdit::singleline(&mut model.login.server_addr)
                            .hint_text("203.0.113.5:7400")
                            .desired_width(240.0),
                    )
                    .labelled_by(label.id);
                    ui.end_row();
                    let label = ui.label("Authority key");
                    ui.add(
                        TextEdit::singleline(&mut model.login.server_key)
                            .hint_text("from login-server authority-key")
                            .desired_width(240.0),
                    )
                    .labelled_by(label.id);
                    ui.end_row();
                });
            if ui
                .add_enabled(!model.login.busy, Button::new("Use this server"))
                .clicked()
            {
                model.use_server();
            }
        });
}

/// Enter pressed in a single-line field.
fn entered(ui: &egui::Ui, r: &egui::Response) -> bool {
    r.lost_focus() && ui.input(|i| i.key_pressed(Key::Enter))
}

// ----- main window -----

fn main_ui(ui: &mut egui::Ui, model: &mut UiModel, now: Now) {
    if ui.input_mut(|i| i.consume_shortcut(&KeyboardShortcut::new(Modifiers::COMMAND, Key::F))) {
        ui.memory_mut(|m| m.request_focus(Id::unique(SEARCH_ID)));
    }
    egui::Panel::top("top-bar")
        .frame(
            Frame::new()
                .fill(theme::ACCENT)
                .inner_margin(egui::Margin::symmetric(10, 6)),
        )
        .show(ui, |ui| top_bar_ui(ui, model));
    egui::Panel::left("contacts")
        .resizable(true)
        .default_size(270.0)
        .size_range(220.0..=420.0)
        .frame(
            Frame::new()
                .fill(theme::SIDEBAR)
                .inner_margin(theme::PANEL_MARGIN),
        )
        .show(ui, |ui| sidebar_ui(ui, model, now));
    egui::CentralPanel::default()
        .frame(
            Frame::new()
                .fill(theme::PANEL)
                .inner_margin(theme::PANEL_MARGIN),
        )
        .show(ui, |ui| {
            if model.call.is_some() {
                call_bar_ui(ui, model, now);
                ui.add_space(8.0);
            } else if let Some(last) = &model.last_call {
                let text = format!(
                    "Last call with {}: {} · {}",
                    last.peer,
                    format_duration(std::time::Duration::from_secs_f64(
                        last.stats.duration_s.max(0.0)
                    )),
                    end_reason_text(last.reason),
                );
                ui.label(RichText::new(text).color(theme::MUTED_TEXT));
                ui.add_space(4.0);
            }
            match model.selected.clone() {
                Some(peer) => conversation_ui(ui, model, now, &peer),
                None => welcome_ui(ui, model, now),
            }
        });
    settings_ui(ui, model, now);
}

fn top_bar_ui(ui: &mut egui::Ui, model: &mut UiModel) {
    ui.horizontal(|ui| {
        let (rect, _) = ui.allocate_exact_size(Vec2::splat(16.0), Sense::hover());
        ui.painter()
            .circle_filled(rect.center(), 8.0, Color32::WHITE);
        theme::paint_presence(ui.painter(), rect.center(), model.my_status.shown_as());
        let me = model.me.as_ref().map(|u| u.to_string()).unwrap_or_default();
        ui.label(RichText::new(me).color(Color32::WHITE).strong().size(16.0));
        let mut status = model.my_status;
        let combo = egui::ComboBox::from_id_salt("my-status")
            .selected_text(status.label())
            .width(140.0)
            .show_ui(ui, |ui| {
                for s in MyStatus::ALL {
                    ui.selectable_value(&mut status, s, s.label());
                }
            });
        combo.response.accessible_name("My status");
        model.set_my_status(status);
        let message = ui
            .add(
                TextEdit::singleline(&mut model.status_message)
                    .hint_text("Status message: say what you're up to")
                    .char_limit(proto::supernode::MAX_STATUS_MESSAGE_CHARS)
                    .desired_width(230.0),
            )
            .accessible_name("Status message")
            .on_hover_text("Your contacts see this next to your name (Enter to publish)");
        if message.lost_focus() {
            model.submit_status_message();
        }
        ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
            let settings = Button::new(RichText::new("Settings").color(Color32::WHITE))
                .fill(Color32::from_white_alpha(30));
            if ui.add(settings).clicked() {
                model.toggle_settings();
            }
        });
    });
}

fn sidebar_ui(ui: &mut egui::Ui, model: &mut UiModel, now: Now) {
    ui.horizontal(|ui| {
        let find_width = 48.0;
        let r = ui.add(
            TextEdit::singleline(&mut model.filter)
                .id(Id::unique(SEARCH_ID))
                .hint_text("Search (Ctrl+F)")
                .desired_width(ui.available_width() - find_width - 8.0),
        );
        let find = ui.add_sized(Vec2::new(find_width, 26.0), Button::new("Find"));
        let r = r.accessible_name("Search contacts");
        if r.changed() && model.filter.trim().is_empty() {
            model.clear_search();
        }
        if entered(ui, &r) || find.on_hover_text("Search the directory").clicked() {
            model.search_directory();
        }
    });
    ui.add_space(6.0);

    ScrollArea::vertical()
        .auto_shrink([false, false])
        .show(ui, |ui| {
            if model.search.pending || !model.search.results.is_empty() {
                section_heading(ui, "Directory");
                if model.search.pending {
                    ui.horizontal(|ui| {
                        ui.spinner();
                        ui.label("Searching…");
                    });
                }
                let results = model.search.results.clone();
                if results.is_empty() && !model.search.pending {
                    ui.label(RichText::new("No one found").color(theme::MUTED_TEXT));
                }
                for result in results {
                    ui.horizontal(|ui| {
                        presence_marker_ui(ui, &result.user, result.status);
                        ui.label(&result.display_name);
                        ui.label(RichText::new(result.user.as_str()).color(theme::MUTED_TEXT));
                        ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
                            let known = model.contacts.contains_key(&result.user)
                                || model.me.as_ref() == Some(&result.user);
                            let add = ui
                                .add_enabled(!known, Button::new("Add"))
                                .accessible_name(format!("Add {}", result.user));
                            if add.clicked() {
                                model.add_contact(now, result.user.clone());
                            }
                        });
                    });
                }
                ui.separator();
            }

            if !model.requests.is_empty() {
                section_heading(ui, "Contact requests");
                for user in model.requests.clone() {
                    ui.horizontal(|ui| {
                        ui.label(RichText::new(user.as_str()).strong());
                        ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
                            if ui
                                .button("Decline")
                                .accessible_name(format!("Decline {user}"))
                                .clicked()
                            {
                                model.decline_request(user.clone());
                            }
                            if ui
                                .add(
                                    Button::new(RichText::new("Accept").color(Color32::WHITE))
                                        .fill(theme::SUCCESS),
                                )
                                .accessible_name(format!("Accept {user}"))
                                .clicked()
                            {
                                model.accept_request(user.clone());
                            }
                        });
                    });
                }
                ui.separator();
            }

            section_heading(ui, "Contacts");
            let contacts: Vec<Contact> = model.visible_contacts().into_iter().cloned().collect();
            if contacts.is_empty() {
                ui.label(
                    RichText::new(if model.contacts.is_empty() {
                        "No contacts yet. Search for someone by name and add them."
                    } else {
                        "No contact matches."
                    })
                    .color(theme::MUTED_TEXT),
                );
            }
            for contact in contacts {
                contact_row_ui(ui, model, now, &contact);
            }
        });
}

fn section_heading(ui: &mut egui::Ui, text: &str) {
    ui.add_space(2.0);
    ui.label(RichText::new(text).strong().color(theme::MUTED_TEXT));
}

/// A presence marker with an accessible name ("bob is online").
fn presence_marker_ui(ui: &mut egui::Ui, user: &UserName, status: Status) {
    let (rect, response) =
        ui.allocate_exact_size(Vec2::splat(theme::PRESENCE_SIZE + 2.0), Sense::hover());
    theme::paint_presence(ui.painter(), rect.center(), status);
    let label = format!("{user} is {}", theme::status_label(status));
    response.on_hover_text(label.clone()).accessible_name(label);
}

fn contact_row_ui(ui: &mut egui::Ui, model: &mut UiModel, now: Now, contact: &Contact) {
    let selected = model.selected.as_ref() == Some(&contact.user);
    let fill = if selected {
        theme::ACCENT_LIGHT
    } else {
        Color32::TRANSPARENT
    };
    Frame::new()
        .fill(fill)
        .corner_radius(theme::ROUNDING)
        .inner_margin(egui::Margin::symmetric(6, 4))
        .show(ui, |ui| {
            ui.horizontal(|ui| {
                presence_marker_ui(ui, &contact.user, contact.status);
                ui.vertical(|ui| {
                    let name = ui
                        .add(
                            Button::new(RichText::new(&contact.display_name).strong()).frame(false),
                        )
                        .on_hover_text(format!("Chat with {}", contact.display_name))
                        .accessible_name(format!("Chat with {}", contact.user));
                    if name.clicked() {
                        model.select(&contact.user);
                    }
                    let sub = match contact.authorization {
                        Authorization::Contact if !contact.status_message.is_empty() => format!(
                            "{} · {}",
                            theme::status_label(contact.status),
                            contact.status_message
                        ),
                        Authorization::Contact => theme::status_label(contact.status).to_string(),
                        Authorization::Requested => "waiting for authorization".to_string(),
                    };
                    ui.label(RichText::new(sub).size(12.0).color(theme::MUTED_TEXT));
                });
                ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
                    let call = ui
                        .add_enabled(
                            model.call.is_none(),
                            Button::new(RichText::new("📞").color(theme::SUCCESS)),
                        )
                        .on_hover_text(format!("Call {}", contact.display_name))
                        .accessible_name(format!("Call {}", contact.user));
                    if call.clicked() {
                        model.dial(now, contact.user.clone());
                        model.select(&contact.user);
                    }
                    let unread = model.unread(&contact.user);
                    if unread > 0 {
                        unread_badge_ui(ui, unread);
                    }
                });
            });
        });
}

fn unread_badge_ui(ui: &mut egui::Ui, unread: u32) {
    let text = if unread > 99 {
        "99+".to_string()
    } else {
        unread.to_string()
    };
    let galley = egui::WidgetText::from(RichText::new(text).size(11.0).strong()).into_galley(
        ui,
        Some(egui::TextWrapMode::Extend),
        f32::INFINITY,
        egui::TextStyle::Small,
    );
    let size = Vec2::new((galley.size().x + 10.0).max(18.0), 18.0);
    let (rect, response) = ui.allocate_exact_size(size, Sense::hover());
    ui.painter().rect_filled(rect, 9.0, theme::BUSY);
    ui.painter()
        .galley(rect.center() - galley.size() / 2.0, galley, Color32::WHITE);
    response.accessible_name(format!("{unread} unread"));
}

fn welcome_ui(ui: &mut egui::Ui, model: &mut UiModel, now: Now) {
    ui.vertical_centered(|ui| {
        ui.add_space(ui.available_height() * 0.25);
        ui.heading("Welcome to Peerphone");
        ui.label(
            RichText::new("Pick a contact on the left to chat or call.").color(theme::MUTED_TEXT),
        );
        if let Some(echo) = model.network.as_ref().and_then(|n| n.echo_user.clone())
            && model.call.is_none()
        {
            ui.add_space(10.0);
            let button = Button::new(
                RichText::new("📞  Call the echo test service")
                    .color(Color32::WHITE)
                    .strong(),
            )
            .fill(theme::SUCCESS)
            .min_size(Vec2::new(0.0, theme::CALL_BUTTON_HEIGHT));
            if ui
                .add_enabled(model.call.is_none(), button)
                .on_hover_text("It sends back what it hears: a quick microphone and speaker test")
                .clicked()
            {
                model.dial(now, echo);
            }
        }
    });
}

fn conversation_ui(ui: &mut egui::Ui, model: &mut UiModel, now: Now, peer: &UserName) {
    let contact = model.contacts.get(peer).cloned();
    let status = contact.as_ref().map_or(Status::Offline, |c| c.status);
    let display_name = contact
        .as_ref()
        .map_or_else(|| peer.to_string(), |c| c.display_name.clone());
    ui.horizontal(|ui| {
        presence_marker_ui(ui, peer, status);
        ui.heading(&display_name);
        let mut sub = format!("{peer} · {}", theme::status_label(status));
        if let Some(message) = contact
            .as_ref()
            .map(|c| c.status_message.as_str())
            .filter(|m| !m.is_empty())
        {
            sub.push_str(&format!(" · \u{201c}{message}\u{201d}"));
        }
        ui.label(RichText::new(sub).color(theme::MUTED_TEXT));
        ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
            let button = Button::new(RichText::new("📞 Call").color(Color32::WHITE).strong())
                .fill(theme::SUCCESS);
            if ui
                .add_enabled(model.call.is_none(), button)
                .accessible_name(format!("Call {peer}"))
                .clicked()
            {
                model.dial(now, peer.clone());
            }
        });
    });
    ui.separator();

    let input_height = 44.0;
    let history_height = (ui.available_height() - input_height).max(60.0);
    ScrollArea::vertical()
        .id_salt(("history", peer.as_str()))
        .max_height(history_height)
        .auto_shrink([false, false])
        .stick_to_bottom(true)
        .show(ui, |ui| {
            let Some(conversation) = model.conversation(peer) else {
                ui.label(
                    RichText::new(format!("No messages with {display_name} yet. Say hello!"))
                        .color(theme::MUTED_TEXT),
                );
                return;
            };
            for line in &conversation.lines {
                let layout = if line.from_me {
                    Layout::right_to_left(Align::TOP)
                } else {
                    Layout::left_to_right(Align::TOP)
                };
                ui.with_layout(layout, |ui| {
                    let max_width = (ui.available_width() * 0.7).max(120.0);
                    // The bubble is as wide as its text (wrapped at `max_width`).
                    let text_width = egui::WidgetText::from(line.text.as_str())
                        .into_galley(
                            ui,
                            Some(egui::TextWrapMode::Wrap),
                            max_width,
                            egui::TextStyle::Body,
                        )
                        .size()
                        .x;
                    let width = text_width.clamp(64.0, max_width);
                    Frame::new()
                        .fill(if line.from_me {
                            theme::BUBBLE_MINE
                        } else {
                            theme::BUBBLE_THEIRS
                        })
                        .stroke(Stroke::new(1.0, Color32::from_gray(220)))
                        .corner_radius(theme::ROUNDING)
                        .inner_margin(egui::Margin::symmetric(10, 6))
                        .show(ui, |ui| {
                            ui.set_min_width(width);
                            ui.set_max_width(width);
                            ui.vertical(|ui| {
                                ui.add(egui::Label::new(&line.text).wrap());
                                ui.allocate_ui_with_layout(
                                    Vec2::ZERO,
                                    Layout::left_to_right(Align::Center),
                                    |ui| {
                                        ui.label(
                                            RichText::new(format_clock(line.sent_at_millis))
                                                .small()
                                                .color(theme::MUTED_TEXT),
                                        );
                                        if let Some(tick) = line.tick {
                                            tick_ui(ui, tick);
                                        }
                                    },
                                );
                            });
                        });
                });
                ui.add_space(2.0);
            }
        });
    ui.separator();
    ui.horizontal(|ui| {
        let send_width = 70.0;
        let r = ui.add(
            TextEdit::singleline(&mut model.draft)
                .id(Id::unique(MESSAGE_ID))
                .hint_text(format!("Message {display_name}"))
                .desired_width(ui.available_width() - send_width),
        );
        let r = r.accessible_name("Message");
        let enter = entered(ui, &r);
        let send = ui.add_sized(
            Vec2::new(send_width - 8.0, 26.0),
            Button::new(RichText::new("Send").color(Color32::WHITE)).fill(theme::ACCENT),
        );
        if enter || send.clicked() {
            model.send_draft(now);
            ui.memory_mut(|m| m.request_focus(Id::unique(MESSAGE_ID)));
        }
    });
}

fn tick_ui(ui: &mut egui::Ui, tick: Tick) {
    let (symbol, description) = tick.symbol();
    let color = match tick {
        Tick::Delivered => theme::ACCENT,
        Tick::Failed => theme::DANGER,
        _ => theme::MUTED_TEXT,
    };
    named_text_ui(ui, RichText::new(symbol).small().color(color), description)
        .on_hover_text(description);
}

/// Text drawn as an image with its own accessible name (a `Label` is named by its text,
/// which for a symbol like "✔✔" says nothing).
fn named_text_ui(ui: &mut egui::Ui, text: RichText, name: impl Into<String>) -> egui::Response {
    let galley = egui::WidgetText::from(text).into_galley(
        ui,
        Some(egui::TextWrapMode::Extend),
        f32::INFINITY,
        egui::TextStyle::Body,
    );
    let (rect, response) = ui.allocate_exact_size(galley.size(), Sense::hover());
    ui.painter()
        .galley(rect.min, galley, ui.visuals().text_color());
    response.accessible_name(name)
}

fn call_bar_ui(ui: &mut egui::Ui, model: &mut UiModel, now: Now) {
    let Some(call) = model.call.clone() else {
        return;
    };
    Frame::new()
        .fill(theme::CALL_BAR)
        .corner_radius(theme::ROUNDING)
        .inner_margin(egui::Margin::same(10))
        .show(ui, |ui| {
            ui.set_width(ui.available_width());
            ui.horizontal(|ui| {
                ui.vertical(|ui| {
                    let title = match call.phase {
                        CallPhase::Dialing => format!("Calling {}…", call.peer),
                        CallPhase::Ringing => format!("Ringing {}…", call.peer),
                        CallPhase::Connecting => format!("Connecting to {}…", call.peer),
                        CallPhase::Connected if call.held => format!("{} (on hold)", call.peer),
                        CallPhase::Connected if call.participants.is_empty() => {
                            format!("In call with {}", call.peer)
                        }
                        CallPhase::Connected => {
                            let others: Vec<&str> =
                                call.participants.iter().map(UserName::as_str).collect();
                            format!("In call with {}, {}", call.peer, others.join(", "))
                        }
                    };
                    ui.label(
                        RichText::new(title)
                            .color(Color32::WHITE)
                            .strong()
                            .size(16.0),
                    );
                    ui.horizontal(|ui| {
                        if call.phase == CallPhase::Connected {
                            let timer = format_duration(call.duration(now));
                            named_text_ui(
                                ui,
                                RichText::new(&timer).color(Color32::WHITE).monospace(),
                                format!("Call timer {timer}"),
                            );
                        }
                        if let Some(path) = call.path {
                            let text = match path {
                                PathKind::Direct => "direct",
                                PathKind::Relay => "relayed",
                            };
                            ui.label(RichText::new(text).color(theme::CALL_BAR_TEXT))
                                .on_hover_text(match path {
                                    PathKind::Direct => "Audio flows straight between you",
                                    PathKind::Relay => "Audio flows through a relay server",
                                });
                        }
                        quality_ui(ui, &call);
                    });
                    quality_details_ui(ui, &call);
                    if call.phase == CallPhase::Connected {
                        ui.horizontal(|ui| {
                            level_meter_ui(ui, "Mic", "Microphone level", call.levels.input, true);
                            level_meter_ui(
                                ui,
                                "Speaker",
                                "Speaker level",
                                call.levels.output,
                                true,
                            );
                        });
                    }
                    if model.can_remove_participants() {
                        participants_ui(ui, model, &call);
                    }
                });
                ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
                    let hang_up =
                        Button::new(RichText::new("Hang up").color(Color32::WHITE).strong())
                            .fill(theme::DANGER)
                            .min_size(Vec2::new(90.0, theme::CALL_BUTTON_HEIGHT));
                    if ui.add(hang_up).clicked() {
                        model.hang_up();
                    }
                    if model.can_add_participant() {
                        add_participant_ui(ui, model, now);
                    }
                    let connected = call.phase == CallPhase::Connected;
                    let hold_text = if call.held { "Resume" } else { "Hold" };
                    if ui
                        .add_enabled(
                            connected,
                            Button::new(hold_text)
                                .min_size(Vec2::new(70.0, theme::CALL_BUTTON_HEIGHT)),
                        )
                        .clicked()
                    {
                        model.toggle_hold();
                    }
                    let mute_text = if call.muted { "Unmute" } else { "Mute" };
                    if ui
                        .add(
                            Button::new(mute_text)
                                .selected(call.muted)
                                .min_size(Vec2::new(70.0, theme::CALL_BUTTON_HEIGHT)),
                        )
                        .clicked()
                    {
                        model.toggle_mute();
                    }
                });
            });
        });
}

/// The people in a conference this user hosts, each with a "Remove" control.
fn participants_ui(ui: &mut egui::Ui, model: &mut UiModel, call: &CallView) {
    for user in std::iter::once(&call.peer).chain(&call.participants) {
        ui.horizontal(|ui| {
            ui.label(RichText::new(user.as_str()).color(theme::CALL_BAR_TEXT));
            if ui
                .small_button("Remove")
                .accessible_name(format!("Remove {user} from the call"))
                .on_hover_text(format!("{user} leaves; the others stay in the call"))
                .clicked()
            {
                model.remove_participant(user.clone());
            }
        });
    }
}

/// The "Add participant" menu: the contacts who could join the call.
fn add_participant_ui(ui: &mut egui::Ui, model: &mut UiModel, now: Now) {
    let candidates: Vec<(UserName, String)> = model
        .invitable_contacts()
        .into_iter()
        .map(|c| (c.user.clone(), c.display_name.clone()))
        .collect();
    ui.menu_button("Add participant", |ui| {
        if candidates.is_empty() {
            ui.label("No other contact to add");
        }
        for (user, display_name) in candidates {
            if ui
                .button(format!("{display_name} ({user})"))
                .accessible_name(format!("Add {user} to the call"))
                .clicked()
            {
                model.add_participant(now, user);
                ui.close();
            }
        }
    })
    .response
    .on_hover_text("Make this a conference (up to five people)");
}

/// A horizontal level meter (decibel scale) with an accessible name and its fill in
/// percent as the value; `dark` for the call bar.
pub fn level_meter_ui(
    ui: &mut egui::Ui,
    caption: &str,
    name: &str,
    peak: f32,
    dark: bool,
) -> egui::Response {
    let fill = meter_fill(peak);
    let (text_color, track) = if dark {
        (theme::CALL_BAR_TEXT, Color32::from_gray(70))
    } else {
        (theme::MUTED_TEXT, theme::FIELD_EDGE)
    };
    ui.label(RichText::new(caption).size(12.0).color(text_color));
    let (rect, response) = ui.allocate_exact_size(Vec2::new(110.0, 10.0), Sense::hover());
    ui.painter().rect_filled(rect, 3.0, track);
    let mut bar = rect;
    bar.set_width(rect.width() * fill);
    // Red near clipping (above -2 dBFS), amber above -7 dBFS, green below.
    let color = if fill > 0.97 {
        theme::BUSY
    } else if fill > 0.88 {
        theme::AWAY
    } else {
        theme::ONLINE
    };
    ui.painter().rect_filled(bar, 3.0, color);
    let percent = f64::from((fill * 100.0).round());
    response.widget_info(|| {
        let mut info = egui::WidgetInfo::labeled(egui::accesskit::Role::Meter, true, name);
        info.value = Some(percent);
        info
    });
    response
}

fn quality_ui(ui: &mut egui::Ui, call: &CallView) {
    let Some(quality) = call.quality() else {
        return;
    };
    let stats = call.stats.clone().unwrap_or_default();
    let (rect, response) = ui.allocate_exact_size(Vec2::new(22.0, 14.0), Sense::hover());
    let color = match quality {
        Quality::Excellent | Quality::Good => theme::ONLINE,
        Quality::Fair => theme::AWAY,
        Quality::Poor => theme::BUSY,
    };
    for i in 0..4u8 {
        let h = 3.5 * f32::from(i + 1);
        let x = rect.left() + f32::from(i) * 5.5;
        let bar = egui::Rect::from_min_max(
            egui::pos2(x, rect.bottom() - h),
            egui::pos2(x + 4.0, rect.bottom()),
        );
        let fill = if i < quality.bars() {
            color
        } else {
            Color32::from_gray(90)
        };
        ui.painter().rect_filled(bar, 1.0, fill);
    }
    let description = format!(
        "Call quality {} (MOS {:.1}, loss {:.1}%, round trip {:.0} ms, jitter {:.0} ms)",
        quality.label(),
        stats.mos,
        stats.loss_pct,
        stats.rtt_ms,
        stats.jitter_ms
    );
    response
        .on_hover_text(description.clone())
        .accessible_name(description);
    ui.label(RichText::new(quality.label()).color(theme::CALL_BAR_TEXT));
}

/// The figures behind the quality indicator, on a line of their own.
fn quality_details_ui(ui: &mut egui::Ui, call: &CallView) {
    let Some(stats) = call.stats.as_ref().filter(|s| s.mos > 0.0) else {
        return;
    };
    let details = format!(
        "MOS {:.1} · loss {:.1}% · RTT {:.0} ms · jitter {:.0} ms",
        stats.mos, stats.loss_pct, stats.rtt_ms, stats.jitter_ms
    );
    ui.label(
        RichText::new(details)
            .size(12.0)
            .color(theme::CALL_BAR_TEXT),
    );
}

fn end_reason_text(reason: EndReason) -> &'static str {
    match reason {
        EndReason::Hangup => "ended",
        EndReason::Declined => "declined",
        EndReason::Busy => "busy",
        EndReason::Timeout => "no answer",
        EndReason::Unreachable => "unreachable",
        EndReason::Failed => "failed",
        EndReason::AnsweredElsewhere => "answered on another device",
    }
}

// ----- dialogs -----

fn incoming_call_ui(ui: &mut egui::Ui, model: &mut UiModel) {
    let Some(incoming) = model.incoming.clone() else {
        return;
    };
    if ui.input_mut(|i| i.consume_key(Modifiers::NONE, Key::Escape)) {
        model.decline();
        return;
    }
    let display_name = model
        .contacts
        .get(&incoming.from)
        .map_or_else(|| incoming.from.to_string(), |c| c.display_name.clone());
    egui::Modal::new(Id::unique("incoming-call")).show(ui.ctx(), |ui| {
        ui.set_width(300.0);
        ui.vertical_centered(|ui| {
            ui.label(RichText::new("Incoming call").color(theme::MUTED_TEXT));
            ui.heading(RichText::new(&display_name).size(24.0).strong());
            if display_name != incoming.from.as_str() {
                ui.label(RichText::new(incoming.from.as_str()).color(theme::MUTED_TEXT));
            }
            ui.add_space(12.0);
            ui.horizontal(|ui| {
                let width = (ui.available_width() - 8.0) / 2.0;
                let answer = Button::new(RichText::new("Answer").color(Color32::WHITE).strong())
                    .fill(theme::SUCCESS)
                    .min_size(Vec2::new(width, 36.0));
                if ui.add(answer).clicked() {
                    model.answer();
                }
                let decline = Button::new(RichText::new("Decline").color(Color32::WHITE).strong())
                    .fill(theme::DANGER)
                    .min_size(Vec2::new(width, 36.0));
                if ui.add(decline).on_hover_text("Escape").clicked() {
                    model.decline();
                }
            });
        });
    });
}

fn settings_ui(ui: &mut egui::Ui, model: &mut UiModel, now: Now) {
    if !model.settings_open {
        return;
    }
    let mut open = true;
    egui::Window::new("Settings")
        .open(&mut open)
        .collapsible(false)
        .resizable(false)
        .default_width(2.0 * SETTINGS_COLUMN_WIDTH + 20.0)
        .max_width((ui.ctx().content_rect().width() - 20.0).max(200.0))
        .anchor(Align2::CENTER_CENTER, Vec2::ZERO)
        .show(ui.ctx(), |ui| {
            let screen = ui.ctx().content_rect();
            // Two columns when they fit (account and network left, sound right), else one
            // that scrolls, so large text never pushes controls off the screen.
            let two_columns = screen.width() >= 2.0 * SETTINGS_COLUMN_WIDTH + 80.0;
            if two_columns {
                ui.horizontal_top(|ui| {
                    settings_column_ui(ui, |ui| settings_left_ui(ui, model));
                    ui.separator();
                    settings_column_ui(ui, |ui| settings_right_ui(ui, model, now));
                });
            } else {
                ScrollArea::vertical()
                    .max_height((screen.height() - 90.0).max(120.0))
                    .show(ui, |ui| {
                        settings_column_ui(ui, |ui| {
                            settings_left_ui(ui, model);
                            ui.separator();
                            settings_right_ui(ui, model, now);
                        });
                    });
            }
        });
    if !open {
        model.close_settings();
    }
}

/// The settings page's account and network sections.
fn settings_left_ui(ui: &mut egui::Ui, model: &mut UiModel) {
    section_heading(ui, "Account");
    egui::Grid::new("settings-account")
        .num_columns(2)
        .show(ui, |ui| {
            ui.label("Signed in as");
            ui.label(RichText::new(model.me.as_ref().map(|u| u.as_str()).unwrap_or("-")).strong());
            ui.end_row();
            if let Some(network) = &model.network {
                ui.label("Login server");
                ui.label(if network.embedded {
                    format!("{} (built-in local network)", network.login_server)
                } else {
                    network.login_server.clone()
                });
                ui.end_row();
            }
        });
    display_name_form_ui(ui, model);
    password_form_ui(ui, model);
    if ui.button("Log out").clicked() {
        model.log_out();
        return;
    }
    ui.separator();
    section_heading(ui, "Network (NAT)");
    ui.horizontal(|ui| {
        let run = ui.add_enabled(!model.netcheck_pending, Button::new("Run network check"));
        if run.clicked() {
            model.run_netcheck();
        }
        if model.netcheck_pending {
            ui.spinner();
        }
    });
    if let Some(error) = &model.netcheck_error {
        ui.label(RichText::new(error).color(theme::DANGER));
    }
    if let Some(nat) = &model.nat {
        egui::Grid::new("settings-nat")
            .num_columns(2)
            .show(ui, |ui| {
                let rows = [
                    ("NAT type", nat.nat_type.clone()),
                    ("UDP", if nat.udp { "works" } else { "blocked" }.to_string()),
                    (
                        "Public address",
                        nat.public_addr.clone().unwrap_or_else(|| "-".into()),
                    ),
                    ("Mapping", nat.mapping.clone()),
                    ("Filtering", nat.filtering.clone()),
                    (
                        "Hairpinning",
                        match nat.hairpin {
                            Some(true) => "yes",
                            Some(false) => "no",
                            None => "unknown",
                        }
                        .to_string(),
                    ),
                    (
                        "Supernode round trip",
                        nat.supernode_rtt_ms
                            .map_or_else(|| "-".into(), |ms| format!("{ms:.0} ms")),
                    ),
                ];
                for (name, value) in rows {
                    ui.label(name);
                    ui.label(RichText::new(value).strong());
                    ui.end_row();
                }
            });
    }
}

/// The settings page's sound sections.
fn settings_right_ui(ui: &mut egui::Ui, model: &mut UiModel, now: Now) {
    if let Some(echo) = model.network.as_ref().and_then(|n| n.echo_user.clone()) {
        section_heading(ui, "Sound test");
        ui.horizontal(|ui| {
            let call = ui.add_enabled(
                model.call.is_none(),
                Button::new(format!("Call the echo test service ({echo})")),
            );
            if call.clicked() {
                model.dial(now, echo.clone());
                model.close_settings();
            }
        });
    }
    section_heading(ui, "Sound cards");
    devices_ui(ui, model);
    sound_check_ui(ui, model);
    ui.separator();
    section_heading(ui, "Sound processing and display");
    prefs_ui(ui, model);
}

/// The width of one column of the settings page.
const SETTINGS_COLUMN_WIDTH: f32 = 400.0;

fn settings_column_ui(ui: &mut egui::Ui, add_contents: impl FnOnce(&mut egui::Ui)) {
    ui.allocate_ui_with_layout(
        Vec2::new(SETTINGS_COLUMN_WIDTH, 0.0),
        Layout::top_down(Align::Min),
        |ui| {
            ui.set_width(SETTINGS_COLUMN_WIDTH);
            add_contents(ui);
        },
    );
}

/// The microphone and speaker pickers; a pick goes to [`UiModel::choose_devices`].
fn devices_ui(ui: &mut egui::Ui, model: &mut UiModel) {
    let devices = &model.devices;
    let mut input = devices.input.clone();
    let mut output = devices.output.clone();
    device_combo(ui, "Microphone", &devices.inputs, &mut input);
    device_combo(ui, "Speaker", &devices.outputs, &mut output);
    model.choose_devices(input, output);
}

/// The microphone meter and the speaker test.
fn sound_check_ui(ui: &mut egui::Ui, model: &mut UiModel) {
    ui.horizontal(|ui| {
        level_meter_ui(ui, "Mic", "Microphone level", model.mic_level, false)
            .on_hover_text("Speak: the bar should move");
        if let Some(error) = &model.mic_error {
            ui.add(egui::Label::new(RichText::new(error).color(theme::DANGER)).wrap());
        }
    });
    ui.horizontal(|ui| {
        let text = if model.speaker_test_running {
            "Playing test sound…"
        } else {
            "Play test sound"
        };
        if ui
            .add_enabled(!model.speaker_test_running, Button::new(text))
            .on_hover_text("Plays a short tune on the chosen speaker")
            .clicked()
        {
            model.test_speaker();
        }
    });
}

/// Noise suppression, echo cancellation and the text size.
fn prefs_ui(ui: &mut egui::Ui, model: &mut UiModel) {
    let mut prefs = model.prefs;
    ui.checkbox(&mut prefs.noise_suppression, "Noise suppression")
        .on_hover_text("Filters steady background noise out of your microphone in calls");
    ui.checkbox(&mut prefs.echo_cancellation, "Echo cancellation")
        .on_hover_text("Keeps the other side from hearing themselves through your speaker");
    ui.horizontal(|ui| {
        let label = ui.label("Text size");
        let mut percent = (prefs.text_scale * 100.0).round();
        let start = TEXT_SCALE_RANGE.start() * 100.0;
        let end = TEXT_SCALE_RANGE.end() * 100.0;
        let slider = ui
            .add(
                egui::Slider::new(&mut percent, start..=end)
                    .step_by(5.0)
                    .suffix("%"),
            )
            .labelled_by(label.id)
            .on_hover_text("Also Ctrl + and Ctrl −");
        if slider.changed() {
            prefs.text_scale = percent / 100.0;
        }
    });
    model.set_prefs(prefs);
}

/// The display-name field and the button that changes it at the login server.
fn display_name_form_ui(ui: &mut egui::Ui, model: &mut UiModel) {
    let form = &mut model.account.display_name;
    let mut submit = false;
    ui.horizontal(|ui| {
        let label = ui.label("Display name");
        let r = ui.add(
            TextEdit::singleline(&mut form.name)
                .hint_text("the name others see")
                .char_limit(proto::DisplayName::MAX_CHARS)
                .desired_width(180.0),
        );
        submit |= entered(ui, &r);
        r.labelled_by(label.id);
        let text = if form.busy { "Saving…" } else { "Save" };
        submit |= ui
            .add_enabled(!form.busy, Button::new(text))
            .on_hover_text("Save display name")
            .clicked();
    });
    if let Some(error) = &form.error {
        ui.label(RichText::new(error).color(theme::DANGER));
    }
    if let Some(notice) = &form.notice {
        ui.label(RichText::new(notice).color(theme::SUCCESS));
    }
    if submit {
        model.set_display_name();
    }
}

/// Current and new password, and the button that changes it at the login server.
fn password_form_ui(ui: &mut egui::Ui, model: &mut UiModel) {
    egui::CollapsingHeader::new("Change password")
        .default_open(false)
        .show(ui, |ui| {
            let mut submit = false;
            egui::Grid::new("settings-password")
                .num_columns(2)
                .show(ui, |ui| {
                    let label = ui.label("Current password");
                    let r = ui.add(
                        TextEdit::singleline(&mut model.account.old_password)
                            .password(true)
                            .desired_width(180.0),
                    );
                    submit |= entered(ui, &r);
                    r.labelled_by(label.id);
                    ui.end_row();
                    let label = ui.label("New password");
                    let r = ui.add(
                        TextEdit::singleline(&mut model.account.new_password)
                            .password(true)
                            .hint_text("at least 8 characters")
                            .desired_width(180.0),
                    );
                    submit |= entered(ui, &r);
                    r.labelled_by(label.id);
                    ui.end_row();
                });
            if let Some(error) = &model.account.error {
                ui.label(RichText::new(error).color(theme::DANGER));
            }
            if let Some(notice) = &model.account.notice {
                ui.label(RichText::new(notice).color(theme::SUCCESS));
            }
            let text = if model.account.busy {
                "Changing password…"
            } else {
                "Change password"
            };
            if ui
                .add_enabled(!model.account.busy, Button::new(text))
                .clicked()
                || submit
            {
                model.change_password();
            }
        });
}

fn device_combo(ui: &mut egui::Ui, label: &str, list: &[AudioDevice], choice: &mut Option<String>) {
    egui::ComboBox::from_label(label)
        .width(260.0)
        .selected_text(AudioDevices::label(list, choice.as_deref()))
        .show_ui(ui, |ui| {
            ui.selectable_value(choice, None, SYSTEM_DEFAULT_DEVICE);
            for device in list {
                ui.selectable_value(choice, Some(device.id.clone()), &device.name);
            }
        });
}

fn toasts_ui(ui: &mut egui::Ui, model: &mut UiModel) {
    if model.toasts.is_empty() {
        return;
    }
    let mut dismiss = None;
    egui::Area::new(Id::unique("toasts"))
        .anchor(Align2::RIGHT_BOTTOM, Vec2::new(-14.0, -60.0))
        .order(egui::Order::Tooltip)
        .show(ui.ctx(), |ui| {
            ui.set_max_width(340.0);
            for toast in &model.toasts {
                let (fill, accent) = match toast.kind {
                    ToastKind::Error => (theme::TOAST_ERROR, theme::DANGER),
                    ToastKind::Info => (theme::TOAST_INFO, theme::ACCENT),
                };
                Frame::new()
                    .fill(fill)
                    .stroke(Stroke::new(1.0, accent))
                    .corner_radius(theme::ROUNDING)
                    .inner_margin(egui::Margin::symmetric(10, 8))
                    .shadow(egui::Shadow {
                        offset: [0, 2],
                        blur: 8,
                        spread: 0,
                        color: Color32::from_black_alpha(40),
                    })
                    .show(ui, |ui| {
                        ui.horizontal(|ui| {
                            let icon = match toast.kind {
                                ToastKind::Error => "⚠",
                                ToastKind::Info => "ℹ",
                            };
                            ui.label(RichText::new(icon).color(accent).strong());
                            ui.add(egui::Label::new(&toast.text).wrap());
                            if ui.small_button("×").accessible_name("Dismiss").clicked() {
                                dismiss = Some(toast.id);
                            }
                        });
                    });
                ui.add_space(6.0);
            }
        });
    if let Some(id) = dismiss {
        model.dismiss_toast(id);
    }
}
