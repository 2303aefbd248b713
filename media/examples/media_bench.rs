//! Benchmarks of the media core (run with `--release`).
//!
//! ```text
//! media_bench pesq-wavs <speech.wav> <outdir>   # degraded WAVs + manifest for bench/pesq.py
//! media_bench latency <speech.wav>              # added latency at 0 and 30 ms jitter
//! media_bench cpu <speech.wav>                  # CPU per call: encode, decode, encryption
//! media_bench dred-oracle <speech.wav> <outdir>  # FEC vs DRED at 20% loss, oracle timing
//! ```
//! Used by `bench/pesq.sh` and `bench/media_core.sh`; figures go to docs/bench/media.md.

use std::error::Error;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use media::codec::{
    Bandwidth, Decoder, DecoderConfig, Encoder, EncoderConfig, FRAME_SAMPLES, plain_decoder,
};
use media::jitter::{JitterBuffer, JitterConfig};
use media::packet::{Flags, MediaPacket, PacketHeader};
use media::pipeline::{Channel, MaskChannel, SimConfig, align, simulate};
use media::secure::{Direction, PacketOpener, PacketSealer};
use media::sender::SenderConfig;
use netsim::{Impairment, ImpairmentConfig, LossModel};

type Res<T> = Result<T, Box<dyn Error>>;

fn read_wav(path: &Path) -> Res<Vec<f32>> {
    let mut r = hound::WavReader::open(path)?;
    if r.spec().sample_rate != 48_000 || r.spec().channels != 1 {
        return Err("need a 48 kHz mono WAV".into());
    }
    Ok(r.samples::<i16>()
        .map(|s| s.map(|s| f32::from(s) / 32768.0))
        .collect::<Result<_, _>>()?)
}

fn write_wav(path: &Path, samples: &[f32]) -> Res<()> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec)?;
    for s in samples {
        w.write_sample((s.clamp(-1.0, 1.0) * 32767.0) as i16)?;
    }
    w.finalize()?;
    Ok(())
}

/// Which packets (by send index) a loss model drops, drawn once so every variant loses
/// exactly the same packets.
fn loss_mask(loss: LossModel, packets: usize, seed: u64) -> Vec<bool> {
    let mut net: Impairment<usize> = Impairment::new(
        ImpairmentConfig {
            loss,
            ..ImpairmentConfig::default()
        },
        seed,
    );
    let now = Instant::now();
    let mut lost = vec![true; packets];
    for i in 0..packets {
        net.handle_packet(now, i);
        while let Some(d) = net.poll_packet(now) {
            lost[d] = false;
        }
    }
    lost
}

/// Plain libopus: no FEC, no DRED, default decoder (complexity 0 PLC), perfect timing.
fn baseline(input: &[f32], lost: &[bool]) -> Res<Vec<f32>> {
    let mut enc = Encoder::new(EncoderConfig {
        fec: false,
        dred_duration_10ms: 0,
        bitrate_bps: bitrate_bps(),
        complexity: encoder_complexity(),
        max_bandwidth: max_bandwidth(),
        ..EncoderConfig::default()
    })?;
    let mut dec = plain_decoder()?;
    let mut out = Vec::with_capacity(input.len());
    let mut frame = [0.0f32; FRAME_SAMPLES];
    for (i, chunk) in input.chunks(FRAME_SAMPLES).enumerate() {
        let mut pcm = [0.0f32; FRAME_SAMPLES];
        pcm[..chunk.len()].copy_from_slice(chunk);
        let packet = enc.encode(&pcm)?;
        if lost.get(i).copied().unwrap_or(false) || dec.decode(&packet, &mut frame).is_err() {
            dec.conceal(&mut frame)?;
        }
        out.extend_from_slice(&frame);
    }
    Ok(out)
}

/// libopus with FEC and the pipeline's decoder but perfect timing and an oracle for loss (no jitter
/// buffer): the upper bound for the pipeline's FEC column, showing what the jitter buffer's
/// time shifts cost.
fn ideal_fec(input: &[f32], lost: &[bool], loss_pct: u8) -> Res<Vec<f32>> {
    let mut enc = Encoder::new(EncoderConfig {
        expected_loss_pct: loss_pct,
        dred_duration_10ms: 0,
        bitrate_bps: bitrate_bps(),
        complexity: encoder_complexity(),
        max_bandwidth: max_bandwidth(),
        ..EncoderConfig::default()
    })?;
    let mut dec = Decoder::new(DecoderConfig {
        complexity: decoder_complexity(),
        dred: false,
    })?;
    let packets: Vec<Vec<u8>> = input
        .chunks(FRAME_SAMPLES)
        .map(|chunk| {
            let mut pcm = [0.0f32; FRAME_SAMPLES];
            pcm[..chunk.len()].copy_from_slice(chunk);
            enc.encode(&pcm)
        })
        .collect::<Result<_, _>>()?;
    let mut out = Vec::with_capacity(input.len());
    let mut frame = [0.0f32; FRAME_SAMPLES];
    let is_lost = |i: usize| lost.get(i).copied().unwrap_or(false);
    for (i, packet) in packets.iter().enumerate() {
        let ok = if is_lost(i) {
            match packets.get(i + 1) {
                Some(next) if !is_lost(i + 1) => dec.decode_fec(next, &mut frame).is_ok(),
                _ => false,
            }
        } else {
            dec.decode(packet, &mut frame).is_ok()
        };
        if !ok {
            dec.conceal(&mut frame)?;
        }
        out.extend_from_slice(&frame);
    }
    Ok(out)
}

/// Encoder bitrate for the PESQ runs: `MEDIA_BENCH_BITRATE_BPS`, default: the encoder default.
fn bitrate_bps() -> u32 {
    std::env::var("MEDIA_BENCH_BITRATE_BPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(EncoderConfig::default().bitrate_bps)
}

/// Encoder complexity of every run: `MEDIA_BENCH_ENCODER_COMPLEXITY`, default the encoder
/// default.
fn encoder_complexity() -> u8 {
    std::env::var("MEDIA_BENCH_ENCODER_COMPLEXITY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(EncoderConfig::default().complexity)
}

/// Decoder complexity of the pipeline variants: `MEDIA_BENCH_DECODER_COMPLEXITY`, default
/// the decoder default (7: deep PLC + NoLACE).
fn decoder_complexity() -> u8 {
    std::env::var("MEDIA_BENCH_DECODER_COMPLEXITY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DecoderConfig::default().complexity)
}

/// Widest coded band of every run: `MEDIA_BENCH_BANDWIDTH` (`wb`, `swb`, `fb`), default the
/// encoder default.
fn max_bandwidth() -> Bandwidth {
    match std::env::var("MEDIA_BENCH_BANDWIDTH").as_deref() {
        Ok("wb") => Bandwidth::Wide,
        Ok("swb") => Bandwidth::SuperWide,
        Ok("fb") => Bandwidth::Full,
        _ => EncoderConfig::default().max_bandwidth,
    }
}

/// DRED length of the DRED columns: `MEDIA_BENCH_DRED_10MS`, default [`DRED`].
fn dred_10ms() -> u8 {
    env_or("MEDIA_BENCH_DRED_10MS", DRED)
}

/// A number from the environment, or `default`.
fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Encoder DRED policy of the DRED columns: `MEDIA_BENCH_DRED_MIN_LOSS` (expected loss
/// from which DRED is sent) and `MEDIA_BENCH_DRED_FED_LOSS` (expected loss told to libopus
/// meanwhile), defaults the encoder's.
fn dred_policy(config: EncoderConfig) -> EncoderConfig {
    EncoderConfig {
        dred_min_loss_pct: env_or("MEDIA_BENCH_DRED_MIN_LOSS", config.dred_min_loss_pct),
        dred_expected_loss_pct: env_or("MEDIA_BENCH_DRED_FED_LOSS", config.dred_expected_loss_pct),
        dred_complexity: env_or("MEDIA_BENCH_DRED_COMPLEXITY", config.dred_complexity),
        ..config
    }
}

/// Which loss conditions `pesq-wavs` runs: `MEDIA_BENCH_CONDITIONS`, comma-separated
/// indices into its list (0% / 5% / 10% / 20% random, 5% bursty), default all.
fn condition_selected(index: usize) -> bool {
    listed("MEDIA_BENCH_CONDITIONS", index)
}

/// Whether `index` is in the comma-separated list in environment variable `name` (all
/// when it is unset). `MEDIA_BENCH_VARIANTS` picks pipeline columns (0 no FEC, 1 FEC,
/// 2 DRED, 3 FEC+DRED).
fn listed(name: &str, index: usize) -> bool {
    match std::env::var(name) {
        Ok(list) => list
            .split(',')
            .any(|c| c.trim().parse::<usize>().ok() == Some(index)),
        Err(_) => true,
    }
}

/// Loss patterns drawn per condition (`MEDIA_BENCH_SEEDS`, default 3); the table averages
/// over them, since one 12 s pattern decides too much by where its losses fall.
fn seeds() -> u64 {
    std::env::var("MEDIA_BENCH_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1)
}

#[derive(Clone, Copy)]
struct Variant {
    name: &'static str,
    fec: bool,
    dred_10ms: u8,
}

/// DRED length of the DRED columns (10 ms units): the encoder default.
const DRED: u8 = media::codec::DEFAULT_DRED_DURATION_10MS;

const VARIANTS: [Variant; 4] = [
    Variant {
        name: "pipeline, no FEC",
        fec: false,
        dred_10ms: 0,
    },
    Variant {
        name: "pipeline, FEC",
        fec: true,
        dred_10ms: 0,
    },
    Variant {
        name: "pipeline, DRED",
        fec: false,
        dred_10ms: DRED,
    },
    Variant {
        name: "pipeline, FEC+DRED",
        fec: true,
        dred_10ms: DRED,
    },
];

/// Every pipeline column decodes with the same decoder and jitter buffer (DRED decoding
/// on, as in calls); only the sender differs. `MEDIA_BENCH_DRED_EXTRA_FRAMES` sets the
/// jitter buffer's extra target while DRED is usable (default the buffer's).
fn sim_config(v: Variant) -> SimConfig {
    SimConfig {
        sender: SenderConfig {
            encoder: dred_policy(EncoderConfig {
                fec: v.fec,
                dred_duration_10ms: if v.dred_10ms > 0 { dred_10ms() } else { 0 },
                bitrate_bps: bitrate_bps(),
                complexity: encoder_complexity(),
                max_bandwidth: max_bandwidth(),
                ..EncoderConfig::default()
            }),
            ..SenderConfig::default()
        },
        jitter: JitterConfig {
            decoder: DecoderConfig {
                complexity: decoder_complexity(),
                dred: true,
            },
            dred_extra_frames: env_or(
                "MEDIA_BENCH_DRED_EXTRA_FRAMES",
                JitterConfig::default().dred_extra_frames,
            ),
            ..JitterConfig::default()
        },
        tail_frames: 25,
        ..SimConfig::default()
    }
}

/// Cuts the part of `output` that lines up with the second half of `input`.
fn aligned_second_half(input: &[f32], output: &[f32], half: usize) -> (Vec<f32>, Vec<f32>, usize) {
    let (lag, _) = align(input, output, 48 * 300);
    let reference = input[half..].to_vec();
    let mut degraded: Vec<f32> = output
        .iter()
        .skip(half + lag)
        .take(reference.len())
        .copied()
        .collect();
    degraded.resize(reference.len(), 0.0);
    (reference, degraded, lag)
}

fn pesq_wavs(speech: &Path, outdir: &Path) -> Res<()> {
    std::fs::create_dir_all(outdir)?;
    let once = read_wav(speech)?;
    // Two passes: the first lets the loss feedback and the jitter buffer settle, the second
    // is scored (a call in steady state).
    let input: Vec<f32> = once.iter().chain(once.iter()).copied().collect();
    let half = once.len().div_ceil(FRAME_SAMPLES) * FRAME_SAMPLES;
    let mut input_padded = once.clone();
    input_padded.resize(half, 0.0);
    input_padded.extend_from_slice(&once);
    let input = if input.len() == input_padded.len() {
        input
    } else {
        input_padded
    };
    let packets = input.len().div_ceil(FRAME_SAMPLES) + 40;
    let conditions: [(&str, LossModel); 5] = [
        ("0% random", LossModel::Bernoulli { loss_pct: 0.0 }),
        ("5% random", LossModel::Bernoulli { loss_pct: 5.0 }),
        ("10% random", LossModel::Bernoulli { loss_pct: 10.0 }),
        ("20% random", LossModel::Bernoulli { loss_pct: 20.0 }),
        ("5% bursty (mean burst 3)", LossModel::bursty(5.0, 3.0)),
    ];
    let mut manifest = std::fs::File::create(outdir.join("manifest.tsv"))?;
    writeln!(
        manifest,
        "condition\tseed\tvariant\treference\tdegraded\tlost_pct\tdetail"
    )?;
    for (ci, (cname, loss)) in conditions.iter().enumerate() {
        if !condition_selected(ci) {
            continue;
        }
        let reference_path = outdir.join(format!("c{ci}_reference.wav"));
        write_wav(&reference_path, &input[half..])?;
        let seeds = if ci == 0 { 1 } else { seeds() };
        for seed in 0..seeds {
            let lost = loss_mask(*loss, packets, 1000 + ci as u64 + 100 * seed);
            let scored = &lost[half / FRAME_SAMPLES..input.len() / FRAME_SAMPLES];
            let lost_pct =
                scored.iter().filter(|l| **l).count() as f64 * 100.0 / scored.len() as f64;
            let mut row = |variant: &str, name: String, out: &[f32], detail: String| -> Res<()> {
                let path = outdir.join(format!("c{ci}_s{seed}_{name}.wav"));
                write_wav(&path, out)?;
                writeln!(
                    manifest,
                    "{cname}\t{seed}\t{variant}\t{}\t{}\t{lost_pct:.1}\t{detail}",
                    reference_path.display(),
                    path.display()
                )?;
                Ok(())
            };
            let base = baseline(&input, &lost)?;
            row(
                "plain libopus (baseline)",
                "baseline".into(),
                &base[half..input.len()],
                "-".into(),
            )?;
            let ideal = ideal_fec(&input, &lost, lost_pct.ceil() as u8)?;
            row(
                "libopus FEC, oracle timing",
                "ideal".into(),
                &ideal[half..input.len()],
                "-".into(),
            )?;
            for (vi, v) in VARIANTS.iter().enumerate() {
                if !listed("MEDIA_BENCH_VARIANTS", vi) {
                    continue;
                }
                let mut channel = CountingChannel::new(MaskChannel::new(lost.clone()), half);
                let out = simulate(&input, sim_config(*v), &mut channel)?;
                let (_, degraded, lag) = aligned_second_half(&input, &out.output, half);
                let c = out.counters;
                row(
                    v.name,
                    format!("v{vi}"),
                    &degraded,
                    format!(
                        "lag {:.1} ms; fec {} dred {} concealed {} dropped {} inserted {}; \
                         target {} at the end; Opus {:.1} kbit/s in the scored pass",
                        lag as f64 / 48.0,
                        c.fec_frames,
                        c.dred_frames,
                        c.concealed_frames,
                        c.dropped_frames,
                        c.inserted_frames,
                        out.jitter_target_frames,
                        channel.opus_kbps()
                    ),
                )?;
            }
        }
        eprintln!("condition {cname}: done");
    }
    Ok(())
}

/// Counts the Opus bytes sent in the scored (second) pass, then hands datagrams on.
struct CountingChannel {
    inner: MaskChannel,
    /// Datagrams of the first pass (not counted).
    skip: usize,
    sent: usize,
    opus_bytes: usize,
    counted: usize,
    overhead_bytes: usize,
}

impl CountingChannel {
    fn new(inner: MaskChannel, half_samples: usize) -> Self {
        let mut sealer = PacketSealer::new([0; 32], b"count", Direction::CallerToCallee);
        let header = PacketHeader {
            sequence: 0,
            timestamp: 0,
            flags: Flags::empty(),
        };
        let overhead_bytes = sealer.seal(header, &[]).map(|d| d.len()).unwrap_or(0);
        Self {
            inner,
            skip: half_samples / FRAME_SAMPLES,
            sent: 0,
            opus_bytes: 0,
            counted: 0,
            overhead_bytes,
        }
    }

    fn opus_kbps(&self) -> f64 {
        self.opus_bytes as f64 * 8.0 / (self.counted.max(1) as f64 * 0.02) / 1000.0
    }
}

impl Channel for CountingChannel {
    fn send(&mut self, now: Instant, datagram: Vec<u8>) {
        if (self.skip..2 * self.skip).contains(&self.sent) {
            self.opus_bytes += datagram.len().saturating_sub(self.overhead_bytes);
            self.counted += 1;
        }
        self.sent += 1;
        self.inner.send(now, datagram);
    }
    fn poll_receive(&mut self, now: Instant) -> Option<Vec<u8>> {
        self.inner.poll_receive(now)
    }
}

/// `netsim` as a channel.
struct Net(Impairment<Vec<u8>>);

impl Channel for Net {
    fn send(&mut self, now: Instant, datagram: Vec<u8>) {
        self.0.handle_packet(now, datagram);
    }
    fn poll_receive(&mut self, now: Instant) -> Option<Vec<u8>> {
        self.0.poll_packet(now)
    }
}

fn latency(speech: &Path) -> Res<()> {
    let input = read_wav(speech)?;
    println!(
        "| network jitter | playout phase | jitter-buffer target (frames) | added latency (ms) |"
    );
    println!("| --- | --- | --- | --- |");
    for jitter_millis in [0u64, 30] {
        let mut total = 0.0;
        let mut n = 0.0;
        for phase_millis in [0u64, 5, 10, 15] {
            let net = ImpairmentConfig {
                delay: Duration::from_millis(50),
                jitter: Duration::from_millis(jitter_millis),
                ..ImpairmentConfig::default()
            };
            let config = SimConfig {
                playout_phase: Duration::from_millis(phase_millis),
                tail_frames: 40,
                ..SimConfig::default()
            };
            // Tick times are quantised to the receiver's playout ticks; arrival at
            // send + 50 ms (+ jitter) lands on the next tick.
            let out = simulate(
                &input,
                config,
                &mut Net(Impairment::new(net, 7 + phase_millis)),
            )?;
            let (lag, _) = align(&input, &out.output, 48 * 400);
            // The output index lags the input index by `lag`; a captured sample additionally
            // waited for its 20 ms frame to fill and the receiver ticks `phase` after the
            // sender. The network's fixed 50 ms is excluded; its jitter is not.
            let added = lag as f64 / 48.0 + 20.0 + phase_millis as f64 - 50.0;
            println!(
                "| {jitter_millis} ms | {phase_millis} ms | {} | {added:.1} |",
                out.jitter_target_frames
            );
            total += added;
            n += 1.0;
        }
        println!(
            "| {jitter_millis} ms | mean over phases | | **{:.1}** |",
            total / n
        );
    }
    Ok(())
}

fn cpu(speech: &Path) -> Res<()> {
    let input = read_wav(speech)?;
    let frames: Vec<&[f32]> = input.chunks_exact(FRAME_SAMPLES).collect();
    let rounds = 10;
    let defaults = EncoderConfig {
        expected_loss_pct: 10,
        ..EncoderConfig::default()
    };
    let encoders = [
        (
            "encode (defaults: complexity 10, wideband, FEC at 10% loss)",
            defaults,
        ),
        (
            "encode (defaults at 20% loss: FEC + DRED 100 ms, complexity 6 while DRED is sent)",
            EncoderConfig {
                expected_loss_pct: 20,
                ..defaults
            },
        ),
        (
            "encode at 20% loss, FEC + DRED, complexity 10 while DRED is sent",
            EncoderConfig {
                expected_loss_pct: 20,
                dred_complexity: 10,
                ..defaults
            },
        ),
        (
            "encode at 20% loss, FEC + DRED, complexity 8 while DRED is sent",
            EncoderConfig {
                expected_loss_pct: 20,
                dred_complexity: 8,
                ..defaults
            },
        ),
        (
            "encode at 20% loss, FEC + DRED, complexity 7 while DRED is sent",
            EncoderConfig {
                expected_loss_pct: 20,
                dred_complexity: 7,
                ..defaults
            },
        ),
        (
            "encode at 20% loss, FEC + DRED, complexity 6 while DRED is sent",
            EncoderConfig {
                expected_loss_pct: 20,
                dred_complexity: 6,
                ..defaults
            },
        ),
        (
            "encode at 20% loss, FEC + DRED, complexity 5 while DRED is sent",
            EncoderConfig {
                expected_loss_pct: 20,
                dred_complexity: 5,
                ..defaults
            },
        ),
        (
            "encode at 20% loss, FEC only (no DRED)",
            EncoderConfig {
                expected_loss_pct: 20,
                dred_duration_10ms: 0,
                ..defaults
            },
        ),
        (
            "encode (complexity 10, fullband: hybrid mode)",
            EncoderConfig {
                max_bandwidth: Bandwidth::Full,
                ..defaults
            },
        ),
        (
            "encode (complexity 9, fullband: hybrid mode)",
            EncoderConfig {
                complexity: 9,
                max_bandwidth: Bandwidth::Full,
                ..defaults
            },
        ),
    ];
    let decoders = [
        (
            "decode (defaults: complexity 6, deep PLC + LACE)",
            DecoderConfig::default(),
        ),
        (
            "decode (complexity 7: deep PLC + NoLACE)",
            DecoderConfig {
                complexity: 7,
                ..DecoderConfig::default()
            },
        ),
        (
            "decode (complexity 5: deep PLC, no enhancement)",
            DecoderConfig {
                complexity: 5,
                ..DecoderConfig::default()
            },
        ),
        (
            "decode (complexity 0, baseline)",
            DecoderConfig {
                complexity: 0,
                dred: false,
            },
        ),
    ];
    let mut sealer = PacketSealer::new([1; 32], b"bench", Direction::CallerToCallee);
    let mut opener = PacketOpener::new([1; 32], b"bench", Direction::CallerToCallee);
    let n = (frames.len() * rounds) as f64;
    let frame_secs = 0.020;
    // CPU time of this thread (Linux schedstat, ns), so other load on the machine does not
    // count; wall time where that is unavailable.
    let cpu_now = || -> Option<f64> {
        let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
        Some(text.split_whitespace().next()?.parse::<f64>().ok()? / 1e9)
    };
    let time_once = |f: &mut dyn FnMut()| {
        let (wall, cpu) = (Instant::now(), cpu_now());
        f();
        match (cpu, cpu_now()) {
            (Some(a), Some(b)) => b - a,
            _ => wall.elapsed().as_secs_f64(),
        }
    };
    let time = |f: &mut dyn FnMut()| time_once(f) / n;
    let mut sink = 0usize;
    let mut rows: Vec<(&str, Timing)> = Vec::new();
    let encoders_len = encoders.len();
    // Encoders (and decoders) take turns round by round, and each row reports its median
    // round: the machine is shared, and load from other processes slows whatever runs at
    // that moment, so running configurations one after another compared machine states,
    // not settings (the same configuration measured 20% apart within one run).
    let per_frame = frames.len() as f64;
    let mut encs = encoders
        .iter()
        .map(|(_, config)| Encoder::new(*config))
        .collect::<Result<Vec<_>, _>>()?;
    let mut enc_rounds = vec![Vec::with_capacity(rounds); encs.len()];
    let mut enc_packets = vec![Vec::with_capacity(frames.len()); encs.len()];
    for round in 0..rounds {
        for (i, enc) in encs.iter_mut().enumerate() {
            let packets = &mut enc_packets[i];
            let t = time_once(&mut || {
                for f in &frames {
                    if let Ok(p) = enc.encode(f) {
                        sink += p.len();
                        if round == 0 {
                            packets.push(p);
                        }
                    }
                }
            });
            enc_rounds[i].push(t / per_frame);
        }
    }
    for ((name, _), secs) in encoders.iter().zip(enc_rounds) {
        rows.push((name, Timing::of(secs)));
    }
    let packets_at_loss = enc_packets.swap_remove(1);
    let packets = enc_packets.swap_remove(0);
    let mut out = [0.0f32; FRAME_SAMPLES];
    let mut decs = decoders
        .iter()
        .map(|(_, config)| Decoder::new(*config))
        .collect::<Result<Vec<_>, _>>()?;
    let mut dec_rounds = vec![Vec::with_capacity(rounds); decs.len()];
    for _ in 0..rounds {
        for (i, dec) in decs.iter_mut().enumerate() {
            let t = time_once(&mut || {
                for p in &packets {
                    sink += usize::from(dec.decode(p, &mut out).is_ok());
                }
            });
            dec_rounds[i].push(t / packets.len() as f64);
        }
    }
    for ((name, _), secs) in decoders.iter().zip(dec_rounds) {
        rows.push((name, Timing::of(secs)));
    }
    let mut seq = 0u32;
    let mut sealed = Vec::with_capacity(packets.len() * rounds);
    let t_seal = time(&mut || {
        for _ in 0..rounds {
            for p in &packets {
                let h = PacketHeader {
                    sequence: seq,
                    timestamp: seq.wrapping_mul(960),
                    flags: Flags::empty(),
                };
                seq += 1;
                if let Ok(w) = sealer.seal(h, p) {
                    sealed.push(w);
                }
            }
        }
    });
    let t_open = time(&mut || {
        for w in &sealed {
            sink += opener.open(w).map(|p| p.payload.len()).unwrap_or(0);
        }
    });
    // The receive side at 20% random loss: the jitter buffer decodes, rebuilds from FEC
    // and DRED, conceals, and probes DRED reach, once per played frame.
    let lost = loss_mask(
        LossModel::Bernoulli { loss_pct: 20.0 },
        packets_at_loss.len(),
        1003,
    );
    let mut receive_once = |packets: &[Vec<u8>]| {
        time_once(&mut || {
            let Ok(mut jb) = JitterBuffer::new(JitterConfig::default()) else {
                return;
            };
            let t0 = Instant::now();
            for (i, p) in packets.iter().enumerate() {
                let now = t0 + Duration::from_millis(20 * i as u64);
                if !lost[i] {
                    let header = PacketHeader {
                        sequence: i as u32,
                        timestamp: (i * FRAME_SAMPLES) as u32,
                        flags: Flags::empty(),
                    };
                    jb.handle_packet(
                        now,
                        MediaPacket {
                            header,
                            payload: p.clone(),
                        },
                    );
                }
                sink += jb.poll_frame(now).samples.len();
            }
        }) / packets.len() as f64
    };
    let (mut receive_dred, mut receive_fec) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        receive_dred.push(receive_once(&packets_at_loss));
        receive_fec.push(receive_once(&packets));
    }
    let t_receive_loss = Timing::of(receive_dred);
    let t_receive_loss_fec = Timing::of(receive_fec);
    let (t_seal, t_open) = (Timing::fixed(t_seal), Timing::fixed(t_open));
    let pct = |t: f64| t / frame_secs * 100.0;
    rows.push((
        "receive at 20% loss, peer sends FEC + DRED (jitter buffer: decode, FEC, DRED, concealment)",
        t_receive_loss,
    ));
    rows.push((
        "receive at 20% loss, peer sends FEC only",
        t_receive_loss_fec,
    ));
    rows.push(("seal (ChaCha20-Poly1305)", t_seal));
    rows.push(("open (ChaCha20-Poly1305 + replay window)", t_open));
    println!(
        "| stage (one 20 ms frame) | time per frame (µs, median round) | share of one core per call (median round) | share, fastest round |"
    );
    println!("| --- | --- | --- | --- |");
    let print = |name: &str, t: Timing, bold: bool| {
        let b = if bold { "**" } else { "" };
        println!(
            "| {b}{name}{b} | {:.1} | {b}{:.2}%{b} | {:.2}% |",
            t.median_secs * 1e6,
            pct(t.median_secs),
            pct(t.fastest_secs)
        );
    };
    for (name, t) in &rows {
        print(name, *t, false);
    }
    let t_decode = rows[encoders_len].1;
    let call = rows[0].1 + t_decode + t_seal + t_open;
    let call_dred = rows[1].1 + t_receive_loss + t_seal + t_open;
    // Same, but the encoder keeps complexity 10 while DRED is sent (the earlier default).
    let call_dred_10 = rows[2].1 + t_receive_loss + t_seal + t_open;
    print(
        "per call (defaults): encode + decode + seal + open",
        call,
        true,
    );
    print(
        "per call at 20% loss (defaults: FEC + DRED encode, receive at 20% loss, seal, open)",
        call_dred,
        true,
    );
    print(
        "per call at 20% loss, complexity 10 while DRED is sent (before)",
        call_dred_10,
        false,
    );
    eprintln!("(checksum {sink})");
    Ok(())
}

/// CPU time per frame of one stage over the rounds of `media_bench cpu`.
#[derive(Clone, Copy)]
struct Timing {
    median_secs: f64,
    fastest_secs: f64,
}

impl Timing {
    fn of(rounds: Vec<f64>) -> Self {
        let fastest_secs = rounds.iter().copied().fold(f64::INFINITY, f64::min);
        Self {
            median_secs: median(rounds),
            fastest_secs: if fastest_secs.is_finite() {
                fastest_secs
            } else {
                0.0
            },
        }
    }

    /// A stage timed as a whole (too cheap to matter: sealing, opening).
    fn fixed(secs: f64) -> Self {
        Self {
            median_secs: secs,
            fastest_secs: secs,
        }
    }
}

impl std::ops::Add for Timing {
    type Output = Timing;
    fn add(self, other: Timing) -> Timing {
        Timing {
            median_secs: self.median_secs + other.median_secs,
            fastest_secs: self.fastest_secs + other.fastest_secs,
        }
    }
}

/// Median of `values` (0 when empty).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

fn encode_all(input: &[f32], config: EncoderConfig) -> Res<Vec<Vec<u8>>> {
    let mut enc = Encoder::new(config)?;
    Ok(input
        .chunks(FRAME_SAMPLES)
        .map(|chunk| {
            let mut pcm = [0.0f32; FRAME_SAMPLES];
            pcm[..chunk.len()].copy_from_slice(chunk);
            enc.encode(&pcm)
        })
        .collect::<Result<_, _>>()?)
}

/// Oracle decoding: FEC of the next packet if present, else DRED of the first later packet,
/// else concealment.
fn oracle_decode(
    packets: &[Vec<u8>],
    lost: &[bool],
    dec: DecoderConfig,
    fec: bool,
) -> Res<(Vec<f32>, [u32; 3])> {
    let mut dec = Decoder::new(dec)?;
    let mut out = Vec::new();
    let mut frame = [0.0f32; FRAME_SAMPLES];
    let is_lost = |i: usize| lost.get(i).copied().unwrap_or(false);
    let mut n = [0u32; 3];
    for (i, packet) in packets.iter().enumerate() {
        if !is_lost(i) {
            if dec.decode(packet, &mut frame).is_err() {
                dec.conceal(&mut frame)?;
            }
        } else {
            let next = (i + 1..packets.len().min(i + 50)).find(|j| !is_lost(*j));
            let mut done = false;
            if fec && next == Some(i + 1) && dec.decode_fec(&packets[i + 1], &mut frame).is_ok() {
                done = true;
                n[0] += 1;
            }
            if !done
                && let Some(j) = next
                && dec.decode_dred(&packets[j], (j - i) as u32, &mut frame)?
            {
                done = true;
                n[1] += 1;
            }
            if !done {
                dec.conceal(&mut frame)?;
                n[2] += 1;
            }
        }
        out.extend_from_slice(&frame);
    }
    Ok((out, n))
}

/// `dred-oracle`: FEC against DRED at 20% random loss with oracle timing, for several
/// encoder settings (docs/bench/media.md, "DRED"). Writes WAVs and a manifest for
/// `bench/pesq_table.py`.
fn dred_oracle(speech: &Path, outdir: &Path) -> Res<()> {
    std::fs::create_dir_all(outdir)?;
    let once = read_wav(speech)?;
    let half = once.len().div_ceil(FRAME_SAMPLES) * FRAME_SAMPLES;
    let mut input = once.clone();
    input.resize(half, 0.0);
    input.extend_from_slice(&once);
    let reference_path = outdir.join("reference.wav");
    write_wav(&reference_path, &input[half..])?;
    let mut manifest = std::fs::File::create(outdir.join("manifest.tsv"))?;
    writeln!(
        manifest,
        "condition\tseed\tvariant\treference\tdegraded\tlost_pct\tdetail"
    )?;
    let decoder = DecoderConfig {
        complexity: decoder_complexity(),
        dred: true,
    };
    let frames = input.len() / FRAME_SAMPLES + 1;
    let variants: [(&str, bool, u8, u8); 6] = [
        ("FEC, expected loss 20%", true, 0, 20),
        ("FEC, expected loss 30%", true, 0, 30),
        ("DRED 100 ms", false, 10, 20),
        ("DRED 200 ms", false, 20, 20),
        ("FEC + DRED 100 ms, expected loss 30%", true, 10, 30),
        ("FEC + DRED 200 ms, expected loss 40%", true, 20, 40),
    ];
    for seed in 0..seeds() {
        // The same loss patterns as `pesq-wavs` at 20% random (condition 3), so the two
        // tables compare.
        let lost = loss_mask(
            LossModel::Bernoulli { loss_pct: 20.0 },
            frames,
            1003 + 100 * seed,
        );
        let scored = &lost[half / FRAME_SAMPLES..input.len() / FRAME_SAMPLES];
        let lost_pct = scored.iter().filter(|l| **l).count() as f64 * 100.0 / scored.len() as f64;
        for (vi, (name, fec, dred_10ms, loss_pct)) in variants.iter().enumerate() {
            let config = EncoderConfig {
                fec: *fec,
                dred_duration_10ms: *dred_10ms,
                expected_loss_pct: *loss_pct,
                bitrate_bps: bitrate_bps(),
                complexity: encoder_complexity(),
                dred_complexity: env_or("MEDIA_BENCH_DRED_COMPLEXITY", encoder_complexity()),
                max_bandwidth: max_bandwidth(),
                // The fixed expected loss above goes to libopus as it is.
                dred_min_loss_pct: 0,
                dred_expected_loss_pct: 0,
            };
            let packets = encode_all(&input, config)?;
            let (out, n) = oracle_decode(&packets, &lost, decoder, *fec)?;
            let path = outdir.join(format!("s{seed}_v{vi}.wav"));
            write_wav(&path, &out[half..input.len()])?;
            let bytes: usize = packets.iter().map(Vec::len).sum();
            writeln!(
                manifest,
                "20% random\t{seed}\t{name}\t{}\t{}\t{lost_pct:.1}\tfec {} dred {} concealed {}; {:.1} kbit/s",
                reference_path.display(),
                path.display(),
                n[0],
                n[1],
                n[2],
                bytes as f64 * 8.0 / (packets.len() as f64 * 0.02) / 1000.0
            )?;
        }
    }
    Ok(())
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    let default_speech = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/speech_48k.wav"
    ));
    let speech = args.get(2).map(PathBuf::from).unwrap_or(default_speech);
    match args.get(1).map(String::as_str) {
        Some("pesq-wavs") => pesq_wavs(&speech, Path::new(args.get(3).ok_or("outdir missing")?)),
        Some("latency") => latency(&speech),
        Some("cpu") => cpu(&speech),
        Some("dred-oracle") => {
            dred_oracle(&speech, Path::new(args.get(3).ok_or("outdir missing")?))
        }
        _ => {
            Err("usage: media_bench pesq-wavs|latency|cpu|dred-oracle [speech.wav] [outdir]".into())
        }
    }
}
