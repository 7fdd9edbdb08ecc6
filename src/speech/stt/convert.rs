//! CTranslate2 Whisper → the ggml file whisper.cpp loads (`whisper_init_from_file`): the
//! legacy `ggml` magic, hyperparameters, Slaney mel filters, the vocabulary from
//! `tokenizer.json`, then every tensor renamed and reshaped the way whisper.cpp names them.
//!
//! Weights are written as f16 ([`WeightType::F16`], lossless for the float16 CT2 exports) or
//! as ggml Q8_0 ([`WeightType::Q8_0`], what whisper.cpp's `quantize q8_0` produces: 2-D
//! weights quantized, convolutions f16, biases, norms and position embeddings f32).

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use super::ct2::Ct2Model;
use crate::speech::SpeechError;

const GGML_FILE_MAGIC: u32 = 0x6767_6d6c;
const GGML_QNT_VERSION: i32 = 2;
const GGML_QNT_VERSION_FACTOR: i32 = 1000;
const SAMPLE_RATE: f64 = 16_000.0;
const N_FFT: usize = 400;

/// How the big 2-D weights are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightType {
    /// IEEE half.
    F16,
    /// ggml Q8_0: blocks of 32 int8 with one f16 scale.
    Q8_0,
}

impl WeightType {
    /// The `ftype` hyperparameter whisper.cpp reads.
    fn ftype(self) -> i32 {
        match self {
            WeightType::F16 => 1,
            WeightType::Q8_0 => 7 + GGML_QNT_VERSION * GGML_QNT_VERSION_FACTOR,
        }
    }
}

/// A ggml tensor type this writer produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TensorType {
    F32,
    F16,
    Q8_0,
}

impl TensorType {
    fn code(self) -> i32 {
        match self {
            TensorType::F32 => 0,
            TensorType::F16 => 1,
            TensorType::Q8_0 => 8,
        }
    }
}

/// What a conversion produced.
#[derive(Debug, Clone)]
pub struct ConvertReport {
    /// Encoder/decoder layers.
    pub layers: (usize, usize),
    /// Vocabulary entries written (whisper.cpp adds the special tokens itself).
    pub vocab: usize,
    /// Tensors written.
    pub tensors: usize,
    /// Output size in bytes.
    pub bytes: u64,
    /// Wall time.
    pub elapsed: Duration,
}

/// Convert the CTranslate2 Whisper model `model_bin` (with `tokenizer.json` beside it) into the
/// ggml file `dst`.
pub fn convert(
    model_bin: &Path,
    dst: &Path,
    weights: WeightType,
) -> Result<ConvertReport, SpeechError> {
    let started = Instant::now();
    let model = Ct2Model::open(model_bin)?;
    if model.spec != "WhisperSpec" {
        return Err(SpeechError::Model {
            path: model_bin.to_path_buf(),
            reason: format!(
                "a CTranslate2 {} model, not Whisper (WhisperSpec)",
                model.spec
            ),
        });
    }
    let tokenizer = model_bin.with_file_name("tokenizer.json");
    let vocab = read_vocab(&tokenizer)?;

    let file = std::fs::File::create(dst).map_err(|e| SpeechError::Model {
        path: dst.to_path_buf(),
        reason: format!("cannot create: {e}"),
    })?;
    let mut w = std::io::BufWriter::new(file);
    let mut out = GgmlWriter {
        w: &mut w,
        dst,
        tensors: 0,
    };
    let layers = write_model(&model, &vocab, weights, &mut out)?;
    let tensors = out.tensors;
    w.flush()
        .and_then(|()| w.get_ref().sync_all())
        .map_err(|e| SpeechError::Model {
            path: dst.to_path_buf(),
            reason: format!("cannot write: {e}"),
        })?;
    let bytes = std::fs::metadata(dst).map(|m| m.len()).unwrap_or(0);
    Ok(ConvertReport {
        layers,
        vocab: vocab.len(),
        tensors,
        bytes,
        elapsed: started.elapsed(),
    })
}

struct GgmlWriter<'a, W: Write> {
    w: &'a mut W,
    dst: &'a Path,
    tensors: usize,
}

impl<W: Write> GgmlWriter<'_, W> {
    fn bytes(&mut self, b: &[u8]) -> Result<(), SpeechError> {
        self.w.write_all(b).map_err(|e| SpeechError::Model {
            path: self.dst.to_path_buf(),
            reason: format!("cannot write: {e}"),
        })
    }

    fn i32(&mut self, v: i32) -> Result<(), SpeechError> {
        self.bytes(&v.to_le_bytes())
    }

    /// One tensor: `ne` in ggml order (innermost first), `data` row-major in PyTorch order.
    fn tensor(
        &mut self,
        name: &str,
        ne: &[usize],
        data: &[f32],
        ty: TensorType,
    ) -> Result<(), SpeechError> {
        debug_assert_eq!(ne.iter().product::<usize>(), data.len(), "{name}");
        self.i32(ne.len() as i32)?;
        self.i32(name.len() as i32)?;
        self.i32(ty.code())?;
        for &d in ne {
            self.i32(d as i32)?;
        }
        self.bytes(name.as_bytes())?;
        let payload: Vec<u8> = match ty {
            TensorType::F32 => data.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorType::F16 => data
                .iter()
                .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
                .collect(),
            TensorType::Q8_0 => quantize_q8_0(data),
        };
        self.bytes(&payload)?;
        self.tensors += 1;
        Ok(())
    }
}

/// ggml Q8_0 (`quantize_row_q8_0_ref`): per block of 32, `d = amax / 127` stored as f16 and
/// `round(x / d)` as int8. The length must be a multiple of 32.
fn quantize_q8_0(data: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 32 * 34);
    for block in data.chunks(32) {
        let amax = block.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        let d = amax / 127.0;
        let id = if d == 0.0 { 0.0 } else { 1.0 / d };
        out.extend_from_slice(&half::f16::from_f32(d).to_le_bytes());
        for &x in block {
            #[allow(clippy::cast_possible_truncation)]
            out.push(((x * id).round() as i8) as u8);
        }
    }
    out
}

fn model_err(model: &Ct2Model, reason: String) -> SpeechError {
    SpeechError::Model {
        path: model.path().to_path_buf(),
        reason,
    }
}

/// The shape of `name`, checked against `expected` (a `None` matches any size).
fn shape_of(
    model: &Ct2Model,
    name: &str,
    expected: &[Option<usize>],
) -> Result<Vec<usize>, SpeechError> {
    let v = model.var(name)?;
    let ok = v.shape.len() == expected.len()
        && v.shape
            .iter()
            .zip(expected)
            .all(|(d, e)| e.is_none_or(|e| e == *d));
    if ok {
        Ok(v.shape.clone())
    } else {
        Err(model_err(
            model,
            format!(
                "variable {name} has shape {:?}, expected {:?}",
                v.shape, expected
            ),
        ))
    }
}

fn to_i32(model: &Ct2Model, what: &str, v: usize) -> Result<i32, SpeechError> {
    i32::try_from(v).map_err(|_| model_err(model, format!("{what} {v} is too large")))
}

/// Write header, filters, vocabulary and tensors; returns (encoder, decoder) layer counts.
fn write_model<W: Write>(
    m: &Ct2Model,
    vocab: &[Vec<u8>],
    weights: WeightType,
    out: &mut GgmlWriter<'_, W>,
) -> Result<(usize, usize), SpeechError> {
    let emb = shape_of(m, "decoder/embeddings/weight", &[None, None])?;
    let (n_vocab, n_state) = (emb[0], emb[1]);
    let audio_pe = shape_of(
        m,
        "encoder/position_encodings/encodings",
        &[None, Some(n_state)],
    )?;
    let text_pe = shape_of(
        m,
        "decoder/position_encodings/encodings",
        &[None, Some(n_state)],
    )?;
    let conv1 = shape_of(m, "encoder/conv1/weight", &[Some(n_state), None, Some(3)])?;
    let n_mels = conv1[1];
    let count_layers = |prefix: &str| {
        (0..)
            .take_while(|i| {
                m.get(&format!("{prefix}/layer_{i}/ffn/linear_0/weight"))
                    .is_some()
            })
            .count()
    };
    let (enc_layers, dec_layers) = (count_layers("encoder"), count_layers("decoder"));
    if enc_layers == 0 || dec_layers == 0 {
        return Err(model_err(
            m,
            format!(
                "found {enc_layers} encoder and {dec_layers} decoder layers; expected some of each"
            ),
        ));
    }
    let enc_heads = m.scalar_int("encoder/num_heads")?;
    let dec_heads = m.scalar_int("decoder/num_heads")?;
    if vocab.len() > n_vocab {
        return Err(model_err(
            m,
            format!(
                "tokenizer.json has {} regular tokens but the model only {n_vocab} embeddings",
                vocab.len()
            ),
        ));
    }

    // Header: magic and hparams, in whisper_model_load's order.
    out.bytes(&GGML_FILE_MAGIC.to_le_bytes())?;
    for v in [
        to_i32(m, "vocabulary size", n_vocab)?,
        to_i32(m, "audio context", audio_pe[0])?,
        to_i32(m, "model width", n_state)?,
        to_i32(m, "encoder heads", enc_heads as usize)?,
        to_i32(m, "encoder layers", enc_layers)?,
        to_i32(m, "text context", text_pe[0])?,
        to_i32(m, "model width", n_state)?,
        to_i32(m, "decoder heads", dec_heads as usize)?,
        to_i32(m, "decoder layers", dec_layers)?,
        to_i32(m, "mel bands", n_mels)?,
        weights.ftype(),
    ] {
        out.i32(v)?;
    }

    // Mel filters.
    let filters = mel_filters(n_mels);
    out.i32(to_i32(m, "mel bands", n_mels)?)?;
    out.i32((N_FFT / 2 + 1) as i32)?;
    let fbytes: Vec<u8> = filters.iter().flat_map(|x| x.to_le_bytes()).collect();
    out.bytes(&fbytes)?;

    // Vocabulary: the regular tokens; whisper.cpp names the special ones after them.
    out.i32(to_i32(m, "vocabulary size", vocab.len())?)?;
    for token in vocab {
        out.i32(to_i32(m, "token length", token.len())?)?;
        out.bytes(token)?;
    }

    let matrix = match weights {
        WeightType::F16 => TensorType::F16,
        WeightType::Q8_0 => TensorType::Q8_0,
    };
    // Row lengths must be multiples of the Q8_0 block for quantization.
    if matrix == TensorType::Q8_0 && n_state % 32 != 0 {
        return Err(model_err(
            m,
            format!("model width {n_state} is not a multiple of 32: cannot write Q8_0"),
        ));
    }

    // Encoder stem.
    let conv = |out: &mut GgmlWriter<'_, W>, i: u8, n_in: usize| -> Result<(), SpeechError> {
        let w = format!("encoder/conv{i}/weight");
        shape_of(m, &w, &[Some(n_state), Some(n_in), Some(3)])?;
        out.tensor(
            &format!("encoder.conv{i}.weight"),
            &[3, n_in, n_state],
            &m.f32_values(&w)?,
            TensorType::F16,
        )?;
        let b = format!("encoder/conv{i}/bias");
        shape_of(m, &b, &[Some(n_state)])?;
        out.tensor(
            &format!("encoder.conv{i}.bias"),
            &[1, n_state],
            &m.f32_values(&b)?,
            TensorType::F32,
        )
    };
    conv(out, 1, n_mels)?;
    conv(out, 2, n_state)?;
    out.tensor(
        "encoder.positional_embedding",
        &[n_state, audio_pe[0]],
        &m.f32_values("encoder/position_encodings/encodings")?,
        TensorType::F32,
    )?;
    norm(m, out, "encoder/layer_norm", "encoder.ln_post", n_state)?;

    for i in 0..enc_layers {
        let src = format!("encoder/layer_{i}");
        let dst = format!("encoder.blocks.{i}");
        norm(
            m,
            out,
            &format!("{src}/self_attention/layer_norm"),
            &format!("{dst}.attn_ln"),
            n_state,
        )?;
        fused(
            m,
            out,
            &format!("{src}/self_attention/linear_0"),
            &[
                &format!("{dst}.attn.query"),
                &format!("{dst}.attn.key"),
                &format!("{dst}.attn.value"),
            ],
            n_state,
            matrix,
        )?;
        linear(
            m,
            out,
            &format!("{src}/self_attention/linear_1"),
            &format!("{dst}.attn.out"),
            (n_state, n_state),
            matrix,
        )?;
        ffn(m, out, &src, &dst, n_state, matrix)?;
    }

    // Decoder.
    out.tensor(
        "decoder.positional_embedding",
        &[n_state, text_pe[0]],
        &m.f32_values("decoder/position_encodings/encodings")?,
        TensorType::F32,
    )?;
    out.tensor(
        "decoder.token_embedding.weight",
        &[n_state, n_vocab],
        &m.f32_values("decoder/embeddings/weight")?,
        matrix,
    )?;
    norm(m, out, "decoder/layer_norm", "decoder.ln", n_state)?;
    for i in 0..dec_layers {
        let src = format!("decoder/layer_{i}");
        let dst = format!("decoder.blocks.{i}");
        norm(
            m,
            out,
            &format!("{src}/self_attention/layer_norm"),
            &format!("{dst}.attn_ln"),
            n_state,
        )?;
        fused(
            m,
            out,
            &format!("{src}/self_attention/linear_0"),
            &[
                &format!("{dst}.attn.query"),
                &format!("{dst}.attn.key"),
                &format!("{dst}.attn.value"),
            ],
            n_state,
            matrix,
        )?;
        linear(
            m,
            out,
            &format!("{src}/self_attention/linear_1"),
            &format!("{dst}.attn.out"),
            (n_state, n_state),
            matrix,
        )?;
        norm(
            m,
            out,
            &format!("{src}/attention/layer_norm"),
            &format!("{dst}.cross_attn_ln"),
            n_state,
        )?;
        linear(
            m,
            out,
            &format!("{src}/attention/linear_0"),
            &format!("{dst}.cross_attn.query"),
            (n_state, n_state),
            matrix,
        )?;
        fused(
            m,
            out,
            &format!("{src}/attention/linear_1"),
            &[
                &format!("{dst}.cross_attn.key"),
                &format!("{dst}.cross_attn.value"),
            ],
            n_state,
            matrix,
        )?;
        linear(
            m,
            out,
            &format!("{src}/attention/linear_2"),
            &format!("{dst}.cross_attn.out"),
            (n_state, n_state),
            matrix,
        )?;
        ffn(m, out, &src, &dst, n_state, matrix)?;
    }
    Ok((enc_layers, dec_layers))
}

/// A LayerNorm: CT2 `gamma`/`beta` → `weight`/`bias`, f32.
fn norm<W: Write>(
    m: &Ct2Model,
    out: &mut GgmlWriter<'_, W>,
    src: &str,
    dst: &str,
    n: usize,
) -> Result<(), SpeechError> {
    for (from, to) in [("gamma", "weight"), ("beta", "bias")] {
        let name = format!("{src}/{from}");
        shape_of(m, &name, &[Some(n)])?;
        out.tensor(
            &format!("{dst}.{to}"),
            &[n],
            &m.f32_values(&name)?,
            TensorType::F32,
        )?;
    }
    Ok(())
}

/// A linear layer of shape (out, in) with its bias.
fn linear<W: Write>(
    m: &Ct2Model,
    out: &mut GgmlWriter<'_, W>,
    src: &str,
    dst: &str,
    (n_out, n_in): (usize, usize),
    ty: TensorType,
) -> Result<(), SpeechError> {
    let w = format!("{src}/weight");
    shape_of(m, &w, &[Some(n_out), Some(n_in)])?;
    out.tensor(
        &format!("{dst}.weight"),
        &[n_in, n_out],
        &m.f32_values(&w)?,
        ty,
    )?;
    let b = format!("{src}/bias");
    shape_of(m, &b, &[Some(n_out)])?;
    out.tensor(
        &format!("{dst}.bias"),
        &[n_out],
        &m.f32_values(&b)?,
        TensorType::F32,
    )
}

/// A fused projection (Q,K,V or K,V) split into `dsts`; every `*.key` loses its bias
/// (whisper has none; CTranslate2 stores zeros).
fn fused<W: Write>(
    m: &Ct2Model,
    out: &mut GgmlWriter<'_, W>,
    src: &str,
    dsts: &[&str],
    n: usize,
    ty: TensorType,
) -> Result<(), SpeechError> {
    let parts = dsts.len();
    let w = format!("{src}/weight");
    shape_of(m, &w, &[Some(n * parts), Some(n)])?;
    let b = format!("{src}/bias");
    shape_of(m, &b, &[Some(n * parts)])?;
    let weight = m.f32_values(&w)?;
    let bias = m.f32_values(&b)?;
    for (k, dst) in dsts.iter().enumerate() {
        out.tensor(
            &format!("{dst}.weight"),
            &[n, n],
            &weight[k * n * n..(k + 1) * n * n],
            ty,
        )?;
        if !dst.ends_with(".key") {
            out.tensor(
                &format!("{dst}.bias"),
                &[n],
                &bias[k * n..(k + 1) * n],
                TensorType::F32,
            )?;
        }
    }
    Ok(())
}

/// The feed-forward block: `ffn/layer_norm` → `mlp_ln`, `linear_0/1` → `mlp.0/2`.
fn ffn<W: Write>(
    m: &Ct2Model,
    out: &mut GgmlWriter<'_, W>,
    src: &str,
    dst: &str,
    n: usize,
    ty: TensorType,
) -> Result<(), SpeechError> {
    norm(
        m,
        out,
        &format!("{src}/ffn/layer_norm"),
        &format!("{dst}.mlp_ln"),
        n,
    )?;
    linear(
        m,
        out,
        &format!("{src}/ffn/linear_0"),
        &format!("{dst}.mlp.0"),
        (4 * n, n),
        ty,
    )?;
    linear(
        m,
        out,
        &format!("{src}/ffn/linear_1"),
        &format!("{dst}.mlp.2"),
        (n, 4 * n),
        ty,
    )
}

/// Slaney-style mel filters as librosa computes them (`librosa.filters.mel(sr=16000,
/// n_fft=400, n_mels, htk=False, norm="slaney")`), row-major `n_mels × 201`.
pub fn mel_filters(n_mels: usize) -> Vec<f32> {
    fn hz_to_mel(f: f64) -> f64 {
        let f_sp = 200.0 / 3.0;
        let min_log_hz = 1000.0;
        let min_log_mel = min_log_hz / f_sp;
        let logstep = 6.4f64.ln() / 27.0;
        if f >= min_log_hz {
            min_log_mel + (f / min_log_hz).ln() / logstep
        } else {
            f / f_sp
        }
    }
    fn mel_to_hz(m: f64) -> f64 {
        let f_sp = 200.0 / 3.0;
        let min_log_hz = 1000.0;
        let min_log_mel = min_log_hz / f_sp;
        let logstep = 6.4f64.ln() / 27.0;
        if m >= min_log_mel {
            min_log_hz * (logstep * (m - min_log_mel)).exp()
        } else {
            f_sp * m
        }
    }
    let n_freq = N_FFT / 2 + 1;
    let fmax = SAMPLE_RATE / 2.0;
    let fft_freqs: Vec<f64> = (0..n_freq)
        .map(|i| i as f64 * fmax / (n_freq - 1) as f64)
        .collect();
    let (mel_min, mel_max) = (hz_to_mel(0.0), hz_to_mel(fmax));
    let points = n_mels + 2;
    let mel_f: Vec<f64> = (0..points)
        .map(|i| mel_to_hz(mel_min + (mel_max - mel_min) * i as f64 / (points - 1) as f64))
        .collect();
    let mut out = vec![0.0f32; n_mels * n_freq];
    for i in 0..n_mels {
        let (lo, mid, hi) = (mel_f[i], mel_f[i + 1], mel_f[i + 2]);
        let enorm = 2.0 / (hi - lo);
        for (j, &f) in fft_freqs.iter().enumerate() {
            let lower = (f - lo) / (mid - lo);
            let upper = (hi - f) / (hi - mid);
            #[allow(clippy::cast_possible_truncation)]
            {
                out[i * n_freq + j] = (lower.min(upper).max(0.0) * enorm) as f32;
            }
        }
    }
    out
}

/// GPT-2's byte ↔ printable-character table, inverted: the character a byte-level BPE token
/// uses → the byte it stands for.
fn byte_decoder() -> std::collections::HashMap<char, u8> {
    let mut printable: Vec<u32> = (u32::from(b'!')..=u32::from(b'~'))
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut chars: Vec<u32> = printable.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !printable.contains(&b) {
            printable.push(b);
            chars.push(256 + n);
            n += 1;
        }
    }
    printable
        .into_iter()
        .zip(chars)
        .filter_map(|(b, c)| Some((char::from_u32(c)?, u8::try_from(b).ok()?)))
        .collect()
}

/// The regular (non-special) tokens of `tokenizer.json` as bytes, by id: every id below
/// `<|endoftext|>`'s.
pub fn read_vocab(path: &Path) -> Result<Vec<Vec<u8>>, SpeechError> {
    let err = |reason: String| SpeechError::Model {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| err(format!("not JSON: {e}")))?;
    let vocab = json
        .pointer("/model/vocab")
        .and_then(serde_json::Value::as_object)
        .ok_or_else(|| err("no model.vocab: not a Hugging Face tokenizer.json".into()))?;
    let eot = json
        .get("added_tokens")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .find(|t| t.get("content").and_then(serde_json::Value::as_str) == Some("<|endoftext|>"))
        .and_then(|t| t.get("id"))
        .or_else(|| vocab.get("<|endoftext|>"))
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| err("no <|endoftext|> token".into()))? as usize;
    let decoder = byte_decoder();
    let mut tokens: Vec<Option<Vec<u8>>> = vec![None; eot];
    for (text, id) in vocab {
        let Some(id) = id.as_u64().map(|i| i as usize) else {
            return Err(err(format!("token {text:?} has a non-numeric id")));
        };
        if id < eot {
            let bytes = text
                .chars()
                .map(|c| decoder.get(&c).copied())
                .collect::<Option<Vec<u8>>>()
                .ok_or_else(|| err(format!("token {text:?} is not byte-level BPE")))?;
            tokens[id] = Some(bytes);
        }
    }
    tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| t.ok_or_else(|| err(format!("no token with id {i}"))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mel_filters_match_librosa_slaney() {
        // Reference values: faster-whisper's FeatureExtractor(feature_size=80).mel_filters
        // (librosa's Slaney filters); the whole matrix matched exactly when this was written.
        let f = mel_filters(80);
        assert_eq!(f.len(), 80 * 201);
        let at = |m: usize, k: usize| f[m * 201 + k];
        for (m, k, want) in [
            (0, 1, 0.024_862_595_f32),
            (1, 2, 0.022_871_772),
            (5, 6, 0.014_908_484),
            (10, 11, 0.004_954_375),
            (40, 36, 0.0),
            (79, 191, 0.002_698_383),
        ] {
            let got = at(m, k);
            assert!(
                (got - want).abs() < 1e-8,
                "filter[{m}][{k}] = {got}, want {want}"
            );
        }
        // Each filter is a triangle: non-negative, one peak.
        assert!(f.iter().all(|&x| x >= 0.0));
    }

    #[test]
    fn q8_0_blocks_hold_a_half_scale_and_rounded_int8s() {
        let data: Vec<f32> = (0..64).map(|i| (i as f32 - 31.5) / 10.0).collect();
        let q = quantize_q8_0(&data);
        assert_eq!(q.len(), 2 * 34);
        let d = half::f16::from_le_bytes([q[0], q[1]]).to_f32();
        assert!((d - 3.15 / 127.0).abs() < 1e-5);
        assert_eq!(q[2] as i8, -127);
        // Dequantized values are within about half a step (the scale itself is rounded to f16).
        for (i, &x) in data[..32].iter().enumerate() {
            let y = f32::from(q[2 + i] as i8) * d;
            assert!((x - y).abs() <= d * 0.6, "{x} vs {y}");
        }
        assert_eq!(quantize_q8_0(&[0.0; 32])[2..], [0u8; 32]);
    }

    #[test]
    fn byte_level_tokens_decode_to_bytes() {
        let d = byte_decoder();
        assert_eq!(d.len(), 256);
        assert_eq!(d.get(&'Ġ'), Some(&b' '));
        assert_eq!(d.get(&'Ċ'), Some(&b'\n'));
        assert_eq!(d.get(&'a'), Some(&b'a'));
    }

    #[test]
    fn a_non_whisper_ct2_model_is_refused_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("model.bin");
        std::fs::write(&src, super::super::ct2::tests::file("TransformerSpec", &[]))
            .expect("write");
        let e = convert(&src, &dir.path().join("out.bin"), WeightType::F16).expect_err("spec");
        let s = e.to_string();
        assert!(
            s.contains("model.bin") && s.contains("TransformerSpec"),
            "{s}"
        );
    }
}
