//! The compact impairment spec used on command lines:
//! `loss=5%,burst=3,delay=40ms,jitter=30ms,reorder=1%,dup=0.5%,rate=2mbit`.
//!
//! Grammar: comma-separated `key=value` items, each key at most once, whitespace around
//! items, keys and values ignored. The empty string and `none` mean a perfect link.
//!
//! | key | value | meaning |
//! | --- | --- | --- |
//! | `loss` | percent, e.g. `5%` | Bernoulli loss, or the average of bursty loss with `burst` |
//! | `burst` | packets ≥ 1, e.g. `3` or `2.5` | mean loss-burst length: makes `loss` a Gilbert-Elliott chain ([`LossModel::bursty`]) |
//! | `ge` | `P_GB:P_BG:LOSS_GOOD:LOSS_BAD`, probabilities in 0..=1 | explicit Gilbert-Elliott chain (not with `loss`/`burst`) |
//! | `delay` | duration, e.g. `40ms` | fixed one-way delay |
//! | `jitter` | duration | uniform extra delay `0..=jitter` |
//! | `reorder` | percent | chance a packet is held back and overtaken |
//! | `dup` | percent | chance a packet is delivered twice |
//! | `rate` | bits/s: `64000`, `64kbit`, `64kbps`, `2mbit`, `1gbit` | bottleneck rate |
//!
//! Percent values need the `%` sign (so `loss=0.05` is an error, not 0.05 %). Durations need
//! a unit: `ns`, `us`, `ms` or `s`, decimals allowed (`1.5ms`), at most one hour; digits
//! below a nanosecond are dropped. `Display` writes a spec that parses back to an equal
//! config (bursty loss is written in its `ge=` form).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::config::{ImpairmentConfig, LossModel};
use crate::impairment::MAX_CONFIG_DELAY;

/// Why an impairment spec string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// Two commas in a row, or a leading/trailing comma.
    #[error("empty item in impairment spec (stray comma?)")]
    EmptyItem,
    /// An item without `=`.
    #[error("impairment spec item `{item}` is not of the form key=value")]
    MissingValue {
        /// The offending item.
        item: String,
    },
    /// A key this grammar does not know.
    #[error(
        "unknown impairment spec key `{key}` (known: loss, burst, ge, delay, jitter, reorder, dup, rate)"
    )]
    UnknownKey {
        /// The offending key.
        key: String,
    },
    /// The same key twice.
    #[error("impairment spec key `{key}` given twice")]
    DuplicateKey {
        /// The repeated key.
        key: String,
    },
    /// A percentage that is malformed or outside 0..=100.
    #[error("`{key}={value}`: expected a percentage from 0% to 100%, like `{key}=2.5%`")]
    InvalidPercent {
        /// The item's key.
        key: String,
        /// The offending value.
        value: String,
    },
    /// A duration that is malformed, lacks a unit, or exceeds one hour.
    #[error(
        "`{key}={value}`: expected a duration up to 1 hour with a unit ns, us, ms or s, like `{key}=40ms`"
    )]
    InvalidDuration {
        /// The item's key.
        key: String,
        /// The offending value.
        value: String,
    },
    /// A rate that is malformed or zero.
    #[error("`rate={value}`: expected a positive bit rate like `64000`, `64kbit` or `2mbit`")]
    InvalidRate {
        /// The offending value.
        value: String,
    },
    /// A burst length that is malformed or below 1.
    #[error("`burst={value}`: expected a mean burst length in packets, at least 1, like `burst=3`")]
    InvalidBurst {
        /// The offending value.
        value: String,
    },
    /// `burst` without `loss`.
    #[error("`burst` needs `loss` (the average loss of the bursts), like `loss=5%,burst=3`")]
    BurstWithoutLoss,
    /// A malformed `ge=` value.
    #[error(
        "`ge={value}`: expected four probabilities from 0 to 1, P_GB:P_BG:LOSS_GOOD:LOSS_BAD, like `ge=0.01:0.3:0:1`"
    )]
    InvalidGilbertElliott {
        /// The offending value.
        value: String,
    },
    /// `ge` together with `loss` or `burst`.
    #[error("`ge` cannot be combined with `loss` or `burst`")]
    ConflictingLoss,
}

impl FromStr for ImpairmentConfig {
    type Err = SpecError;

    fn from_str(spec: &str) -> Result<Self, SpecError> {
        let spec = spec.trim();
        let mut config = ImpairmentConfig::default();
        if spec.is_empty() || spec == "none" {
            return Ok(config);
        }

        let mut seen: Vec<&str> = Vec::new();
        let mut loss_pct = None;
        let mut burst = None;
        let mut ge = None;
        for item in spec.split(',') {
            let item = item.trim();
            if item.is_empty() {
                return Err(SpecError::EmptyItem);
            }
            let Some((key, value)) = item.split_once('=') else {
                return Err(SpecError::MissingValue { item: item.into() });
            };
            let (key, value) = (key.trim(), value.trim());
            if seen.contains(&key) {
                return Err(SpecError::DuplicateKey { key: key.into() });
            }
            match key {
                "loss" => loss_pct = Some(parse_percent(key, value)?),
                "burst" => burst = Some(parse_burst(value)?),
                "ge" => ge = Some(parse_gilbert_elliott(value)?),
                "delay" => config.delay = parse_duration(key, value)?,
                "jitter" => config.jitter = parse_duration(key, value)?,
                "reorder" => config.reorder_pct = parse_percent(key, value)?,
                "dup" => config.duplicate_pct = parse_percent(key, value)?,
                "rate" => config.rate_limit_bps = Some(parse_rate(value)?),
                _ => return Err(SpecError::UnknownKey { key: key.into() }),
            }
            seen.push(key);
        }

        config.loss = match (loss_pct, burst, ge) {
            (None, None, None) => LossModel::None,
            (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => {
                return Err(SpecError::ConflictingLoss);
            }
            (None, Some(_), None) => return Err(SpecError::BurstWithoutLoss),
            (Some(loss_pct), None, None) => LossModel::Bernoulli { loss_pct },
            (Some(loss_pct), Some(burst), None) => LossModel::bursty(loss_pct, burst),
            (None, None, Some(ge)) => ge,
        };
        Ok(config)
    }
}

impl fmt::Display for ImpairmentConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut items: Vec<String> = Vec::new();
        match self.loss {
            LossModel::None => {}
            LossModel::Bernoulli { loss_pct } => items.push(format!("loss={loss_pct}%")),
            LossModel::GilbertElliott {
                p_good_to_bad,
                p_bad_to_good,
                loss_in_good,
                loss_in_bad,
            } => items.push(format!(
                "ge={p_good_to_bad}:{p_bad_to_good}:{loss_in_good}:{loss_in_bad}"
            )),
        }
        if !self.delay.is_zero() {
            items.push(format!("delay={}", DisplayDuration(self.delay)));
        }
        if !self.jitter.is_zero() {
            items.push(format!("jitter={}", DisplayDuration(self.jitter)));
        }
        if self.reorder_pct != 0.0 {
            items.push(format!("reorder={}%", self.reorder_pct));
        }
        if self.duplicate_pct != 0.0 {
            items.push(format!("dup={}%", self.duplicate_pct));
        }
        if let Some(bps) = self.rate_limit_bps {
            items.push(format!("rate={bps}"));
        }
        if items.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&items.join(","))
        }
    }
}

/// Writes a duration in the largest unit that keeps it whole.
struct DisplayDuration(Duration);

impl fmt::Display for DisplayDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.0.as_nanos();
        if nanos.is_multiple_of(1_000_000) {
            write!(f, "{}ms", nanos / 1_000_000)
        } else if nanos.is_multiple_of(1_000) {
            write!(f, "{}us", nanos / 1_000)
        } else {
            write!(f, "{nanos}ns")
        }
    }
}

fn parse_percent(key: &str, value: &str) -> Result<f64, SpecError> {
    let err = || SpecError::InvalidPercent {
        key: key.into(),
        value: value.into(),
    };
    let number = value.strip_suffix('%').ok_or_else(err)?.trim_end();
    let pct = parse_plain_decimal(number).ok_or_else(err)?;
    if (0.0..=100.0).contains(&pct) {
        Ok(pct)
    } else {
        Err(err())
    }
}

fn parse_burst(value: &str) -> Result<f64, SpecError> {
    match parse_plain_decimal(value) {
        Some(burst) if burst >= 1.0 && burst.is_finite() => Ok(burst),
        _ => Err(SpecError::InvalidBurst {
            value: value.into(),
        }),
    }
}

fn parse_gilbert_elliott(value: &str) -> Result<LossModel, SpecError> {
    let err = || SpecError::InvalidGilbertElliott {
        value: value.into(),
    };
    let mut probabilities = [0.0; 4];
    let mut parts = value.split(':');
    for slot in &mut probabilities {
        let p = parse_plain_decimal(parts.next().ok_or_else(err)?.trim()).ok_or_else(err)?;
        if !(0.0..=1.0).contains(&p) {
            return Err(err());
        }
        *slot = p;
    }
    if parts.next().is_some() {
        return Err(err());
    }
    let [p_good_to_bad, p_bad_to_good, loss_in_good, loss_in_bad] = probabilities;
    Ok(LossModel::GilbertElliott {
        p_good_to_bad,
        p_bad_to_good,
        loss_in_good,
        loss_in_bad,
    })
}

/// A decimal number as written by people or by `f64`'s `Display` (digits, one optional
/// point, optional leading `-`); refuses `inf`, `nan`, exponents and a sign-only string,
/// which `f64::from_str` would accept.
fn parse_plain_decimal(s: &str) -> Option<f64> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let plain = !digits.is_empty()
        && digits.chars().any(|c| c.is_ascii_digit())
        && digits.chars().all(|c| c.is_ascii_digit() || c == '.')
        && digits.chars().filter(|&c| c == '.').count() <= 1;
    if !plain {
        return None;
    }
    s.parse().ok()
}

fn parse_duration(key: &str, value: &str) -> Result<Duration, SpecError> {
    let err = || SpecError::InvalidDuration {
        key: key.into(),
        value: value.into(),
    };
    let split = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(err)?;
    let (number, unit) = value.split_at(split);
    let nanos_per_unit: u128 = match unit.trim() {
        "ns" => 1,
        "us" | "µs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        _ => return Err(err()),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let all_digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !all_digits(whole) || !all_digits(fraction) {
        return Err(err());
    }
    // Exact decimal arithmetic: "1.1ms" must be 1_100_000 ns, not whatever f64 rounds to.
    // Values longer than this cannot be at most an hour anyway.
    let whole = whole.trim_start_matches('0');
    if whole.len() > 20 {
        return Err(err());
    }
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| err())?
    };
    let mut nanos = whole.checked_mul(nanos_per_unit).ok_or_else(err)?;
    let mut scale = nanos_per_unit;
    for digit in fraction.bytes() {
        scale /= 10;
        if scale == 0 {
            break;
        }
        nanos += u128::from(digit - b'0') * scale;
    }
    if nanos > MAX_CONFIG_DELAY.as_nanos() {
        return Err(err());
    }
    let nanos = u64::try_from(nanos).map_err(|_| err())?;
    Ok(Duration::from_nanos(nanos))
}

fn parse_rate(value: &str) -> Result<u64, SpecError> {
    let err = || SpecError::InvalidRate {
        value: value.into(),
    };
    let lower = value.to_ascii_lowercase();
    let split = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(split);
    let multiplier = match unit.trim() {
        "" | "bit" | "bps" => 1.0,
        "kbit" | "kbps" => 1e3,
        "mbit" | "mbps" => 1e6,
        "gbit" | "gbps" => 1e9,
        _ => return Err(err()),
    };
    let rate = parse_plain_decimal(number).ok_or_else(err)? * multiplier;
    // 1e15 bps is far beyond any link worth simulating and keeps the cast exact enough.
    if !(1.0..=1e15).contains(&rate) {
        return Err(err());
    }
    Ok(rate.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(spec: &str) -> ImpairmentConfig {
        spec.parse()
            .unwrap_or_else(|e| panic!("`{spec}` must parse: {e}"))
    }

    #[test]
    fn the_documented_example_parses_to_the_expected_config() {
        let config = parse("loss=5%,burst=3,delay=40ms,jitter=30ms,reorder=1%,dup=0.5%");
        assert_eq!(config.loss, LossModel::bursty(5.0, 3.0));
        assert_eq!(config.delay, Duration::from_millis(40));
        assert_eq!(config.jitter, Duration::from_millis(30));
        assert_eq!(config.reorder_pct, 1.0);
        assert_eq!(config.duplicate_pct, 0.5);
        assert_eq!(config.rate_limit_bps, None);
    }

    #[test]
    fn units_spaces_and_explicit_chains_parse() {
        let config = parse(" loss = 2.5% , delay=1.5ms, jitter=250us, rate=2mbit ");
        assert_eq!(config.loss, LossModel::Bernoulli { loss_pct: 2.5 });
        assert_eq!(config.delay, Duration::from_micros(1500));
        assert_eq!(config.jitter, Duration::from_micros(250));
        assert_eq!(config.rate_limit_bps, Some(2_000_000));
        assert_eq!(parse("rate=64kbps").rate_limit_bps, Some(64_000));
        assert_eq!(parse("rate=1000").rate_limit_bps, Some(1000));
        assert_eq!(parse("delay=2s").delay, Duration::from_secs(2));
        assert_eq!(parse("delay=.5s").delay, Duration::from_millis(500));
        assert_eq!(
            parse("ge=0.01:0.3:0:1").loss,
            LossModel::GilbertElliott {
                p_good_to_bad: 0.01,
                p_bad_to_good: 0.3,
                loss_in_good: 0.0,
                loss_in_bad: 1.0
            }
        );
        assert!(parse("").is_perfect());
        assert!(parse("none").is_perfect());
    }

    #[test]
    fn bad_specs_are_refused_with_the_reason() {
        let cases: &[(&str, SpecError)] = &[
            (
                "loss=5",
                SpecError::InvalidPercent {
                    key: "loss".into(),
                    value: "5".into(),
                },
            ),
            (
                "loss=101%",
                SpecError::InvalidPercent {
                    key: "loss".into(),
                    value: "101%".into(),
                },
            ),
            (
                "loss=nan%",
                SpecError::InvalidPercent {
                    key: "loss".into(),
                    value: "nan%".into(),
                },
            ),
            (
                "reorder=-1%",
                SpecError::InvalidPercent {
                    key: "reorder".into(),
                    value: "-1%".into(),
                },
            ),
            (
                "delay=40",
                SpecError::InvalidDuration {
                    key: "delay".into(),
                    value: "40".into(),
                },
            ),
            (
                "delay=2h",
                SpecError::InvalidDuration {
                    key: "delay".into(),
                    value: "2h".into(),
                },
            ),
            (
                "jitter=3601s",
                SpecError::InvalidDuration {
                    key: "jitter".into(),
                    value: "3601s".into(),
                },
            ),
            (
                "delay=ms",
                SpecError::InvalidDuration {
                    key: "delay".into(),
                    value: "ms".into(),
                },
            ),
            ("rate=0", SpecError::InvalidRate { value: "0".into() }),
            (
                "rate=fast",
                SpecError::InvalidRate {
                    value: "fast".into(),
                },
            ),
            (
                "loss=5%,burst=0.5",
                SpecError::InvalidBurst {
                    value: "0.5".into(),
                },
            ),
            ("burst=3", SpecError::BurstWithoutLoss),
            (
                "ge=0.1:0.2:0",
                SpecError::InvalidGilbertElliott {
                    value: "0.1:0.2:0".into(),
                },
            ),
            (
                "ge=0.1:0.2:0:2",
                SpecError::InvalidGilbertElliott {
                    value: "0.1:0.2:0:2".into(),
                },
            ),
            ("ge=0.1:0.2:0:1,loss=1%", SpecError::ConflictingLoss),
            (
                "loss=1%,loss=2%",
                SpecError::DuplicateKey { key: "loss".into() },
            ),
            ("loss=1%,,delay=1ms", SpecError::EmptyItem),
            (
                "loss",
                SpecError::MissingValue {
                    item: "loss".into(),
                },
            ),
            (
                "latency=5ms",
                SpecError::UnknownKey {
                    key: "latency".into(),
                },
            ),
        ];
        for (spec, expected) in cases {
            let got = spec.parse::<ImpairmentConfig>();
            assert_eq!(
                got.as_ref().err(),
                Some(expected),
                "spec `{spec}` gave {got:?}"
            );
        }
        let message = "delay=40"
            .parse::<ImpairmentConfig>()
            .err()
            .map(|e| e.to_string());
        assert!(message.is_some_and(|m| m.contains("delay=40ms")));
    }

    #[test]
    fn display_writes_a_spec_that_parses_back_to_the_same_config() {
        for spec in [
            "none",
            "loss=5%,burst=3,delay=40ms,jitter=30ms,reorder=1%,dup=0.5%",
            "loss=0.1%,delay=1.000001ms,jitter=7ns,rate=64kbit",
            "ge=0.01:0.3:0.001:0.9,delay=1s",
        ] {
            let config = parse(spec);
            let written = config.to_string();
            assert_eq!(
                parse(&written),
                config,
                "`{spec}` was written as `{written}`"
            );
        }
        assert_eq!(
            parse("loss=5%,delay=40ms").to_string(),
            "loss=5%,delay=40ms"
        );
    }
}
