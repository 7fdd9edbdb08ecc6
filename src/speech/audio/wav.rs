//! WAV files (hound): read any PCM (8/16/24/32-bit integer) or 32-bit float WAV, any channel
//! count, into mono [`Audio`]; write 16-bit mono PCM. Truncated, empty or non-WAV files are
//! refused with an error naming the file and what is wrong.

use std::io::{Read, Seek};
use std::path::Path;

use super::{to_mono, Audio, ChannelMix};
use crate::speech::SpeechError;

/// Format of a WAV file as found in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WavFormat {
    /// Samples per second.
    pub rate: u32,
    /// Interleaved channels.
    pub channels: u16,
    /// Bits per sample.
    pub bits: u16,
    /// IEEE float samples (else integer PCM).
    pub float: bool,
}

/// Read `path` into mono audio (channels averaged), at the file's own rate.
pub fn read(path: &Path) -> Result<Audio, SpeechError> {
    read_with(path, ChannelMix::Downmix).map(|(a, _)| a)
}

/// Read `path`, turning channels into mono with `mix`; also returns the file's format.
pub fn read_with(path: &Path, mix: ChannelMix) -> Result<(Audio, WavFormat), SpeechError> {
    let file = std::fs::File::open(path).map_err(|e| SpeechError::AudioFile {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    read_from(std::io::BufReader::new(file), mix).map_err(|reason| SpeechError::AudioFile {
        path: path.to_path_buf(),
        reason,
    })
}

/// Read WAV bytes (e.g. an upload) into mono audio.
pub fn read_bytes(bytes: &[u8], mix: ChannelMix) -> Result<(Audio, WavFormat), SpeechError> {
    read_from(std::io::Cursor::new(bytes), mix).map_err(SpeechError::BadAudio)
}

fn read_from<R: Read + Seek>(r: R, mix: ChannelMix) -> Result<(Audio, WavFormat), String> {
    let mut reader = hound::WavReader::new(r).map_err(|e| match e {
        hound::Error::FormatError(m) => format!("not a usable WAV file ({m})"),
        hound::Error::Unsupported => {
            "unsupported WAV encoding: expected PCM integer or 32-bit float".into()
        }
        other => format!("not a usable WAV file ({other})"),
    })?;
    let spec = reader.spec();
    let format = WavFormat {
        rate: spec.sample_rate,
        channels: spec.channels,
        bits: spec.bits_per_sample,
        float: spec.sample_format == hound::SampleFormat::Float,
    };
    if spec.channels == 0 || spec.sample_rate == 0 {
        return Err(format!(
            "header says {} channel(s) at {} Hz",
            spec.channels, spec.sample_rate
        ));
    }
    let declared = u64::from(reader.len());
    let interleaved: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => {
            if spec.bits_per_sample != 32 {
                return Err(format!(
                    "unsupported {}-bit float samples: expected 32-bit",
                    spec.bits_per_sample
                ));
            }
            reader
                .samples::<f32>()
                .collect::<Result<_, _>>()
                .map_err(|e| truncated(e, declared))?
        }
        hound::SampleFormat::Int => {
            let bits = spec.bits_per_sample;
            if !matches!(bits, 8 | 16 | 24 | 32) {
                return Err(format!(
                    "unsupported {bits}-bit PCM: expected 8, 16, 24 or 32"
                ));
            }
            #[allow(clippy::cast_precision_loss)]
            let scale = 1.0 / (1u64 << (bits - 1)) as f32;
            #[allow(clippy::cast_precision_loss)]
            reader
                .samples::<i32>()
                .map(|s| s.map(|v| v as f32 * scale))
                .collect::<Result<_, _>>()
                .map_err(|e| truncated(e, declared))?
        }
    };
    if interleaved.is_empty() {
        return Err("the file holds no audio (0 samples)".into());
    }
    let mono = to_mono(&interleaved, spec.channels, mix).map_err(|e| e.to_string())?;
    Ok((Audio::new(spec.sample_rate, mono), format))
}

fn truncated(e: hound::Error, declared: u64) -> String {
    match e {
        hound::Error::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            format!("truncated: the header announces {declared} samples but the data ends early")
        }
        other => format!("cannot decode the samples ({other})"),
    }
}

/// Write `audio` as 16-bit mono PCM at its own rate (atomically: a temporary file renamed).
pub fn write(path: &Path, audio: &Audio) -> Result<(), SpeechError> {
    let err = |reason: String| SpeechError::AudioFile {
        path: path.to_path_buf(),
        reason,
    };
    if audio.rate == 0 {
        return Err(err("cannot write audio with a sample rate of 0".into()));
    }
    let tmp = path.with_extension("wav.part");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: audio.rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&tmp, spec).map_err(|e| err(e.to_string()))?;
    for s in audio.to_i16() {
        w.write_sample(s).map_err(|e| err(e.to_string()))?;
    }
    w.finalize().map_err(|e| err(e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(|e| err(e.to_string()))
}

/// `audio` as the bytes of a 16-bit mono WAV file.
pub fn to_bytes(audio: &Audio) -> Result<Vec<u8>, SpeechError> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: audio.rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut cur = std::io::Cursor::new(Vec::new());
    {
        let mut w = hound::WavWriter::new(&mut cur, spec)
            .map_err(|e| SpeechError::BadAudio(e.to_string()))?;
        for s in audio.to_i16() {
            w.write_sample(s)
                .map_err(|e| SpeechError::BadAudio(e.to_string()))?;
        }
        w.finalize()
            .map_err(|e| SpeechError::BadAudio(e.to_string()))?;
    }
    Ok(cur.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32) -> Audio {
        Audio::new(
            rate,
            (0..rate / 10)
                .map(|i| 0.5 * (i as f32 * 0.05).sin())
                .collect(),
        )
    }

    #[test]
    fn write_then_read_keeps_rate_and_samples() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.wav");
        let a = tone(16000);
        write(&p, &a).unwrap();
        let b = read(&p).unwrap();
        assert_eq!(b.rate, 16000);
        assert_eq!(b.samples.len(), a.samples.len());
        assert!(a
            .samples
            .iter()
            .zip(&b.samples)
            .all(|(x, y)| (x - y).abs() < 1.0 / 16000.0));
    }

    #[test]
    fn stereo_float_and_24_bit_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.wav");
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 48000,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let mut w = hound::WavWriter::create(&p, spec).unwrap();
        for _ in 0..100 {
            w.write_sample(0.5f32).unwrap();
            w.write_sample(-0.25f32).unwrap();
        }
        w.finalize().unwrap();
        let (a, f) = read_with(&p, ChannelMix::Select(1)).unwrap();
        assert_eq!((f.rate, f.channels, f.float), (48000, 2, true));
        assert_eq!(a.samples, vec![-0.25; 100]);

        let p = dir.path().join("24.wav");
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 24,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&p, spec).unwrap();
        w.write_sample(1 << 22).unwrap();
        w.finalize().unwrap();
        assert_eq!(read(&p).unwrap().samples, vec![0.5]);
    }

    #[test]
    fn malformed_files_are_refused_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("g.wav");
        write(&good, &tone(16000)).unwrap();
        let bytes = std::fs::read(&good).unwrap();

        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("empty", Vec::new(), "not a usable WAV"),
            (
                "text",
                b"hello, this is not audio at all".to_vec(),
                "not a usable WAV",
            ),
            ("truncated", bytes[..bytes.len() / 2].to_vec(), "truncated"),
            ("header only", bytes[..44].to_vec(), ""),
        ];
        for (name, data, expect) in cases {
            let p = dir.path().join(format!("{name}.wav"));
            std::fs::write(&p, &data).unwrap();
            let e = read(&p).expect_err(name).to_string();
            assert!(e.contains(&p.display().to_string()), "{name}: {e}");
            assert!(e.contains(expect), "{name}: {e}");
        }
        let missing = read(&dir.path().join("nope.wav")).unwrap_err().to_string();
        assert!(missing.contains("nope.wav"), "{missing}");
    }
}
