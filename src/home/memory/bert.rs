//! The BERT encoder that sentence embeddings run on (all-MiniLM-L6-v2, and any BERT checkpoint
//! in Hugging Face's layout: `embeddings.*`, `encoder.layer.N.*`, `config.json`).
//!
//! Written against candle-nn's layers rather than taken from candle-transformers, whose 100-odd
//! models cost two minutes of every cold build for this one. Only what an embedding needs: one
//! unpadded sequence at a time (no attention mask), token type 0, absolute positions; the pooler
//! is not loaded. The math follows the reference `BertModel` (post-norm residual blocks, erf
//! GELU); the memory tests compare its embeddings with an independent NumPy forward pass.
//!
//! The word-embedding table (30522 × 384 f32 for all-MiniLM: 47 MB, half the model) is not
//! copied into the heap: [`WordTable`] reads the rows a text needs from the memory-mapped
//! checkpoint, and hands the pages back to the page cache after each lookup.

use std::path::Path;

use candle_core::{Device, Module, Result, Tensor};
use candle_nn::VarBuilder;
use candle_nn::{embedding, layer_norm, linear, Embedding, LayerNorm, LayerNormConfig, Linear};
use memmap2::{Advice, Mmap, UncheckedAdvice};

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

/// How the table's numbers are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stored {
    F32,
    F16,
    Bf16,
}

impl Stored {
    fn size(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 | Self::Bf16 => 2,
        }
    }
}

/// The word-embedding matrix of a safetensors checkpoint, memory-mapped: rows are read on
/// demand (the heap never holds the table) and the pages a lookup touched are released from
/// the process right after (they stay in the kernel's page cache, so the next lookup of a
/// frequent word is a minor fault, not a disk read).
pub struct WordTable {
    map: Mmap,
    /// Byte offset of row 0 in `map`.
    start: usize,
    rows: usize,
    dims: usize,
    stored: Stored,
}

impl std::fmt::Debug for WordTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WordTable")
            .field("rows", &self.rows)
            .field("dims", &self.dims)
            .field("stored", &self.stored)
            .finish_non_exhaustive()
    }
}

/// Tensor names of the word table: Hugging Face's layout, bare or under `bert.`.
const WORD_TABLE: [&str; 2] = [
    "embeddings.word_embeddings.weight",
    "bert.embeddings.word_embeddings.weight",
];

fn table_err(path: &Path, reason: impl std::fmt::Display) -> candle_core::Error {
    candle_core::Error::Msg(format!("{}: {reason}", path.display()))
}

impl WordTable {
    /// Map `path` (a `.safetensors` file) and find its word-embedding matrix (F32, F16 or
    /// BF16, shape `[vocabulary, hidden]`).
    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| table_err(path, e))?;
        // SAFETY: the file is only read through the map. Model files are replaced by rename
        // (`models pull`), never rewritten in place, so the mapped inode does not change.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| table_err(path, e))?;
        // Rows are scattered across the table: reading ahead would only fill memory.
        map.advise(Advice::Random).map_err(|e| table_err(path, e))?;
        let head_len = map
            .get(..8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_le_bytes)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| table_err(path, "not a safetensors file (shorter than its header)"))?;
        let data_start = head_len
            .checked_add(8)
            .filter(|&e| e <= map.len())
            .ok_or_else(|| table_err(path, "the safetensors header runs past the end"))?;
        let header: serde_json::Value = serde_json::from_slice(&map[8..data_start])
            .map_err(|e| table_err(path, format!("the safetensors header: {e}")))?;
        let (name, info) = WORD_TABLE
            .iter()
            .find_map(|n| header.get(*n).map(|i| (*n, i)))
            .ok_or_else(|| table_err(path, format!("no tensor `{}`", WORD_TABLE[0])))?;
        let bad = |what: &str| table_err(path, format!("tensor `{name}`: {what}"));
        let stored = match info.get("dtype").and_then(|d| d.as_str()) {
            Some("F32") => Stored::F32,
            Some("F16") => Stored::F16,
            Some("BF16") => Stored::Bf16,
            other => return Err(bad(&format!("dtype {other:?} (F32, F16 or BF16 expected)"))),
        };
        let numbers = |key: &str| -> Option<Vec<usize>> {
            info.get(key)?
                .as_array()?
                .iter()
                .map(|v| v.as_u64().and_then(|v| usize::try_from(v).ok()))
                .collect()
        };
        let (rows, dims) = match numbers("shape").as_deref() {
            Some(&[rows, dims]) if rows > 0 && dims > 0 => (rows, dims),
            _ => return Err(bad("shape is not [vocabulary, hidden]")),
        };
        let (begin, end) = match numbers("data_offsets").as_deref() {
            Some(&[b, e]) if b <= e => (b, e),
            _ => return Err(bad("data_offsets are not [begin, end]")),
        };
        let start = data_start
            .checked_add(begin)
            .filter(|_| {
                rows.checked_mul(dims)
                    .and_then(|n| n.checked_mul(stored.size()))
                    == Some(end - begin)
            })
            .filter(|s| s.checked_add(end - begin).is_some_and(|e| e <= map.len()))
            .ok_or_else(|| bad("its data does not match its shape or the file's length"))?;
        Ok(Self {
            map,
            start,
            rows,
            dims,
            stored,
        })
    }

    /// Rows (the vocabulary size).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns (the hidden size).
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// Where the file is mapped in this process: start address and length (for inspection).
    pub fn mapping(&self) -> (usize, usize) {
        (self.map.as_ptr() as usize, self.map.len())
    }

    /// The rows of `ids`, as a `(1, ids.len(), dims)` f32 tensor.
    pub fn lookup(&self, ids: &[u32], device: &Device) -> Result<Tensor> {
        // Checked before any page is touched.
        if let Some(id) = ids.iter().find(|&&id| id as usize >= self.rows) {
            candle_core::bail!(
                "token id {id} is outside the word table ({} rows)",
                self.rows
            );
        }
        let row_bytes = self.dims * self.stored.size();
        let mut out = Vec::with_capacity(ids.len() * self.dims);
        for &id in ids {
            let at = self.start + id as usize * row_bytes;
            let row = &self.map[at..at + row_bytes];
            match self.stored {
                Stored::F32 => out.extend(
                    row.chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                ),
                Stored::F16 => out.extend(
                    row.chunks_exact(2)
                        .map(|b| half::f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32()),
                ),
                Stored::Bf16 => out.extend(
                    row.chunks_exact(2)
                        .map(|b| half::bf16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32()),
                ),
            }
        }
        // The rows are copied out: release the table's pages from this process (no borrow of
        // the map is alive here). A failure only leaves them mapped until the next lookup.
        // SAFETY: DONTNEED on a read-only shared file mapping drops page-table entries; a
        // later read faults the same bytes back in from the page cache.
        let _ = unsafe {
            self.map.unchecked_advise_range(
                UncheckedAdvice::DontNeed,
                self.start,
                self.rows * row_bytes,
            )
        };
        Tensor::from_vec(out, (1, ids.len(), self.dims), device)
    }
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
    words: WordTable,
    positions: Embedding,
    types: Embedding,
    norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    act: Activation,
}

impl Bert {
    /// Load the encoder's weights from `vb` (the checkpoint's root, or its `bert.` prefix),
    /// with the word embeddings read from `words` (the same checkpoint's table).
    pub fn load(vb: VarBuilder, cfg: &Config, words: WordTable) -> Result<Self> {
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
        if words.dims() != h || words.rows() < cfg.vocab_size {
            return Err(candle_core::Error::Msg(format!(
                "the word table is {} × {}, the config says {} × {h}",
                words.rows(),
                words.dims(),
                cfg.vocab_size
            )));
        }
        let e = vb.pp("embeddings");
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

    /// The word-embedding table.
    pub fn words(&self) -> &WordTable {
        &self.words
    }

    /// The last hidden state `(1, n, hidden)` of the token ids `ids` (n of them).
    pub fn forward(&self, ids: &[u32], device: &Device) -> Result<Tensor> {
        let n = u32::try_from(ids.len()).unwrap_or(u32::MAX);
        let positions = Tensor::arange(0u32, n, device)?.unsqueeze(0)?;
        let types = positions.zeros_like()?;
        let x = ((self.words.lookup(ids, device)? + self.positions.forward(&positions)?)?
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A safetensors file with one tensor `name` of `dtype`, `shape` and raw `data` (after a
    /// small tensor before it, so the table does not start at the data's beginning).
    fn safetensors(
        name: &str,
        dtype: &str,
        shape: [usize; 2],
        data: &[u8],
    ) -> tempfile::NamedTempFile {
        let header = serde_json::json!({
            "__metadata__": {"format": "pt"},
            "other": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
            name: {"dtype": dtype, "shape": shape, "data_offsets": [8, 8 + data.len()]},
        })
        .to_string();
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend(header.as_bytes());
        bytes.extend([0u8; 8]);
        bytes.extend(data);
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), bytes).unwrap();
        f
    }

    fn rows(t: &WordTable, ids: &[u32]) -> Vec<Vec<f32>> {
        t.lookup(ids, &Device::Cpu)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap()
    }

    #[test]
    fn rows_are_read_in_each_stored_type() {
        // 3 rows × 2 columns: row i is (i + 0.5, -i - 0.25), exact in all three types.
        let values: Vec<f32> = (0..3)
            .flat_map(|i| [i as f32 + 0.5, -(i as f32) - 0.25])
            .collect();
        let want = vec![vec![2.5, -2.25], vec![0.5, -0.25], vec![2.5, -2.25]];
        let f32s: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let f16s: Vec<u8> = values
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_bits().to_le_bytes())
            .collect();
        let bf16s: Vec<u8> = values
            .iter()
            .flat_map(|v| half::bf16::from_f32(*v).to_bits().to_le_bytes())
            .collect();
        for (name, dtype, data) in [
            (WORD_TABLE[0], "F32", &f32s),
            (WORD_TABLE[1], "F16", &f16s),
            (WORD_TABLE[0], "BF16", &bf16s),
        ] {
            let f = safetensors(name, dtype, [3, 2], data);
            let t = WordTable::open(f.path()).unwrap();
            assert_eq!((t.rows(), t.dims()), (3, 2));
            assert_eq!(rows(&t, &[2, 0, 2]), want, "{dtype}");
        }
    }

    #[test]
    fn an_id_past_the_table_is_an_error_naming_it() {
        let data: Vec<u8> = [1f32; 6].iter().flat_map(|v| v.to_le_bytes()).collect();
        let f = safetensors(WORD_TABLE[0], "F32", [3, 2], &data);
        let t = WordTable::open(f.path()).unwrap();
        let e = t.lookup(&[1, 3], &Device::Cpu).unwrap_err().to_string();
        assert!(e.contains("token id 3") && e.contains("3 rows"), "{e}");
        // The table still answers afterwards.
        assert_eq!(rows(&t, &[1]), vec![vec![1.0, 1.0]]);
    }

    #[test]
    fn malformed_files_are_refused_with_the_reason() {
        let data: Vec<u8> = [1f32; 6].iter().flat_map(|v| v.to_le_bytes()).collect();
        let err = |f: &tempfile::NamedTempFile| WordTable::open(f.path()).unwrap_err().to_string();
        let e = err(&safetensors("pooler.weight", "F32", [3, 2], &data));
        assert!(
            e.contains("no tensor `embeddings.word_embeddings.weight`"),
            "{e}"
        );
        let e = err(&safetensors(WORD_TABLE[0], "I64", [3, 2], &data));
        assert!(e.contains("dtype") && e.contains("I64"), "{e}");
        let e = err(&safetensors(WORD_TABLE[0], "F32", [4, 2], &data));
        assert!(e.contains("does not match its shape"), "{e}");
        let short = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(short.path(), [1u8, 0, 0]).unwrap();
        assert!(err(&short).contains("shorter than its header"));
        let runs_past = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(runs_past.path(), 1000u64.to_le_bytes()).unwrap();
        assert!(err(&runs_past).contains("runs past the end"));
        let e = WordTable::open(Path::new("/nonexistent/model.safetensors"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/model.safetensors"), "{e}");
    }
}
