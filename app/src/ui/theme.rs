//! Colours, spacing and text sizes of the desktop app, in one place.
//!
//! Presence is shown by colour *and* shape (filled disc, half moon, bar, ring) so people
//! who do not tell green from red can still read it.

use crate::events::Status;
use egui::{Color32, CornerRadius, Margin, Painter, Pos2, Stroke, Vec2};

/// The brand blue (buttons, own chat bubbles, selection).
pub const ACCENT: Color32 = Color32::from_rgb(0x00, 0x67, 0xb8);
/// Blue text on light blue (the selected tab).
pub const ACCENT_DARK: Color32 = Color32::from_rgb(0x00, 0x50, 0x8f);
/// The call bar's background.
pub const CALL_BAR: Color32 = Color32::from_rgb(0x1f, 0x2d, 0x3d);
/// Secondary text on the call bar.
pub const CALL_BAR_TEXT: Color32 = Color32::from_rgb(0xd7, 0xd7, 0xd7);
pub const SELECTION: Color32 = Color32::from_rgb(0xc7, 0xe0, 0xf4);
pub const ACCENT_LIGHT: Color32 = Color32::from_rgb(0xdc, 0xee, 0xfb);
pub const ONLINE: Color32 = Color32::from_rgb(0x2e, 0x9d, 0x3a);
pub const AWAY: Color32 = Color32::from_rgb(0xe0, 0x9b, 0x00);
pub const BUSY: Color32 = Color32::from_rgb(0xd1, 0x34, 0x38);
pub const OFFLINE: Color32 = Color32::from_rgb(0x8a, 0x8a, 0x8a);
pub const DANGER: Color32 = Color32::from_rgb(0xc4, 0x2b, 0x1c);
pub const SUCCESS: Color32 = Color32::from_rgb(0x10, 0x7c, 0x10);
pub const PANEL: Color32 = Color32::from_rgb(0xf3, 0xf6, 0xf9);
pub const SIDEBAR: Color32 = Color32::from_rgb(0xe9, 0xf0, 0xf7);
pub const BUBBLE_THEIRS: Color32 = Color32::from_rgb(0xff, 0xff, 0xff);
pub const BUBBLE_MINE: Color32 = Color32::from_rgb(0xcf, 0xe6, 0xfa);
pub const MUTED_TEXT: Color32 = Color32::from_rgb(0x5a, 0x62, 0x6b);
pub const TOAST_ERROR: Color32 = Color32::from_rgb(0xfd, 0xe7, 0xe9);
pub const TOAST_INFO: Color32 = Color32::from_rgb(0xe5, 0xf1, 0xfb);

/// Inner margin of panels.
pub const PANEL_MARGIN: Margin = Margin::same(10);
/// Rounding of bubbles and cards.
pub const ROUNDING: CornerRadius = CornerRadius::same(8);
/// Diameter of a presence marker.
pub const PRESENCE_SIZE: f32 = 12.0;
/// Height of big call buttons.
pub const CALL_BUTTON_HEIGHT: f32 = 32.0;

/// Applies the light theme and comfortable spacing.
pub fn apply(ctx: &egui::Context) {
    ctx.set_theme(egui::Theme::Light);
    ctx.style_mut_of(egui::Theme::Light, |style| {
        style.spacing.item_spacing = Vec2::new(8.0, 6.0);
        style.spacing.button_padding = Vec2::new(10.0, 5.0);
        style.spacing.interact_size.y = 26.0;
        let visuals = &mut style.visuals;
        // Selected tabs and text: dark blue on light blue (also the focused field's edge).
        visuals.selection.bg_fill = SELECTION;
        visuals.selection.stroke = Stroke::new(1.5, ACCENT_DARK);
        visuals.hyperlink_color = ACCENT;
        visuals.panel_fill = PANEL;
        visuals.window_corner_radius = ROUNDING;
        visuals.text_edit_bg_color = Some(Color32::from_rgb(0xfb, 0xfc, 0xfd));
        // Fields and buttons get a visible edge on white cards.
        visuals.widgets.inactive.bg_stroke = Stroke::new(1.0, FIELD_EDGE);
        visuals.widgets.inactive.weak_bg_fill = Color32::from_rgb(0xf0, 0xf3, 0xf6);
        visuals.widgets.hovered.bg_stroke = Stroke::new(1.0, ACCENT);
        visuals.widgets.active.bg_stroke = Stroke::new(1.0, ACCENT);
    });
}

/// WCAG 2 contrast ratio of two opaque colours (1.0 to 21.0); text needs at least 4.5
/// (level AA).
pub fn contrast_ratio(a: Color32, b: Color32) -> f32 {
    fn luminance(c: Color32) -> f32 {
        let channel = |v: u8| {
            let v = f32::from(v) / 255.0;
            if v <= 0.039_28 {
                v / 12.92
            } else {
                ((v + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * channel(c.r()) + 0.7152 * channel(c.g()) + 0.0722 * channel(c.b())
    }
    let (la, lb) = (luminance(a), luminance(b));
    let (light, dark) = if la > lb { (la, lb) } else { (lb, la) };
    (light + 0.05) / (dark + 0.05)
}

/// Every text colour the app draws, with the backgrounds it is drawn on.
pub const TEXT_ON_BACKGROUND: [(&str, Color32, Color32); 16] = [
    ("button text on accent", Color32::WHITE, ACCENT),
    ("button text on success", Color32::WHITE, SUCCESS),
    ("button text on danger", Color32::WHITE, DANGER),
    ("unread badge", Color32::WHITE, BUSY),
    ("muted text on panel", MUTED_TEXT, PANEL),
    ("muted text on sidebar", MUTED_TEXT, SIDEBAR),
    ("muted text on own bubble", MUTED_TEXT, BUBBLE_MINE),
    ("muted text on selected contact", MUTED_TEXT, ACCENT_LIGHT),
    ("delivered tick on own bubble", ACCENT, BUBBLE_MINE),
    ("link on panel", ACCENT, PANEL),
    ("selected tab", ACCENT_DARK, SELECTION),
    ("error text on panel", DANGER, PANEL),
    ("success text on panel", SUCCESS, PANEL),
    ("error toast", DANGER, TOAST_ERROR),
    ("call bar text", CALL_BAR_TEXT, CALL_BAR),
    ("top bar name", Color32::WHITE, ACCENT),
];

/// The edge of input fields and plain buttons.
pub const FIELD_EDGE: Color32 = Color32::from_rgb(0xb8, 0xc2, 0xcc);

/// The colour of a presence status.
pub fn status_color(status: Status) -> Color32 {
    match status {
        Status::Online => ONLINE,
        Status::Away => AWAY,
        Status::Busy => BUSY,
        Status::Offline => OFFLINE,
    }
}

/// A person's word for a status.
pub fn status_label(status: Status) -> &'static str {
    match status {
        Status::Online => "online",
        Status::Away => "away",
        Status::Busy => "busy",
        Status::Offline => "offline",
    }
}

/// Paints a presence marker centred on `center`: online a filled disc, away a disc with a
/// bite (moon), busy a disc with a white bar, offline a ring.
pub fn paint_presence(painter: &Painter, center: Pos2, status: Status) {
    let r = PRESENCE_SIZE / 2.0;
    let color = status_color(status);
    match status {
        Status::Online => {
            painter.circle_filled(center, r, color);
        }
        Status::Away => {
            painter.circle_filled(center, r, color);
            painter.circle_filled(
                center + Vec2::new(r * 0.45, -r * 0.45),
                r * 0.6,
                painter_bg(),
            );
        }
        Status::Busy => {
            painter.circle_filled(center, r, color);
            painter.line_segment(
                [
                    center - Vec2::new(r * 0.55, 0.0),
                    center + Vec2::new(r * 0.55, 0.0),
                ],
                Stroke::new(2.0, Color32::WHITE),
            );
        }
        Status::Offline => {
            painter.circle_stroke(center, r - 1.0, Stroke::new(2.0, color));
        }
    }
}

fn painter_bg() -> Color32 {
    SIDEBAR
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_text_colour_reads_at_wcag_aa_contrast() {
        assert!((contrast_ratio(Color32::WHITE, Color32::BLACK) - 21.0).abs() < 0.01);
        for (what, text, background) in TEXT_ON_BACKGROUND {
            let ratio = contrast_ratio(text, background);
            assert!(ratio >= 4.5, "{what}: contrast {ratio:.2} is below 4.5");
        }
    }
}
