//! Reader for CTranslate2 `model.bin` files (binary version 6): the spec name, and every
//! variable with its shape and dtype, dequantized to `f32` on request (int8/int16 variables
//! carry a `<name>_scale`). Used by the ggml converter; it never runs a model.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::speech::SpeechError;

/// The only binary layout this reader knows (CTranslate2 3.x and 4.x write it).
pub const SUPPORTED_VERSION: u32 = 6;

/// Element type of a variable, as numbered in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    /// 32-bit float.
    F32,
    /// 8-bit integer (quantized weights, flags).
    I8,
    /// 16-bit integer (quantized weights, small scalars).
    I16,
    /// 32-bit integer.
    I32,
    /// IEEE half.
    F16,
    /// bfloat16.
    Bf16,
}

impl Dtype {
    fn from_code(code: u8) -> Option<Dtype> {
        Some(match code {
            0 => Dtype::F32,
            1 => Dtype::I8,
            2 => Dtype::I16,
            3 => Dtype::I32,
            4 => Dtype::F16,
            5 => Dtype::Bf16,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::I8 => 1,
            Dtype::I16 | Dtype::F16 | Dtype::Bf16 => 2,
            Dtype::F32 | Dtype::I32 => 4,
        }
    }

    fn is_int(self) -> bool {
        matches!(self, Dtype::I8 | Dtype::I16 | Dtype::I32)
    }
}

/// One variable: its shape, dtype and where its bytes are in the file.
#[derive(Debug, Clone)]
pub struct Variable {
    /// Dimensions, outermost first (a linear weight is `[out, in]`).
    pub shape: Vec<usize>,
    /// Element type.
    pub dtype: Dtype,
    bytes: Range<usize>,
}

impl Variable {
    /// Number of elements (1 for a scalar).
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// True when the variable has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A CTranslate2 model file held in memory.
pub struct Ct2Model {
    path: PathBuf,
    /// The spec that wrote it (`WhisperSpec`).
    pub spec: String,
    /// The spec's revision.
    pub revision: u32,
    data: Vec<u8>,
    vars: HashMap<String, Variable>,
    aliases: HashMap<String, String>,
}

impl std::fmt::Debug for Ct2Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ct2Model")
            .field("path", &self.path)
            .field("spec", &self.spec)
            .field("revision", &self.revision)
            .field("variables", &self.vars.len())
            .finish()
    }
}

struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize, what: &str) -> Result<Range<usize>, String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| {
                format!(
                    "truncated: {what} needs {n} bytes at offset {} but the file has {}",
                    self.pos,
                    self.data.len()
                )
            })?;
        let r = self.pos..end;
        self.pos = end;
        Ok(r)
    }

    fn u8(&mut self, what: &str) -> Result<u8, String> {
        let r = self.take(1, what)?;
        Ok(self.data[r.start])
    }

    fn u16(&mut self, what: &str) -> Result<u16, String> {
        let r = self.take(2, what)?;
        Ok(u16::from_le_bytes([
            self.data[r.start],
            self.data[r.start + 1],
        ]))
    }

    fn u32(&mut self, what: &str) -> Result<u32, String> {
        let r = self.take(4, what)?;
        let mut b = [0u8; 4];
        b.copy_from_slice(&self.data[r]);
        Ok(u32::from_le_bytes(b))
    }

    /// A u16-length-prefixed, NUL-terminated string.
    fn string(&mut self, what: &str) -> Result<String, String> {
        let n = usize::from(self.u16(what)?);
        let r = self.take(n, what)?;
        let bytes = &self.data[r];
        let bytes = bytes.strip_suffix(&[0]).unwrap_or(bytes);
        String::from_utf8(bytes.to_vec()).map_err(|_| format!("{what} is not UTF-8"))
    }
}

impl Ct2Model {
    /// Read and index `path`. Errors name the file and what is wrong with it.
    pub fn open(path: &Path) -> Result<Ct2Model, SpeechError> {
        let data = std::fs::read(path).map_err(|e| SpeechError::Model {
            path: path.to_path_buf(),
            reason: format!("cannot read: {e}"),
        })?;
        Self::parse(path, data)
    }

    /// Index `data` (the bytes of `path`).
    pub fn parse(path: &Path, data: Vec<u8>) -> Result<Ct2Model, SpeechError> {
        let err = |reason: String| SpeechError::Model {
            path: path.to_path_buf(),
            reason,
        };
        let mut c = Cursor {
            data: &data,
            pos: 0,
        };
        if data.len() < 8 {
            return Err(err(format!(
                "not a CTranslate2 model: {} bytes is too short",
                data.len()
            )));
        }
        let version = c.u32("version").map_err(err)?;
        if version != SUPPORTED_VERSION {
            // Anything that does not even look like a small version number is another format.
            return Err(err(if version > 100 {
                "not a CTranslate2 model (no binary version at the start; ggml, GGUF and \
                 PyTorch files are not converted)"
                    .to_string()
            } else {
                format!(
                    "CTranslate2 binary version {version} is not supported (only \
                     {SUPPORTED_VERSION}); re-export the model with a current ct2-transformers-converter"
                )
            }));
        }
        let spec = c.string("spec name").map_err(err)?;
        let revision = c.u32("spec revision").map_err(err)?;
        let count = c.u32("variable count").map_err(err)?;
        let mut vars = HashMap::new();
        for i in 0..count {
            let name = c
                .string("variable name")
                .map_err(|e| err(format!("variable #{i}: {e}")))?;
            let ctx = |e: String| err(format!("variable {name}: {e}"));
            let rank = c.u8("rank").map_err(ctx)?;
            let mut shape = Vec::with_capacity(usize::from(rank));
            for _ in 0..rank {
                shape.push(c.u32("dimension").map_err(ctx)? as usize);
            }
            let code = c.u8("dtype").map_err(ctx)?;
            let dtype = Dtype::from_code(code)
                .ok_or_else(|| ctx(format!("unsupported dtype code {code}")))?;
            let nbytes = c.u32("byte count").map_err(ctx)? as usize;
            let expected = shape.iter().product::<usize>() * dtype.size();
            if nbytes != expected {
                return Err(ctx(format!(
                    "{nbytes} bytes for shape {shape:?} of {dtype:?} (expected {expected})"
                )));
            }
            let bytes = c.take(nbytes, "variable data").map_err(ctx)?;
            vars.insert(
                name,
                Variable {
                    shape,
                    dtype,
                    bytes,
                },
            );
        }
        let mut aliases = HashMap::new();
        // Aliases follow the variables; a file that ends right after them has none.
        if c.pos < data.len() {
            let n = c.u32("alias count").map_err(err)?;
            for _ in 0..n {
                let alias = c.string("alias").map_err(err)?;
                let target = c.string("alias target").map_err(err)?;
                aliases.insert(alias, target);
            }
        }
        Ok(Ct2Model {
            path: path.to_path_buf(),
            spec,
            revision,
            data,
            vars,
            aliases,
        })
    }

    /// The file this model was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn missing(&self, name: &str) -> SpeechError {
        SpeechError::Model {
            path: self.path.clone(),
            reason: format!(
                "missing variable {name} (not a complete {} export?)",
                self.spec
            ),
        }
    }

    /// The variable `name` (aliases followed), if present.
    pub fn get(&self, name: &str) -> Option<&Variable> {
        let name = self.aliases.get(name).map_or(name, String::as_str);
        self.vars.get(name)
    }

    /// The variable `name`, or an error naming it and the file.
    pub fn var(&self, name: &str) -> Result<&Variable, SpeechError> {
        self.get(name).ok_or_else(|| self.missing(name))
    }

    /// An integer scalar such as `encoder/num_heads`.
    pub fn scalar_int(&self, name: &str) -> Result<i64, SpeechError> {
        let v = self.var(name)?;
        if v.len() != 1 || !v.dtype.is_int() {
            return Err(SpeechError::Model {
                path: self.path.clone(),
                reason: format!(
                    "variable {name}: expected an integer scalar, found {:?} {:?}",
                    v.dtype, v.shape
                ),
            });
        }
        Ok(self.raw_values(v)[0] as i64)
    }

    /// Elements as `f32`, without applying any scale.
    fn raw_values(&self, v: &Variable) -> Vec<f32> {
        let b = &self.data[v.bytes.clone()];
        match v.dtype {
            Dtype::F32 => b
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F16 => b
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::Bf16 => b
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::I8 => b.iter().map(|&x| f32::from(x as i8)).collect(),
            Dtype::I16 => b
                .chunks_exact(2)
                .map(|c| f32::from(i16::from_le_bytes([c[0], c[1]])))
                .collect(),
            #[allow(clippy::cast_precision_loss)]
            Dtype::I32 => b
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32)
                .collect(),
        }
    }

    /// The values of a weight as `f32`: quantized integer weights are divided by their
    /// `<name>_scale` (one scale per row for int8, or one for the whole tensor for int16).
    pub fn f32_values(&self, name: &str) -> Result<Vec<f32>, SpeechError> {
        let v = self.var(name)?;
        let mut values = self.raw_values(v);
        if v.dtype.is_int() {
            let scale_name = format!("{name}_scale");
            let scale_var = self.get(&scale_name).ok_or_else(|| SpeechError::Model {
                path: self.path.clone(),
                reason: format!(
                    "variable {name} is {:?} but has no {scale_name} to dequantize it",
                    v.dtype
                ),
            })?;
            if scale_var.dtype.is_int() {
                return Err(SpeechError::Model {
                    path: self.path.clone(),
                    reason: format!("{scale_name} is {:?}, expected a float", scale_var.dtype),
                });
            }
            let scale = self.raw_values(scale_var);
            let rows = v.shape.first().copied().unwrap_or(1).max(1);
            let cols = values.len() / rows;
            if scale.len() == 1 {
                let s = scale[0];
                values.iter_mut().for_each(|x| *x /= s);
            } else if scale.len() == rows && cols * rows == values.len() {
                for (row, s) in values.chunks_exact_mut(cols.max(1)).zip(&scale) {
                    row.iter_mut().for_each(|x| *x /= s);
                }
            } else {
                return Err(SpeechError::Model {
                    path: self.path.clone(),
                    reason: format!(
                        "{scale_name} has {} values for {name} of shape {:?}",
                        scale.len(),
                        v.shape
                    ),
                });
            }
        }
        Ok(values)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Bytes of a version-6 CTranslate2 file with these variables.
    pub(crate) fn file(spec: &str, vars: &[(&str, &[usize], u8, Vec<u8>)]) -> Vec<u8> {
        let mut out = Vec::new();
        let s = |out: &mut Vec<u8>, s: &str| {
            out.extend_from_slice(&(s.len() as u16 + 1).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
            out.push(0);
        };
        out.extend_from_slice(&6u32.to_le_bytes());
        s(&mut out, spec);
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(vars.len() as u32).to_le_bytes());
        for (name, shape, dtype, data) in vars {
            s(&mut out, name);
            out.push(shape.len() as u8);
            for d in *shape {
                out.extend_from_slice(&(*d as u32).to_le_bytes());
            }
            out.push(*dtype);
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(data);
        }
        out.extend_from_slice(&0u32.to_le_bytes());
        out
    }

    fn f32s(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn int8_weights_are_divided_by_their_row_scale() {
        let bytes = file(
            "WhisperSpec",
            &[
                ("w", &[2, 2], 1, vec![127u8, 0, (-64i8) as u8, 64]),
                ("w_scale", &[2], 0, f32s(&[127.0, 64.0])),
                ("heads", &[], 2, 6i16.to_le_bytes().to_vec()),
            ],
        );
        let m = Ct2Model::parse(Path::new("m.bin"), bytes).expect("parses");
        assert_eq!(m.spec, "WhisperSpec");
        assert_eq!(m.f32_values("w").expect("w"), vec![1.0, 0.0, -1.0, 1.0]);
        assert_eq!(m.scalar_int("heads").expect("heads"), 6);
    }

    #[test]
    fn bad_files_are_refused_with_the_file_and_the_reason() {
        let e = Ct2Model::parse(Path::new("x/model.bin"), b"GGUF\x03\0\0\0rest".to_vec())
            .expect_err("gguf");
        let s = e.to_string();
        assert!(
            s.contains("x/model.bin") && s.contains("not a CTranslate2 model"),
            "{s}"
        );

        let mut v5 = file("WhisperSpec", &[]);
        v5[0] = 5;
        let s = Ct2Model::parse(Path::new("m.bin"), v5)
            .expect_err("v5")
            .to_string();
        assert!(s.contains("binary version 5 is not supported"), "{s}");

        let mut cut = file("WhisperSpec", &[("w", &[4], 0, f32s(&[1.0; 4]))]);
        cut.truncate(cut.len() - 9);
        let s = Ct2Model::parse(Path::new("m.bin"), cut)
            .expect_err("truncated")
            .to_string();
        assert!(s.contains("variable w") && s.contains("truncated"), "{s}");

        let m = Ct2Model::parse(Path::new("m.bin"), file("WhisperSpec", &[])).expect("empty");
        let s = m
            .var("encoder/conv1/weight")
            .expect_err("missing")
            .to_string();
        assert!(s.contains("missing variable encoder/conv1/weight"), "{s}");

        let m = Ct2Model::parse(Path::new("m.bin"), file("S", &[("q", &[1], 1, vec![1])]))
            .expect("parses");
        let s = m.f32_values("q").expect_err("no scale").to_string();
        assert!(s.contains("no q_scale"), "{s}");
    }
}
