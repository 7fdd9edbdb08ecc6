//! Rewrites a run of 1-D convolutions in an ONNX model as 2-D convolutions over `[N, C, 1, T]`,
//! so that ONNX Runtime's graph optimizer runs them in its blocked-channel (NCHWc) kernels. On
//! CPUs those exist only for 2-D convolutions; 1-D ones go through im2col and a general matrix
//! product, which is slow for the few channels of a vocoder's last stages. The weights, the
//! arithmetic and the result are the same (to rounding): `[O, I, k]` kernels become `[O, I, 1, k]`,
//! the attributes gain a height of 1.
//!
//! The region is the nodes whose names start with a prefix (Piper's HiFi-GAN decoder: `/dec/`).
//! It may hold only convolutions and element-wise operators whose other operand is a scalar
//! constant or a tensor of the region, so that every tensor inside can be 4-D. Tensors entering it
//! (the convolutions' data inputs) get an `Unsqueeze`; tensors leaving it a `Squeeze`, under their
//! old names, so the rest of the graph is copied byte for byte. Anything else is refused with the
//! reason, and the caller runs the model as it is.

use std::collections::{HashMap, HashSet};

use super::onnx_graph::{
    self, put_bytes, put_key, put_varint_field, Attr, Data, Initializer, Node, Reader,
};

/// Operators the region may hold.
const CONVS: [&str; 2] = ["Conv", "ConvTranspose"];
const UNARY: [&str; 4] = ["LeakyRelu", "Relu", "Tanh", "Sigmoid"];
const BINARY: [&str; 4] = ["Add", "Sub", "Mul", "Div"];

/// Suffix of the 4-D names given to tensors that cross the region's border.
const SUFFIX: &str = "::2d";
/// Name of the `[2]` axes constant of the inserted `Unsqueeze`/`Squeeze` (opset ≥ 13).
const AXES: &str = "local-assistant::axes2";

/// A rewritten model.
#[derive(Debug)]
pub struct Rewritten {
    /// The model's new bytes.
    pub bytes: Vec<u8>,
    /// How many convolutions became 2-D.
    pub convs: usize,
}

/// Rewrite the 1-D convolutions of the nodes named `prefix…` in the model `bytes` as 2-D ones.
pub fn convs_as_2d(bytes: &[u8], prefix: &str) -> Result<Rewritten, String> {
    let graph = onnx_graph::parse(bytes)?;
    let plan = Plan::new(&graph, prefix)?;
    let mut out = Vec::with_capacity(bytes.len() + 4096);
    let mut r = Reader::new(bytes);
    while let Some((field, value, raw)) = r.next_raw()? {
        if field == 7 {
            let g = plan.graph(&graph, value.bytes("ModelProto.graph")?)?;
            put_bytes(&mut out, 7, &g);
        } else {
            out.extend_from_slice(raw);
        }
    }
    Ok(Rewritten {
        bytes: out,
        convs: plan.convs,
    })
}

/// A model cut in two at a region: the part before it, for ONNX Runtime, and what the region
/// takes and gives.
#[derive(Debug)]
pub struct Split {
    /// The model without the region: its outputs are the region's entries.
    pub front: Vec<u8>,
    /// The tensors the region reads from the rest of the graph, in first-use order.
    pub entries: Vec<String>,
    /// The one region tensor the graph returns (through shape-only operators, if any).
    pub exit: String,
}

/// Operators that only reshape (the data's order unchanged) allowed after the region.
const SHAPE_ONLY: [&str; 5] = ["Unsqueeze", "Squeeze", "Reshape", "Flatten", "Identity"];

/// Cut the nodes named `prefix…` out of the model `bytes` (the same region [`convs_as_2d`]
/// accepts, with one tensor leaving it), so that they can run elsewhere
/// ([`super::region::Region`]). The graph's outputs must come from the region, through
/// shape-only operators at most; those are cut too. Initializers only the cut nodes read go.
pub fn split(bytes: &[u8], prefix: &str) -> Result<Split, String> {
    split_parsed(bytes, &onnx_graph::parse(bytes)?, prefix)
}

/// [`split`] with the model already parsed (`graph` is `bytes` parsed).
pub fn split_parsed(
    bytes: &[u8],
    graph: &onnx_graph::Graph,
    prefix: &str,
) -> Result<Split, String> {
    let plan = Plan::new(graph, prefix)?;
    let mut exits: Vec<&String> = plan.exits.iter().collect();
    let exit = match exits.pop() {
        Some(e) if exits.is_empty() => e.clone(),
        Some(e) => {
            return Err(format!(
                "{} region tensors leave it ({e}, …); one may",
                exits.len() + 1
            ))
        }
        None => return Err("no region tensor leaves the region".into()),
    };
    let mut cut = plan.region.clone();
    let mut tail: HashSet<&str> = HashSet::new();
    for (i, n) in graph.nodes.iter().enumerate() {
        if cut.contains(&i)
            || !n
                .inputs
                .iter()
                .any(|x| plan.produced.contains(x) || tail.contains(x.as_str()))
        {
            continue;
        }
        let from = n.inputs.first().map(String::as_str);
        if !SHAPE_ONLY.contains(&n.op.as_str())
            || !(from == Some(exit.as_str()) || from.is_some_and(|f| tail.contains(f)))
        {
            return Err(format!(
                "{} ({}) reads the region's output: only shape operators may",
                n.name, n.op
            ));
        }
        cut.insert(i);
        tail.extend(n.outputs.iter().map(String::as_str));
    }
    for o in &graph.outputs {
        if *o != exit && !tail.contains(o.as_str()) {
            return Err(format!(
                "the graph output {o} does not come from the region"
            ));
        }
    }
    let kept_reads: HashSet<&str> = graph
        .nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| !cut.contains(i))
        .flat_map(|(_, n)| n.inputs.iter().map(String::as_str))
        .collect();
    let dropped: HashSet<&str> = graph
        .initializers
        .keys()
        .map(String::as_str)
        .filter(|k| !kept_reads.contains(k))
        .collect();
    let removed_tensors: HashSet<&str> = graph
        .nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| cut.contains(i))
        .flat_map(|(_, n)| n.outputs.iter().map(String::as_str))
        .collect();
    let front_graph = |g: &[u8]| -> Result<Vec<u8>, String> {
        let mut out = Vec::with_capacity(g.len());
        let mut r = Reader::new(g);
        let mut index = 0;
        while let Some((field, value, raw)) = r.next_raw()? {
            let keep = match field {
                1 => {
                    index += 1;
                    !cut.contains(&(index - 1))
                }
                5 | 11 => !names_dropped(field, &value, &dropped)?,
                12 => false,
                13 => {
                    let v = value.bytes("GraphProto.value_info")?;
                    !removed_tensors.contains(onnx_graph::value_info_name(v)?.as_str())
                }
                _ => true,
            };
            if keep {
                out.extend_from_slice(raw);
            }
        }
        for e in &plan.entries {
            // ValueInfoProto { name, type: TypeProto { tensor_type: { elem_type: FLOAT } } }
            let mut tensor = Vec::new();
            put_varint_field(&mut tensor, 1, 1);
            let mut ty = Vec::new();
            put_bytes(&mut ty, 1, &tensor);
            let mut vi = Vec::new();
            put_bytes(&mut vi, 1, e.as_bytes());
            put_bytes(&mut vi, 2, &ty);
            put_bytes(&mut out, 12, &vi);
        }
        Ok(out)
    };
    let mut front = Vec::with_capacity(bytes.len());
    let mut r = Reader::new(bytes);
    while let Some((field, value, raw)) = r.next_raw()? {
        if field == 7 {
            put_bytes(
                &mut front,
                7,
                &front_graph(value.bytes("ModelProto.graph")?)?,
            );
        } else {
            front.extend_from_slice(raw);
        }
    }
    Ok(Split {
        front,
        entries: plan.entries.clone(),
        exit,
    })
}

/// A convolution's weight and bias, taken out of the model by [`convs_to_domain`].
#[derive(Debug, Clone)]
pub struct ConvWeights {
    /// `[O, I, k]`.
    pub dims: [usize; 3],
    /// The weight's values.
    pub weight: Vec<f32>,
    /// The bias, if the node had one.
    pub bias: Option<Vec<f32>>,
}

/// A model whose convolutions moved to a custom domain ([`convs_to_domain`]).
#[derive(Debug)]
pub struct Moved {
    /// The model's bytes.
    pub bytes: Vec<u8>,
    /// How many nodes moved, per prefix.
    pub counts: Vec<usize>,
    /// The moved nodes' weights, by the value of their [`WEIGHTS_ATTR`] attribute.
    pub weights: HashMap<String, ConvWeights>,
}

/// The attribute naming a moved node's weights in [`Moved::weights`].
pub const WEIGHTS_ATTR: &str = "weights";

/// The empty initializer a moved node reads in its weight's place (ONNX Runtime does not take a
/// node with fewer inputs than its operator requires).
pub const NO_WEIGHT: &str = "local-assistant.no-weight";

/// Move the 1-D `Conv` nodes named with one of `prefixes` that our bfloat16 operator runs
/// ([`super::bf16_op`]: group 1, stride 1, explicit pads, constant float weight `[O, I, k]` and
/// bias) to the operator domain `domain` (version 1, imported by the model), copying everything
/// else byte for byte. Their weight and bias leave the model (the operator packs them; ONNX
/// Runtime would keep a float32 copy of each for nothing): a moved node reads its data input
/// and the empty [`NO_WEIGHT`], names its weights with the attribute [`WEIGHTS_ATTR`], and
/// initializers nothing else reads go. Returns the new model, how many nodes moved per prefix
/// (none at all: an error), and the weights.
pub fn convs_to_domain(bytes: &[u8], prefixes: &[&str], domain: &str) -> Result<Moved, String> {
    let mut graph = onnx_graph::parse(bytes)?;
    let eligible = |n: &Node| -> bool {
        let constant = |name: Option<&String>, dims: usize| {
            name.and_then(|x| graph.initializers.get(x))
                .is_some_and(|t| t.dims.len() == dims && t.f32s().is_some())
        };
        let attrs_ok = n.attrs.iter().all(|(name, a)| match (name.as_str(), a) {
            ("kernel_shape" | "dilations", Attr::Ints(v)) => v.len() == 1,
            ("strides", Attr::Ints(v)) => v == &[1],
            ("pads", Attr::Ints(v)) => v.len() == 2,
            ("group", Attr::Int(g)) => *g == 1,
            ("auto_pad", Attr::Str(s)) => s == b"NOTSET",
            _ => false,
        });
        n.op == "Conv"
            && prefixes.iter().any(|p| n.name.starts_with(p))
            && n.domain.is_empty()
            && (2..=3).contains(&n.inputs.len())
            && constant(n.inputs.get(1), 3)
            && (n.inputs.len() == 2 || constant(n.inputs.get(2), 1))
            && attrs_ok
    };
    let moved: HashSet<usize> = (0..graph.nodes.len())
        .filter(|&i| eligible(&graph.nodes[i]))
        .collect();
    let counts: Vec<usize> = prefixes
        .iter()
        .map(|p| {
            moved
                .iter()
                .filter(|&&i| graph.nodes[i].name.starts_with(p))
                .count()
        })
        .collect();
    if moved.is_empty() {
        return Err(format!(
            "no 1-D convolution named {}… to move",
            prefixes.join("… or ")
        ));
    }
    // Initializers only moved nodes read go, unless a subgraph might read them unseen.
    let subgraphs = graph
        .nodes
        .iter()
        .any(|n| n.attrs.values().any(|a| matches!(a, Attr::Graph)));
    let still_read: HashSet<&str> = graph
        .nodes
        .iter()
        .enumerate()
        .flat_map(|(i, n)| {
            let all = if moved.contains(&i) {
                1
            } else {
                n.inputs.len()
            };
            n.inputs[..all].iter().map(String::as_str)
        })
        .chain(graph.outputs.iter().map(String::as_str))
        .collect();
    let dropped: HashSet<&str> = moved
        .iter()
        .flat_map(|&i| graph.nodes[i].inputs.iter().skip(1).map(String::as_str))
        .filter(|x| !subgraphs && !still_read.contains(x))
        .collect();
    let key = |i: usize| format!("conv{i}");
    // The weights move out of the parsed graph where no other node reads them (no copy).
    let mut uses: HashMap<&str, usize> = HashMap::new();
    for &i in &moved {
        for x in graph.nodes[i].inputs.iter().skip(1) {
            *uses.entry(x.as_str()).or_default() += 1;
        }
    }
    let initializers = &mut graph.initializers;
    let mut take = |name: Option<&String>| -> Option<(Vec<i64>, Vec<f32>)> {
        let name = name?.as_str();
        let left = uses.get_mut(name)?;
        *left -= 1;
        if *left == 0 && dropped.contains(name) {
            match initializers.remove(name)? {
                Initializer {
                    dims,
                    data: Data::F32(v),
                } => Some((dims, v)),
                _ => None,
            }
        } else {
            let t = initializers.get(name)?;
            Some((t.dims.clone(), t.f32s()?.to_vec()))
        }
    };
    let mut weights = HashMap::new();
    for &i in &moved {
        let n = &graph.nodes[i];
        let (dims, weight) =
            take(n.inputs.get(1)).ok_or_else(|| format!("{}: no weight", n.name))?;
        let dims: Vec<usize> = dims
            .iter()
            .map(|&d| usize::try_from(d).map_err(|_| format!("{}: weight dims {dims:?}", n.name)))
            .collect::<Result<_, _>>()?;
        let &[o, c, k] = dims.as_slice() else {
            return Err(format!("{}: weight of dimensions {dims:?}", n.name));
        };
        let bias = take(n.inputs.get(2)).map(|(_, b)| b);
        weights.insert(
            key(i),
            ConvWeights {
                dims: [o, c, k],
                weight,
                bias,
            },
        );
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut r = Reader::new(bytes);
    while let Some((field, value, raw)) = r.next_raw()? {
        if field != 7 {
            out.extend_from_slice(raw);
            continue;
        }
        let g = value.bytes("ModelProto.graph")?;
        let mut ng = Vec::with_capacity(g.len());
        let mut gr = Reader::new(g);
        let mut index = 0;
        while let Some((f, v, raw)) = gr.next_raw()? {
            let keep = match f {
                1 => {
                    index += 1;
                    if moved.contains(&(index - 1)) {
                        let node = v.bytes("GraphProto.node")?;
                        put_bytes(&mut ng, 1, &moved_node(node, &key(index - 1), domain)?);
                        continue;
                    }
                    true
                }
                5 | 11 => !names_dropped(f, &v, &dropped)?,
                _ => true,
            };
            if keep {
                ng.extend_from_slice(raw);
            }
        }
        // TensorProto { dims: [0], data_type: FLOAT, name }.
        let mut empty = Vec::new();
        put_varint_field(&mut empty, 1, 0);
        put_varint_field(&mut empty, 2, 1);
        put_bytes(&mut empty, 8, NO_WEIGHT.as_bytes());
        put_bytes(&mut ng, 5, &empty);
        put_bytes(&mut out, 7, &ng);
    }
    let mut opset = Vec::new();
    put_bytes(&mut opset, 1, domain.as_bytes());
    put_varint_field(&mut opset, 2, 1);
    put_bytes(&mut out, 8, &opset);
    Ok(Moved {
        bytes: out,
        counts,
        weights,
    })
}

/// Whether a graph's initializer (`field` 5) or input (11) is one of `dropped`.
fn names_dropped(
    field: u32,
    value: &onnx_graph::Value<'_>,
    dropped: &HashSet<&str>,
) -> Result<bool, String> {
    let name = if field == 5 {
        let t = value.bytes("GraphProto.initializer")?;
        onnx_graph::string_field(t, 8, "TensorProto.name")?
    } else {
        onnx_graph::value_info_name(value.bytes("GraphProto.input")?)?
    };
    Ok(dropped.contains(name.as_str()))
}

/// A `Conv` node's bytes moved to `domain`: its data input (the first) and [`NO_WEIGHT`], the
/// attribute [`WEIGHTS_ATTR`] = `key`, everything else as it was.
fn moved_node(node: &[u8], key: &str, domain: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(node.len() + 32);
    let mut r = Reader::new(node);
    let mut inputs = 0;
    while let Some((f, _, raw)) = r.next_raw()? {
        if f == 1 {
            inputs += 1;
            if inputs == 2 {
                put_bytes(&mut out, 1, NO_WEIGHT.as_bytes());
            }
            if inputs > 1 {
                continue;
            }
        }
        out.extend_from_slice(raw);
    }
    let mut a = Vec::new();
    put_bytes(&mut a, 1, WEIGHTS_ATTR.as_bytes());
    put_bytes(&mut a, 4, key.as_bytes());
    put_varint_field(&mut a, 20, 3);
    put_bytes(&mut out, 5, &a);
    // The domain field after the others: the node had none.
    put_bytes(&mut out, 7, domain.as_bytes());
    Ok(out)
}

/// What to change, worked out from the parsed graph.
struct Plan {
    /// Indices of the region's nodes.
    region: HashSet<usize>,
    /// Tensors from outside that region nodes read (Conv data inputs), in first-use order.
    entries: Vec<String>,
    /// Region tensors read outside it or returned by the graph.
    exits: HashSet<String>,
    /// Tensors the region produces (their shapes change: their value_info goes).
    produced: HashSet<String>,
    /// The convolutions' weights.
    weights: HashSet<String>,
    /// How many convolutions the region holds.
    convs: usize,
    /// Opset ≥ 13 takes `axes` as an input, older ones as an attribute.
    axes_input: bool,
}

impl Plan {
    fn new(g: &onnx_graph::Graph, prefix: &str) -> Result<Self, String> {
        let region: HashSet<usize> = (0..g.nodes.len())
            .filter(|&i| g.nodes[i].name.starts_with(prefix))
            .collect();
        if region.is_empty() {
            return Err(format!("no node is named {prefix}…"));
        }
        let opset = g.opset.ok_or("the model imports no default operator set")?;
        let produced: HashSet<String> = region
            .iter()
            .flat_map(|&i| g.nodes[i].outputs.iter().cloned())
            .collect();
        let scalar = |name: &str| {
            g.initializers
                .get(name)
                .is_some_and(|t| t.dims.iter().all(|&d| d == 1) && t.dims.len() <= 1)
        };
        let mut entries = Vec::new();
        let mut weights = HashSet::new();
        let mut convs = 0;
        for i in (0..g.nodes.len()).filter(|i| region.contains(i)) {
            let n = &g.nodes[i];
            let what = || format!("{} ({})", n.name, n.op);
            if !n.domain.is_empty() && n.domain != "ai.onnx" {
                return Err(format!("{}: operator domain {:?}", what(), n.domain));
            }
            let op = n.op.as_str();
            if CONVS.contains(&op) {
                check_conv_attrs(n).map_err(|e| format!("{}: {e}", what()))?;
                let data = n
                    .inputs
                    .first()
                    .ok_or_else(|| format!("{}: no input", what()))?;
                if !produced.contains(data) {
                    if g.initializers.contains_key(data) {
                        return Err(format!("{}: a constant as data", what()));
                    }
                    if !entries.contains(data) {
                        entries.push(data.clone());
                    }
                }
                let w = n
                    .inputs
                    .get(1)
                    .ok_or_else(|| format!("{}: no weight", what()))?;
                match g.initializers.get(w) {
                    Some(t) if t.dims.len() == 3 => {}
                    Some(t) => return Err(format!("{}: weight of {} dims", what(), t.dims.len())),
                    None => return Err(format!("{}: weight {w:?} is not a constant", what())),
                }
                if let Some(b) = n.inputs.get(2).filter(|b| !b.is_empty()) {
                    if g.initializers.get(b).is_none_or(|t| t.dims.len() != 1) {
                        return Err(format!("{}: bias {b:?} is not a 1-D constant", what()));
                    }
                }
                if n.inputs.len() > 3 {
                    return Err(format!("{}: {} inputs", what(), n.inputs.len()));
                }
                weights.insert(w.clone());
                convs += 1;
            } else if UNARY.contains(&op) {
                if n.inputs.len() != 1 || !produced.contains(&n.inputs[0]) {
                    return Err(format!("{}: input from outside the region", what()));
                }
            } else if BINARY.contains(&op) {
                let inside = n.inputs.iter().filter(|x| produced.contains(*x)).count();
                let constant = n.inputs.iter().filter(|x| scalar(x)).count();
                if n.inputs.len() != 2 || inside == 0 || inside + constant != 2 {
                    return Err(format!(
                        "{}: an operand that is neither a region tensor nor a scalar constant",
                        what()
                    ));
                }
            } else {
                return Err(format!("{}: operator not supported in the region", what()));
            }
            if n.attrs
                .values()
                .any(|a| matches!(a, Attr::Other | Attr::Graph))
            {
                return Err(format!(
                    "{}: an attribute that is not a number or text",
                    what()
                ));
            }
        }
        let mut exits: HashSet<String> = g
            .outputs
            .iter()
            .filter(|o| produced.contains(*o))
            .cloned()
            .collect();
        for (i, n) in g.nodes.iter().enumerate() {
            if region.contains(&i) {
                continue;
            }
            if n.attrs.values().any(|a| matches!(a, Attr::Graph)) {
                return Err(format!("{}: a subgraph could read region tensors", n.name));
            }
            let reads_weight = n.inputs.iter().any(|x| weights.contains(x));
            if reads_weight {
                return Err(format!("{}: shares a convolution weight", n.name));
            }
            exits.extend(n.inputs.iter().filter(|x| produced.contains(*x)).cloned());
        }
        // Names added must not exist already.
        let taken: HashSet<&str> = g
            .nodes
            .iter()
            .flat_map(|n| n.inputs.iter().chain(&n.outputs))
            .map(String::as_str)
            .chain(g.initializers.keys().map(String::as_str))
            .collect();
        for name in entries
            .iter()
            .chain(&exits)
            .map(|x| format!("{x}{SUFFIX}"))
            .chain([AXES.to_owned()])
        {
            if taken.contains(name.as_str()) {
                return Err(format!("the model already has a tensor named {name:?}"));
            }
        }
        Ok(Self {
            region,
            entries,
            exits,
            produced,
            weights,
            convs,
            axes_input: opset >= 13,
        })
    }

    /// The new `GraphProto`.
    fn graph(&self, parsed: &onnx_graph::Graph, bytes: &[u8]) -> Result<Vec<u8>, String> {
        let mut out = Vec::with_capacity(bytes.len() + 4096);
        let mut r = Reader::new(bytes);
        let mut index = 0;
        let mut unsqueezed = HashSet::new();
        while let Some((field, value, raw)) = r.next_raw()? {
            match field {
                1 => {
                    let i = index;
                    index += 1;
                    if !self.region.contains(&i) {
                        out.extend_from_slice(raw);
                        continue;
                    }
                    let node = parsed
                        .nodes
                        .get(i)
                        .ok_or("the graph changed between two reads")?;
                    for x in node.inputs.iter().filter(|x| self.entries.contains(*x)) {
                        if unsqueezed.insert(x.clone()) {
                            let n = self.reshape("Unsqueeze", x, &format!("{x}{SUFFIX}"));
                            put_bytes(&mut out, 1, &encode_node(&n)?);
                        }
                    }
                    put_bytes(&mut out, 1, &encode_node(&self.node_2d(node))?);
                    for x in node.outputs.iter().filter(|x| self.exits.contains(*x)) {
                        let n = self.reshape("Squeeze", &format!("{x}{SUFFIX}"), x);
                        put_bytes(&mut out, 1, &encode_node(&n)?);
                    }
                }
                5 => {
                    let t = value.bytes("GraphProto.initializer")?;
                    match onnx_graph::string_field(t, 8, "TensorProto.name")? {
                        name if self.weights.contains(&name) => {
                            put_bytes(&mut out, 5, &weight_2d(t)?);
                        }
                        _ => out.extend_from_slice(raw),
                    }
                }
                13 => {
                    let v = value.bytes("GraphProto.value_info")?;
                    if !self.produced.contains(&onnx_graph::value_info_name(v)?) {
                        out.extend_from_slice(raw);
                    }
                }
                _ => out.extend_from_slice(raw),
            }
        }
        if self.axes_input {
            let mut t = Vec::new();
            put_varint_field(&mut t, 1, 1); // dims [1]
            put_varint_field(&mut t, 2, 7); // INT64
            put_bytes(&mut t, 8, AXES.as_bytes());
            put_bytes(&mut t, 9, &2i64.to_le_bytes());
            put_bytes(&mut out, 5, &t);
        }
        Ok(out)
    }

    /// `Unsqueeze`/`Squeeze` of axis 2 from `input` to `output`.
    fn reshape(&self, op: &str, input: &str, output: &str) -> Node {
        let mut n = Node {
            op: op.into(),
            name: format!("{output}/{op}"),
            inputs: vec![input.into()],
            outputs: vec![output.into()],
            ..Node::default()
        };
        if self.axes_input {
            n.inputs.push(AXES.into());
        } else {
            n.attrs.insert("axes".into(), Attr::Ints(vec![2]));
        }
        n
    }

    /// The region node with 4-D names and, for a convolution, 2-D attributes.
    fn node_2d(&self, node: &Node) -> Node {
        let rename = |x: &String| {
            if self.entries.contains(x) || self.exits.contains(x) {
                format!("{x}{SUFFIX}")
            } else {
                x.clone()
            }
        };
        let mut n = node.clone();
        n.inputs = node.inputs.iter().map(rename).collect();
        n.outputs = node.outputs.iter().map(rename).collect();
        if CONVS.contains(&node.op.as_str()) {
            for (name, attr) in &mut n.attrs {
                if let Attr::Ints(v) = attr {
                    match (name.as_str(), v.as_slice()) {
                        ("pads", &[a, b]) => *v = vec![0, a, 0, b],
                        ("kernel_shape" | "dilations" | "strides", &[x]) => *v = vec![1, x],
                        ("output_padding", &[x]) => *v = vec![0, x],
                        _ => {}
                    }
                }
            }
        }
        n
    }
}

/// The convolution attributes the rewrite understands, each with its 1-D length.
fn check_conv_attrs(n: &Node) -> Result<(), String> {
    for (name, attr) in &n.attrs {
        match (name.as_str(), attr) {
            ("kernel_shape" | "dilations" | "strides" | "output_padding", Attr::Ints(v))
                if v.len() == 1 => {}
            ("pads", Attr::Ints(v)) if v.len() == 2 => {}
            ("group", Attr::Int(_)) => {}
            ("auto_pad", Attr::Str(s)) if s == b"NOTSET" => {}
            _ => {
                return Err(format!(
                    "attribute {name} = {attr:?} is not a 1-D one we rewrite"
                ))
            }
        }
    }
    Ok(())
}

/// A `[O, I, k]` weight `TensorProto` as `[O, I, 1, k]`; its data is copied as it is.
fn weight_2d(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut dims = Vec::new();
    let mut rest = Vec::with_capacity(bytes.len() + 8);
    let mut r = Reader::new(bytes);
    while let Some((field, value, raw)) = r.next_raw()? {
        if field == 1 {
            value.varints_into("TensorProto.dims", &mut dims)?;
        } else {
            rest.extend_from_slice(raw);
        }
    }
    let &[o, i, k] = dims.as_slice() else {
        return Err(format!("weight of dimensions {dims:?}, expected 3"));
    };
    let mut out = Vec::with_capacity(rest.len() + 40);
    for d in [o, i, 1, k] {
        put_varint_field(&mut out, 1, d as u64);
    }
    out.extend_from_slice(&rest);
    Ok(out)
}

fn encode_node(n: &Node) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for x in &n.inputs {
        put_bytes(&mut out, 1, x.as_bytes());
    }
    for x in &n.outputs {
        put_bytes(&mut out, 2, x.as_bytes());
    }
    if !n.name.is_empty() {
        put_bytes(&mut out, 3, n.name.as_bytes());
    }
    put_bytes(&mut out, 4, n.op.as_bytes());
    let mut attrs: Vec<_> = n.attrs.iter().collect();
    attrs.sort_by(|a, b| a.0.cmp(b.0));
    for (name, attr) in attrs {
        let mut a = Vec::new();
        put_bytes(&mut a, 1, name.as_bytes());
        let kind = match attr {
            Attr::Float(f) => {
                put_key(&mut a, 2, 5);
                a.extend_from_slice(&f.to_le_bytes());
                1
            }
            Attr::Int(i) => {
                put_varint_field(&mut a, 3, *i as u64);
                2
            }
            Attr::Str(s) => {
                put_bytes(&mut a, 4, s);
                3
            }
            Attr::Ints(v) => {
                for i in v {
                    put_varint_field(&mut a, 8, *i as u64);
                }
                7
            }
            Attr::Graph | Attr::Other => {
                return Err(format!("{}: attribute {name} cannot be re-encoded", n.name))
            }
        };
        put_varint_field(&mut a, 20, kind);
        put_bytes(&mut out, 5, &a);
    }
    if !n.domain.is_empty() {
        put_bytes(&mut out, 7, n.domain.as_bytes());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ints(v: &[i64]) -> Attr {
        Attr::Ints(v.to_vec())
    }

    fn node(
        op: &str,
        name: &str,
        inputs: &[&str],
        outputs: &[&str],
        attrs: &[(&str, Attr)],
    ) -> Node {
        Node {
            op: op.into(),
            name: name.into(),
            inputs: inputs.iter().map(|s| (*s).to_owned()).collect(),
            outputs: outputs.iter().map(|s| (*s).to_owned()).collect(),
            attrs: attrs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
            ..Node::default()
        }
    }

    fn tensor(name: &str, dims: &[i64], data: &[f32]) -> Vec<u8> {
        let mut t = Vec::new();
        for &d in dims {
            put_varint_field(&mut t, 1, d as u64);
        }
        put_varint_field(&mut t, 2, 1);
        put_bytes(&mut t, 8, name.as_bytes());
        let raw: Vec<u8> = data.iter().flat_map(|f| f.to_le_bytes()).collect();
        put_bytes(&mut t, 9, &raw);
        t
    }

    fn value_info(name: &str) -> Vec<u8> {
        let mut v = Vec::new();
        put_bytes(&mut v, 1, name.as_bytes());
        v
    }

    /// A model: `x` → pre (outside) → `/dec/` region (Conv, LeakyRelu, ConvTranspose, a residual
    /// Add, a Div by a scalar) → `/post` outside → `y`.
    fn model(nodes: &[Node], opset: u64) -> Vec<u8> {
        let mut g = Vec::new();
        for n in nodes {
            put_bytes(&mut g, 1, &encode_node(n).unwrap());
        }
        put_bytes(&mut g, 2, b"test");
        put_bytes(&mut g, 5, &tensor("w1", &[4, 2, 3], &[0.5; 24]));
        put_bytes(&mut g, 5, &tensor("b1", &[4], &[0.1; 4]));
        put_bytes(&mut g, 5, &tensor("wt", &[4, 4, 4], &[0.25; 64]));
        put_bytes(&mut g, 5, &tensor("three", &[], &[3.0]));
        put_bytes(&mut g, 5, &tensor("row", &[1, 4, 1], &[1.0; 4]));
        put_bytes(&mut g, 11, &value_info("x"));
        put_bytes(&mut g, 12, &value_info("y"));
        put_bytes(&mut g, 13, &value_info("h"));
        put_bytes(&mut g, 13, &value_info("x1"));
        let mut m = Vec::new();
        put_varint_field(&mut m, 1, 8);
        put_bytes(&mut m, 2, b"tests");
        let mut op = Vec::new();
        put_bytes(&mut op, 1, b"");
        put_varint_field(&mut op, 2, opset);
        put_bytes(&mut m, 8, &op);
        put_bytes(&mut m, 7, &g);
        m
    }

    fn decoder() -> Vec<Node> {
        vec![
            node("Relu", "/pre", &["x"], &["x1"], &[]),
            node(
                "Conv",
                "/dec/conv",
                &["x1", "w1", "b1"],
                &["h"],
                &[
                    ("kernel_shape", ints(&[3])),
                    ("dilations", ints(&[2])),
                    ("pads", ints(&[2, 2])),
                    ("strides", ints(&[1])),
                    ("group", Attr::Int(1)),
                ],
            ),
            node(
                "LeakyRelu",
                "/dec/act",
                &["h"],
                &["a"],
                &[("alpha", Attr::Float(0.1))],
            ),
            node(
                "ConvTranspose",
                "/dec/up",
                &["a", "wt"],
                &["u"],
                &[
                    ("kernel_shape", ints(&[4])),
                    ("strides", ints(&[2])),
                    ("pads", ints(&[1, 1])),
                ],
            ),
            node("Add", "/dec/res", &["u", "u"], &["s"], &[]),
            node("Div", "/dec/div", &["s", "three"], &["d"], &[]),
            node("Tanh", "/post", &["d"], &["y"], &[]),
        ]
    }

    /// The region cut out: the front ends at its entry; what only the region read goes.
    #[test]
    fn the_region_is_cut_out_with_what_only_it_reads() {
        let mut nodes = decoder();
        let last = nodes.len() - 1;
        nodes[last] = node("Unsqueeze", "/post", &["d", "axes"], &["y"], &[]);
        nodes.insert(0, node("Constant", "/axes", &[], &["axes"], &[]));
        let split = split(&model(&nodes, 15), "/dec/").unwrap();
        assert_eq!(split.entries, ["x1"]);
        assert_eq!(split.exit, "d");
        let g = onnx_graph::parse(&split.front).unwrap();
        assert_eq!(ops(&g), ["Constant", "Relu"]);
        assert_eq!(g.outputs, ["x1"]);
        assert_eq!(g.inputs, ["x"]);
        assert!(g.initializers.is_empty(), "{:?}", g.initializers.keys());
        // The region compiles for our kernels: the leaky ReLU folds into the transposed
        // convolution, the rest are steps; the field reaches 2 steps back through the dilated
        // convolution and 3 more through the transposed one, at half rate.
        let parsed = onnx_graph::parse(&model(&nodes, 15)).unwrap();
        let region = crate::speech::region::Region::new(
            &parsed,
            "/dec/",
            &split.entries,
            &split.exit,
            crate::speech::bf16::Engine::Portable,
            2,
        )
        .unwrap();
        assert_eq!(region.steps(), 4);
        assert_eq!(region.margin(), 6);
        // Anything but a shape operator reading the region's output is refused, and so is a
        // second tensor leaving the region.
        let e = split_refused(&decoder());
        assert!(e.contains("/post (Tanh) reads the region's output"), "{e}");
        let mut two = nodes.clone();
        two.push(node("Relu", "/other", &["h"], &["z"], &[]));
        let e = split_refused(&two);
        assert!(e.contains("2 region tensors leave it"), "{e}");
    }

    /// Eligible convolutions move to the custom domain, which the model then imports; others
    /// (another prefix, a stride, a weight that is not a constant) stay. A moved node's weights
    /// leave the model: its weight and bias inputs go, an attribute names them among the
    /// returned weights, and an initializer nothing else reads (the bias) goes.
    #[test]
    fn convolutions_move_to_a_custom_domain() {
        let mut nodes = decoder();
        nodes.push(node(
            "Conv",
            "/dec/strided",
            &["h", "w1"],
            &["q"],
            &[("strides", ints(&[2]))],
        ));
        nodes.push(node("Conv", "/dec/computed", &["h", "x1"], &["r"], &[]));
        let moved = convs_to_domain(&model(&nodes, 15), &["/dec/"], "my.domain").unwrap();
        assert_eq!(moved.counts, [1]);
        let bytes = moved.bytes;
        let g = onnx_graph::parse(&bytes).unwrap();
        let domains: Vec<(&str, &str)> = g
            .nodes
            .iter()
            .map(|n| (n.name.as_str(), n.domain.as_str()))
            .collect();
        assert_eq!(domains[1], ("/dec/conv", "my.domain"));
        assert!(domains.iter().filter(|d| d.1 == "my.domain").count() == 1);
        assert_eq!(g.nodes[1].inputs, ["x1", NO_WEIGHT]);
        assert_eq!(g.initializers[NO_WEIGHT].dims, [0]);
        assert_eq!(g.nodes[1].attrs[WEIGHTS_ATTR], Attr::Str(b"conv1".to_vec()));
        assert_eq!(g.nodes[1].attrs["dilations"], ints(&[2]));
        let w = &moved.weights["conv1"];
        assert_eq!(w.dims, [4, 2, 3]);
        assert_eq!(w.weight, [0.5; 24]);
        assert_eq!(w.bias.as_deref(), Some(&[0.1; 4][..]));
        assert!(
            g.initializers.contains_key("w1"),
            "the strided convolution reads it"
        );
        assert!(!g.initializers.contains_key("b1"));
        let mut r = Reader::new(&bytes);
        let mut imports = Vec::new();
        while let Some((field, value)) = r.next_field().unwrap() {
            if field == 8 {
                let op = value.bytes("opset").unwrap();
                imports.push(onnx_graph::string_field(op, 1, "domain").unwrap());
            }
        }
        assert_eq!(imports, ["", "my.domain"]);
        let moved = convs_to_domain(&model(&nodes, 15), &["/enc/", "/dec/"], "d").unwrap();
        assert_eq!(moved.counts, [0, 1]);
        let e = convs_to_domain(&model(&nodes, 15), &["/enc/"], "my.domain").unwrap_err();
        assert!(e.contains("no 1-D convolution named /enc/"), "{e}");
    }

    fn split_refused(nodes: &[Node]) -> String {
        split(&model(nodes, 15), "/dec/").unwrap_err()
    }

    #[test]
    fn the_region_becomes_2d_and_the_rest_is_kept() {
        let before = model(&decoder(), 15);
        let out = convs_as_2d(&before, "/dec/").unwrap();
        assert_eq!(out.convs, 2);
        let g = onnx_graph::parse(&out.bytes).unwrap();
        assert_eq!(g.opset, Some(15));
        assert_eq!(
            ops(&g),
            [
                "Relu",
                "Unsqueeze",
                "Conv",
                "LeakyRelu",
                "ConvTranspose",
                "Add",
                "Div",
                "Squeeze",
                "Tanh"
            ]
        );
        let conv = &g.nodes[2];
        assert_eq!(conv.inputs, ["x1::2d", "w1", "b1"]);
        assert_eq!(conv.attrs["kernel_shape"], ints(&[1, 3]));
        assert_eq!(conv.attrs["dilations"], ints(&[1, 2]));
        assert_eq!(conv.attrs["pads"], ints(&[0, 2, 0, 2]));
        assert_eq!(conv.attrs["strides"], ints(&[1, 1]));
        assert_eq!(conv.attrs["group"], Attr::Int(1));
        assert_eq!(g.nodes[3].attrs["alpha"], Attr::Float(0.1));
        assert_eq!(g.nodes[4].attrs["pads"], ints(&[0, 1, 0, 1]));
        assert_eq!(g.nodes[1].inputs, ["x1", AXES]);
        assert_eq!(g.nodes[1].outputs, ["x1::2d"]);
        assert_eq!(g.nodes[6].outputs, ["d::2d"]);
        assert_eq!(g.nodes[7].inputs, ["d::2d", AXES]);
        assert_eq!(g.nodes[7].outputs, ["d"]);
        assert_eq!(g.nodes[8].inputs, ["d"]);
        assert_eq!(g.initializers["w1"].dims, [4, 2, 1, 3]);
        assert_eq!(g.initializers["w1"].f32s(), Some(&[0.5; 24][..]));
        assert_eq!(g.initializers["wt"].dims, [4, 4, 1, 4]);
        assert_eq!(g.initializers["b1"].dims, [4]);
        assert_eq!(g.initializers[AXES].i64s(), Some(&[2][..]));
        assert_eq!(g.inputs, ["x"]);
        assert_eq!(g.outputs, ["y"]);
        // The value_info of a region tensor (now 4-D) is dropped; others are kept, as are the
        // model's other fields.
        assert_eq!(value_infos(&out.bytes), ["x1"]);
        assert_eq!(value_infos(&before), ["h", "x1"]);
        assert!(out.bytes.windows(5).any(|w| w == b"tests"));
        let again = convs_as_2d(&out.bytes, "/dec/");
        assert!(again.is_err(), "a 2-D model is refused: {again:?}");
    }

    fn ops(g: &onnx_graph::Graph) -> Vec<&str> {
        g.nodes.iter().map(|n| n.op.as_str()).collect()
    }

    fn value_infos(model: &[u8]) -> Vec<String> {
        let mut names = Vec::new();
        let mut r = Reader::new(model);
        while let Some((field, value)) = r.next_field().unwrap() {
            if field == 7 {
                let mut g = Reader::new(value.bytes("graph").unwrap());
                while let Some((field, value)) = g.next_field().unwrap() {
                    if field == 13 {
                        let v = value.bytes("value_info").unwrap();
                        names.push(onnx_graph::value_info_name(v).unwrap());
                    }
                }
            }
        }
        names
    }

    /// A multi-speaker voice's decoder also reads the speaker embedding `g` (`[1, C, 1]`)
    /// through a 1x1 convolution added to the main path: a second entry, unsqueezed once, before
    /// the first node that reads it.
    #[test]
    fn a_second_entry_such_as_a_speaker_embedding_is_unsqueezed_once() {
        let mut nodes = decoder();
        nodes.insert(
            2,
            node(
                "Conv",
                "/dec/cond",
                &["g", "w1", "b1"],
                &["c"],
                &[("kernel_shape", ints(&[1]))],
            ),
        );
        nodes.insert(3, node("Add", "/dec/plus", &["h", "c"], &["hc"], &[]));
        nodes[4].inputs[0] = "hc".into();
        // `w1` is [4, 2, 3] and now read by two convolutions (rewritten once): the test checks
        // structure, not shapes.
        let out = convs_as_2d(&model(&nodes, 15), "/dec/").unwrap();
        assert_eq!(out.convs, 3);
        let g = onnx_graph::parse(&out.bytes).unwrap();
        assert_eq!(
            ops(&g),
            [
                "Relu",
                "Unsqueeze",
                "Conv",
                "Unsqueeze",
                "Conv",
                "Add",
                "LeakyRelu",
                "ConvTranspose",
                "Add",
                "Div",
                "Squeeze",
                "Tanh"
            ]
        );
        assert_eq!(g.nodes[3].inputs, ["g", AXES]);
        assert_eq!(g.nodes[4].inputs, ["g::2d", "w1", "b1"]);
        assert_eq!(g.nodes[4].attrs["kernel_shape"], ints(&[1, 1]));
        assert_eq!(g.nodes[5].inputs, ["h", "c"]);
        assert_eq!(g.initializers["w1"].dims, [4, 2, 1, 3]);
    }

    #[test]
    fn old_opsets_get_axes_as_an_attribute() {
        let out = convs_as_2d(&model(&decoder(), 11), "/dec/").unwrap();
        let g = onnx_graph::parse(&out.bytes).unwrap();
        assert_eq!(g.nodes[1].inputs, ["x1"]);
        assert_eq!(g.nodes[1].attrs["axes"], ints(&[2]));
        assert!(!g.initializers.contains_key(AXES));
    }

    #[test]
    fn a_region_that_cannot_be_2d_is_refused_with_the_reason() {
        type Change = Box<dyn Fn(&mut Vec<Node>)>;
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|n| n[2].op = "Softmax".into()), "not supported"),
            (
                Box::new(|n| n[5].inputs[1] = "row".into()),
                "scalar constant",
            ),
            (Box::new(|n| n[5].inputs[1] = "x".into()), "scalar constant"),
            (
                Box::new(|n| n[2].inputs[0] = "x".into()),
                "outside the region",
            ),
            (
                Box::new(|n| {
                    n[1].attrs
                        .insert("auto_pad".into(), Attr::Str(b"SAME_UPPER".to_vec()));
                }),
                "auto_pad",
            ),
            (
                Box::new(|n| {
                    n[1].attrs.insert("kernel_shape".into(), ints(&[3, 3]));
                }),
                "kernel_shape",
            ),
            (
                Box::new(|n| n[6].inputs.push("w1".into())),
                "shares a convolution weight",
            ),
            (
                Box::new(|n| n[1].inputs[1] = "three".into()),
                "weight of 0 dims",
            ),
            (Box::new(|n| n[1].inputs[1] = "x".into()), "not a constant"),
            (
                Box::new(|n| n[1].inputs[0] = "w1".into()),
                "a constant as data",
            ),
            (Box::new(|n| n[1].domain = "com.microsoft".into()), "domain"),
            (
                Box::new(|n| {
                    n.iter_mut()
                        .for_each(|n| n.name = n.name.replace("/dec/", "/x/"))
                }),
                "no node",
            ),
        ];
        for (change, reason) in cases {
            let mut nodes = decoder();
            change(&mut nodes);
            let err = convs_as_2d(&model(&nodes, 15), "/dec/").unwrap_err();
            assert!(err.contains(reason), "{err:?} should say {reason:?}");
        }
        let err = convs_as_2d(b"\x0a\x05ab", "/dec/").unwrap_err();
        assert!(err.contains("past the end"), "{err}");
    }
}
