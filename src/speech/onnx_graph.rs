//! A small reader of ONNX model files (protobuf `ModelProto`): the graph's nodes (operator,
//! inputs, outputs, attributes), its inputs and outputs, and its initializers (float32 and int64
//! tensors). It serves networks we run ourselves instead of through ONNX Runtime (see
//! [`super::wake_embed`]). Fields it does not need are skipped; a malformed file is an error
//! naming what was wrong.

use std::collections::HashMap;

/// An attribute of a node.
#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    /// `i`.
    Int(i64),
    /// `ints`.
    Ints(Vec<i64>),
    /// `f`.
    Float(f32),
    /// `s` (bytes, usually UTF-8).
    Str(Vec<u8>),
    /// A subgraph (`g` or `graphs`: the body of `If`, `Loop`, `Scan`).
    Graph,
    /// Anything else (tensors, float lists…).
    Other,
}

/// One node of the graph.
#[derive(Debug, Clone, Default)]
pub struct Node {
    /// Operator (`Conv`, `Relu`, …).
    pub op: String,
    /// Node name.
    pub name: String,
    /// Operator set domain (empty: the default ONNX domain).
    pub domain: String,
    /// Input tensor names (an empty name is an omitted optional input).
    pub inputs: Vec<String>,
    /// Output tensor names.
    pub outputs: Vec<String>,
    /// Attributes by name.
    pub attrs: HashMap<String, Attr>,
}

/// An initializer's values.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    /// float32.
    F32(Vec<f32>),
    /// int64.
    I64(Vec<i64>),
    /// Another element type (the ONNX `DataType` number) or external data.
    Other(i64),
}

/// A constant tensor of the graph.
#[derive(Debug, Clone, PartialEq)]
pub struct Initializer {
    /// Dimensions.
    pub dims: Vec<i64>,
    /// Values.
    pub data: Data,
}

impl Initializer {
    /// The float32 values, if that is the type.
    pub fn f32s(&self) -> Option<&[f32]> {
        match &self.data {
            Data::F32(v) => Some(v),
            _ => None,
        }
    }

    /// The int64 values, if that is the type.
    pub fn i64s(&self) -> Option<&[i64]> {
        match &self.data {
            Data::I64(v) => Some(v),
            _ => None,
        }
    }
}

/// The main graph of a model.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    /// Nodes in file order (ONNX requires topological order).
    pub nodes: Vec<Node>,
    /// Initializers by name.
    pub initializers: HashMap<String, Initializer>,
    /// Graph input names (initializers may also be listed here in old files).
    pub inputs: Vec<String>,
    /// Graph output names.
    pub outputs: Vec<String>,
    /// The model's version of the default operator set (`ai.onnx`), if it imports it.
    pub opset: Option<i64>,
}

/// Parse an ONNX model file's bytes.
pub fn parse(bytes: &[u8]) -> Result<Graph, String> {
    let mut graph = None;
    let mut opset = None;
    let mut r = Reader::new(bytes);
    while let Some((field, value)) = r.next_field()? {
        match field {
            7 => graph = Some(parse_graph(value.bytes("ModelProto.graph")?)?),
            8 => {
                let (domain, version) = parse_opset(value.bytes("ModelProto.opset_import")?)?;
                if domain.is_empty() || domain == "ai.onnx" {
                    opset = Some(version);
                }
            }
            _ => {}
        }
    }
    let mut graph = graph.ok_or_else(|| "no graph in the model (not an ONNX file?)".to_owned())?;
    graph.opset = opset;
    Ok(graph)
}

fn parse_graph(bytes: &[u8]) -> Result<Graph, String> {
    let mut g = Graph::default();
    let mut r = Reader::new(bytes);
    while let Some((field, value)) = r.next_field()? {
        match field {
            1 => g.nodes.push(parse_node(value.bytes("GraphProto.node")?)?),
            5 => {
                let (name, init) = parse_tensor(value.bytes("GraphProto.initializer")?)?;
                g.initializers.insert(name, init);
            }
            11 => g
                .inputs
                .push(value_info_name(value.bytes("GraphProto.input")?)?),
            12 => g
                .outputs
                .push(value_info_name(value.bytes("GraphProto.output")?)?),
            _ => {}
        }
    }
    Ok(g)
}

fn parse_opset(bytes: &[u8]) -> Result<(String, i64), String> {
    let (mut domain, mut version) = (String::new(), 0);
    let mut r = Reader::new(bytes);
    while let Some((field, value)) = r.next_field()? {
        match field {
            1 => domain = value.string("OperatorSetIdProto.domain")?,
            2 => version = value.varint("OperatorSetIdProto.version")? as i64,
            _ => {}
        }
    }
    Ok((domain, version))
}

pub(crate) fn value_info_name(bytes: &[u8]) -> Result<String, String> {
    string_field(bytes, 1, "ValueInfoProto.name")
}

/// The last value of the string field `field` of a message (empty if absent).
pub(crate) fn string_field(bytes: &[u8], field: u32, what: &str) -> Result<String, String> {
    let mut r = Reader::new(bytes);
    let mut s = String::new();
    while let Some((f, value)) = r.next_field()? {
        if f == field {
            s = value.string(what)?;
        }
    }
    Ok(s)
}

fn parse_node(bytes: &[u8]) -> Result<Node, String> {
    let mut n = Node::default();
    let mut r = Reader::new(bytes);
    while let Some((field, value)) = r.next_field()? {
        match field {
            1 => n.inputs.push(value.string("NodeProto.input")?),
            2 => n.outputs.push(value.string("NodeProto.output")?),
            3 => n.name = value.string("NodeProto.name")?,
            4 => n.op = value.string("NodeProto.op_type")?,
            7 => n.domain = value.string("NodeProto.domain")?,
            5 => {
                let (name, attr) = parse_attr(value.bytes("NodeProto.attribute")?)?;
                n.attrs.insert(name, attr);
            }
            _ => {}
        }
    }
    Ok(n)
}

fn parse_attr(bytes: &[u8]) -> Result<(String, Attr), String> {
    let mut name = String::new();
    let (mut f, mut i, mut s, mut ints) = (None, None, None, Vec::new());
    let mut kind = 0;
    let mut graph = false;
    let mut r = Reader::new(bytes);
    while let Some((field, value)) = r.next_field()? {
        match field {
            1 => name = value.string("AttributeProto.name")?,
            2 => f = Some(value.float("AttributeProto.f")?),
            3 => i = Some(value.varint("AttributeProto.i")? as i64),
            4 => s = Some(value.bytes("AttributeProto.s")?.to_vec()),
            6 | 11 => graph = true,
            8 => value.varints_into("AttributeProto.ints", &mut ints)?,
            20 => kind = value.varint("AttributeProto.type")?,
            _ => {}
        }
    }
    // AttributeType: FLOAT 1, INT 2, STRING 3, INTS 7. Files from before `type` existed are
    // read by which field is present.
    let attr = match (kind, f, i, s) {
        (5 | 11, ..) => Attr::Graph,
        (0, ..) if graph => Attr::Graph,
        (1, Some(f), _, _) | (0, Some(f), None, None) => Attr::Float(f),
        (2, _, Some(i), _) | (0, None, Some(i), None) => Attr::Int(i),
        (3, _, _, Some(s)) | (0, None, None, Some(s)) => Attr::Str(s),
        (7, ..) => Attr::Ints(ints),
        (0, None, None, None) if !ints.is_empty() => Attr::Ints(ints),
        _ => Attr::Other,
    };
    Ok((name, attr))
}

fn parse_tensor(bytes: &[u8]) -> Result<(String, Initializer), String> {
    let (mut dims, mut name, mut data_type, mut external) = (Vec::new(), String::new(), 0, false);
    let (mut raw, mut floats, mut int64s): (Option<&[u8]>, Vec<f32>, Vec<i64>) =
        (None, Vec::new(), Vec::new());
    let mut r = Reader::new(bytes);
    while let Some((field, value)) = r.next_field()? {
        match field {
            1 => value.varints_into("TensorProto.dims", &mut dims)?,
            2 => data_type = value.varint("TensorProto.data_type")? as i64,
            4 => value.floats_into("TensorProto.float_data", &mut floats)?,
            7 => value.varints_into("TensorProto.int64_data", &mut int64s)?,
            8 => name = value.string("TensorProto.name")?,
            9 => raw = Some(value.bytes("TensorProto.raw_data")?),
            14 => external = value.varint("TensorProto.data_location")? == 1,
            _ => {}
        }
    }
    let count = dims.iter().try_fold(1usize, |n, &d| {
        usize::try_from(d).ok().and_then(|d| n.checked_mul(d))
    });
    let count = count.ok_or_else(|| format!("tensor {name:?}: bad dimensions {dims:?}"))?;
    let data = match (data_type, raw, external) {
        (_, _, true) => Data::Other(data_type),
        (1, Some(raw), _) => Data::F32(
            raw.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        (1, None, _) => Data::F32(floats),
        (7, Some(raw), _) => Data::I64(
            raw.chunks_exact(8)
                .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect(),
        ),
        (7, None, _) => Data::I64(int64s),
        (other, ..) => Data::Other(other),
    };
    let len = match &data {
        Data::F32(v) => Some(v.len()),
        Data::I64(v) => Some(v.len()),
        Data::Other(_) => None,
    };
    if let Some(len) = len {
        if len != count {
            return Err(format!(
                "tensor {name:?}: {len} values for dimensions {dims:?} ({count})"
            ));
        }
    }
    Ok((name, Initializer { dims, data }))
}

/// A field's value on the wire.
pub(crate) enum Value<'a> {
    Varint(u64),
    Fixed64,
    Bytes(&'a [u8]),
    Fixed32(u32),
}

impl<'a> Value<'a> {
    pub(crate) fn bytes(&self, what: &str) -> Result<&'a [u8], String> {
        match self {
            Value::Bytes(b) => Ok(b),
            _ => Err(format!("{what}: expected a length-delimited field")),
        }
    }

    pub(crate) fn string(&self, what: &str) -> Result<String, String> {
        String::from_utf8(self.bytes(what)?.to_vec()).map_err(|_| format!("{what}: not UTF-8"))
    }

    pub(crate) fn varint(&self, what: &str) -> Result<u64, String> {
        match self {
            Value::Varint(v) => Ok(*v),
            _ => Err(format!("{what}: expected a varint")),
        }
    }

    fn float(&self, what: &str) -> Result<f32, String> {
        match self {
            Value::Fixed32(v) => Ok(f32::from_bits(*v)),
            _ => Err(format!("{what}: expected a 32-bit float")),
        }
    }

    /// A repeated varint field, packed or one element.
    pub(crate) fn varints_into(&self, what: &str, out: &mut Vec<i64>) -> Result<(), String> {
        match self {
            Value::Varint(v) => out.push(*v as i64),
            Value::Bytes(b) => {
                let mut r = Reader::new(b);
                while !r.done() {
                    out.push(r.varint().map_err(|e| format!("{what}: {e}"))? as i64);
                }
            }
            _ => return Err(format!("{what}: expected varints")),
        }
        Ok(())
    }

    /// A repeated float field, packed or one element.
    fn floats_into(&self, what: &str, out: &mut Vec<f32>) -> Result<(), String> {
        match self {
            Value::Fixed32(v) => out.push(f32::from_bits(*v)),
            Value::Bytes(b) if b.len() % 4 == 0 => out.extend(
                b.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            ),
            _ => return Err(format!("{what}: expected floats")),
        }
        Ok(())
    }
}

/// A field's number, value and whole encoding.
pub(crate) type RawField<'a> = (u32, Value<'a>, &'a [u8]);

/// Protobuf wire-format reader over one message's bytes.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..70).step_by(7) {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or("truncated varint (the file is cut short)")?;
            self.pos += 1;
            if shift == 63 && b > 1 {
                return Err("varint overflows 64 bits".into());
            }
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| {
                format!(
                    "a field of {n} bytes at offset {} runs past the end ({} bytes)",
                    self.pos,
                    self.buf.len()
                )
            })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// The next field, with its whole encoding (key and value) for copying it unchanged.
    pub(crate) fn next_raw(&mut self) -> Result<Option<RawField<'a>>, String> {
        let start = self.pos;
        Ok(self
            .next_field()?
            .map(|(field, value)| (field, value, &self.buf[start..self.pos])))
    }

    pub(crate) fn next_field(&mut self) -> Result<Option<(u32, Value<'a>)>, String> {
        if self.done() {
            return Ok(None);
        }
        let key = self.varint()?;
        let field = u32::try_from(key >> 3).map_err(|_| format!("field number {}", key >> 3))?;
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Value::Fixed64
            }
            2 => {
                let n = usize::try_from(self.varint()?).map_err(|_| "length overflows")?;
                Value::Bytes(self.take(n)?)
            }
            5 => {
                let b = self.take(4)?;
                Value::Fixed32(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            }
            w => return Err(format!("field {field}: unsupported wire type {w}")),
        };
        Ok(Some((field, value)))
    }
}

/// Protobuf wire-format writing (for rewritten models and tests).
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

pub(crate) fn put_key(out: &mut Vec<u8>, field: u32, wire: u8) {
    put_varint(out, u64::from(field) << 3 | u64::from(wire));
}

pub(crate) fn put_varint_field(out: &mut Vec<u8>, field: u32, v: u64) {
    put_key(out, field, 0);
    put_varint(out, v);
}

pub(crate) fn put_bytes(out: &mut Vec<u8>, field: u32, payload: &[u8]) {
    put_key(out, field, 2);
    put_varint(out, payload.len() as u64);
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model_with(graph: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        put_varint(&mut m, 1 << 3); // ir_version = 7
        put_varint(&mut m, 7);
        put_bytes(&mut m, 7, graph);
        m
    }

    #[test]
    fn nodes_attributes_and_initializers_are_read() {
        // A Conv node with ints and an int attribute, and a raw float initializer with a
        // negative int64 dimension list packed.
        let mut attr = Vec::new();
        put_bytes(&mut attr, 1, b"pads");
        let mut packed = Vec::new();
        for v in [0u64, 1, 0, 1] {
            put_varint(&mut packed, v);
        }
        put_bytes(&mut attr, 8, &packed);
        put_varint(&mut attr, 20 << 3);
        put_varint(&mut attr, 7);
        let mut alpha = Vec::new();
        put_bytes(&mut alpha, 1, b"alpha");
        alpha.push(2 << 3 | 5);
        alpha.extend_from_slice(&0.2f32.to_le_bytes());
        let mut node = Vec::new();
        put_bytes(&mut node, 1, b"x");
        put_bytes(&mut node, 1, b"w");
        put_bytes(&mut node, 2, b"y");
        put_bytes(&mut node, 4, b"Conv");
        put_bytes(&mut node, 5, &attr);
        put_bytes(&mut node, 5, &alpha);
        let mut tensor = Vec::new();
        put_varint(&mut tensor, 1 << 3);
        put_varint(&mut tensor, 2);
        put_varint(&mut tensor, 1 << 3);
        put_varint(&mut tensor, 1);
        put_varint(&mut tensor, 2 << 3);
        put_varint(&mut tensor, 1);
        put_bytes(&mut tensor, 8, b"w");
        let raw: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|f| f.to_le_bytes())
            .collect();
        put_bytes(&mut tensor, 9, &raw);
        // An int64 tensor with its values unpacked, one of them negative.
        let mut shape = Vec::new();
        put_varint(&mut shape, 1 << 3);
        put_varint(&mut shape, 2);
        put_varint(&mut shape, 2 << 3);
        put_varint(&mut shape, 7);
        for v in [-1i64, 96] {
            put_varint(&mut shape, 7 << 3);
            put_varint(&mut shape, v as u64);
        }
        put_bytes(&mut shape, 8, b"shape");
        let mut input = Vec::new();
        put_bytes(&mut input, 1, b"x");
        let mut graph = Vec::new();
        put_bytes(&mut graph, 1, &node);
        put_bytes(&mut graph, 5, &tensor);
        put_bytes(&mut graph, 5, &shape);
        put_bytes(&mut graph, 11, &input);
        let g = parse(&model_with(&graph)).unwrap();
        assert_eq!(g.inputs, ["x"]);
        let n = &g.nodes[0];
        assert_eq!(
            (n.op.as_str(), n.inputs.len(), n.outputs[0].as_str()),
            ("Conv", 2, "y")
        );
        assert_eq!(n.attrs["pads"], Attr::Ints(vec![0, 1, 0, 1]));
        assert_eq!(n.attrs["alpha"], Attr::Float(0.2));
        let w = &g.initializers["w"];
        assert_eq!(w.dims, [2, 1]);
        assert_eq!(w.f32s(), Some([1.5f32, -2.0].as_slice()));
        assert_eq!(g.initializers["shape"].i64s(), Some([-1i64, 96].as_slice()));
    }

    #[test]
    fn a_truncated_or_malformed_file_names_what_is_wrong() {
        let mut graph = Vec::new();
        put_bytes(&mut graph, 1, b"\x22\x04Conv");
        let good = model_with(&graph);
        assert!(parse(&good).is_ok());
        let cut = &good[..good.len() - 2];
        let e = parse(cut).unwrap_err();
        assert!(e.contains("runs past the end"), "{e}");
        assert!(parse(&[0x3a, 0x80])
            .unwrap_err()
            .contains("truncated varint"));
        assert!(parse(&[0x3b]).unwrap_err().contains("wire type 3"));
        assert!(parse(&[0x08, 0x07]).unwrap_err().contains("no graph"));
        // A tensor whose values do not fill its dimensions.
        let mut tensor = Vec::new();
        put_varint(&mut tensor, 1 << 3);
        put_varint(&mut tensor, 3);
        put_varint(&mut tensor, 2 << 3);
        put_varint(&mut tensor, 1);
        put_bytes(&mut tensor, 8, b"t");
        put_bytes(&mut tensor, 9, &[0u8; 8]);
        let mut graph = Vec::new();
        put_bytes(&mut graph, 5, &tensor);
        let e = parse(&model_with(&graph)).unwrap_err();
        assert!(e.contains("2 values for dimensions [3]"), "{e}");
    }
}
