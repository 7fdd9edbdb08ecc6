//! openWakeWord's embedding model (Google's speech embedding: 20 small 2-D convolutions and
//! max-pools over a window of 76 mel frames × 32 bands) run by us, as a **streaming** network.
//!
//! Consecutive windows overlap by 68 of their 76 frames. Every convolution is "valid" in time
//! and the pools' time strides multiply to 8 (the frames one 80 ms step adds), so each layer's
//! output for the next window is its output for this one moved up by 8, 4, 2 or 1 rows (its
//! stride), plus that many new rows. Those new rows are all that is computed: about an eighth
//! of the work of the whole window, which ONNX Runtime recomputes every step.
//!
//! The network is read from the same `embedding_model.onnx` ONNX Runtime loads
//! ([`super::onnx_graph`]), as a chain of Pad, Reshape, Conv, Relu, BatchNormalization,
//! LeakyRelu, Max (with a constant) and MaxPool nodes. A file of any other shape is refused
//! with the reason, and the caller runs it through ONNX Runtime instead. A window that does not
//! continue the last one (the first, or one after a gap) is computed whole.

use super::onnx_graph::{Attr, Graph, Node};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shape {
    rows: usize,
    cols: usize,
    ch: usize,
}

impl Shape {
    fn row_len(self) -> usize {
        self.cols * self.ch
    }

    fn len(self) -> usize {
        self.rows * self.row_len()
    }
}

#[derive(Debug)]
enum Kind {
    /// Stride 1, no padding in time; `w` laid out `[kh][kw][cin][cout]`: the right-hand
    /// matrix (`kh·kw·cin` × `cout`) of the product with the input's patches.
    Conv {
        kh: usize,
        kw: usize,
        pad_l: usize,
        w: Vec<f32>,
        b: Vec<f32>,
    },
    /// Kernel equal to the stride, no padding.
    Pool { kh: usize, kw: usize },
}

#[derive(Debug)]
enum Post {
    Relu,
    Leaky(f32),
    Floor(f32),
    Affine { a: Vec<f32>, b: Vec<f32> },
}

#[derive(Debug)]
struct Stage {
    kind: Kind,
    post: Vec<Post>,
    input: Shape,
    output: Shape,
}

impl Stage {
    /// Time stride: input rows per output row of a shift.
    fn stride(&self) -> usize {
        match self.kind {
            Kind::Pool { kh, .. } => kh,
            Kind::Conv { .. } => 1,
        }
    }
}

/// The streaming network and its state (the last window and every layer's output for it).
#[derive(Debug)]
pub struct StreamingEmbedding {
    stages: Vec<Stage>,
    input: Shape,
    /// Frames a step shifts the window by for every layer to stay aligned.
    hop: usize,
    last: Vec<f32>,
    outs: Vec<Vec<f32>>,
    /// Scratch: the input patches of a convolution's rows (one row per output pixel).
    patches: Vec<f32>,
    full_runs: u64,
    streamed_runs: u64,
}

fn ints(node: &Node, name: &str) -> Option<Vec<i64>> {
    match node.attrs.get(name) {
        Some(Attr::Ints(v)) => Some(v.clone()),
        _ => None,
    }
}

fn all_ones(v: Option<Vec<i64>>) -> bool {
    v.is_none_or(|v| v.iter().all(|&x| x == 1))
}

fn no_auto_pad(node: &Node) -> bool {
    match node.attrs.get("auto_pad") {
        None => true,
        Some(Attr::Str(s)) => s == b"NOTSET",
        Some(_) => false,
    }
}

fn usize_of(v: i64) -> Option<usize> {
    usize::try_from(v).ok()
}

impl StreamingEmbedding {
    /// Build the network of `graph` for windows of `rows` frames × `cols` bands.
    pub fn from_graph(graph: &Graph, rows: usize, cols: usize) -> Result<Self, String> {
        let mut cur = graph
            .inputs
            .iter()
            .find(|n| !graph.initializers.contains_key(*n))
            .cloned()
            .ok_or("the graph has no input")?;
        let mut shape = Shape { rows, cols, ch: 1 };
        let mut nchw = false;
        let mut pending_pad: Option<(usize, usize)> = None;
        let mut stages: Vec<Stage> = Vec::new();
        let init = |node: &Node, i: usize| {
            node.inputs
                .get(i)
                .and_then(|n| graph.initializers.get(n))
                .ok_or_else(|| format!("{} {:?}: input {i} is not a constant", node.op, node.name))
        };
        for node in &graph.nodes {
            let bad = |why: &str| format!("{} {:?}: {why}", node.op, node.name);
            let data_inputs: Vec<&String> = node
                .inputs
                .iter()
                .filter(|n| !n.is_empty() && !graph.initializers.contains_key(*n))
                .collect();
            if data_inputs.as_slice() != [&cur] {
                return Err(bad("not a link of a single chain from the input"));
            }
            if pending_pad.is_some() && !matches!(node.op.as_str(), "Reshape" | "Conv") {
                return Err(bad("a Pad must be followed by a convolution"));
            }
            match node.op.as_str() {
                "Pad" => {
                    match node.attrs.get("mode") {
                        None => {}
                        Some(Attr::Str(m)) if m == b"constant" => {}
                        _ => return Err(bad("only constant padding is supported")),
                    }
                    if let Some(v) = node.inputs.get(2).filter(|n| !n.is_empty()) {
                        let c = graph.initializers.get(v).and_then(|t| t.f32s());
                        if c != Some(&[0.0]) {
                            return Err(bad("only zero padding is supported"));
                        }
                    }
                    let pads = init(node, 1)?.i64s().ok_or_else(|| bad("pads not int64"))?;
                    // Only the band axis may be padded: NHWC (before the reshape) or NCHW.
                    let w = if nchw { 3 } else { 2 };
                    if pads.len() != 8
                        || pads.iter().enumerate().any(|(i, &p)| i % 4 != w && p != 0)
                    {
                        return Err(bad(&format!("pads {pads:?}: only the band axis")));
                    }
                    let (l, r) = (usize_of(pads[w]), usize_of(pads[w + 4]));
                    let (Some(l), Some(r)) = (l, r) else {
                        return Err(bad("negative pads"));
                    };
                    pending_pad = Some((l, r));
                }
                "Reshape" => {
                    let target = init(node, 1)?
                        .i64s()
                        .ok_or_else(|| bad("shape not int64"))?;
                    let padded = shape.cols + pending_pad.map_or(0, |(l, r)| l + r);
                    let to_nchw = !nchw
                        && shape.ch == 1
                        && target.len() == 4
                        && target[1] == 1
                        && usize_of(target[2]) == Some(shape.rows)
                        && usize_of(target[3]) == Some(padded);
                    let flatten = nchw
                        && pending_pad.is_none()
                        && shape.rows == 1
                        && shape.cols == 1
                        && target.iter().filter(|&&d| d != 1 && d != -1).count() <= 1
                        && target
                            .iter()
                            .all(|&d| d == 1 || d == -1 || usize_of(d) == Some(shape.ch));
                    if to_nchw {
                        nchw = true;
                    } else if !flatten {
                        return Err(bad(&format!("reshape to {target:?} from {shape:?}")));
                    }
                }
                "Conv" => {
                    if !nchw {
                        return Err(bad("a convolution before the layout reshape"));
                    }
                    let wt = init(node, 1)?;
                    let w = wt.f32s().ok_or_else(|| bad("weights not float32"))?;
                    let dims: Vec<usize> = wt.dims.iter().filter_map(|&d| usize_of(d)).collect();
                    let [cout, cin, kh, kw] = dims[..] else {
                        return Err(bad("weights not of rank 4"));
                    };
                    if cin != shape.ch || cout == 0 || kh == 0 || kw == 0 {
                        return Err(bad(&format!("weights {dims:?} on {} channels", shape.ch)));
                    }
                    if !all_ones(ints(node, "strides"))
                        || !all_ones(ints(node, "dilations"))
                        || !matches!(node.attrs.get("group"), None | Some(Attr::Int(1)))
                        || !no_auto_pad(node)
                    {
                        return Err(bad("strides, dilations or groups other than 1"));
                    }
                    let pads = ints(node, "pads").unwrap_or_else(|| vec![0; 4]);
                    let [0, l, 0, r] = pads[..] else {
                        return Err(bad(&format!("pads {pads:?}: time must not be padded")));
                    };
                    let (Some(l), Some(r)) = (usize_of(l), usize_of(r)) else {
                        return Err(bad("negative pads"));
                    };
                    let (pl, pr) = pending_pad.take().unwrap_or((0, 0));
                    let (pad_l, pad_r) = (l + pl, r + pr);
                    let b = match node.inputs.get(2).filter(|n| !n.is_empty()) {
                        Some(_) => init(node, 2)?
                            .f32s()
                            .filter(|b| b.len() == cout)
                            .ok_or_else(|| bad("bias"))?
                            .to_vec(),
                        None => vec![0.0; cout],
                    };
                    let cols = shape.cols + pad_l + pad_r;
                    if shape.rows < kh || cols < kw {
                        return Err(bad("kernel larger than its input"));
                    }
                    // [cout][cin][kh][kw] → [kh][kw][cin][cout].
                    let mut wr = vec![0.0; w.len()];
                    for (i, &v) in w.iter().enumerate() {
                        let (o, rest) = (i / (cin * kh * kw), i % (cin * kh * kw));
                        let (c, rest) = (rest / (kh * kw), rest % (kh * kw));
                        let (y, x) = (rest / kw, rest % kw);
                        wr[((y * kw + x) * cin + c) * cout + o] = v;
                    }
                    let output = Shape {
                        rows: shape.rows - kh + 1,
                        cols: cols - kw + 1,
                        ch: cout,
                    };
                    stages.push(Stage {
                        kind: Kind::Conv {
                            kh,
                            kw,
                            pad_l,
                            w: wr,
                            b,
                        },
                        post: Vec::new(),
                        input: shape,
                        output,
                    });
                    shape = output;
                }
                "MaxPool" => {
                    let k = ints(node, "kernel_shape").unwrap_or_default();
                    let [kh, kw] = k[..] else {
                        return Err(bad("kernel_shape not 2-D"));
                    };
                    let (Some(kh), Some(kw)) = (usize_of(kh), usize_of(kw)) else {
                        return Err(bad("negative kernel"));
                    };
                    let strides = ints(node, "strides").unwrap_or_else(|| vec![1, 1]);
                    let unpadded = ints(node, "pads").is_none_or(|p| p.iter().all(|&x| x == 0));
                    let ceil = matches!(node.attrs.get("ceil_mode"), Some(Attr::Int(c)) if *c != 0);
                    if kh == 0
                        || kw == 0
                        || strides != [kh as i64, kw as i64]
                        || !unpadded
                        || ceil
                        || !no_auto_pad(node)
                        || !all_ones(ints(node, "dilations"))
                    {
                        return Err(bad("only unpadded pools with stride equal to the kernel"));
                    }
                    if shape.rows < kh || shape.cols < kw {
                        return Err(bad("pool larger than its input"));
                    }
                    let output = Shape {
                        rows: shape.rows / kh,
                        cols: shape.cols / kw,
                        ch: shape.ch,
                    };
                    stages.push(Stage {
                        kind: Kind::Pool { kh, kw },
                        post: Vec::new(),
                        input: shape,
                        output,
                    });
                    shape = output;
                }
                op @ ("Relu" | "LeakyRelu" | "BatchNormalization" | "Max") => {
                    let ch = shape.ch;
                    let post = match op {
                        "Relu" => Post::Relu,
                        "LeakyRelu" => Post::Leaky(match node.attrs.get("alpha") {
                            Some(Attr::Float(a)) => *a,
                            None => 0.01,
                            Some(_) => return Err(bad("alpha")),
                        }),
                        "Max" => {
                            let c = node
                                .inputs
                                .iter()
                                .filter_map(|n| graph.initializers.get(n))
                                .find_map(|t| t.f32s().filter(|v| v.len() == 1).map(|v| v[0]));
                            match (c, node.inputs.len()) {
                                (Some(c), 2) => Post::Floor(c),
                                _ => return Err(bad("only the maximum with one constant")),
                            }
                        }
                        _ => {
                            let eps = match node.attrs.get("epsilon") {
                                Some(Attr::Float(e)) => *e,
                                None => 1e-5,
                                Some(_) => return Err(bad("epsilon")),
                            };
                            let p = |i| {
                                init(node, i)?
                                    .f32s()
                                    .filter(|v| v.len() == ch)
                                    .ok_or_else(|| bad("parameters not one per channel"))
                            };
                            let (scale, bias, mean, var) = (p(1)?, p(2)?, p(3)?, p(4)?);
                            let a: Vec<f32> = scale
                                .iter()
                                .zip(var)
                                .map(|(s, v)| s / (v + eps).sqrt())
                                .collect();
                            let b = bias
                                .iter()
                                .zip(mean)
                                .zip(&a)
                                .map(|((b, m), a)| b - m * a)
                                .collect();
                            Post::Affine { a, b }
                        }
                    };
                    stages
                        .last_mut()
                        .ok_or_else(|| bad("an activation before any layer"))?
                        .post
                        .push(post);
                }
                other => return Err(bad(&format!("operator {other} is not supported"))),
            }
            cur = node
                .outputs
                .first()
                .cloned()
                .ok_or_else(|| bad("no output"))?;
        }
        if graph.outputs.first() != Some(&cur) {
            return Err("the chain does not end at the graph's output".into());
        }
        if stages.is_empty() || shape.rows != 1 || shape.cols != 1 || pending_pad.is_some() {
            return Err(format!("the network's output is {shape:?}, not one vector"));
        }
        let hop = stages.iter().map(Stage::stride).product();
        let outs = stages.iter().map(|s| vec![0.0; s.output.len()]).collect();
        Ok(Self {
            stages,
            input: Shape { rows, cols, ch: 1 },
            hop,
            last: Vec::new(),
            outs,
            patches: Vec::new(),
            full_runs: 0,
            streamed_runs: 0,
        })
    }

    /// Frames one step shifts the window by (the product of the pools' time strides).
    pub fn hop(&self) -> usize {
        self.hop
    }

    /// Windows computed whole, and windows computed from the last one's layers.
    pub fn runs(&self) -> (u64, u64) {
        (self.full_runs, self.streamed_runs)
    }

    /// Length of the output vector.
    pub fn output_len(&self) -> usize {
        self.stages.last().map_or(0, |s| s.output.ch)
    }

    /// The embedding of `window` (frames × bands, row-major). When it is the last window moved
    /// on by [`Self::hop`] frames, only the new rows of each layer are computed.
    pub fn embed(&mut self, window: &[f32]) -> Result<&[f32], String> {
        let input = self.input;
        if window.len() != input.len() {
            return Err(format!(
                "a window of {} values, expected {} frames × {} bands",
                window.len(),
                input.rows,
                input.cols
            ));
        }
        let keep = input.rows.saturating_sub(self.hop) * input.cols;
        let continues = keep > 0
            && self.last.len() == window.len()
            && window[..keep] == self.last[self.last.len() - keep..];
        let mut new = if continues {
            self.streamed_runs += 1;
            Some(self.hop)
        } else {
            self.full_runs += 1;
            None
        };
        self.last.clear();
        self.last.extend_from_slice(window);
        for i in 0..self.stages.len() {
            let (before, rest) = self.outs.split_at_mut(i);
            let out = &mut rest[0];
            let stage = &self.stages[i];
            let src: &[f32] = if i == 0 { &self.last } else { &before[i - 1] };
            let row_len = stage.output.row_len();
            let rows = stage.output.rows;
            let first = match new {
                Some(n) if n / stage.stride() < rows => {
                    let moved = n / stage.stride();
                    out.copy_within(moved * row_len.., 0);
                    rows - moved
                }
                _ => 0,
            };
            if let Err(e) = run(stage, src, out, first, &mut self.patches) {
                // The layers no longer hold this window: the next one is computed whole.
                self.last.clear();
                return Err(e);
            }
            new = new.map(|n| n / stage.stride());
        }
        Ok(self.outs.last().map_or(&[][..], Vec::as_slice))
    }
}

/// Compute output rows `first..` of `stage` from `src` into `out`.
fn run(
    stage: &Stage,
    src: &[f32],
    out: &mut [f32],
    first: usize,
    patches: &mut Vec<f32>,
) -> Result<(), String> {
    let (inp, o) = (stage.input, stage.output);
    let row_len = o.row_len();
    match &stage.kind {
        Kind::Conv {
            kh,
            kw,
            pad_l,
            w,
            b,
        } => {
            // Each output pixel's receptive field as one row of `patches` (zeros where the
            // band axis is padded), then out = bias + patches × w.
            let (cin, cout) = (inp.ch, o.ch);
            let k = kh * kw * cin;
            let pixels = (o.rows - first) * o.cols;
            patches.clear();
            patches.resize(pixels * k, 0.0);
            for (p, patch) in patches.chunks_exact_mut(k).enumerate() {
                let (r, c) = (first + p / o.cols, p % o.cols);
                for dy in 0..*kh {
                    let in_row = &src[(r + dy) * inp.row_len()..][..inp.row_len()];
                    for dx in 0..*kw {
                        if let Some(x) = (c + dx).checked_sub(*pad_l).filter(|&x| x < inp.cols) {
                            patch[(dy * kw + dx) * cin..][..cin]
                                .copy_from_slice(&in_row[x * cin..][..cin]);
                        }
                    }
                }
            }
            let dst = &mut out[first * row_len..];
            for px in dst.chunks_exact_mut(cout) {
                px.copy_from_slice(b);
            }
            matmul_add(dst, patches, w, pixels, k, cout)?;
            for px in dst.chunks_exact_mut(cout) {
                post(&stage.post, px);
            }
        }
        Kind::Pool { kh, kw } => {
            let ch = o.ch;
            for r in first..o.rows {
                for c in 0..o.cols {
                    let acc = &mut out[r * row_len + c * ch..][..ch];
                    acc.fill(f32::NEG_INFINITY);
                    for dy in 0..*kh {
                        for dx in 0..*kw {
                            let at = (r * kh + dy) * inp.row_len() + (c * kw + dx) * ch;
                            for (a, &v) in acc.iter_mut().zip(&src[at..at + ch]) {
                                *a = a.max(v);
                            }
                        }
                    }
                    post(&stage.post, acc);
                }
            }
        }
    }
    Ok(())
}

/// `dst` (m × n) += `lhs` (m × k) × `rhs` (k × n), all row-major, with the `gemm` crate's
/// kernels (chosen at run time for the CPU: AVX2, AVX-512 or NEON).
fn matmul_add(
    dst: &mut [f32],
    lhs: &[f32],
    rhs: &[f32],
    m: usize,
    k: usize,
    n: usize,
) -> Result<(), String> {
    if dst.len() != m * n || lhs.len() != m * k || rhs.len() != k * n {
        return Err(format!(
            "matrix sizes {}, {}, {} for {m}×{k} times {k}×{n}",
            dst.len(),
            lhs.len(),
            rhs.len()
        ));
    }
    let (ks, ns) = (k as isize, n as isize);
    // SAFETY: the three slices hold exactly m×n, m×k and k×n values (checked above), and the
    // strides (row-major: row stride = columns, column stride 1) keep every access inside them.
    // `dst` is borrowed mutably, so it aliases neither input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            ns,
            true,
            lhs.as_ptr(),
            1,
            ks,
            rhs.as_ptr(),
            1,
            ns,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
    Ok(())
}

fn post(ops: &[Post], v: &mut [f32]) {
    for op in ops {
        match op {
            Post::Relu => v.iter_mut().for_each(|x| *x = x.max(0.0)),
            Post::Leaky(alpha) => v
                .iter_mut()
                .for_each(|x| *x = if *x < 0.0 { *x * alpha } else { *x }),
            Post::Floor(c) => v.iter_mut().for_each(|x| *x = x.max(*c)),
            Post::Affine { a, b } => {
                for ((x, a), b) in v.iter_mut().zip(a).zip(b) {
                    *x = x.mul_add(*a, *b);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::onnx_graph::{Data, Initializer};
    use super::*;

    fn node(op: &str, inputs: &[&str], out: &str, attrs: &[(&str, Attr)]) -> Node {
        Node {
            op: op.into(),
            name: out.into(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: vec![out.into()],
            attrs: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            ..Node::default()
        }
    }

    fn tensor(dims: &[i64], v: Vec<f32>) -> Initializer {
        Initializer {
            dims: dims.to_vec(),
            data: Data::F32(v),
        }
    }

    /// input (6 × 2 × 1) → reshape → conv 3×1 (1→2) → leaky → maxpool 2×1 → conv 2×2 (2→1).
    fn tiny() -> Graph {
        let mut g = Graph {
            inputs: vec!["x".into()],
            outputs: vec!["y".into()],
            ..Graph::default()
        };
        let ins = &mut g.initializers;
        ins.insert(
            "shape".into(),
            Initializer {
                dims: vec![4],
                data: Data::I64(vec![-1, 1, 6, 2]),
            },
        );
        ins.insert(
            "w1".into(),
            tensor(&[2, 1, 3, 1], vec![1.0, 0.5, -1.0, -0.5, 2.0, 0.25]),
        );
        ins.insert("b1".into(), tensor(&[2], vec![0.1, -0.2]));
        ins.insert(
            "w2".into(),
            tensor(
                &[1, 2, 2, 2],
                vec![1.0, -1.0, 0.5, 2.0, -0.5, 1.5, 1.0, 0.25],
            ),
        );
        g.nodes = vec![
            node("Reshape", &["x", "shape"], "r", &[]),
            node("Conv", &["r", "w1", "b1"], "c1", &[]),
            node("LeakyRelu", &["c1"], "l1", &[("alpha", Attr::Float(0.2))]),
            node(
                "MaxPool",
                &["l1"],
                "p1",
                &[
                    ("kernel_shape", Attr::Ints(vec![2, 1])),
                    ("strides", Attr::Ints(vec![2, 1])),
                ],
            ),
            node("Conv", &["p1", "w2"], "y", &[]),
        ];
        g
    }

    /// The same network computed directly from its definition.
    fn reference(x: &[f32]) -> f32 {
        let at = |r: usize, c: usize| x[r * 2 + c];
        let w1 = [[1.0, 0.5, -1.0], [-0.5, 2.0, 0.25]];
        let b1 = [0.1, -0.2];
        let leaky = |v: f32| if v < 0.0 { v * 0.2 } else { v };
        let c1 = |o: usize, r: usize, c: usize| {
            leaky(b1[o] + (0..3).map(|k| w1[o][k] * at(r + k, c)).sum::<f32>())
        };
        let p1 = |o: usize, r: usize, c: usize| c1(o, 2 * r, c).max(c1(o, 2 * r + 1, c));
        let w2 = [[[1.0, -1.0], [0.5, 2.0]], [[-0.5, 1.5], [1.0, 0.25]]];
        let mut y = 0.0;
        for (o, w) in w2.iter().enumerate() {
            for (r, wr) in w.iter().enumerate() {
                for (c, wv) in wr.iter().enumerate() {
                    y += wv * p1(o, r, c);
                }
            }
        }
        y
    }

    #[test]
    fn a_small_network_matches_its_definition_whole_and_streamed() {
        let mut net = StreamingEmbedding::from_graph(&tiny(), 6, 2).unwrap();
        assert_eq!((net.hop(), net.output_len()), (2, 1));
        // A signal of 20 frames; windows of 6 frames moved on by the hop.
        let signal: Vec<f32> = (0..40)
            .map(|i| ((i * 37 % 11) as f32 - 5.0) / 3.0)
            .collect();
        for start in (0..=14).step_by(2) {
            let window = &signal[start * 2..start * 2 + 12];
            let got = net.embed(window).unwrap()[0];
            let want = reference(window);
            assert!((got - want).abs() < 1e-5, "frame {start}: {got} vs {want}");
        }
        assert_eq!(net.runs(), (1, 7));
        // A window that does not continue the last one is computed whole.
        let window = &signal[1..13];
        assert!((net.embed(window).unwrap()[0] - reference(window)).abs() < 1e-5);
        assert_eq!(net.runs(), (2, 7));
        assert!(net.embed(&signal[..10]).unwrap_err().contains("10 values"));
    }

    #[test]
    fn networks_it_cannot_stream_are_refused_with_the_reason() {
        let refuse = |g: &Graph, what: &str| {
            let e = StreamingEmbedding::from_graph(g, 6, 2).unwrap_err();
            assert!(e.contains(what), "{e}");
        };
        let mut g = tiny();
        g.nodes[1]
            .attrs
            .insert("pads".into(), Attr::Ints(vec![1, 0, 1, 0]));
        refuse(&g, "time must not be padded");
        let mut g = tiny();
        g.nodes[2].op = "Sigmoid".into();
        refuse(&g, "operator Sigmoid is not supported");
        let mut g = tiny();
        g.nodes[3]
            .attrs
            .insert("strides".into(), Attr::Ints(vec![1, 1]));
        refuse(&g, "stride equal to the kernel");
        let mut g = tiny();
        g.nodes[4].inputs[0] = "l1".into();
        refuse(&g, "single chain");
        let mut g = tiny();
        g.nodes.pop();
        refuse(&g, "does not end at the graph's output");
        assert!(StreamingEmbedding::from_graph(&tiny(), 8, 2).is_err());
    }
}
