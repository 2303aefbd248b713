//! Peerphone's icons and sounds: original work, synthesised by [`synth`] and committed as
//! files under `assets/files/` so the app embeds them without running the synthesiser.
//!
//! Every asset is loaded through this module: the app asks for [`Asset`]s here and never
//! reads asset files itself. `cargo run -p assets --example generate` rewrites the files;
//! a test checks that the committed files are exactly what the synthesiser produces.
//!
//! What it does not do: decode or play sounds (the media crate plays WAV bytes), or draw UI.

pub mod synth;

/// An embedded asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Asset {
    /// The application icon, 256×256 RGBA PNG.
    AppIcon,
    /// Played on an incoming call, looped: 48 kHz mono 16-bit WAV.
    Ringtone,
    /// Played to the caller while the callee's device rings, looped.
    Ringback,
    /// A short chime for an incoming message.
    MessageChime,
    /// Played when a call ends.
    HangupTone,
    /// The speaker test in settings.
    SpeakerTest,
}

impl Asset {
    pub const ALL: [Asset; 6] = [
        Asset::AppIcon,
        Asset::Ringtone,
        Asset::Ringback,
        Asset::MessageChime,
        Asset::HangupTone,
        Asset::SpeakerTest,
    ];

    /// The file name under `assets/files/`.
    pub fn file_name(self) -> &'static str {
        match self {
            Asset::AppIcon => "icon-256.png",
            Asset::Ringtone => "ringtone.wav",
            Asset::Ringback => "ringback.wav",
            Asset::MessageChime => "message.wav",
            Asset::HangupTone => "hangup.wav",
            Asset::SpeakerTest => "speaker-test.wav",
        }
    }

    /// The embedded bytes.
    pub fn bytes(self) -> &'static [u8] {
        match self {
            Asset::AppIcon => include_bytes!("../files/icon-256.png"),
            Asset::Ringtone => include_bytes!("../files/ringtone.wav"),
            Asset::Ringback => include_bytes!("../files/ringback.wav"),
            Asset::MessageChime => include_bytes!("../files/message.wav"),
            Asset::HangupTone => include_bytes!("../files/hangup.wav"),
            Asset::SpeakerTest => include_bytes!("../files/speaker-test.wav"),
        }
    }

    /// Synthesises the asset's file contents from scratch.
    pub fn generate(self) -> Result<Vec<u8>, synth::SynthError> {
        match self {
            Asset::AppIcon => synth::encode_png(256, &synth::app_icon_rgba(256)),
            Asset::Ringtone => synth::encode_wav(&synth::ringtone()),
            Asset::Ringback => synth::encode_wav(&synth::ringback()),
            Asset::MessageChime => synth::encode_wav(&synth::message_chime()),
            Asset::HangupTone => synth::encode_wav(&synth::hangup_tone()),
            Asset::SpeakerTest => synth::encode_wav(&synth::speaker_test()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_assets_are_what_the_synthesiser_makes() {
        for asset in Asset::ALL {
            let generated = asset.generate().expect("synthesise");
            assert!(
                generated == asset.bytes(),
                "{} is stale: run `cargo run -p assets --example generate`",
                asset.file_name()
            );
        }
    }

    #[test]
    fn sounds_are_48khz_mono_and_not_silent() {
        for asset in [
            Asset::Ringtone,
            Asset::Ringback,
            Asset::MessageChime,
            Asset::HangupTone,
            Asset::SpeakerTest,
        ] {
            let reader = hound::WavReader::new(asset.bytes()).expect("valid WAV");
            let spec = reader.spec();
            assert_eq!(
                (spec.sample_rate, spec.channels, spec.bits_per_sample),
                (48_000, 1, 16)
            );
            let samples: Vec<i16> = reader.into_samples().map(|s| s.expect("sample")).collect();
            let peak = samples.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
            assert!(peak > 8_000, "{asset:?} peak {peak}");
            assert!(peak < 32_000, "{asset:?} clips");
        }
    }

    #[test]
    fn the_icon_is_a_256px_png_with_transparent_corners() {
        let decoder = png::Decoder::new(std::io::Cursor::new(Asset::AppIcon.bytes()));
        let mut reader = decoder.read_info().expect("valid PNG");
        let mut buf = vec![0; reader.output_buffer_size().expect("size")];
        let info = reader.next_frame(&mut buf).expect("frame");
        assert_eq!((info.width, info.height), (256, 256));
        assert_eq!(info.color_type, png::ColorType::Rgba);
        assert_eq!(buf[3], 0, "top-left corner is transparent");
        let centre = (128 * 256 + 128) * 4;
        assert_eq!(buf[centre + 3], 255, "centre is opaque");
    }
}
