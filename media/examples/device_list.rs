//! Lists audio devices as the settings screen would, and tries to open the defaults.
//!
//! `cargo run -p media --example device_list`

use media::device::{
    AudioSink, AudioSource, CpalCapture, CpalPlayback, DeviceSelection, input_devices,
    output_devices,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for (label, devices) in [("input", input_devices()?), ("output", output_devices()?)] {
        println!("{label} devices: {}", devices.len());
        for d in devices {
            let mark = if d.is_default { " (default)" } else { "" };
            println!("  {}{mark}  [{}]", d.name, d.id);
        }
    }
    match CpalCapture::open(DeviceSelection::SystemDefault) {
        Ok(c) => println!(
            "default input opened: {:?} at {:?} Hz",
            c.device().map(|d| &d.name),
            c.device_rate_hz()
        ),
        Err(e) => println!("default input: {e}"),
    }
    match CpalPlayback::open(DeviceSelection::SystemDefault) {
        Ok(p) => println!(
            "default output opened: {:?} at {:?} Hz",
            p.device().map(|d| &d.name),
            p.device_rate_hz()
        ),
        Err(e) => println!("default output: {e}"),
    }
    let mut mic = CpalCapture::open_or_lost(DeviceSelection::SystemDefault);
    let mut speaker = CpalPlayback::open_or_lost(DeviceSelection::SystemDefault);
    while let Some(event) = mic.poll_event() {
        println!("input event: {event:?}");
    }
    while let Some(event) = speaker.poll_event() {
        println!("output event: {event:?}");
    }
    Ok(())
}
