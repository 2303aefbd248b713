//! Virtual devices that run in real time without hardware: one frame every 20 ms.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::pacer::Pacer;
use super::signal::FrameSignal;
use super::{
    AudioSink, AudioSource, DeviceError, DeviceEvent, FRAME_DURATION, FRAME_SAMPLES, Frame,
    FrameSink, FrameSource, SILENCE,
};

/// Frames the rings between a pacing thread and the engine hold. Three frames absorb
/// one late engine wake-up without dropping anything.
pub const PACED_RING_FRAMES: usize = 3;

/// How long a [`PacedSink`] tick waits for a frame that is late before it plays
/// silence instead: engine scheduling jitter on a loaded machine.
const LATE_WRITE_GRACE: Duration = Duration::from_millis(8);

/// A microphone stand-in: a thread pulls one frame from a [`FrameSource`] every 20 ms
/// (absolute deadlines, no drift) and hands it to the engine through a lock-free ring.
///
/// When the engine does not read in time and the ring is full, the newest frame is
/// dropped and counted ([`overruns`](Self::overruns)).
pub struct PacedSource {
    consumer: rtrb::Consumer<f32>,
    signal: FrameSignal,
    stop: Arc<AtomicBool>,
    overruns: Arc<AtomicU64>,
    grid_start: Instant,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for PacedSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacedSource")
            .field("buffered_samples", &self.consumer.slots())
            .finish_non_exhaustive()
    }
}

impl PacedSource {
    /// Starts the pacing thread; the first frame is ready 20 ms from now.
    pub fn start(source: impl FrameSource + 'static) -> Result<Self, DeviceError> {
        Self::start_with_capacity(source, PACED_RING_FRAMES)
    }

    /// Like [`start`](Self::start) with a ring of `ring_frames` frames (at least 1).
    pub fn start_with_capacity(
        mut source: impl FrameSource + 'static,
        ring_frames: usize,
    ) -> Result<Self, DeviceError> {
        let (mut producer, consumer) = rtrb::RingBuffer::new(ring_frames.max(1) * FRAME_SAMPLES);
        let signal = FrameSignal::default();
        let stop = Arc::new(AtomicBool::new(false));
        let overruns = Arc::new(AtomicU64::new(0));
        let grid_start = Instant::now();
        let thread = {
            let (signal, stop, overruns) = (signal.clone(), stop.clone(), overruns.clone());
            thread::Builder::new()
                .name("paced-source".into())
                .spawn(move || {
                    let mut frame = SILENCE;
                    run_paced(&stop, grid_start, |ticks| {
                        for _ in 0..ticks {
                            source.next_frame(&mut frame);
                            if producer.push_entire_slice(&frame).is_err() {
                                overruns.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        signal.notify();
                    });
                })
                .map_err(|e| DeviceError::Thread(e.to_string()))?
        };
        Ok(Self {
            consumer,
            signal,
            stop,
            overruns,
            grid_start,
            thread: Some(thread),
        })
    }

    /// Where this source's 20 ms grid starts: frames are produced at
    /// `grid_start + n * 20 ms`, n ≥ 1. Pass it to [`PacedSink::start_on_grid`].
    pub fn grid_start(&self) -> Instant {
        self.grid_start
    }

    /// Frames dropped because the engine did not read them in time.
    pub fn overruns(&self) -> u64 {
        self.overruns.load(Ordering::Relaxed)
    }

    /// Samples the ring can hold.
    pub fn capacity_samples(&self) -> usize {
        self.consumer.buffer().capacity()
    }

    /// Stops the pacing thread (also done on drop).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for PacedSource {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl AudioSource for PacedSource {
    fn read_frame(&mut self, out: &mut Frame) -> Result<bool, DeviceError> {
        Ok(self.consumer.pop_entire_slice(out).is_ok())
    }

    fn wait_frame(&mut self, out: &mut Frame, timeout: Duration) -> Result<bool, DeviceError> {
        let deadline = Instant::now() + timeout;
        let consumer = &self.consumer;
        self.signal
            .wait_until(deadline, || consumer.slots() >= FRAME_SAMPLES);
        self.read_frame(out)
    }

    fn poll_event(&mut self) -> Option<DeviceEvent> {
        None
    }

    fn buffered_samples(&self) -> usize {
        self.consumer.slots()
    }
}

/// A speaker stand-in: a thread hands one frame every 20 ms to a [`FrameSink`]: the
/// frame the engine wrote, or silence when it wrote nothing in time (up to 8 ms late
/// still counts as in time). A [`WavRecorder`]
/// behind it thus gets a file whose timeline matches wall time.
///
/// [`WavRecorder`]: super::WavRecorder
pub struct PacedSink {
    producer: rtrb::Producer<f32>,
    stop: Arc<AtomicBool>,
    underruns: Arc<AtomicU64>,
    thread: Option<JoinHandle<Result<(), DeviceError>>>,
}

impl std::fmt::Debug for PacedSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacedSink")
            .field("buffered_samples", &self.buffered_samples())
            .finish_non_exhaustive()
    }
}

impl PacedSink {
    /// Starts the pacing thread; its first tick is 20 ms from now.
    pub fn start(sink: impl FrameSink + 'static) -> Result<Self, DeviceError> {
        Self::start_with_capacity(sink, PACED_RING_FRAMES, Instant::now())
    }

    /// Starts the pacing thread half a frame out of phase with a [`PacedSource`]'s grid
    /// ([`PacedSource::grid_start`]). An engine that writes right after each capture
    /// frame then waits about 10 ms for the speaker tick, with ±10 ms of slack for its
    /// own scheduling jitter; on the same phase it would wait a whole frame.
    pub fn start_on_grid(
        sink: impl FrameSink + 'static,
        grid_start: Instant,
    ) -> Result<Self, DeviceError> {
        Self::start_with_capacity(sink, PACED_RING_FRAMES, grid_start + FRAME_DURATION / 2)
    }

    /// Like [`start`](Self::start) with a ring of `ring_frames` frames (at least 1),
    /// ticking at `grid_start + n * 20 ms`.
    pub fn start_with_capacity(
        mut sink: impl FrameSink + 'static,
        ring_frames: usize,
        grid_start: Instant,
    ) -> Result<Self, DeviceError> {
        let (producer, mut consumer) = rtrb::RingBuffer::new(ring_frames.max(1) * FRAME_SAMPLES);
        let stop = Arc::new(AtomicBool::new(false));
        let underruns = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, underruns) = (stop.clone(), underruns.clone());
            thread::Builder::new()
                .name("paced-sink".into())
                .spawn(move || {
                    let mut frame = SILENCE;
                    let mut first_error = None;
                    run_paced(&stop, grid_start, |ticks| {
                        for tick in 0..ticks {
                            // A frame a little late is still played on this tick rather
                            // than after a tick of silence (which would also add a frame
                            // of latency for good). Not while catching up.
                            if tick + 1 == ticks {
                                let grace_end = Instant::now() + LATE_WRITE_GRACE;
                                while consumer.slots() < FRAME_SAMPLES
                                    && Instant::now() < grace_end
                                    && !stop.load(Ordering::Relaxed)
                                {
                                    thread::sleep(Duration::from_millis(1));
                                }
                            }
                            if consumer.pop_entire_slice(&mut frame).is_err() {
                                underruns.fetch_add(1, Ordering::Relaxed);
                                frame = SILENCE;
                            }
                            if first_error.is_none()
                                && let Err(e) = sink.put_frame(&frame)
                            {
                                first_error = Some(e);
                            }
                        }
                    });
                    let finished = sink.finish();
                    match first_error {
                        Some(e) => Err(e),
                        None => finished,
                    }
                })
                .map_err(|e| DeviceError::Thread(e.to_string()))?
        };
        Ok(Self {
            producer,
            stop,
            underruns,
            thread: Some(thread),
        })
    }

    /// Ticks that found no frame and played silence.
    pub fn underruns(&self) -> u64 {
        self.underruns.load(Ordering::Relaxed)
    }

    /// Samples the ring can hold.
    pub fn capacity_samples(&self) -> usize {
        self.producer.buffer().capacity()
    }

    /// Stops the pacing thread and finishes the sink (a WAV file gets its final
    /// header); returns the first error the sink reported.
    pub fn finish(mut self) -> Result<(), DeviceError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), DeviceError> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| DeviceError::Thread("paced sink thread panicked".into()))?,
            None => Ok(()),
        }
    }
}

impl Drop for PacedSink {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::warn!(error = %e, "paced sink ended with an error");
        }
    }
}

impl AudioSink for PacedSink {
    fn write_frame(&mut self, frame: &Frame) -> Result<bool, DeviceError> {
        Ok(self.producer.push_entire_slice(frame).is_ok())
    }

    fn poll_event(&mut self) -> Option<DeviceEvent> {
        None
    }

    fn buffered_samples(&self) -> usize {
        self.producer.buffer().capacity() - self.producer.slots()
    }

    fn close(&mut self) -> Result<(), DeviceError> {
        self.shutdown()
    }
}

/// Calls `tick(n)` with the number of due ticks on the 20 ms grid from `grid_start`
/// until `stop` is set.
fn run_paced(stop: &AtomicBool, grid_start: Instant, mut tick: impl FnMut(u64)) {
    let mut pacer = Pacer::new(grid_start, FRAME_DURATION);
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let deadline = pacer.next_deadline();
        if deadline > now {
            thread::sleep(deadline - now);
        }
        let due = pacer.handle_timeout(Instant::now());
        if due > 0 {
            tick(due);
        }
    }
}
