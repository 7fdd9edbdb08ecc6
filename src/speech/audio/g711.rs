//! G.711 telephony codecs: μ-law (North America, Japan; Twilio Media Streams) and A-law
//! (Europe), 8-bit samples to and from 16-bit linear PCM, as ITU-T G.711 defines them.

const BIAS: i32 = 0x84;
const CLIP: i32 = 32635;

/// 16-bit linear PCM to one μ-law byte.
pub fn linear_to_ulaw(pcm: i16) -> u8 {
    let mut x = i32::from(pcm);
    let sign = if x < 0 { 0x80 } else { 0 };
    if x < 0 {
        x = -x;
    }
    x = x.min(CLIP) + BIAS;
    let mut exponent = 7;
    let mut mask = 0x4000;
    while x & mask == 0 && exponent > 0 {
        exponent -= 1;
        mask >>= 1;
    }
    let mantissa = (x >> (exponent + 3)) & 0x0F;
    #[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation)]
    let byte = !(sign | (exponent << 4) | mantissa) as u8;
    byte
}

/// One μ-law byte to 16-bit linear PCM.
pub fn ulaw_to_linear(byte: u8) -> i16 {
    let u = !byte;
    let sign = u & 0x80;
    let exponent = i32::from((u >> 4) & 0x07);
    let mantissa = i32::from(u & 0x0F);
    let magnitude = (((mantissa << 3) + BIAS) << exponent) - BIAS;
    #[allow(clippy::cast_possible_truncation)]
    let v = if sign != 0 { -magnitude } else { magnitude } as i16;
    v
}

/// 16-bit linear PCM to one A-law byte.
pub fn linear_to_alaw(pcm: i16) -> u8 {
    let mut x = i32::from(pcm) >> 3; // 13-bit magnitude domain
    let mask: i32 = if x >= 0 {
        0xD5
    } else {
        x = -x - 1;
        0x55
    };
    let seg_ends = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];
    let seg = seg_ends.iter().position(|&e| x <= e).unwrap_or(8) as i32;
    #[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation)]
    if seg >= 8 {
        (0x7F ^ mask) as u8
    } else {
        let aval = (seg << 4)
            | if seg < 2 {
                (x >> 1) & 0x0F
            } else {
                (x >> seg) & 0x0F
            };
        (aval ^ mask) as u8
    }
}

/// One A-law byte to 16-bit linear PCM.
pub fn alaw_to_linear(byte: u8) -> i16 {
    let a = i32::from(byte ^ 0x55);
    let mut t = (a & 0x0F) << 4;
    let seg = (a & 0x70) >> 4;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    #[allow(clippy::cast_possible_truncation)]
    let v = if a & 0x80 != 0 { t } else { -t } as i16;
    v
}

/// Encode samples (−1..1) as μ-law bytes.
pub fn encode_ulaw(samples: &[f32]) -> Vec<u8> {
    samples
        .iter()
        .map(|&s| linear_to_ulaw(super::f32_to_i16(s)))
        .collect()
}

/// Decode μ-law bytes to samples (−1..1).
pub fn decode_ulaw(bytes: &[u8]) -> Vec<f32> {
    bytes
        .iter()
        .map(|&b| super::i16_to_f32(ulaw_to_linear(b)))
        .collect()
}

/// Encode samples (−1..1) as A-law bytes.
pub fn encode_alaw(samples: &[f32]) -> Vec<u8> {
    samples
        .iter()
        .map(|&s| linear_to_alaw(super::f32_to_i16(s)))
        .collect()
}

/// Decode A-law bytes to samples (−1..1).
pub fn decode_alaw(bytes: &[u8]) -> Vec<f32> {
    bytes
        .iter()
        .map(|&b| super::i16_to_f32(alaw_to_linear(b)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known G.711 code points (from the ITU-T tables as used by Sun's g711.c).
    #[test]
    fn known_code_points() {
        assert_eq!(linear_to_ulaw(0), 0xFF);
        assert_eq!(linear_to_ulaw(-1), 0x7F);
        assert_eq!(ulaw_to_linear(0xFF), 0);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(linear_to_ulaw(32767), 0x80);
        assert_eq!(linear_to_ulaw(-32768), 0x00);
        assert_eq!(linear_to_alaw(0), 0xD5);
        assert_eq!(linear_to_alaw(-1), 0x55);
        assert_eq!(alaw_to_linear(0xD5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xAA), 32256);
        assert_eq!(linear_to_alaw(32767), 0xAA);
    }

    /// Every code decodes to a value that encodes back to the same code.
    #[test]
    fn every_code_round_trips() {
        for b in 0..=255u8 {
            // μ-law has two zeros (0x7F and 0xFF); both decode to 0 which encodes as 0xFF.
            if b != 0x7F {
                assert_eq!(linear_to_ulaw(ulaw_to_linear(b)), b, "μ-law {b:#04x}");
            }
            assert_eq!(linear_to_alaw(alaw_to_linear(b)), b, "A-law {b:#04x}");
        }
    }

    /// Linear PCM through either codec stays within the codec's quantization step.
    #[test]
    fn linear_round_trip_error_is_within_the_segment_step() {
        for x in (-32768i32..=32767).step_by(7) {
            let x = x as i16;
            let u = ulaw_to_linear(linear_to_ulaw(x));
            let a = alaw_to_linear(linear_to_alaw(x));
            let tol = (i32::from(x).abs() / 16).max(16);
            assert!(
                (i32::from(u) - i32::from(x)).abs() <= tol + 132,
                "μ-law {x} -> {u}"
            );
            assert!(
                (i32::from(a) - i32::from(x)).abs() <= tol + 16,
                "A-law {x} -> {a}"
            );
        }
        // A sine survives with a high signal-to-noise ratio (G.711 gives ~38 dB).
        let s: Vec<f32> = (0..8000)
            .map(|i| 0.5 * (i as f32 * 2.0 * std::f32::consts::PI * 1000.0 / 8000.0).sin())
            .collect();
        for (enc, dec) in [
            (
                encode_ulaw as fn(&[f32]) -> Vec<u8>,
                decode_ulaw as fn(&[u8]) -> Vec<f32>,
            ),
            (encode_alaw, decode_alaw),
        ] {
            let back = dec(&enc(&s));
            let noise: f32 = s.iter().zip(&back).map(|(a, b)| (a - b) * (a - b)).sum();
            let signal: f32 = s.iter().map(|a| a * a).sum();
            let snr = 10.0 * (signal / noise).log10();
            assert!(snr > 33.0, "SNR {snr} dB");
        }
    }
}
