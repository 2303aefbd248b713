//! Real sound cards through cpal: enumeration, capture, playback and failover.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{FromSample, SampleFormat, SizedSample, StreamConfig, SupportedStreamConfig};

use super::convert::RateConverter;
use super::pacer::Pacer;
use super::signal::FrameSignal;
use super::{
    AudioSink, AudioSource, DeviceError, DeviceEvent, FRAME_DURATION, FRAME_SAMPLES, Frame,
    SAMPLE_RATE_HZ,
};

/// How long device rings hold, at the device rate. Only what the engine has not read
/// yet is latency; the capacity just absorbs a stalled engine thread.
const RING_MILLIS: usize = 200;
/// Playback waits for this much audio before it starts (and after an underrun), so a
/// slightly late engine write does not click.
const PLAYBACK_PRIME_MILLIS: usize = 10;
/// Period the cpal callbacks are asked for, where the device lets us choose.
const CALLBACK_MILLIS: u32 = 10;
/// Retry interval for reopening a device while none works.
const RETRY_INTERVAL: Duration = Duration::from_secs(1);
/// While a selected device is replaced by the default, how often to try it again (a
/// replugged USB headset comes back).
const PROBE_INTERVAL: Duration = Duration::from_secs(3);
/// Events kept for the UI; older ones are dropped when nobody drains them.
const MAX_EVENTS: usize = 16;
/// A stream that stops calling back without reporting an error (some drivers do on
/// unplug) is treated as lost after this long.
const STALL_TIMEOUT: Duration = Duration::from_secs(1);

/// Whether a device records or plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeviceDirection {
    /// A microphone.
    Input,
    /// A speaker or headset.
    Output,
}

impl std::fmt::Display for DeviceDirection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Input => "input",
            Self::Output => "output",
        })
    }
}

/// A device's stable identifier, `host:device` (e.g. `alsa:hw:CARD=PCH,DEV=0`): the
/// same across restarts, suitable for the settings file.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId(String);

impl DeviceId {
    /// Wraps a string as read back from settings.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The identifier as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for DeviceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One device as the settings screen lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Stable identifier to store and select.
    pub id: DeviceId,
    /// Human-readable name.
    pub name: String,
    /// Whether it is the system default for its direction.
    pub is_default: bool,
}

/// Which device a stream should use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum DeviceSelection {
    /// Follow the system default device (on Linux the ALSA `default` PCM, which the
    /// sound server routes to whatever the desktop has chosen).
    #[default]
    SystemDefault,
    /// A specific device; when it fails, the stream falls back to the default.
    Id(DeviceId),
}

/// Input devices, with stable ids. An empty list when the machine has no audio
/// hardware (or the audio system cannot be queried); never an error for that.
pub fn input_devices() -> Result<Vec<DeviceInfo>, DeviceError> {
    Ok(list_devices(DeviceDirection::Input))
}

/// Output devices, with stable ids. An empty list when the machine has no audio
/// hardware; never an error for that.
pub fn output_devices() -> Result<Vec<DeviceInfo>, DeviceError> {
    Ok(list_devices(DeviceDirection::Output))
}

fn list_devices(direction: DeviceDirection) -> Vec<DeviceInfo> {
    let host = cpal::default_host();
    let default_id = default_device(&host, direction).and_then(|d| d.id().ok());
    let devices = match direction {
        DeviceDirection::Input => host.input_devices().map(|d| d.collect::<Vec<_>>()),
        DeviceDirection::Output => host.output_devices().map(|d| d.collect::<Vec<_>>()),
    };
    let devices = match devices {
        Ok(d) => d,
        Err(e) => {
            tracing::debug!(error = %e, %direction, "audio device enumeration failed");
            return Vec::new();
        }
    };
    let mut infos: Vec<DeviceInfo> = devices
        .iter()
        .filter(|d| usable(d, direction))
        .filter_map(|d| {
            let id = d.id().ok()?;
            let is_default = default_id.as_ref() == Some(&id);
            Some(DeviceInfo {
                id: DeviceId(id.to_string()),
                name: device_name(d),
                is_default,
            })
        })
        .collect();
    infos.sort_by(|a, b| b.is_default.cmp(&a.is_default).then(a.name.cmp(&b.name)));
    infos
}

/// A device is listed only when it offers a configuration; ALSA also lists PCM
/// definitions (e.g. `null`, which runs unclocked) that cannot carry a call.
fn usable(device: &cpal::Device, direction: DeviceDirection) -> bool {
    if device.id().is_ok_and(|id| id.id() == "null") {
        return false;
    }
    match direction {
        DeviceDirection::Input => device
            .supported_input_configs()
            .is_ok_and(|mut c| c.next().is_some()),
        DeviceDirection::Output => device
            .supported_output_configs()
            .is_ok_and(|mut c| c.next().is_some()),
    }
}

fn default_device(host: &cpal::Host, direction: DeviceDirection) -> Option<cpal::Device> {
    match direction {
        DeviceDirection::Input => host.default_input_device(),
        DeviceDirection::Output => host.default_output_device(),
    }
}

fn device_name(device: &cpal::Device) -> String {
    device
        .description()
        .map(|d| d.name().to_owned())
        .unwrap_or_else(|_| device.to_string())
}

fn device_info(device: &cpal::Device, is_default: bool) -> DeviceInfo {
    DeviceInfo {
        id: DeviceId(
            device
                .id()
                .map(|id| id.to_string())
                .unwrap_or_else(|_| device.to_string()),
        ),
        name: device_name(device),
        is_default,
    }
}

fn find_device(
    selection: &DeviceSelection,
    direction: DeviceDirection,
) -> Result<(cpal::Device, DeviceInfo), DeviceError> {
    let host = cpal::default_host();
    let no_device = |which: String| DeviceError::NoDevice { direction, which };
    match selection {
        DeviceSelection::SystemDefault => {
            let device = default_device(&host, direction)
                .ok_or_else(|| no_device("(no system default)".into()))?;
            let info = device_info(&device, true);
            Ok((device, info))
        }
        DeviceSelection::Id(id) => {
            let cpal_id: cpal::DeviceId =
                id.as_str().parse().map_err(|_| no_device(id.to_string()))?;
            let device = host
                .device_by_id(&cpal_id)
                .ok_or_else(|| no_device(id.to_string()))?;
            let is_default =
                default_device(&host, direction).and_then(|d| d.id().ok()) == Some(cpal_id);
            let info = device_info(&device, is_default);
            Ok((device, info))
        }
    }
}

/// Picks a stream configuration: a sample format we convert cheaply, 48 kHz when the
/// device has it (no resampling), else the device's default rate; few channels.
fn choose_config(
    device: &cpal::Device,
    direction: DeviceDirection,
    name: &str,
) -> Result<SupportedStreamConfig, DeviceError> {
    let backend = |source| DeviceError::Backend {
        device: name.to_owned(),
        source,
    };
    let (default, ranges): (_, Vec<_>) = match direction {
        DeviceDirection::Input => (
            device.default_input_config().ok(),
            device.supported_input_configs().map_err(backend)?.collect(),
        ),
        DeviceDirection::Output => (
            device.default_output_config().ok(),
            device
                .supported_output_configs()
                .map_err(backend)?
                .collect(),
        ),
    };
    let fallback_rate = default.as_ref().map_or(SAMPLE_RATE_HZ, |c| c.sample_rate());
    let best = ranges
        .into_iter()
        .filter_map(|r| format_rank(r.sample_format()).map(|rank| (rank, r)))
        .min_by_key(|(rank, r)| {
            (
                !r.contains_rate(SAMPLE_RATE_HZ),
                *rank,
                // Mono or stereo first: we mix to and from mono anyway.
                r.channels() > 2,
                r.channels(),
            )
        });
    match best {
        Some((_, r)) if r.contains_rate(SAMPLE_RATE_HZ) => Ok(r.with_sample_rate(SAMPLE_RATE_HZ)),
        Some((_, r)) => {
            let rate = fallback_rate.clamp(r.min_sample_rate(), r.max_sample_rate());
            Ok(r.with_sample_rate(rate))
        }
        None => default
            .filter(|c| format_rank(c.sample_format()).is_some())
            .ok_or_else(|| DeviceError::UnsupportedConfig {
                device: name.to_owned(),
            }),
    }
}

fn format_rank(format: SampleFormat) -> Option<u8> {
    Some(match format {
        SampleFormat::F32 => 0,
        SampleFormat::I16 => 1,
        SampleFormat::I32 => 2,
        SampleFormat::F64 => 3,
        SampleFormat::U16 => 4,
        SampleFormat::I8 => 5,
        SampleFormat::U8 => 6,
        _ => return None,
    })
}

fn stream_config(supported: &SupportedStreamConfig) -> StreamConfig {
    let mut config = supported.config();
    if let cpal::SupportedBufferSize::Range { min, max } = supported.buffer_size() {
        let wanted = supported.sample_rate() * CALLBACK_MILLIS / 1000;
        config.buffer_size = cpal::BufferSize::Fixed(wanted.clamp(*min, *max));
    }
    config
}

/// Counters shared with a callback, read by the engine.
#[derive(Default)]
struct Counters {
    /// Input samples dropped (capture ring full) or output samples missing (underrun).
    xrun_samples: AtomicU64,
}

/// The failover bookkeeping common to capture and playback (sans-IO: `now` is an
/// input). Decides when to reopen, and words the events.
#[derive(Debug)]
struct Failover {
    device: Option<DeviceInfo>,
    retry_at: Option<Instant>,
    /// Next attempt to go back to the selected device, while on a fallback.
    probe_at: Option<Instant>,
    events: VecDeque<DeviceEvent>,
}

impl Failover {
    fn live(device: DeviceInfo) -> Self {
        Self {
            device: Some(device),
            retry_at: None,
            probe_at: None,
            events: VecDeque::new(),
        }
    }

    /// No device yet; the first `on_reopened` / `on_reopen_failed` says which.
    fn unopened() -> Self {
        Self {
            device: None,
            retry_at: None,
            probe_at: None,
            events: VecDeque::new(),
        }
    }

    fn is_lost(&self) -> bool {
        self.retry_at.is_some()
    }

    fn retry_due(&self, now: Instant) -> bool {
        self.retry_at.is_some_and(|t| now >= t)
    }

    fn probe_due(&self, now: Instant) -> bool {
        self.probe_at.is_some_and(|t| now >= t)
    }

    fn on_probe_failed(&mut self, now: Instant) {
        self.probe_at = Some(now + PROBE_INTERVAL);
    }

    fn push_event(&mut self, event: DeviceEvent) {
        if self.events.len() == MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    /// `on_selected`: whether `to` is the device the user selected; if not, going back
    /// to it is tried every [`PROBE_INTERVAL`].
    fn on_reopened(
        &mut self,
        now: Instant,
        from: Option<DeviceInfo>,
        to: DeviceInfo,
        on_selected: bool,
        reason: String,
    ) {
        self.retry_at = None;
        self.probe_at = (!on_selected).then(|| now + PROBE_INTERVAL);
        self.device = Some(to.clone());
        self.push_event(DeviceEvent::Switched { from, to, reason });
    }

    fn on_reopen_failed(&mut self, now: Instant, from: Option<DeviceInfo>, reason: String) {
        let newly_lost = !self.is_lost();
        self.retry_at = Some(now + RETRY_INTERVAL);
        self.probe_at = None;
        self.device = None;
        if newly_lost {
            self.push_event(DeviceEvent::Lost {
                device: from,
                reason,
            });
        }
    }
}

/// Whether `device` is what `selection` asks for.
fn is_selected(selection: &DeviceSelection, device: &DeviceInfo) -> bool {
    match selection {
        DeviceSelection::SystemDefault => device.is_default,
        DeviceSelection::Id(id) => &device.id == id,
    }
}

/// The order in which to try devices: after a failure the failed (selected) device is
/// suspect, so the default goes first; when recovering from a loss, the selection.
fn reopen_order(selection: &DeviceSelection, after_failure: bool) -> Vec<DeviceSelection> {
    let default = DeviceSelection::SystemDefault;
    if *selection == default {
        vec![default]
    } else if after_failure {
        vec![default, selection.clone()]
    } else {
        vec![selection.clone(), default]
    }
}

fn is_fatal(kind: cpal::ErrorKind) -> bool {
    !matches!(
        kind,
        cpal::ErrorKind::Xrun | cpal::ErrorKind::RealtimeDenied | cpal::ErrorKind::DeviceChanged
    )
}

fn error_forwarder(tx: SyncSender<cpal::Error>) -> impl FnMut(cpal::Error) + Send + 'static {
    move |e| match tx.try_send(e) {
        Ok(()) | Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {}
    }
}

/// Drains stream errors; returns the reason of the first fatal one. A route change
/// (the backend moved a default-device stream to the new default by itself) is not
/// fatal but the user is told, as for a switch.
fn take_fatal_error(
    errors: &Receiver<cpal::Error>,
    failover: &mut Failover,
    direction: DeviceDirection,
) -> Option<String> {
    let mut fatal = None;
    let mut rerouted = None;
    while let Ok(e) = errors.try_recv() {
        if is_fatal(e.kind()) {
            fatal.get_or_insert_with(|| e.to_string());
        } else if e.kind() == cpal::ErrorKind::DeviceChanged {
            rerouted.get_or_insert_with(|| e.to_string());
        } else {
            tracing::debug!(error = %e, "audio stream reported a non-fatal condition");
        }
    }
    if fatal.is_none()
        && let Some(reason) = rerouted
        && let Some(device) = default_device(&cpal::default_host(), direction)
    {
        let to = device_info(&device, true);
        if failover.device.as_ref() != Some(&to) {
            let from = failover.device.replace(to.clone());
            failover.push_event(DeviceEvent::Switched { from, to, reason });
        }
    }
    fatal
}

/// The live part of a capture stream; replaced whole on a device switch.
struct CaptureLive {
    _stream: cpal::Stream,
    consumer: rtrb::Consumer<f32>,
    converter: RateConverter,
    errors: Receiver<cpal::Error>,
    counters: Arc<Counters>,
    device_hz: u32,
    last_data_at: Instant,
}

/// A microphone through cpal, delivering 20 ms 48 kHz mono frames.
///
/// The callback mixes to mono and pushes device-rate samples into a lock-free ring;
/// [`wait_frame`](AudioSource::wait_frame) resamples them on the engine thread. On a
/// stream error it switches to the system default device (or, with none, delivers
/// silence every 20 ms and retries every second), queueing a [`DeviceEvent`].
pub struct CpalCapture {
    selection: DeviceSelection,
    live: Option<CaptureLive>,
    signal: FrameSignal,
    failover: Failover,
    /// Paces silence while no device works.
    silence_pacer: Option<Pacer>,
}

impl std::fmt::Debug for CpalCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpalCapture")
            .field("selection", &self.selection)
            .field("device", &self.failover.device)
            .finish_non_exhaustive()
    }
}

impl CpalCapture {
    /// Opens and starts the selected input device. Fails with a clear error when it
    /// cannot (no hardware: [`DeviceError::NoDevice`] or [`DeviceError::Backend`]).
    pub fn open(selection: DeviceSelection) -> Result<Self, DeviceError> {
        let signal = FrameSignal::default();
        let (live, info) = open_capture(&selection, &signal)?;
        Ok(Self {
            selection,
            live: Some(live),
            signal,
            failover: Failover::live(info),
            silence_pacer: None,
        })
    }

    /// Like [`open`](Self::open), but never fails: when the selected device cannot be
    /// opened it falls back to the system default ([`DeviceEvent::Switched`] queued),
    /// and without any working device it starts in the lost state (silence every 20 ms,
    /// [`DeviceEvent::Lost`] queued, reopening retried every second). For calls that
    /// must go on without a microphone.
    pub fn open_or_lost(selection: DeviceSelection) -> Self {
        match Self::open(selection.clone()) {
            Ok(c) => c,
            Err(e) => {
                let mut capture = Self {
                    selection,
                    live: None,
                    signal: FrameSignal::default(),
                    failover: Failover::unopened(),
                    silence_pacer: None,
                };
                capture.reopen(Instant::now(), None, e.to_string());
                capture
            }
        }
    }

    /// The device in use, `None` while lost.
    pub fn device(&self) -> Option<&DeviceInfo> {
        self.failover.device.as_ref()
    }

    /// The device's sample rate, `None` while lost.
    pub fn device_rate_hz(&self) -> Option<u32> {
        self.live.as_ref().map(|l| l.device_hz)
    }

    /// Input samples the callback had to drop because the ring was full.
    pub fn overrun_samples(&self) -> u64 {
        self.live
            .as_ref()
            .map_or(0, |l| l.counters.xrun_samples.load(Ordering::Relaxed))
    }

    /// The resampler's delay in 48 kHz samples (0 when the device runs at 48 kHz).
    pub fn resampler_delay_samples(&self) -> usize {
        self.live
            .as_ref()
            .map_or(0, |l| l.converter.delay_samples())
    }

    fn check_health(&mut self, now: Instant) {
        if let Some(live) = &self.live {
            // An empty ring as well: an engine that did not read for a while finds data.
            let stalled = live.consumer.is_empty()
                && now.saturating_duration_since(live.last_data_at) > STALL_TIMEOUT;
            let failure =
                take_fatal_error(&live.errors, &mut self.failover, DeviceDirection::Input)
                    .or_else(|| stalled.then(|| "the device stopped delivering audio".to_owned()));
            if let Some(reason) = failure {
                tracing::info!(%reason, "capture device failed; switching to the default device");
                self.live = None;
                let from = self.failover.device.take();
                self.reopen(now, from, reason);
            } else if self.failover.probe_due(now) {
                match open_capture(&self.selection, &self.signal) {
                    Ok((live, info)) => {
                        self.live = Some(live);
                        let from = self.failover.device.take();
                        let reason = "the selected device is back".to_owned();
                        self.failover.on_reopened(now, from, info, true, reason);
                    }
                    Err(_) => self.failover.on_probe_failed(now),
                }
            }
        } else if self.failover.retry_due(now) {
            self.reopen(now, None, "a capture device is available again".into());
        }
    }

    fn reopen(&mut self, now: Instant, from: Option<DeviceInfo>, reason: String) {
        let mut attempt = Err(DeviceError::NoDevice {
            direction: DeviceDirection::Input,
            which: "(none tried)".into(),
        });
        for selection in reopen_order(&self.selection, from.is_some()) {
            attempt = open_capture(&selection, &self.signal);
            if attempt.is_ok() {
                break;
            }
        }
        match attempt {
            Ok((live, info)) => {
                self.live = Some(live);
                self.silence_pacer = None;
                let on_selected = is_selected(&self.selection, &info);
                self.failover
                    .on_reopened(now, from, info, on_selected, reason);
            }
            Err(e) => {
                tracing::debug!(error = %e, "no capture device to switch to");
                if self.silence_pacer.is_none() {
                    self.silence_pacer = Some(Pacer::new(now, FRAME_DURATION));
                }
                self.failover.on_reopen_failed(now, from, reason);
            }
        }
    }
}

fn open_capture(
    selection: &DeviceSelection,
    signal: &FrameSignal,
) -> Result<(CaptureLive, DeviceInfo), DeviceError> {
    let (device, info) = find_device(selection, DeviceDirection::Input)?;
    let supported = choose_config(&device, DeviceDirection::Input, &info.name)?;
    let device_hz = supported.sample_rate();
    let capacity = (device_hz as usize * RING_MILLIS / 1000).max(FRAME_SAMPLES);
    let (err_tx, errors) = sync_channel(8);
    let counters = Arc::new(Counters::default());
    let mut config = stream_config(&supported);
    // A fresh ring per attempt: a failed build has consumed its producer.
    let build = |config: StreamConfig| {
        let (producer, consumer) = rtrb::RingBuffer::new(capacity);
        build_capture_stream(
            &device,
            supported.sample_format(),
            config,
            producer,
            signal.clone(),
            counters.clone(),
            err_tx.clone(),
        )
        .map(|s| (s, consumer))
    };
    let (stream, consumer) = match build(config) {
        Ok(s) => s,
        Err(e) if matches!(config.buffer_size, cpal::BufferSize::Fixed(_)) => {
            tracing::debug!(error = %e, "fixed callback size refused; using the device default");
            config.buffer_size = cpal::BufferSize::Default;
            build(config)?
        }
        Err(e) => return Err(e),
    };
    stream.play().map_err(|source| DeviceError::Backend {
        device: info.name.clone(),
        source,
    })?;
    let converter = RateConverter::new(device_hz, SAMPLE_RATE_HZ, capacity.max(4 * FRAME_SAMPLES))?;
    tracing::debug!(device = %info.name, device_hz, channels = config.channels, "capture started");
    Ok((
        CaptureLive {
            _stream: stream,
            consumer,
            converter,
            errors,
            counters,
            device_hz,
            last_data_at: Instant::now(),
        },
        info,
    ))
}

fn build_capture_stream(
    device: &cpal::Device,
    format: SampleFormat,
    config: StreamConfig,
    producer: rtrb::Producer<f32>,
    signal: FrameSignal,
    counters: Arc<Counters>,
    errors: SyncSender<cpal::Error>,
) -> Result<cpal::Stream, DeviceError> {
    let (p, s, c, e) = (producer, signal, counters, errors);
    let result = match format {
        SampleFormat::F32 => capture_typed::<f32>(device, config, p, s, c, e),
        SampleFormat::I16 => capture_typed::<i16>(device, config, p, s, c, e),
        SampleFormat::I32 => capture_typed::<i32>(device, config, p, s, c, e),
        SampleFormat::F64 => capture_typed::<f64>(device, config, p, s, c, e),
        SampleFormat::U16 => capture_typed::<u16>(device, config, p, s, c, e),
        SampleFormat::I8 => capture_typed::<i8>(device, config, p, s, c, e),
        SampleFormat::U8 => capture_typed::<u8>(device, config, p, s, c, e),
        _ => {
            return Err(DeviceError::UnsupportedConfig {
                device: device_name(device),
            });
        }
    };
    result.map_err(|source| DeviceError::Backend {
        device: device_name(device),
        source,
    })
}

fn capture_typed<T>(
    device: &cpal::Device,
    config: StreamConfig,
    mut producer: rtrb::Producer<f32>,
    signal: FrameSignal,
    counters: Arc<Counters>,
    errors: SyncSender<cpal::Error>,
) -> Result<cpal::Stream, cpal::Error>
where
    T: SizedSample,
    f32: FromSample<T>,
{
    let channels = usize::from(config.channels).max(1);
    let inv = 1.0 / channels as f32;
    device.build_input_stream::<T, _, _>(
        config,
        move |data: &[T], _| {
            // Real-time: no allocation, no lock, no blocking below.
            let mut dropped = 0u64;
            for frame in data.chunks_exact(channels) {
                let sum: f32 = frame.iter().map(|&s| f32::from_sample_(s)).sum();
                if producer.push(sum * inv).is_err() {
                    dropped += 1;
                }
            }
            if dropped > 0 {
                counters.xrun_samples.fetch_add(dropped, Ordering::Relaxed);
            }
            signal.notify();
        },
        error_forwarder(errors),
        None,
    )
}

impl AudioSource for CpalCapture {
    fn read_frame(&mut self, out: &mut Frame) -> Result<bool, DeviceError> {
        let now = Instant::now();
        self.check_health(now);
        if let Some(live) = self.live.as_mut() {
            let available = live.consumer.slots();
            if available > 0 {
                live.last_data_at = now;
            }
            if let Ok(chunk) = live.consumer.read_chunk(available) {
                let (a, b) = chunk.as_slices();
                live.converter.push(a);
                live.converter.push(b);
                chunk.commit_all();
            }
            return Ok(live.converter.pop(out));
        }
        if let Some(pacer) = self.silence_pacer.as_mut()
            && pacer.handle_timeout(now) > 0
        {
            out.fill(0.0);
            return Ok(true);
        }
        Ok(false)
    }

    fn wait_frame(&mut self, out: &mut Frame, timeout: Duration) -> Result<bool, DeviceError> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.read_frame(out)? {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            match (&self.live, &self.silence_pacer) {
                (Some(live), _) => {
                    let consumer = &live.consumer;
                    self.signal.wait_until(deadline, || !consumer.is_empty());
                }
                (None, Some(pacer)) => {
                    let wake = pacer.next_deadline().min(deadline);
                    std::thread::sleep(wake.saturating_duration_since(now));
                }
                (None, None) => std::thread::sleep(deadline - now),
            }
        }
    }

    fn poll_event(&mut self) -> Option<DeviceEvent> {
        self.failover.events.pop_front()
    }

    fn buffered_samples(&self) -> usize {
        self.live.as_ref().map_or(0, |l| {
            let ring_48k =
                l.consumer.slots() as u64 * u64::from(SAMPLE_RATE_HZ) / u64::from(l.device_hz);
            ring_48k as usize + l.converter.available()
        })
    }
}

/// The live part of a playback stream; replaced whole on a device switch.
struct PlaybackLive {
    _stream: cpal::Stream,
    producer: rtrb::Producer<f32>,
    converter: RateConverter,
    errors: Receiver<cpal::Error>,
    counters: Arc<Counters>,
    device_hz: u32,
    /// Since when the ring has been full (the callback is not consuming).
    full_since: Option<Instant>,
}

/// A speaker through cpal, fed 20 ms 48 kHz mono frames.
///
/// [`write_frame`](AudioSink::write_frame) resamples on the engine thread and pushes
/// device-rate samples into a lock-free ring; the callback copies them to every
/// channel and plays silence when the ring runs dry (then waits for 10 ms of audio
/// before resuming, so a late frame does not crackle). Failover as for
/// [`CpalCapture`]; while lost, frames are discarded.
pub struct CpalPlayback {
    selection: DeviceSelection,
    live: Option<PlaybackLive>,
    failover: Failover,
}

impl std::fmt::Debug for CpalPlayback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpalPlayback")
            .field("selection", &self.selection)
            .field("device", &self.failover.device)
            .finish_non_exhaustive()
    }
}

impl CpalPlayback {
    /// Opens and starts the selected output device. Note that on ALSA the default
    /// output always exists and fails only here, when opened.
    pub fn open(selection: DeviceSelection) -> Result<Self, DeviceError> {
        let (live, info) = open_playback(&selection)?;
        Ok(Self {
            selection,
            live: Some(live),
            failover: Failover::live(info),
        })
    }

    /// Like [`open`](Self::open), but never fails: when the selected device cannot be
    /// opened it falls back to the system default ([`DeviceEvent::Switched`] queued),
    /// and without any working device it starts lost (frames discarded,
    /// [`DeviceEvent::Lost`] queued, retried every second).
    pub fn open_or_lost(selection: DeviceSelection) -> Self {
        match Self::open(selection.clone()) {
            Ok(p) => p,
            Err(e) => {
                let mut playback = Self {
                    selection,
                    live: None,
                    failover: Failover::unopened(),
                };
                playback.reopen(Instant::now(), None, e.to_string());
                playback
            }
        }
    }

    /// The device in use, `None` while lost.
    pub fn device(&self) -> Option<&DeviceInfo> {
        self.failover.device.as_ref()
    }

    /// The device's sample rate, `None` while lost.
    pub fn device_rate_hz(&self) -> Option<u32> {
        self.live.as_ref().map(|l| l.device_hz)
    }

    /// Output samples the callback had to fill with silence.
    pub fn underrun_samples(&self) -> u64 {
        self.live
            .as_ref()
            .map_or(0, |l| l.counters.xrun_samples.load(Ordering::Relaxed))
    }

    /// The resampler's delay in device samples (0 when the device runs at 48 kHz).
    pub fn resampler_delay_samples(&self) -> usize {
        self.live
            .as_ref()
            .map_or(0, |l| l.converter.delay_samples())
    }

    fn check_health(&mut self, now: Instant) {
        if let Some(live) = &self.live {
            let stalled = live
                .full_since
                .is_some_and(|t| now.saturating_duration_since(t) > STALL_TIMEOUT);
            let failure =
                take_fatal_error(&live.errors, &mut self.failover, DeviceDirection::Output)
                    .or_else(|| stalled.then(|| "the device stopped playing audio".to_owned()));
            if let Some(reason) = failure {
                tracing::info!(%reason, "playback device failed; switching to the default device");
                self.live = None;
                let from = self.failover.device.take();
                self.reopen(now, from, reason);
            } else if self.failover.probe_due(now) {
                match open_playback(&self.selection) {
                    Ok((live, info)) => {
                        self.live = Some(live);
                        let from = self.failover.device.take();
                        let reason = "the selected device is back".to_owned();
                        self.failover.on_reopened(now, from, info, true, reason);
                    }
                    Err(_) => self.failover.on_probe_failed(now),
                }
            }
        } else if self.failover.retry_due(now) {
            self.reopen(now, None, "a playback device is available again".into());
        }
    }

    fn reopen(&mut self, now: Instant, from: Option<DeviceInfo>, reason: String) {
        let mut attempt = Err(DeviceError::NoDevice {
            direction: DeviceDirection::Output,
            which: "(none tried)".into(),
        });
        for selection in reopen_order(&self.selection, from.is_some()) {
            attempt = open_playback(&selection);
            if attempt.is_ok() {
                break;
            }
        }
        match attempt {
            Ok((live, info)) => {
                self.live = Some(live);
                let on_selected = is_selected(&self.selection, &info);
                self.failover
                    .on_reopened(now, from, info, on_selected, reason);
            }
            Err(e) => {
                tracing::debug!(error = %e, "no playback device to switch to");
                self.failover.on_reopen_failed(now, from, reason);
            }
        }
    }
}

fn open_playback(selection: &DeviceSelection) -> Result<(PlaybackLive, DeviceInfo), DeviceError> {
    let (device, info) = find_device(selection, DeviceDirection::Output)?;
    let supported = choose_config(&device, DeviceDirection::Output, &info.name)?;
    let device_hz = supported.sample_rate();
    let capacity = (device_hz as usize * RING_MILLIS / 1000).max(FRAME_SAMPLES);
    let prime = device_hz as usize * PLAYBACK_PRIME_MILLIS / 1000;
    let (err_tx, errors) = sync_channel(8);
    let counters = Arc::new(Counters::default());
    let mut config = stream_config(&supported);
    let build = |config: StreamConfig| {
        let (producer, consumer) = rtrb::RingBuffer::new(capacity);
        build_playback_stream(
            &device,
            supported.sample_format(),
            config,
            consumer,
            prime,
            counters.clone(),
            err_tx.clone(),
        )
        .map(|s| (s, producer))
    };
    let (stream, producer) = match build(config) {
        Ok(s) => s,
        Err(e) if matches!(config.buffer_size, cpal::BufferSize::Fixed(_)) => {
            tracing::debug!(error = %e, "fixed callback size refused; using the device default");
            config.buffer_size = cpal::BufferSize::Default;
            build(config)?
        }
        Err(e) => return Err(e),
    };
    stream.play().map_err(|source| DeviceError::Backend {
        device: info.name.clone(),
        source,
    })?;
    let converter = RateConverter::new(SAMPLE_RATE_HZ, device_hz, capacity)?;
    tracing::debug!(device = %info.name, device_hz, channels = config.channels, "playback started");
    Ok((
        PlaybackLive {
            _stream: stream,
            producer,
            converter,
            errors,
            counters,
            device_hz,
            full_since: None,
        },
        info,
    ))
}

fn build_playback_stream(
    device: &cpal::Device,
    format: SampleFormat,
    config: StreamConfig,
    consumer: rtrb::Consumer<f32>,
    prime: usize,
    counters: Arc<Counters>,
    errors: SyncSender<cpal::Error>,
) -> Result<cpal::Stream, DeviceError> {
    let (q, c, e) = (consumer, counters, errors);
    let result = match format {
        SampleFormat::F32 => playback_typed::<f32>(device, config, q, prime, c, e),
        SampleFormat::I16 => playback_typed::<i16>(device, config, q, prime, c, e),
        SampleFormat::I32 => playback_typed::<i32>(device, config, q, prime, c, e),
        SampleFormat::F64 => playback_typed::<f64>(device, config, q, prime, c, e),
        SampleFormat::U16 => playback_typed::<u16>(device, config, q, prime, c, e),
        SampleFormat::I8 => playback_typed::<i8>(device, config, q, prime, c, e),
        SampleFormat::U8 => playback_typed::<u8>(device, config, q, prime, c, e),
        _ => {
            return Err(DeviceError::UnsupportedConfig {
                device: device_name(device),
            });
        }
    };
    result.map_err(|source| DeviceError::Backend {
        device: device_name(device),
        source,
    })
}

fn playback_typed<T>(
    device: &cpal::Device,
    config: StreamConfig,
    mut consumer: rtrb::Consumer<f32>,
    prime: usize,
    counters: Arc<Counters>,
    errors: SyncSender<cpal::Error>,
) -> Result<cpal::Stream, cpal::Error>
where
    T: SizedSample + FromSample<f32>,
{
    let channels = usize::from(config.channels).max(1);
    let mut priming = true;
    device.build_output_stream::<T, _, _>(
        config,
        move |data: &mut [T], _| {
            // Real-time: no allocation, no lock, no blocking below.
            if priming && consumer.slots() >= prime {
                priming = false;
            }
            let mut missing = 0u64;
            for frame in data.chunks_exact_mut(channels) {
                let sample = if priming {
                    0.0
                } else {
                    match consumer.pop() {
                        Ok(s) => s,
                        Err(_) => {
                            priming = true;
                            missing += 1;
                            0.0
                        }
                    }
                };
                let value = T::from_sample_(sample);
                for out in frame {
                    *out = value;
                }
            }
            if missing > 0 {
                counters.xrun_samples.fetch_add(missing, Ordering::Relaxed);
            }
        },
        error_forwarder(errors),
        None,
    )
}

impl AudioSink for CpalPlayback {
    fn write_frame(&mut self, frame: &Frame) -> Result<bool, DeviceError> {
        let now = Instant::now();
        self.check_health(now);
        let Some(live) = self.live.as_mut() else {
            return Ok(true);
        };
        if live.producer.slots() == 0 {
            live.full_since.get_or_insert(now);
        } else {
            live.full_since = None;
        }
        let dropped_before = live.converter.dropped_samples();
        live.converter.push(frame);
        let n = live.producer.slots().min(live.converter.available());
        if let Ok(mut chunk) = live.producer.write_chunk(n) {
            let (a, b) = chunk.as_mut_slices();
            live.converter.pop(a);
            live.converter.pop(b);
            chunk.commit_all();
        }
        Ok(live.converter.dropped_samples() == dropped_before)
    }

    fn poll_event(&mut self) -> Option<DeviceEvent> {
        self.failover.events.pop_front()
    }

    fn buffered_samples(&self) -> usize {
        self.live.as_ref().map_or(0, |l| {
            let queued =
                l.producer.buffer().capacity() - l.producer.slots() + l.converter.available();
            (queued as u64 * u64::from(SAMPLE_RATE_HZ) / u64::from(l.device_hz)) as usize
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str) -> DeviceInfo {
        DeviceInfo {
            id: DeviceId::new(format!("alsa:{name}")),
            name: name.into(),
            is_default: false,
        }
    }

    #[test]
    fn a_failed_reopen_reports_lost_once_and_retries_every_second() {
        let t0 = Instant::now();
        let mut f = Failover::live(info("usb"));
        f.on_reopen_failed(t0, Some(info("usb")), "unplugged".into());
        f.on_reopen_failed(t0 + RETRY_INTERVAL, None, "still nothing".into());
        assert!(matches!(
            f.events.pop_front(),
            Some(DeviceEvent::Lost { device: Some(d), .. }) if d.name == "usb"
        ));
        assert_eq!(f.events.pop_front(), None, "one Lost per outage");
        assert!(!f.retry_due(t0 + RETRY_INTERVAL));
        assert!(f.retry_due(t0 + 2 * RETRY_INTERVAL));
        f.on_reopened(t0, None, info("default"), true, "back".into());
        assert!(!f.is_lost());
        assert!(matches!(
            f.events.pop_front(),
            Some(DeviceEvent::Switched { to, .. }) if to.name == "default"
        ));
    }

    #[test]
    fn on_a_fallback_device_the_selected_one_is_probed_until_it_is_back() {
        let t0 = Instant::now();
        let mut f = Failover::live(info("usb"));
        f.on_reopened(
            t0,
            Some(info("usb")),
            info("default"),
            false,
            "unplugged".into(),
        );
        assert!(!f.probe_due(t0));
        assert!(f.probe_due(t0 + PROBE_INTERVAL));
        f.on_probe_failed(t0 + PROBE_INTERVAL);
        assert!(!f.probe_due(t0 + PROBE_INTERVAL));
        assert!(f.probe_due(t0 + 2 * PROBE_INTERVAL));
        f.on_reopened(
            t0 + 2 * PROBE_INTERVAL,
            Some(info("default")),
            info("usb"),
            true,
            "back".into(),
        );
        assert!(
            !f.probe_due(t0 + 100 * PROBE_INTERVAL),
            "no probing on the selected device"
        );
    }

    #[test]
    fn after_a_failure_the_default_goes_first_and_on_recovery_the_selection() {
        let usb = DeviceSelection::Id(DeviceId::new("alsa:usb"));
        assert_eq!(
            reopen_order(&usb, true),
            vec![DeviceSelection::SystemDefault, usb.clone()]
        );
        assert_eq!(
            reopen_order(&usb, false),
            vec![usb.clone(), DeviceSelection::SystemDefault]
        );
        assert_eq!(
            reopen_order(&DeviceSelection::SystemDefault, true),
            vec![DeviceSelection::SystemDefault]
        );
    }

    #[test]
    fn only_route_changes_and_xruns_keep_a_stream() {
        assert!(!is_fatal(cpal::ErrorKind::Xrun));
        assert!(!is_fatal(cpal::ErrorKind::DeviceChanged));
        assert!(is_fatal(cpal::ErrorKind::DeviceNotAvailable));
        assert!(is_fatal(cpal::ErrorKind::StreamInvalidated));
    }

    #[test]
    fn unread_events_stay_bounded() {
        let mut f = Failover::live(info("a"));
        for i in 0..100 {
            f.on_reopened(
                Instant::now(),
                None,
                info(&format!("d{i}")),
                true,
                "x".into(),
            );
        }
        assert_eq!(f.events.len(), MAX_EVENTS);
    }
}
