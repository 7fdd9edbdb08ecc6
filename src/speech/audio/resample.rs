//! Sample-rate conversion: a streaming band-limited (windowed-sinc) resampler for any pair of
//! rates, e.g. a Piper voice's 22 050 Hz to 8 kHz for telephony or 16/48 kHz for speakers, and
//! a 48 kHz mic array to the 16 kHz the recognizers want.
//!
//! The filter is a Blackman-windowed sinc with 16 zero crossings each side, cut off at 95 % of
//! the lower Nyquist frequency, tabulated 512 times per sample and linearly interpolated. Fed in
//! chunks it produces exactly what it produces for the whole clip at once.

use crate::speech::SpeechError;

const ZERO_CROSSINGS: f64 = 16.0;
const OVERSAMPLE: usize = 512;
const ROLLOFF: f64 = 0.95;

/// A streaming resampler from one rate to another.
#[derive(Debug, Clone)]
pub struct Resampler {
    from: u32,
    to: u32,
    /// Input samples per output sample.
    step: f64,
    /// Cutoff relative to the input Nyquist frequency (≤ 1).
    cutoff: f64,
    /// Filter half-width in input samples.
    half: usize,
    /// `h(d)` for d = 0, 1/OVERSAMPLE, … half (symmetric).
    table: Vec<f32>,
    /// Input not yet fully used, with `half` samples of history before `t`.
    buf: Vec<f32>,
    /// Time of the next output sample, in input samples from `buf[0]`.
    t: f64,
    /// Input samples received, and output samples produced (for exact flushing).
    consumed: u64,
    produced: u64,
}

impl Resampler {
    /// A resampler from `from` Hz to `to` Hz.
    pub fn new(from: u32, to: u32) -> Result<Self, SpeechError> {
        if from == 0 || to == 0 {
            return Err(SpeechError::BadAudio(format!(
                "cannot resample from {from} Hz to {to} Hz"
            )));
        }
        let step = f64::from(from) / f64::from(to);
        let cutoff = (f64::from(to) / f64::from(from)).min(1.0) * ROLLOFF;
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let half = (ZERO_CROSSINGS / cutoff).ceil() as usize;
        let n = half * OVERSAMPLE + 2;
        #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
        let table = (0..n)
            .map(|i| {
                let d = i as f64 / OVERSAMPLE as f64;
                if d > half as f64 {
                    return 0.0;
                }
                let x = d * cutoff;
                let sinc = if x == 0.0 {
                    1.0
                } else {
                    (std::f64::consts::PI * x).sin() / (std::f64::consts::PI * x)
                };
                let w = d / half as f64; // 0..1
                let blackman = 0.42
                    + 0.5 * (std::f64::consts::PI * w).cos()
                    + 0.08 * (2.0 * std::f64::consts::PI * w).cos();
                (cutoff * sinc * blackman) as f32
            })
            .collect();
        Ok(Self {
            from,
            to,
            step,
            cutoff,
            half,
            table,
            buf: vec![0.0; half],
            #[allow(clippy::cast_precision_loss)]
            t: half as f64,
            consumed: 0,
            produced: 0,
        })
    }

    /// Input rate.
    pub fn from_rate(&self) -> u32 {
        self.from
    }

    /// Output rate.
    pub fn to_rate(&self) -> u32 {
        self.to
    }

    /// Relative cutoff (for tests and diagnostics).
    pub fn cutoff(&self) -> f64 {
        self.cutoff
    }

    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    fn tap(&self, d: f64) -> f32 {
        let p = d.abs() * OVERSAMPLE as f64;
        let i = p as usize;
        if i + 1 >= self.table.len() {
            return 0.0;
        }
        let frac = (p - i as f64) as f32;
        self.table[i] + (self.table[i + 1] - self.table[i]) * frac
    }

    /// Feed input; returns the output samples now ready.
    pub fn process(&mut self, input: &[f32]) -> Vec<f32> {
        self.consumed += input.len() as u64;
        self.buf.extend_from_slice(input);
        let mut out = Vec::with_capacity((input.len() as f64 / self.step) as usize + 2);
        self.run(&mut out);
        out
    }

    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    fn run(&mut self, out: &mut Vec<f32>) {
        let half = self.half as f64;
        // An output at time t needs input up to floor(t) + half.
        while self.t + half < self.buf.len() as f64 {
            let base = self.t.floor() as usize;
            let lo = base + 1 - self.half;
            let hi = base + self.half;
            let mut acc = 0.0f32;
            for k in lo..=hi {
                acc += self.buf[k] * self.tap(self.t - k as f64);
            }
            out.push(acc);
            self.produced += 1;
            self.t += self.step;
        }
        // Keep `half` samples of history before the next output time.
        let keep_from = (self.t.floor() as usize + 1).saturating_sub(self.half);
        if keep_from > 0 {
            self.buf.drain(..keep_from);
            self.t -= keep_from as f64;
        }
    }

    /// End of input: the remaining output, so that the total is `ceil(in × to / from)`.
    pub fn flush(&mut self) -> Vec<f32> {
        let total = (self.consumed * u64::from(self.to)).div_ceil(u64::from(self.from));
        let mut out = Vec::new();
        if self.produced >= total {
            return out;
        }
        self.buf.extend(std::iter::repeat_n(0.0, self.half * 2 + 2));
        self.run(&mut out);
        let want = usize::try_from(total - (self.produced - out.len() as u64)).unwrap_or(0);
        out.truncate(want);
        self.produced = total;
        out
    }
}

/// Resample a whole clip from `from` Hz to `to` Hz (length `ceil(n × to / from)`).
pub fn resample(samples: &[f32], from: u32, to: u32) -> Result<Vec<f32>, SpeechError> {
    if from == to {
        return Ok(samples.to_vec());
    }
    let mut r = Resampler::new(from, to)?;
    let mut out = r.process(samples);
    out.extend(r.flush());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: u32, hz: f32, secs: f32, amp: f32) -> Vec<f32> {
        let n = (rate as f32 * secs) as usize;
        (0..n)
            .map(|i| amp * (2.0 * std::f32::consts::PI * hz * i as f32 / rate as f32).sin())
            .collect()
    }

    /// Power of `hz` in `x` (Goertzel), normalized so a full-scale sine gives 0.5.
    fn power(x: &[f32], rate: u32, hz: f32) -> f32 {
        let w = 2.0 * std::f32::consts::PI * hz / rate as f32;
        let (mut s1, mut s2) = (0.0f64, 0.0f64);
        let c = 2.0 * f64::from(w.cos());
        for &v in x {
            let s = f64::from(v) + c * s1 - s2;
            s2 = s1;
            s1 = s;
        }
        let p = s1 * s1 + s2 * s2 - c * s1 * s2;
        (2.0 * p / (x.len() as f64 * x.len() as f64)) as f32
    }

    /// Frequency estimated from positive-going zero crossings.
    fn frequency(x: &[f32], rate: u32) -> f32 {
        let crossings: Vec<usize> = (1..x.len())
            .filter(|&i| x[i - 1] < 0.0 && x[i] >= 0.0)
            .collect();
        let span = (crossings[crossings.len() - 1] - crossings[0]) as f32;
        (crossings.len() - 1) as f32 * rate as f32 / span
    }

    #[test]
    fn a_sine_keeps_its_frequency_and_level_at_every_common_rate_pair() {
        for (from, to, hz) in [
            (22050, 8000, 1000.0),
            (22050, 16000, 3000.0),
            (22050, 48000, 440.0),
            (48000, 16000, 1000.0),
            (16000, 8000, 300.0),
            (8000, 16000, 1000.0),
            (44100, 16000, 5000.0),
        ] {
            let x = sine(from, hz, 1.0, 0.5);
            let y = resample(&x, from, to).unwrap();
            assert_eq!(y.len(), (x.len() * to as usize).div_ceil(from as usize));
            let f = frequency(&y[400..y.len() - 400], to);
            assert!(
                (f - hz).abs() < hz * 0.002,
                "{from}->{to}: {hz} Hz came out as {f}"
            );
            let p = power(&y[400..y.len() - 400], to, hz);
            let db = 10.0 * (p / 0.125).log10();
            assert!(db.abs() < 0.2, "{from}->{to}: level changed by {db} dB");
        }
    }

    #[test]
    fn content_above_the_new_nyquist_is_removed() {
        // 6 kHz cannot exist at 8 kHz: it must not alias down to 2 kHz.
        let x = sine(22050, 6000.0, 1.0, 0.5);
        let y = resample(&x, 22050, 8000).unwrap();
        let alias = power(&y, 8000, 2000.0);
        let db = 10.0 * (alias / 0.125).log10();
        assert!(db < -50.0, "alias at {db} dB");
    }

    #[test]
    fn streaming_in_chunks_equals_the_whole_clip() {
        let x = sine(22050, 700.0, 0.5, 0.7);
        let whole = resample(&x, 22050, 8000).unwrap();
        let mut r = Resampler::new(22050, 8000).unwrap();
        let mut parts = Vec::new();
        for chunk in x.chunks(333) {
            parts.extend(r.process(chunk));
        }
        parts.extend(r.flush());
        assert_eq!(parts.len(), whole.len());
        assert!(parts.iter().zip(&whole).all(|(a, b)| (a - b).abs() < 1e-6));
    }

    #[test]
    fn zero_rates_are_refused() {
        assert!(Resampler::new(0, 8000).is_err());
        assert!(resample(&[0.0], 16000, 0).is_err());
    }
}
