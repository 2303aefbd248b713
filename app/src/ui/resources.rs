//! The app's assets (icon, sounds), all taken from the `assets` crate through this module.

use egui::{ColorImage, TextureHandle, TextureOptions};

/// Side of the icon texture drawn in the app, in pixels.
const ICON_TEXTURE_PX: u32 = 144;

/// The application icon as RGBA pixels of `size`×`size`.
pub fn icon_rgba(size: u32) -> Vec<u8> {
    assets::synth::app_icon_rgba(size)
}

/// The window icon.
pub fn window_icon() -> egui::IconData {
    let size = 256;
    egui::IconData {
        rgba: icon_rgba(size),
        width: size,
        height: size,
    }
}

/// The icon as a texture, made once per context.
pub fn icon_texture(ctx: &egui::Context) -> TextureHandle {
    let id = egui::Id::unique("peerphone-icon-texture");
    if let Some(texture) = ctx.data(|d| d.get_temp::<TextureHandle>(id)) {
        return texture;
    }
    let side = ICON_TEXTURE_PX as usize;
    let image = ColorImage::from_rgba_unmultiplied([side, side], &icon_rgba(ICON_TEXTURE_PX));
    let texture = ctx.load_texture("peerphone-icon", image, TextureOptions::LINEAR);
    ctx.data_mut(|d| d.insert_temp(id, texture.clone()));
    texture
}

/// The ringtone, 48 kHz mono (looped while a call rings).
pub fn ringtone_samples() -> Vec<i16> {
    assets::synth::ringtone()
}

/// The incoming-message chime.
pub fn chime_samples() -> Vec<i16> {
    assets::synth::message_chime()
}

/// Played when a call ends.
pub fn hangup_samples() -> Vec<i16> {
    assets::synth::hangup_tone()
}

/// The speaker test in settings.
pub fn speaker_test_samples() -> Vec<i16> {
    assets::synth::speaker_test()
}
