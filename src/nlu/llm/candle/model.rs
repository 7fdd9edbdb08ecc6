//! The transformer forward pass (llama and qwen2 GGUF layouts) with an explicit, cloneable and
//! truncatable KV-cache state, so a prompt prefix can be computed once and reused.
//!
//! Adapted from candle-transformers' `models::quantized_llama` (Copyright The Candle authors,
//! MIT OR Apache-2.0): same GGUF tensor names and math, but the KV cache lives in [`KvState`]
//! outside the weights (preallocated, written in place with `slice_set`), the causal mask is
//! rectangular `(new, cached + new)` for chunks appended to a cache, grouped-query attention
//! reshapes the queries instead of repeating keys/values, and the token embedding stays
//! quantized (rows are dequantized on lookup) instead of being expanded to f32.

use std::sync::Arc;

use candle_core::quantized::{gguf_file, QMatMul, QTensor};
use candle_core::{DType, Device, IndexOp, Module, Tensor};
use candle_nn::RmsNorm;

/// RMS normalisation with its weight from the GGUF file, dequantized once at load.
fn rms_norm(weight: QTensor, eps: f64) -> candle_core::Result<RmsNorm> {
    Ok(RmsNorm::new(weight.dequantize(&Device::Cpu)?, eps))
}

/// Hyper-parameters read from the GGUF metadata.
#[derive(Debug, Clone)]
pub struct Config {
    /// `general.architecture`.
    pub arch: String,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads.
    pub n_kv_head: usize,
    /// Per-head size.
    pub head_dim: usize,
    /// Transformer blocks.
    pub n_layer: usize,
    /// Hidden size.
    pub n_embd: usize,
    /// Context window used (≤ the model's).
    pub ctx: usize,
    /// The model's trained context length.
    pub model_ctx: usize,
    /// Rotary convention: true = NEOX (halves), false = interleaved pairs.
    pub rope_neox: bool,
}

struct Layer {
    wq: QMatMul,
    wk: QMatMul,
    wv: QMatMul,
    wo: QMatMul,
    bq: Option<Tensor>,
    bk: Option<Tensor>,
    bv: Option<Tensor>,
    attn_norm: RmsNorm,
    ffn_norm: RmsNorm,
    w_gate: QMatMul,
    w_down: QMatMul,
    w_up: QMatMul,
}

/// The weights of a decoder-only transformer.
pub struct Model {
    /// Hyper-parameters.
    pub cfg: Config,
    embed: Arc<QTensor>,
    layers: Vec<Layer>,
    norm: RmsNorm,
    output: QMatMul,
    cos: Tensor,
    sin: Tensor,
    device: Device,
}

/// The keys and values computed for a token sequence, layer by layer.
///
/// Buffers are preallocated in steps of [`KV_STEP`] tokens and written in place; a clone made
/// with [`KvState::fork`] is a deep copy, so a stored state is never changed by later use of
/// another one.
pub struct KvState {
    k: Vec<Tensor>,
    v: Vec<Tensor>,
    cap: usize,
    /// The tokens whose keys and values are held, in order.
    pub tokens: Vec<u32>,
}

/// Growth step of the KV buffers, in tokens.
pub const KV_STEP: usize = 256;

impl KvState {
    /// An empty state.
    pub fn empty() -> Self {
        Self {
            k: Vec::new(),
            v: Vec::new(),
            cap: 0,
            tokens: Vec::new(),
        }
    }

    /// Tokens held.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether no token is held.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Forget everything after the first `n` tokens.
    pub fn truncate(&mut self, n: usize) {
        self.tokens.truncate(n);
    }

    /// Bytes of KV memory held.
    pub fn bytes(&self) -> usize {
        self.k
            .iter()
            .chain(self.v.iter())
            .map(|t| t.elem_count() * 4)
            .sum()
    }

    fn reserve(&mut self, cfg: &Config, device: &Device, n: usize) -> candle_core::Result<()> {
        if n <= self.cap {
            return Ok(());
        }
        let cap = n
            .div_ceil(KV_STEP)
            .saturating_mul(KV_STEP)
            .min(cfg.ctx)
            .max(n);
        self.reserve_exact(cfg, device, cap)
    }

    /// Reallocate the buffers for exactly `cap` tokens (≥ the tokens held), keeping them.
    fn reserve_exact(
        &mut self,
        cfg: &Config,
        device: &Device,
        cap: usize,
    ) -> candle_core::Result<()> {
        let cap = cap.max(self.len());
        let shape = (1, cfg.n_kv_head, cap, cfg.head_dim);
        let len = self.len();
        let mut k = Vec::with_capacity(cfg.n_layer);
        let mut v = Vec::with_capacity(cfg.n_layer);
        for i in 0..cfg.n_layer {
            let nk = Tensor::zeros(shape, DType::F32, device)?;
            let nv = Tensor::zeros(shape, DType::F32, device)?;
            if len > 0 {
                if let (Some(ok), Some(ov)) = (self.k.get(i), self.v.get(i)) {
                    nk.slice_set(&ok.narrow(2, 0, len)?.contiguous()?, 2, 0)?;
                    nv.slice_set(&ov.narrow(2, 0, len)?.contiguous()?, 2, 0)?;
                }
            }
            k.push(nk);
            v.push(nv);
        }
        self.k = k;
        self.v = v;
        self.cap = cap;
        Ok(())
    }

    /// The keys held for `layer`, shape `(1, kv heads, tokens, head size)`, rotated for their
    /// positions (for inspection).
    pub fn keys(&self, layer: usize) -> candle_core::Result<Tensor> {
        match self.k.get(layer) {
            Some(k) => k.narrow(2, 0, self.len()),
            None => candle_core::bail!("no layer {layer} in the cache"),
        }
    }

    /// The values held for `layer`, shape `(1, kv heads, tokens, head size)`.
    pub fn values(&self, layer: usize) -> candle_core::Result<Tensor> {
        match self.v.get(layer) {
            Some(v) => v.narrow(2, 0, self.len()),
            None => candle_core::bail!("no layer {layer} in the cache"),
        }
    }

    /// A deep copy of the first `n` tokens, with room for `room` more (a snapshot kept only
    /// to be forked again needs none; a state that will grow, [`KV_STEP`]).
    pub fn fork(
        &self,
        cfg: &Config,
        device: &Device,
        n: usize,
        room: usize,
    ) -> candle_core::Result<KvState> {
        let n = n.min(self.len());
        if n == 0 {
            return Ok(KvState::empty());
        }
        // reserve_exact() copies the first len() tokens of the old buffers into fresh ones.
        let mut out = KvState {
            k: self.k.clone(),
            v: self.v.clone(),
            cap: 0,
            tokens: self.tokens[..n].to_vec(),
        };
        out.reserve_exact(cfg, device, (n + room).min(cfg.ctx.max(n)))?;
        Ok(out)
    }

    /// Tokens the buffers have room for.
    pub fn capacity(&self) -> usize {
        self.cap
    }
}

fn md<'a>(ct: &'a gguf_file::Content, key: &str) -> Result<&'a gguf_file::Value, String> {
    ct.metadata
        .get(key)
        .ok_or_else(|| format!("GGUF metadata `{key}` is missing"))
}

fn md_u32(ct: &gguf_file::Content, key: &str) -> Result<usize, String> {
    md(ct, key)?
        .to_u32()
        .map(|v| v as usize)
        .map_err(|e| format!("GGUF metadata `{key}`: {e}"))
}

impl Model {
    /// Load the weights of a `llama` or `qwen2` GGUF; `ctx` caps the context window.
    pub fn load<R: std::io::Seek + std::io::Read>(
        ct: &gguf_file::Content,
        reader: &mut R,
        ctx: usize,
    ) -> Result<Self, String> {
        let device = Device::Cpu;
        let arch = md(ct, "general.architecture")?
            .to_string()
            .map_err(|e| format!("GGUF metadata `general.architecture`: {e}"))?
            .clone();
        let rope_neox = match arch.as_str() {
            "llama" => false,
            "qwen2" => true,
            other => {
                return Err(format!(
                    "architecture `{other}` is not supported by the candle engine (supported: llama, qwen2)"
                ))
            }
        };
        let p = |k: &str| format!("{arch}.{k}");
        let n_head = md_u32(ct, &p("attention.head_count"))?;
        let n_kv_head = md_u32(ct, &p("attention.head_count_kv")).unwrap_or(n_head);
        let n_layer = md_u32(ct, &p("block_count"))?;
        let n_embd = md_u32(ct, &p("embedding_length"))?;
        let model_ctx = md_u32(ct, &p("context_length")).unwrap_or(4096);
        let head_dim = md_u32(ct, &p("rope.dimension_count")).unwrap_or(n_embd / n_head.max(1));
        if n_head == 0 || n_kv_head == 0 || n_head % n_kv_head != 0 || head_dim * n_head != n_embd {
            return Err(format!(
                "unsupported head layout: {n_head} heads, {n_kv_head} kv heads, head size {head_dim}, hidden {n_embd}"
            ));
        }
        let eps = md(ct, &p("attention.layer_norm_rms_epsilon"))?
            .to_f32()
            .map_err(|e| e.to_string())? as f64;
        let rope_base = md(ct, &p("rope.freq_base"))
            .and_then(|v| v.to_f32().map_err(|e| e.to_string()))
            .unwrap_or(10000.0);
        let ctx = ctx.min(model_ctx).max(1);
        let cfg = Config {
            arch: arch.clone(),
            n_head,
            n_kv_head,
            head_dim,
            n_layer,
            n_embd,
            ctx,
            model_ctx,
            rope_neox,
        };
        let ce = |e: candle_core::Error| e.to_string();
        let mut get = |name: &str| -> Result<QTensor, String> {
            ct.tensor(reader, name, &device)
                .map_err(|e| format!("tensor `{name}`: {e}"))
        };
        // Optional tensors are looked up, not tried: a failed read builds a candle error, which
        // captures (and, formatted, symbolizes) a backtrace when RUST_BACKTRACE is set; the
        // symbolizer's caches stayed in the heap for good (33 MB here).
        let has = |name: &str| ct.tensor_infos.contains_key(name);
        // Llama 3 stores per-frequency rope factors in `rope_freqs.weight`.
        let rope_factors: Option<Vec<f32>> = if has("rope_freqs.weight") {
            Some(
                get("rope_freqs.weight")?
                    .dequantize(&device)
                    .and_then(|t| t.flatten_all()?.to_vec1::<f32>())
                    .map_err(ce)?,
            )
        } else {
            None
        };
        let embed = Arc::new(get("token_embd.weight")?);
        let output = if has("output.weight") {
            QMatMul::from_qtensor(get("output.weight")?).map_err(ce)?
        } else {
            QMatMul::from_arc(embed.clone()).map_err(ce)?
        };
        let norm = rms_norm(get("output_norm.weight")?, eps).map_err(ce)?;
        let mut layers = Vec::with_capacity(n_layer);
        for i in 0..n_layer {
            let mut t = |n: &str| get(&format!("blk.{i}.{n}"));
            let qm = |q: QTensor| QMatMul::from_qtensor(q).map_err(ce);
            let bias = |q: Option<Result<QTensor, String>>| -> Result<Option<Tensor>, String> {
                match q {
                    Some(q) => Ok(Some(q?.dequantize(&Device::Cpu).map_err(ce)?)),
                    None => Ok(None),
                }
            };
            let opt = |n: &str| has(&format!("blk.{i}.{n}"));
            let (has_bq, has_bk, has_bv) =
                (opt("attn_q.bias"), opt("attn_k.bias"), opt("attn_v.bias"));
            layers.push(Layer {
                wq: qm(t("attn_q.weight")?)?,
                wk: qm(t("attn_k.weight")?)?,
                wv: qm(t("attn_v.weight")?)?,
                wo: qm(t("attn_output.weight")?)?,
                bq: bias(has_bq.then(|| t("attn_q.bias")))?,
                bk: bias(has_bk.then(|| t("attn_k.bias")))?,
                bv: bias(has_bv.then(|| t("attn_v.bias")))?,
                attn_norm: rms_norm(t("attn_norm.weight")?, eps).map_err(ce)?,
                ffn_norm: rms_norm(t("ffn_norm.weight")?, eps).map_err(ce)?,
                w_gate: qm(t("ffn_gate.weight")?)?,
                w_down: qm(t("ffn_down.weight")?)?,
                w_up: qm(t("ffn_up.weight")?)?,
            });
        }
        let (cos, sin) =
            rope_tables(head_dim, rope_base, rope_factors.as_deref(), ctx, &device).map_err(ce)?;
        Ok(Self {
            cfg,
            embed,
            layers,
            norm,
            output,
            cos,
            sin,
            device,
        })
    }

    /// The device tensors live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Vocabulary rows of the embedding.
    pub fn vocab_size(&self) -> usize {
        self.embed.shape().dims().first().copied().unwrap_or(0)
    }

    /// Drop the `n` tokens at `at` from `state`; the tokens after them move up, their keys
    /// re-rotated for their new positions (the context shift llama.cpp does when a
    /// conversation's oldest turns leave the window). Their keys and values still carry what
    /// they saw of the dropped tokens, so they are close to, not equal to, a fresh prefill's:
    /// equal in the first layer, which sees only the token itself.
    pub fn drop_tokens(&self, state: &mut KvState, at: usize, n: usize) -> candle_core::Result<()> {
        let len = state.len();
        if n == 0 || at >= len {
            return Ok(());
        }
        let n = n.min(len - at);
        let tail = len - at - n;
        if tail > 0 {
            let cos_by = self.cos.narrow(0, n, 1)?;
            let sin_by = self.sin.narrow(0, n, 1)?;
            for li in 0..state.k.len().min(state.v.len()) {
                // The rotation writes a new tensor; the values need a copy of their own
                // (slice_set cannot read and write one storage).
                let k = state.k[li].narrow(2, at + n, tail)?;
                let k = shift_keys(&k, &cos_by, &sin_by, self.cfg.rope_neox)?;
                state.k[li].slice_set(&k, 2, at)?;
                let v = state.v[li].narrow(2, at + n, tail)?.force_contiguous()?;
                state.v[li].slice_set(&v, 2, at)?;
            }
        }
        state.tokens.drain(at..at + n);
        Ok(())
    }

    /// Run `tokens` after what `state` holds, append their keys/values to it, and return the
    /// logits (f32, vocabulary-sized) of the last token.
    pub fn forward(&self, tokens: &[u32], state: &mut KvState) -> candle_core::Result<Vec<f32>> {
        let cfg = &self.cfg;
        let s = tokens.len();
        let pos = state.len();
        if s == 0 {
            candle_core::bail!("forward called with no tokens");
        }
        if pos + s > cfg.ctx {
            candle_core::bail!(
                "{} tokens exceed the context window of {}",
                pos + s,
                cfg.ctx
            );
        }
        state.reserve(cfg, &self.device, pos + s)?;
        let kv_len = pos + s;
        let ids = Tensor::new(tokens, &self.device)?;
        let mut x = self.embed.embedding(&ids)?.reshape((1, s, cfg.n_embd))?;
        let mask = if s > 1 {
            Some(causal_mask(s, pos, &self.device)?)
        } else {
            None
        };
        let cos = self.cos.narrow(0, pos, s)?;
        let sin = self.sin.narrow(0, pos, s)?;
        let n_rep = cfg.n_head / cfg.n_kv_head;
        let scale = 1.0 / (cfg.head_dim as f64).sqrt();
        let rope = |t: &Tensor| {
            if cfg.rope_neox {
                candle_nn::rotary_emb::rope(t, &cos, &sin)
            } else {
                candle_nn::rotary_emb::rope_i(t, &cos, &sin)
            }
        };
        for (li, l) in self.layers.iter().enumerate() {
            let h = l.attn_norm.forward(&x)?;
            let mut q = l.wq.forward(&h)?;
            let mut k = l.wk.forward(&h)?;
            let mut v = l.wv.forward(&h)?;
            if let Some(b) = &l.bq {
                q = q.broadcast_add(b)?;
            }
            if let Some(b) = &l.bk {
                k = k.broadcast_add(b)?;
            }
            if let Some(b) = &l.bv {
                v = v.broadcast_add(b)?;
            }
            let q = q
                .reshape((1, s, cfg.n_head, cfg.head_dim))?
                .transpose(1, 2)?
                .contiguous()?;
            let k = k
                .reshape((1, s, cfg.n_kv_head, cfg.head_dim))?
                .transpose(1, 2)?
                .contiguous()?;
            let v = v
                .reshape((1, s, cfg.n_kv_head, cfg.head_dim))?
                .transpose(1, 2)?
                .contiguous()?;
            let q = rope(&q)?;
            let k = rope(&k)?;
            state.k[li].slice_set(&k, 2, pos)?;
            state.v[li].slice_set(&v, 2, pos)?;
            let kk = state.k[li].narrow(2, 0, kv_len)?;
            let vv = state.v[li].narrow(2, 0, kv_len)?;
            // Grouped-query attention: the n_rep query heads sharing a kv head become rows.
            let q = q.reshape((1, cfg.n_kv_head, n_rep * s, cfg.head_dim))?;
            let att = (q.matmul(&kk.t()?)? * scale)?;
            let att = match &mask {
                Some(m) => att
                    .reshape((1, cfg.n_kv_head, n_rep, s, kv_len))?
                    .broadcast_add(m)?
                    .reshape((1, cfg.n_kv_head, n_rep * s, kv_len))?,
                None => att,
            };
            let att = candle_nn::ops::softmax_last_dim(&att)?;
            let y = att.matmul(&vv)?;
            let y = y
                .reshape((1, cfg.n_head, s, cfg.head_dim))?
                .transpose(1, 2)?
                .reshape((1, s, cfg.n_embd))?;
            x = (x + l.wo.forward(&y)?)?;
            let h = l.ffn_norm.forward(&x)?;
            let gate = l.w_gate.forward(&h)?.silu()?;
            let up = l.w_up.forward(&h)?;
            x = (x + l.w_down.forward(&(gate * up)?)?)?;
        }
        state.tokens.extend_from_slice(tokens);
        let last = x.i((.., s - 1..s, ..))?;
        let last = self.norm.forward(&last)?;
        let logits = self.output.forward(&last)?;
        logits.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()
    }
}

/// `k` (`(1, heads, tokens, head size)`, rotated for positions `p…`) rotated back by `by`
/// positions, as if it had been computed at `p - by…`: rotary embeddings compose, so one more
/// rotation by `-by × θ` moves every key at once. `cos_by`/`sin_by` are the tables' row `by`.
fn shift_keys(
    k: &Tensor,
    cos_by: &Tensor,
    sin_by: &Tensor,
    neox: bool,
) -> candle_core::Result<Tensor> {
    let (_, _, t, _) = k.dims4()?;
    let half = cos_by.dim(1)?;
    // cos(−a) = cos a, sin(−a) = −sin a, the same for every token.
    let cos = cos_by.broadcast_as((t, half))?.contiguous()?;
    let sin = sin_by.neg()?.broadcast_as((t, half))?.contiguous()?;
    let k = k.contiguous()?;
    if neox {
        candle_nn::rotary_emb::rope(&k, &cos, &sin)
    } else {
        candle_nn::rotary_emb::rope_i(&k, &cos, &sin)
    }
}

/// Additive causal mask `(s, pos + s)`: 0 where query `pos + i` may see key `j`, −∞ after it.
fn causal_mask(s: usize, pos: usize, device: &Device) -> candle_core::Result<Tensor> {
    let kv = pos + s;
    let data: Vec<f32> = (0..s)
        .flat_map(|i| (0..kv).map(move |j| if j > pos + i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Tensor::from_vec(data, (s, kv), device)
}

fn rope_tables(
    head_dim: usize,
    base: f32,
    factors: Option<&[f32]>,
    ctx: usize,
    device: &Device,
) -> candle_core::Result<(Tensor, Tensor)> {
    let theta: Vec<f32> = (0..head_dim)
        .step_by(2)
        .enumerate()
        .map(|(k, i)| {
            let f = factors.and_then(|f| f.get(k)).copied().unwrap_or(1.0);
            1.0 / base.powf(i as f32 / head_dim as f32) / f
        })
        .collect();
    let half = theta.len();
    let mut cos = Vec::with_capacity(ctx * half);
    let mut sin = Vec::with_capacity(ctx * half);
    for p in 0..ctx {
        for t in &theta {
            let a = p as f32 * t;
            cos.push(a.cos());
            sin.push(a.sin());
        }
    }
    Ok((
        Tensor::from_vec(cos, (ctx, half), device)?,
        Tensor::from_vec(sin, (ctx, half), device)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    #[test]
    fn shifted_keys_equal_keys_rotated_for_their_new_positions() {
        let (heads, t, d, by) = (3, 5, 8, 7);
        let (cos, sin) = rope_tables(d, 10000.0, None, 64, &Device::Cpu).unwrap();
        let x = Tensor::randn(0f32, 1.0, (1, heads, t, d), &Device::Cpu).unwrap();
        for neox in [true, false] {
            let rope = |pos: usize| {
                let (c, s) = (
                    cos.narrow(0, pos, t).unwrap(),
                    sin.narrow(0, pos, t).unwrap(),
                );
                if neox {
                    candle_nn::rotary_emb::rope(&x, &c, &s).unwrap()
                } else {
                    candle_nn::rotary_emb::rope_i(&x, &c, &s).unwrap()
                }
            };
            // Keys computed at positions 20…24, moved back by 7: as if computed at 13…17.
            let at_20 = rope(20);
            let shifted = shift_keys(
                &at_20,
                &cos.narrow(0, by, 1).unwrap(),
                &sin.narrow(0, by, 1).unwrap(),
                neox,
            )
            .unwrap();
            let at_13 = rope(20 - by);
            assert!(max_diff(&shifted, &at_13) < 1e-4, "neox {neox}");
            // And they did move: positions 20… and 13… differ.
            assert!(max_diff(&at_20, &at_13) > 0.1, "neox {neox}");
        }
    }

    #[test]
    fn causal_mask_is_rectangular_after_a_cached_prefix() {
        let m = causal_mask(2, 3, &Device::Cpu).unwrap();
        let v: Vec<Vec<f32>> = m.to_vec2().unwrap();
        assert_eq!(v[0], vec![0.0, 0.0, 0.0, 0.0, f32::NEG_INFINITY]);
        assert_eq!(v[1], vec![0.0; 5]);
    }
}
