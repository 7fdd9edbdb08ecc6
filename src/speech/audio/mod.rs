//! Audio inside the program: mono `f32` samples in −1..1 with their rate ([`Audio`]), and the
//! conversions at the edges: WAV files ([`wav`]), telephony codecs ([`g711`]), sample-rate
//! conversion ([`resample`]), channel selection and downmix for mic arrays, level metering.

pub mod g711;
pub mod resample;
pub mod wav;

use super::SpeechError;

/// Mono audio: samples in −1..1 at `rate` Hz.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Audio {
    /// Samples per second.
    pub rate: u32,
    /// The samples.
    pub samples: Vec<f32>,
}

impl Audio {
    /// Audio at `rate` from `samples`.
    pub fn new(rate: u32, samples: Vec<f32>) -> Self {
        Self { rate, samples }
    }

    /// `ms` milliseconds of silence at `rate`.
    pub fn silence(rate: u32, ms: u32) -> Self {
        Self::new(
            rate,
            vec![0.0; (u64::from(rate) * u64::from(ms) / 1000) as usize],
        )
    }

    /// Length in milliseconds.
    pub fn duration_ms(&self) -> u64 {
        if self.rate == 0 {
            return 0;
        }
        self.samples.len() as u64 * 1000 / u64::from(self.rate)
    }

    /// The same audio at `rate` (a copy when the rate already matches).
    pub fn resampled(&self, rate: u32) -> Result<Audio, SpeechError> {
        if rate == self.rate {
            return Ok(self.clone());
        }
        Ok(Audio::new(
            rate,
            resample::resample(&self.samples, self.rate, rate)?,
        ))
    }

    /// Append `other` (same rate required).
    pub fn append(&mut self, other: &Audio) -> Result<(), SpeechError> {
        if self.samples.is_empty() && self.rate == 0 {
            self.rate = other.rate;
        }
        if other.rate != self.rate {
            return Err(SpeechError::BadAudio(format!(
                "cannot append {} Hz audio to {} Hz audio",
                other.rate, self.rate
            )));
        }
        self.samples.extend_from_slice(&other.samples);
        Ok(())
    }

    /// 16-bit PCM samples (clipped).
    pub fn to_i16(&self) -> Vec<i16> {
        self.samples.iter().map(|&s| f32_to_i16(s)).collect()
    }

    /// Level of the whole clip.
    pub fn level(&self) -> Level {
        Level::of(&self.samples)
    }
}

/// One sample to 16-bit PCM, clipped.
pub fn f32_to_i16(s: f32) -> i16 {
    #[allow(clippy::cast_possible_truncation)]
    let v = (s * 32768.0).round().clamp(-32768.0, 32767.0) as i16;
    v
}

/// One 16-bit PCM sample to −1..1.
pub fn i16_to_f32(s: i16) -> f32 {
    f32::from(s) / 32768.0
}

/// How to turn interleaved multichannel audio into mono.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelMix {
    /// Average all channels.
    Downmix,
    /// Take one channel (0-based), e.g. the beamformed channel of a mic array.
    Select(u16),
}

/// Interleaved `channels`-channel samples to mono.
pub fn to_mono(
    interleaved: &[f32],
    channels: u16,
    mix: ChannelMix,
) -> Result<Vec<f32>, SpeechError> {
    let n = usize::from(channels);
    if n == 0 {
        return Err(SpeechError::BadAudio("zero channels".into()));
    }
    if !interleaved.len().is_multiple_of(n) {
        return Err(SpeechError::BadAudio(format!(
            "{} samples do not divide into {n} channels",
            interleaved.len()
        )));
    }
    match mix {
        ChannelMix::Select(c) if c >= channels => Err(SpeechError::BadAudio(format!(
            "channel {c} selected but the audio has {channels} (0-based)"
        ))),
        ChannelMix::Select(c) => Ok(interleaved
            .chunks_exact(n)
            .map(|f| f[usize::from(c)])
            .collect()),
        ChannelMix::Downmix => {
            #[allow(clippy::cast_precision_loss)]
            let scale = 1.0 / n as f32;
            Ok(interleaved
                .chunks_exact(n)
                .map(|f| f.iter().sum::<f32>() * scale)
                .collect())
        }
    }
}

/// Signal level of a stretch of audio.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Level {
    /// Root mean square, 0..1.
    pub rms: f32,
    /// Largest absolute sample, 0..1.
    pub peak: f32,
}

impl Level {
    /// Measure `samples`.
    pub fn of(samples: &[f32]) -> Self {
        if samples.is_empty() {
            return Self {
                rms: 0.0,
                peak: 0.0,
            };
        }
        let mut sum = 0.0f64;
        let mut peak = 0.0f32;
        for &s in samples {
            sum += f64::from(s) * f64::from(s);
            peak = peak.max(s.abs());
        }
        #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
        let rms = (sum / samples.len() as f64).sqrt() as f32;
        Self { rms, peak }
    }

    /// RMS in dBFS (−inf for silence is reported as −120).
    pub fn rms_dbfs(&self) -> f32 {
        if self.rms <= 1e-6 {
            -120.0
        } else {
            20.0 * self.rms.log10()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downmix_averages_and_select_picks_a_channel() {
        let stereo = [0.5, -0.5, 1.0, 0.0];
        assert_eq!(
            to_mono(&stereo, 2, ChannelMix::Downmix).unwrap(),
            vec![0.0, 0.5]
        );
        assert_eq!(
            to_mono(&stereo, 2, ChannelMix::Select(1)).unwrap(),
            vec![-0.5, 0.0]
        );
        assert!(to_mono(&stereo, 2, ChannelMix::Select(2))
            .unwrap_err()
            .to_string()
            .contains("channel 2"));
        assert!(to_mono(&stereo[..3], 2, ChannelMix::Downmix).is_err());
    }

    #[test]
    fn level_of_a_full_scale_sine_is_minus_3_dbfs() {
        let s: Vec<f32> = (0..16000)
            .map(|i| (i as f32 * 2.0 * std::f32::consts::PI * 440.0 / 16000.0).sin())
            .collect();
        let l = Level::of(&s);
        assert!((l.rms_dbfs() + 3.01).abs() < 0.05, "{}", l.rms_dbfs());
        assert!(l.peak > 0.99);
        assert_eq!(Level::of(&[]).rms_dbfs(), -120.0);
    }

    #[test]
    fn pcm16_conversion_clips() {
        assert_eq!(f32_to_i16(2.0), i16::MAX);
        assert_eq!(f32_to_i16(-2.0), i16::MIN);
        assert_eq!(i16_to_f32(f32_to_i16(0.25)), 0.25);
    }
}
