//! The settings panel's microphone and speaker pickers, rendered by egui_kittest and
//! driven like a person would. The machine running the tests has no sound card, so the
//! device lists are injected the way the backend delivers them ([`UiEvent::Devices`]).

mod ui_support;

use app::ui::model::{AudioDevice, AudioDevices};
use app::ui::{UiAction, UiEvent};
use egui::accesskit::Role;
use egui_kittest::kittest::{NodeT, Queryable};
use ui_support::{Window, actions, alice_logged_in, step, window};

fn device(id: &str, name: &str) -> AudioDevice {
    AudioDevice {
        id: id.into(),
        name: name.into(),
    }
}

/// A window logged in as alice, with two microphones and two speakers and the speaker
/// choice `output` remembered in the profile.
fn logged_in_with_devices(output: Option<String>) -> Window {
    let mut harness = window(
        alice_logged_in(vec![UiEvent::Devices(AudioDevices {
            inputs: vec![
                device("alsa:default", "Built-in microphone"),
                device("alsa:hw:CARD=USB,DEV=0", "USB headset microphone"),
            ],
            outputs: vec![
                device("alsa:default", "Built-in speakers"),
                device("alsa:hw:CARD=HDMI,DEV=3", "HDMI monitor"),
            ],
            input: None,
            output,
        })]),
        [960.0, 760.0],
    );
    step(&mut harness);
    harness
}

fn open_settings(harness: &mut Window) {
    harness
        .get_by_role_and_label(Role::Button, "Settings")
        .click();
    // The settings page measures the microphone while it is open.
    assert_eq!(actions(harness), vec![UiAction::MonitorMicrophone(true)]);
}

fn shown_choice(harness: &Window, picker: &str) -> Option<String> {
    harness
        .get_by_role_and_label(Role::ComboBox, picker)
        .accesskit_node()
        .value()
}

#[test]
fn picking_a_microphone_asks_the_backend_and_shows_the_choice() {
    let mut h = logged_in_with_devices(None);
    open_settings(&mut h);
    assert_eq!(
        shown_choice(&h, "Microphone").as_deref(),
        Some("System default")
    );
    // Opening the settings changes nothing.
    assert_eq!(actions(&mut h), vec![]);

    h.get_by_role_and_label(Role::ComboBox, "Microphone")
        .click();
    step(&mut h);
    h.get_by_label("USB headset microphone").click();
    assert_eq!(
        actions(&mut h),
        vec![UiAction::SetDevices {
            input: Some("alsa:hw:CARD=USB,DEV=0".into()),
            output: None,
        }]
    );
    assert_eq!(
        shown_choice(&h, "Microphone").as_deref(),
        Some("USB headset microphone")
    );
    assert_eq!(
        h.state().model.devices.input.as_deref(),
        Some("alsa:hw:CARD=USB,DEV=0")
    );
    // The choice stays; redrawing asks for nothing more.
    assert_eq!(actions(&mut h), vec![]);
}

#[test]
fn picking_system_default_again_keeps_the_other_choice() {
    let mut h = logged_in_with_devices(Some("alsa:hw:CARD=HDMI,DEV=3".into()));
    open_settings(&mut h);
    assert_eq!(shown_choice(&h, "Speaker").as_deref(), Some("HDMI monitor"));

    h.get_by_role_and_label(Role::ComboBox, "Speaker").click();
    step(&mut h);
    h.get_by_label("Built-in speakers").click();
    assert_eq!(
        actions(&mut h),
        vec![UiAction::SetDevices {
            input: None,
            output: Some("alsa:default".into()),
        }]
    );

    h.get_by_role_and_label(Role::ComboBox, "Speaker").click();
    step(&mut h);
    h.get_by_label("System default").click();
    assert_eq!(
        actions(&mut h),
        vec![UiAction::SetDevices {
            input: None,
            output: None,
        }]
    );
    assert_eq!(
        shown_choice(&h, "Speaker").as_deref(),
        Some("System default")
    );
}

#[test]
fn a_remembered_device_that_is_unplugged_stays_chosen_under_its_id() {
    let mut h = logged_in_with_devices(Some("alsa:hw:CARD=Gone,DEV=0".into()));
    open_settings(&mut h);
    assert_eq!(
        shown_choice(&h, "Speaker").as_deref(),
        Some("alsa:hw:CARD=Gone,DEV=0")
    );
    assert_eq!(actions(&mut h), vec![]);
}
