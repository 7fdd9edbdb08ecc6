//! The BERT encoder that sentence embeddings run on (all-MiniLM-L6-v2, and any BERT checkpoint
//! in Hugging Face's layout: `embeddings.*`, `encoder.layer.N.*`, `config.json`).
//!
//! Written against candle-nn's layers rather than taken from candle-transformers, whose 100-odd
//! models cost two minutes of every cold build for this one. Only what an embedding needs: one
//! unpadded sequence at a time (no attention mask), token type 0, absolute positions; the pooler
//! is not loaded. The math follows the reference `BertModel` (post-norm residual blocks, erf
//! GELU); the memory tests compare its embeddings with an independent NumPy forward pass.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;
use candle_nn::{embedding, layer_norm, linear, Embedding, LayerNorm, LayerNormConfig, Linear};

/// The fields of a BERT `config.json` the forward pass uses.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Config {
    /// Word-piece vocabulary size.
    pub vocab_size: usize,
    /// Hidden (and embedding) size.
    pub hidden_size: usize,
    /// Encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// Feed-forward size.
    pub intermediate_size: usize,
    /// Positions the model knows (the longest input).
    pub max_position_embeddings: usize,
    /// Token types (segment A/B).
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    /// Layer-norm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// The feed-forward activation: `gelu` (erf), `gelu_new`/`gelu_pytorch_tanh` (tanh
    /// approximation) or `relu`.
    #[serde(default = "default_act")]
    pub hidden_act: String,
}

fn default_type_vocab() -> usize {
    2
}

fn default_eps() -> f64 {
    1e-12
}

fn default_act() -> String {
    "gelu".into()
}

#[derive(Debug, Clone, Copy)]
enum Activation {
    GeluErf,
    GeluTanh,
    Relu,
}

impl Activation {
    fn apply(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::GeluErf => x.gelu_erf(),
            Self::GeluTanh => x.gelu(),
            Self::Relu => x.relu(),
        }
    }
}

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    intermediate: Linear,
    out: Linear,
    out_norm: LayerNorm,
}

/// A loaded BERT encoder.
pub struct Bert {
    words: Embedding,
    positions: Embedding,
    types: Embedding,
    norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    act: Activation,
}

impl Bert {
    /// Load the encoder's weights from `vb` (the checkpoint's root, or its `bert.` prefix).
    pub fn load(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        let act = match cfg.hidden_act.as_str() {
            "gelu" => Activation::GeluErf,
            "gelu_new" | "gelu_pytorch_tanh" => Activation::GeluTanh,
            "relu" => Activation::Relu,
            other => {
                return Err(candle_core::Error::Msg(format!(
                "hidden_act `{other}` is not supported (gelu, gelu_new, gelu_pytorch_tanh, relu)"
            )))
            }
        };
        let (h, heads) = (cfg.hidden_size, cfg.num_attention_heads);
        if heads == 0 || h % heads != 0 {
            return Err(candle_core::Error::Msg(format!(
                "hidden_size {h} is not a multiple of num_attention_heads {heads}"
            )));
        }
        let vb = if vb.contains_tensor("embeddings.word_embeddings.weight") {
            vb
        } else {
            vb.pp("bert")
        };
        let ln = |vb: VarBuilder| {
            let c = LayerNormConfig {
                eps: cfg.layer_norm_eps,
                ..LayerNormConfig::default()
            };
            layer_norm(h, c, vb)
        };
        let e = vb.pp("embeddings");
        let words = embedding(cfg.vocab_size, h, e.pp("word_embeddings"))?;
        let positions = embedding(cfg.max_position_embeddings, h, e.pp("position_embeddings"))?;
        let types = embedding(cfg.type_vocab_size, h, e.pp("token_type_embeddings"))?;
        let norm = ln(e.pp("LayerNorm"))?;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let l = vb.pp(format!("encoder.layer.{i}"));
            let (att, own) = (l.pp("attention"), l.pp("attention.self"));
            layers.push(Layer {
                query: linear(h, h, own.pp("query"))?,
                key: linear(h, h, own.pp("key"))?,
                value: linear(h, h, own.pp("value"))?,
                attn_out: linear(h, h, att.pp("output.dense"))?,
                attn_norm: ln(att.pp("output.LayerNorm"))?,
                intermediate: linear(h, cfg.intermediate_size, l.pp("intermediate.dense"))?,
                out: linear(cfg.intermediate_size, h, l.pp("output.dense"))?,
                out_norm: ln(l.pp("output.LayerNorm"))?,
            });
        }
        Ok(Self {
            words,
            positions,
            types,
            norm,
            layers,
            heads,
            act,
        })
    }

    /// The last hidden state `(1, n, hidden)` of the token ids `ids` `(1, n)`.
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let n = ids.dim(1)?;
        let positions = Tensor::arange(0u32, u32::try_from(n).unwrap_or(u32::MAX), ids.device())?
            .unsqueeze(0)?;
        let types = ids.zeros_like()?;
        let x = ((self.words.forward(ids)? + self.positions.forward(&positions)?)?
            + self.types.forward(&types)?)?;
        let mut x = self.norm.forward(&x)?;
        for l in &self.layers {
            x = self.layer(l, &x)?;
        }
        Ok(x)
    }

    fn layer(&self, l: &Layer, x: &Tensor) -> Result<Tensor> {
        let (b, n, h) = x.dims3()?;
        let d = h / self.heads;
        let split = |t: Tensor| -> Result<Tensor> {
            t.reshape((b, n, self.heads, d))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = split(l.query.forward(x)?)?;
        let k = split(l.key.forward(x)?)?;
        let v = split(l.value.forward(x)?)?;
        let scores = (q.matmul(&k.t()?)? / (d as f64).sqrt())?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let ctx = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, n, h))?;
        let x = l.attn_norm.forward(&(l.attn_out.forward(&ctx)? + x)?)?;
        let inner = self.act.apply(&l.intermediate.forward(&x)?)?;
        l.out_norm.forward(&(l.out.forward(&inner)? + &x)?)
    }
}
