//! On a machine without sound hardware (CI, this container), listing devices works
//! and returns what exists; opening fails with a clear error, or, for calls, keeps going
//! on silence and reports the loss.

use std::time::{Duration, Instant};

use media::device::{
    AudioSink, AudioSource, CpalCapture, CpalPlayback, DeviceEvent, DeviceId, DeviceSelection,
    FRAME_SAMPLES, Frame, input_devices, output_devices,
};

#[test]
fn enumeration_never_fails_and_lists_stable_ids() {
    let inputs = input_devices().expect("input enumeration");
    let outputs = output_devices().expect("output enumeration");
    for d in inputs.iter().chain(&outputs) {
        assert!(d.id.as_str().contains(':'), "id {} is host:device", d.id);
        assert!(!d.name.is_empty());
    }
    // Listing twice yields the same ids: they can be stored in settings.
    let again: Vec<_> = input_devices()
        .expect("again")
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(inputs.into_iter().map(|d| d.id).collect::<Vec<_>>(), again);
}

#[test]
fn opening_an_unknown_device_is_a_clear_error() {
    let err = CpalCapture::open(DeviceSelection::Id(DeviceId::new("alsa:no-such-card")))
        .expect_err("must fail");
    assert!(err.to_string().contains("no-such-card"), "{err}");
    let err =
        CpalPlayback::open(DeviceSelection::Id(DeviceId::new("nonsense"))).expect_err("must fail");
    assert!(err.to_string().contains("output"), "{err}");
}

#[test]
fn without_a_microphone_capture_opens_lost_and_delivers_paced_silence() {
    if !input_devices().expect("enumeration").is_empty() {
        // A machine with a real microphone: the lost path is not reachable here.
        return;
    }
    assert!(CpalCapture::open(DeviceSelection::SystemDefault).is_err());
    let mut mic = CpalCapture::open_or_lost(DeviceSelection::SystemDefault);
    assert!(mic.device().is_none());
    assert!(matches!(mic.poll_event(), Some(DeviceEvent::Lost { .. })));
    let mut frame: Frame = [1.0; FRAME_SAMPLES];
    let started = Instant::now();
    for _ in 0..10 {
        assert!(
            mic.wait_frame(&mut frame, Duration::from_secs(5))
                .expect("wait")
        );
        assert!(frame.iter().all(|&s| s == 0.0));
    }
    // Silence comes on the 20 ms clock, so the call's send path keeps its pace.
    assert!(started.elapsed() >= Duration::from_millis(180));
    assert_eq!(mic.poll_event(), None, "one Lost event per outage");
}

#[test]
fn without_a_speaker_playback_opens_lost_and_discards() {
    if !output_devices().expect("enumeration").is_empty() {
        return;
    }
    let mut speaker = CpalPlayback::open_or_lost(DeviceSelection::SystemDefault);
    assert!(matches!(
        speaker.poll_event(),
        Some(DeviceEvent::Lost { .. })
    ));
    assert!(speaker.write_frame(&[0.1; FRAME_SAMPLES]).expect("write"));
    assert_eq!(speaker.buffered_samples(), 0);
}
