//! Runs a region of an ONNX graph (Piper's HiFi-GAN decoder, the nodes named `/dec/…`) with our
//! own bfloat16 kernels ([`super::bf16`]) instead of ONNX Runtime. The region is the one
//! [`super::onnx_2d::split`] cuts out of the model: convolutions, transposed convolutions and
//! element-wise operators over `[1, C, T]` tensors, with one tensor leaving it (the audio).
//!
//! The nodes are compiled once into steps over numbered slots. A leaky ReLU read only by
//! convolutions is applied while their input is converted to bfloat16; an `Add` of a
//! convolution's output (read nowhere else) and a tensor of the same shape is added while the
//! convolution stores its sums. A slot is freed after its last reader, its buffer kept for the
//! next step (fresh pages cost more than the arithmetic on them); [`Region::idle`] gives the
//! buffers back.

use std::collections::{HashMap, HashSet};

use super::bf16::{Conv1d, ConvTranspose1d, Engine, Input, Scratch};
use super::onnx_graph::{Attr, Graph, Node};

/// A `[C, T]` tensor (batch 1).
#[derive(Debug, Default)]
struct Tensor {
    c: usize,
    t: usize,
    data: Vec<f32>,
}

/// An operand of an element-wise operator.
#[derive(Debug, Clone, Copy)]
enum Operand {
    Slot(usize),
    Const(f32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Binary {
    Add,
    Sub,
    Mul,
    Div,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Unary {
    Leaky(f32),
    Relu,
    Tanh,
    Sigmoid,
}

#[derive(Debug)]
enum Op {
    Conv {
        conv: Conv1d,
        input: usize,
        leaky: Option<f32>,
        /// Residuals added to the sums, in order (at most two).
        res: Vec<usize>,
    },
    ConvT {
        conv: ConvTranspose1d,
        input: usize,
        leaky: Option<f32>,
    },
    Unary(Unary, usize),
    Binary(Binary, Operand, Operand),
}

#[derive(Debug)]
struct Step {
    name: String,
    op: Op,
    out: usize,
    /// Slots whose last reader this step is.
    frees: Vec<usize>,
}

/// A compiled region.
#[derive(Debug)]
pub struct Region {
    steps: Vec<Step>,
    /// Entry tensors (names), their slots in the same order.
    entries: Vec<(String, usize)>,
    exit: usize,
    slots: usize,
    /// One per thread.
    works: Vec<Work>,
    /// Input steps of context a piece needs on each side (the receptive field's radius).
    margin: usize,
    /// Segments run piece by piece.
    segments: Vec<Segment>,
    /// Values per piece of a segment's input ([`TILE_VALUES`]; 0: segments run whole).
    tile: usize,
}

/// What the steps work with: the kernels' engine and buffers.
#[derive(Debug)]
struct Work {
    engine: Engine,
    scratch: Scratch,
    pool: Vec<Vec<f32>>,
}

fn ints(n: &Node, name: &str) -> Option<Vec<i64>> {
    match n.attrs.get(name) {
        Some(Attr::Ints(v)) => Some(v.clone()),
        _ => None,
    }
}

/// A `LeakyRelu`'s slope (ONNX's default 0.01).
fn alpha(n: &Node) -> f32 {
    match n.attrs.get("alpha") {
        Some(Attr::Float(a)) => *a,
        _ => 0.01,
    }
}

/// The step of a `Conv` or `ConvTranspose` node, adding slot `res` if given (a `Conv`'s only).
fn conv_op(
    n: &Node,
    res: Vec<usize>,
    graph: &Graph,
    folded: &HashMap<&str, (&str, f32)>,
    slot_of: &HashMap<String, usize>,
) -> Result<Op, String> {
    let (data, leaky) = match n.inputs.first().map(|d| (d, folded.get(d.as_str()))) {
        Some((_, Some(&(src, a)))) => (src, Some(a)),
        Some((d, None)) => (d.as_str(), None),
        None => return Err("no input".into()),
    };
    let input = *slot_of
        .get(data)
        .ok_or_else(|| format!("tensor {data:?} is read before it is written"))?;
    let init = |name: &str| graph.initializers.get(name);
    let w = n
        .inputs
        .get(1)
        .and_then(|w| init(w))
        .ok_or("weight is not a constant")?;
    let wv = w.f32s().ok_or("weight is not float32")?;
    let dims: Vec<usize> = w
        .dims
        .iter()
        .map(|&d| usize_of(d, "dimension"))
        .collect::<Result<_, _>>()?;
    let &[d0, d1, d2] = dims.as_slice() else {
        return Err(format!("weight of dimensions {dims:?}"));
    };
    let bias = match n.inputs.get(2).filter(|b| !b.is_empty()) {
        Some(b) => Some(
            init(b)
                .and_then(|t| t.f32s())
                .ok_or("bias is not a float32 constant")?,
        ),
        None => None,
    };
    let one = |name: &str, default: i64| -> Result<usize, String> {
        match ints(n, name).as_deref() {
            None => usize_of(default, name),
            Some([v]) => usize_of(*v, name),
            Some(v) => Err(format!("{name} {v:?}")),
        }
    };
    match n.attrs.get("group") {
        None | Some(Attr::Int(1)) => {}
        Some(a) => return Err(format!("group {a:?}")),
    }
    let pads = match ints(n, "pads").as_deref() {
        None => (0, 0),
        Some([a, b]) => (usize_of(*a, "pad")?, usize_of(*b, "pad")?),
        Some(v) => return Err(format!("pads {v:?}")),
    };
    if matches!(n.attrs.get("auto_pad"), Some(Attr::Str(s)) if s != b"NOTSET") {
        return Err("auto_pad".into());
    }
    if n.op == "Conv" {
        if one("strides", 1)? != 1 {
            return Err("stride other than 1".into());
        }
        let dil = one("dilations", 1)?;
        let conv = Conv1d::new(wv, [d0, d1, d2], bias, dil, pads)?;
        Ok(Op::Conv {
            conv,
            input,
            leaky,
            res,
        })
    } else {
        if !res.is_empty() {
            return Err("a residual on a transposed convolution".into());
        }
        if one("dilations", 1)? != 1 {
            return Err("dilation other than 1".into());
        }
        if n.attrs.contains_key("output_shape") {
            return Err("output_shape".into());
        }
        let stride = one("strides", 1)?;
        let extra = one("output_padding", 0)?;
        let conv = ConvTranspose1d::new(wv, [d0, d1, d2], bias, stride, pads, extra)?;
        Ok(Op::ConvT { conv, input, leaky })
    }
}

/// The `Add` nodes (not in `skip`) of which one input is `foldable`, read only there and not
/// `exit`, and the other not a scalar: add output → (that input, the other); and those inputs.
fn fold_adds<'a>(
    nodes: &[&'a Node],
    readers: &HashMap<&str, Vec<&Node>>,
    exit: &str,
    skip: &HashMap<&str, (&str, &str)>,
    is_scalar: impl Fn(&str) -> bool,
    foldable: impl Fn(&str) -> bool,
) -> (HashMap<&'a str, (&'a str, &'a str)>, HashSet<&'a str>) {
    let mut adds = HashMap::new();
    let mut taken = HashSet::new();
    for n in nodes {
        let Some(out) = n.outputs.first() else {
            continue;
        };
        if n.op != "Add" || n.inputs.len() != 2 || skip.contains_key(out.as_str()) {
            continue;
        }
        for (a, b) in [(0, 1), (1, 0)] {
            let (x, other) = (n.inputs[a].as_str(), n.inputs[b].as_str());
            let read_once = readers.get(x).is_some_and(|r| r.len() == 1);
            if foldable(x) && read_once && x != exit && !is_scalar(other) && !taken.contains(x) {
                adds.insert(out.as_str(), (x, other));
                taken.insert(x);
                break;
            }
        }
    }
    (adds, taken)
}

fn usize_of(v: i64, what: &str) -> Result<usize, String> {
    usize::try_from(v).map_err(|_| format!("{what} {v} is negative"))
}

impl Region {
    /// Compile the nodes named `prefix…` of `graph`, whose tensors enter from `entries` and leave
    /// as `exit` (as [`super::onnx_2d::split`] found them).
    pub fn new(
        graph: &Graph,
        prefix: &str,
        entries: &[String],
        exit: &str,
        engine: Engine,
        threads: usize,
    ) -> Result<Self, String> {
        let nodes: Vec<&Node> = graph
            .nodes
            .iter()
            .filter(|n| n.name.starts_with(prefix))
            .collect();
        let mut readers: HashMap<&str, Vec<&Node>> = HashMap::new();
        let mut producer: HashMap<&str, &Node> = HashMap::new();
        for n in &nodes {
            let out = n
                .outputs
                .first()
                .ok_or_else(|| format!("{} ({}): no output", n.name, n.op))?;
            producer.insert(out.as_str(), n);
            for x in &n.inputs {
                readers.entry(x.as_str()).or_default().push(n);
            }
        }
        let mut slot_of: HashMap<String, usize> = HashMap::new();
        let mut slots = 0;
        let mut new_slot = |name: &str, slot_of: &mut HashMap<String, usize>| {
            let s = slots;
            slots += 1;
            slot_of.insert(name.to_owned(), s);
            s
        };
        let entry_slots: Vec<(String, usize)> = entries
            .iter()
            .map(|e| (e.clone(), new_slot(e, &mut slot_of)))
            .collect();
        let scalar = |name: &str| -> Option<f32> {
            let t = graph.initializers.get(name)?;
            match t.f32s() {
                Some([v]) if t.dims.iter().all(|&d| d == 1) => Some(*v),
                _ => None,
            }
        };
        let slot = |name: &str, slot_of: &HashMap<String, usize>| {
            slot_of
                .get(name)
                .copied()
                .ok_or_else(|| format!("tensor {name:?} is read before it is written"))
        };
        // Leaky ReLUs folded into the convolutions that read them: output → (input, slope).
        let mut folded: HashMap<&str, (&str, f32)> = HashMap::new();
        for n in &nodes {
            let (Some(out), Some(input)) = (n.outputs.first(), n.inputs.first()) else {
                continue;
            };
            if n.op == "LeakyRelu" {
                let only_convs = readers.get(out.as_str()).is_some_and(|rs| {
                    rs.iter().all(|r| {
                        (r.op == "Conv" || r.op == "ConvTranspose") && r.inputs.first() == Some(out)
                    })
                });
                if only_convs && out != exit {
                    folded.insert(out.as_str(), (input.as_str(), alpha(n)));
                }
            }
        }
        // Adds that take a convolution's output as a residual: add output → (conv output, other).
        let is_scalar = |x: &str| scalar(x).is_some();
        let (fused, fused_convs) =
            fold_adds(&nodes, &readers, exit, &HashMap::new(), is_scalar, |x| {
                producer.get(x).is_some_and(|m| m.op == "Conv")
            });
        // Adds of such a sum and another tensor: the convolution adds that too (HiFi-GAN sums
        // its resblocks' outputs). Add output → (fused Add output, other).
        let (fused2, fused_sums) = fold_adds(&nodes, &readers, exit, &fused, is_scalar, |x| {
            fused.contains_key(x)
        });
        let mut steps = Vec::new();
        for n in &nodes {
            let what = |e: String| format!("{} ({}): {e}", n.name, n.op);
            let out_name = n.outputs.first().ok_or_else(|| what("no output".into()))?;
            let out = out_name.as_str();
            if folded.contains_key(out) || fused_convs.contains(out) || fused_sums.contains(out) {
                continue;
            }
            let op = match n.op.as_str() {
                "Conv" | "ConvTranspose" => {
                    conv_op(n, Vec::new(), graph, &folded, &slot_of).map_err(what)?
                }
                "Add" if fused.contains_key(out) || fused2.contains_key(out) => {
                    // The convolution writes this sum: it runs here, under the Add's output.
                    let (sum, second) = match fused2.get(out) {
                        Some(&(sum, other)) => (sum, Some(other)),
                        None => (out, None),
                    };
                    let (conv_out, first) = *fused
                        .get(sum)
                        .ok_or_else(|| what("fused sum vanished".into()))?;
                    let conv = producer
                        .get(conv_out)
                        .ok_or_else(|| what("fused convolution vanished".into()))?;
                    let res = std::iter::once(first)
                        .chain(second)
                        .map(|r| slot(r, &slot_of))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(what)?;
                    conv_op(conv, res, graph, &folded, &slot_of)
                        .map_err(|e| format!("{} ({}): {e}", conv.name, conv.op))?
                }
                "LeakyRelu" | "Relu" | "Tanh" | "Sigmoid" => {
                    let u = match n.op.as_str() {
                        "LeakyRelu" => Unary::Leaky(alpha(n)),
                        "Relu" => Unary::Relu,
                        "Tanh" => Unary::Tanh,
                        _ => Unary::Sigmoid,
                    };
                    let x = n.inputs.first().ok_or_else(|| what("no input".into()))?;
                    Op::Unary(u, slot(x, &slot_of).map_err(what)?)
                }
                "Add" | "Sub" | "Mul" | "Div" => {
                    if n.inputs.len() != 2 {
                        return Err(what(format!("{} inputs", n.inputs.len())));
                    }
                    let kind = match n.op.as_str() {
                        "Add" => Binary::Add,
                        "Sub" => Binary::Sub,
                        "Mul" => Binary::Mul,
                        _ => Binary::Div,
                    };
                    let operand = |x: &str| -> Result<Operand, String> {
                        match scalar(x) {
                            Some(v) => Ok(Operand::Const(v)),
                            None => slot(x, &slot_of).map(Operand::Slot),
                        }
                    };
                    Op::Binary(
                        kind,
                        operand(&n.inputs[0]).map_err(what)?,
                        operand(&n.inputs[1]).map_err(what)?,
                    )
                }
                other => return Err(what(format!("operator {other} is not supported here"))),
            };
            let out = new_slot(out_name, &mut slot_of);
            steps.push(Step {
                name: n.name.clone(),
                op,
                out,
                frees: Vec::new(),
            });
        }
        let exit = slot(exit, &slot_of).map_err(|e| format!("the region's exit: {e}"))?;
        let margin = receptive_radius(&steps, &entry_slots, exit, slots)?;
        // Free each slot after its last reader (the exit never).
        let mut last: HashMap<usize, usize> = HashMap::new();
        for (i, s) in steps.iter().enumerate() {
            for r in reads(&s.op) {
                last.insert(r, i);
            }
        }
        for (slot, i) in last {
            if slot != exit {
                steps[i].frees.push(slot);
            }
        }
        let segments = segments(&steps, exit);
        Ok(Self {
            steps,
            entries: entry_slots,
            exit,
            slots,
            works: (0..threads.max(1))
                .map(|_| Work {
                    engine,
                    scratch: Scratch::default(),
                    pool: Vec::new(),
                })
                .collect(),
            margin,
            segments,
            tile: TILE_VALUES,
        })
    }

    /// The engine that runs the kernels.
    pub fn engine(&self) -> Engine {
        self.works.first().map_or(Engine::Portable, |w| w.engine)
    }

    /// How many steps (nodes after folding) the region runs.
    pub fn steps(&self) -> usize {
        self.steps.len()
    }

    /// Run on the entry tensors (`[1, C, T]` each, in the order given at [`Region::new`]): the
    /// exit tensor's values. With more than one thread, a long input is cut along time into one
    /// piece per thread, each with [`Region::margin`] steps of context on both sides; the
    /// pieces' outputs without their margins are the whole input's output, sample for sample.
    pub fn run(&mut self, inputs: &[(&[i64], &[f32])]) -> Result<Vec<f32>, String> {
        if inputs.len() != self.entries.len() {
            return Err(format!(
                "{} inputs, the region takes {}",
                inputs.len(),
                self.entries.len()
            ));
        }
        let mut shaped = Vec::with_capacity(inputs.len());
        for ((name, _), (dims, data)) in self.entries.iter().zip(inputs) {
            let &[1, c, t] = *dims else {
                return Err(format!(
                    "input {name} of dimensions {dims:?}, expected [1, C, T]"
                ));
            };
            let (c, t) = (usize_of(c, "channels")?, usize_of(t, "steps")?);
            if data.len() != c * t || t == 0 {
                return Err(format!("input {name}: {} values for {dims:?}", data.len()));
            }
            shaped.push((c, t, *data));
        }
        let frames = shaped.iter().map(|s| s.1).max().unwrap_or(0);
        let pieces = self.works.len().min(frames / MIN_PIECE).max(1);
        let splittable = shaped.iter().all(|&(_, t, _)| t == frames || t == 1);
        let Self {
            steps,
            entries,
            exit,
            slots,
            works,
            margin,
            segments,
            tile,
        } = self;
        let plan = Plan {
            steps,
            segments,
            tile: *tile,
            entries,
            exit: *exit,
            slots: *slots,
        };
        if pieces == 1 || !splittable {
            let first = works.first_mut().ok_or("no worker")?;
            return plan.run(first, &shaped, 0, frames).map(|t| t.data);
        }
        let bounds: Vec<(usize, usize)> = (0..pieces)
            .map(|k| (frames * k / pieces, frames * (k + 1) / pieces))
            .collect();
        let margin = *margin;
        let plan = &plan;
        let shaped = &shaped;
        let outs: Vec<Result<(Tensor, usize, usize), String>> = std::thread::scope(|s| {
            let mut handles = Vec::new();
            let (first, rest) = works.split_at_mut(1);
            for (w, &(a, b)) in rest.iter_mut().zip(&bounds[1..]) {
                handles.push(s.spawn(move || plan.piece(w, shaped, a, b, frames, margin)));
            }
            let mut outs = vec![plan.piece(
                &mut first[0],
                shaped,
                bounds[0].0,
                bounds[0].1,
                frames,
                margin,
            )];
            for h in handles {
                outs.push(
                    h.join()
                        .unwrap_or_else(|_| Err("a decoder thread panicked".into())),
                );
            }
            outs
        });
        let mut pieces_out = Vec::with_capacity(outs.len());
        for o in outs {
            pieces_out.push(o?);
        }
        let c = pieces_out.first().map_or(0, |p| p.0.c);
        let total: usize = pieces_out.iter().map(|p| p.2 - p.1).sum();
        let mut data = Vec::with_capacity(c * total);
        for ch in 0..c {
            for (t, from, to) in &pieces_out {
                data.extend_from_slice(&t.data[ch * t.t + from..ch * t.t + to]);
            }
        }
        for ((t, _, _), w) in pieces_out.into_iter().zip(works.iter_mut()) {
            w.pool.push(t.data);
        }
        Ok(data)
    }

    /// How many segments run piece by piece along time.
    pub fn segments(&self) -> usize {
        self.segments.len()
    }

    /// Set the values per piece of a segment's input (0: segments run whole), to compare.
    pub fn set_tile(&mut self, values: usize) {
        self.tile = values;
    }

    /// Steps of context each piece of a split input gets on both sides.
    pub fn margin(&self) -> usize {
        self.margin
    }

    /// Give the buffers kept between runs back.
    pub fn idle(&mut self) {
        for w in &mut self.works {
            w.pool = Vec::new();
            w.scratch.clear();
        }
    }
}

/// Run one step: its output into its slot, the slots it read last freed.
fn run_step(step: &Step, work: &mut Work, slots: &mut [Option<Tensor>]) -> Result<(), String> {
    let out = work
        .step(step, slots)
        .map_err(|e| format!("{}: {e}", step.name))?;
    slots[step.out] = Some(out);
    for &f in &step.frees {
        if let Some(t) = slots[f].take() {
            work.pool.push(t.data);
        }
    }
    Ok(())
}

/// Steps `start..end` that keep the time axis (no transposed convolution), read one tensor from
/// before them and leave one for after them: they can run piece by piece along time.
#[derive(Debug, Clone)]
struct Segment {
    start: usize,
    end: usize,
    input: usize,
    output: usize,
    /// Steps of context an output needs on each side.
    radius: usize,
    /// Whether the input's last reader is in the segment.
    frees_input: bool,
    /// The transposed convolution before the segment, when only the segment reads its output
    /// (the input): each piece computes its own part of it, so that the whole never exists.
    up: Option<Up>,
}

/// A segment's transposed convolution: its step, input, and whether it is its input's last
/// reader.
#[derive(Debug, Clone, Copy)]
struct Up {
    step: usize,
    input: usize,
    frees: bool,
}

/// Values (channels × steps) of a segment's input piece: about 256 KB, so that the few tensors
/// alive in a piece stay in the second-level cache.
const TILE_VALUES: usize = 1 << 16;
/// Wider inputs are not cut (their margins would cost more than their cache misses).
const MAX_TILED_CHANNELS: usize = 64;

/// The segments of `steps` (between transposed convolutions) that can run piece by piece.
fn segments(steps: &[Step], exit: usize) -> Vec<Segment> {
    let mut found = Vec::new();
    let mut start = 0;
    while start < steps.len() {
        let end = (start..steps.len())
            .find(|&i| matches!(steps[i].op, Op::ConvT { .. }))
            .unwrap_or(steps.len());
        if end > start {
            if let Some(seg) = segment(steps, start, end, exit) {
                found.push(seg);
            }
        }
        start = end + 1;
    }
    found
}

fn segment(steps: &[Step], start: usize, end: usize, exit: usize) -> Option<Segment> {
    let inside = &steps[start..end];
    let produced: HashSet<usize> = inside.iter().map(|s| s.out).collect();
    let mut outside: HashSet<usize> = HashSet::new();
    for s in inside {
        outside.extend(reads(&s.op).into_iter().filter(|r| !produced.contains(r)));
    }
    let mut read_after: HashSet<usize> = steps[end..]
        .iter()
        .flat_map(|s| reads(&s.op))
        .filter(|r| produced.contains(r))
        .collect();
    if produced.contains(&exit) {
        read_after.insert(exit);
    }
    let (&input, &output) = match (outside.len(), read_after.len()) {
        (1, 1) => (outside.iter().next()?, read_after.iter().next()?),
        _ => return None,
    };
    let mut radius: HashMap<usize, usize> = HashMap::from([(input, 0)]);
    for s in inside {
        let r = match &s.op {
            Op::Conv {
                conv, input, res, ..
            } => {
                let mut r = radius.get(input)? + conv.reach();
                for x in res {
                    r = r.max(*radius.get(x)?);
                }
                r
            }
            Op::Unary(_, x) => *radius.get(x)?,
            Op::Binary(_, a, b) => {
                let mut r = 0;
                for o in [a, b] {
                    if let Operand::Slot(x) = o {
                        r = r.max(*radius.get(x)?);
                    }
                }
                r
            }
            Op::ConvT { .. } => return None,
        };
        radius.insert(s.out, r);
    }
    let up = start
        .checked_sub(1)
        .and_then(|i| match &steps[i].op {
            Op::ConvT { input: x, .. } if steps[i].out == input => Some(Up {
                step: i,
                input: *x,
                frees: steps[i].frees.contains(x),
            }),
            _ => None,
        })
        .filter(|_| input != exit && !steps[end..].iter().any(|s| reads(&s.op).contains(&input)));
    Some(Segment {
        start,
        end,
        input,
        output,
        radius: *radius.get(&output)?,
        frees_input: inside.iter().any(|s| s.frees.contains(&input)),
        up,
    })
}

/// The shortest piece of input (in steps) worth a thread of its own.
const MIN_PIECE: usize = 48;

/// What a run reads of the region.
struct Plan<'a> {
    steps: &'a [Step],
    segments: &'a [Segment],
    tile: usize,
    entries: &'a [(String, usize)],
    exit: usize,
    slots: usize,
}

impl Plan<'_> {
    /// Inputs `[lo, hi)` of `shaped` (inputs of one step are taken whole): the exit tensor.
    fn run(
        &self,
        work: &mut Work,
        shaped: &[(usize, usize, &[f32])],
        lo: usize,
        hi: usize,
    ) -> Result<Tensor, String> {
        let mut slots: Vec<Option<Tensor>> = (0..self.slots).map(|_| None).collect();
        for ((_, slot), &(c, t, data)) in self.entries.iter().zip(shaped) {
            let (from, len) = if t == 1 { (0, 1) } else { (lo, hi - lo) };
            let mut buf = work.take(c * len);
            copy_columns(data, t, (from, from + len), &mut buf);
            slots[*slot] = Some(Tensor {
                c,
                t: len,
                data: buf,
            });
        }
        let mut i = 0;
        while i < self.steps.len() {
            let at = |s: &&Segment| s.start == i || s.up.is_some_and(|u| u.step == i);
            if let Some(seg) = self.segments.iter().find(at) {
                if self.run_segment(seg, seg.start != i, work, &mut slots)? {
                    i = seg.end;
                    continue;
                }
            }
            run_step(&self.steps[i], work, &mut slots)?;
            i += 1;
        }
        let out = slots[self.exit]
            .take()
            .ok_or("the region wrote no output")?;
        for t in slots.into_iter().flatten() {
            work.pool.push(t.data);
        }
        Ok(out)
    }

    /// Run a segment in pieces of [`Plan::tile`] steps of its input, each with the segment's
    /// radius of context on both sides, so that its tensors stay in cache; the output is the
    /// pieces' outputs without their context, the same samples as one run. With `up`, the
    /// segment's transposed convolution runs too, each piece computing the part of its output
    /// it needs from the inputs that part reads ([`ConvTranspose1d::inputs_for`]: the same
    /// values). `false`: the input is too short (or too wide) to be worth it; nothing was run.
    fn run_segment(
        &self,
        seg: &Segment,
        up: bool,
        work: &mut Work,
        slots: &mut [Option<Tensor>],
    ) -> Result<bool, String> {
        let up = match seg.up.filter(|_| up) {
            Some(u) => match &self.steps[u.step].op {
                Op::ConvT { conv, leaky, .. } => Some((u, conv, *leaky)),
                _ => return Err("a segment's transposed convolution is missing".into()),
            },
            None => None,
        };
        // The segment's input: channels and steps, and the transposed convolution's input.
        let (c, t, from) = match up {
            Some((u, conv, _)) => {
                let x = slots[u.input]
                    .as_ref()
                    .ok_or("a segment's input is missing")?;
                channels(x, conv.ins())?;
                let t = conv.out_len(x.t).ok_or("input too short")?;
                (conv.outs(), t, u.input)
            }
            None => {
                let x = slots[seg.input]
                    .as_ref()
                    .ok_or("a segment's input is missing")?;
                (x.c, x.t, seg.input)
            }
        };
        let tile = self.tile / c.max(1);
        if c > MAX_TILED_CHANNELS || tile == 0 || t <= tile + 2 * seg.radius {
            return Ok(false);
        }
        let mut local: Vec<Option<Tensor>> = (0..slots.len()).map(|_| None).collect();
        let mut full: Option<Tensor> = None;
        let mut a = 0;
        while a < t {
            let b = (a + tile).min(t);
            let (lo, hi) = (a.saturating_sub(seg.radius), (b + seg.radius).min(t));
            let len = hi - lo;
            let x = slots[from].as_ref().ok_or("a segment's input is missing")?;
            let piece = match up {
                Some((_, conv, leaky)) => {
                    let (i_lo, i_hi, at) = conv
                        .inputs_for(lo, hi, x.t)
                        .ok_or("outputs past the transposed convolution's")?;
                    let n = i_hi - i_lo;
                    let mut xs = work.take(x.c * n);
                    copy_columns(&x.data, x.t, (i_lo, i_hi), &mut xs);
                    let mut ys = work.take(0);
                    let input = Input {
                        data: &xs,
                        steps: n,
                        leaky,
                    };
                    let m = conv.run(work.engine, input, &mut ys, &mut work.scratch)?;
                    let mut buf = work.take(c * len);
                    copy_columns(&ys, m, (at, at + len), &mut buf);
                    work.pool.push(xs);
                    work.pool.push(ys);
                    buf
                }
                None => {
                    let mut buf = work.take(c * len);
                    copy_columns(&x.data, x.t, (lo, hi), &mut buf);
                    buf
                }
            };
            local[seg.input] = Some(Tensor {
                c,
                t: len,
                data: piece,
            });
            for step in &self.steps[seg.start..seg.end] {
                run_step(step, work, &mut local)?;
            }
            let out = local[seg.output]
                .take()
                .ok_or("a segment wrote no output")?;
            for left in local.iter_mut().filter_map(Option::take) {
                work.pool.push(left.data);
            }
            if out.t != len {
                return Err(format!("a segment made {} steps of {len}", out.t));
            }
            let f = match &mut full {
                Some(f) => f,
                None => full.insert(Tensor {
                    c: out.c,
                    t,
                    data: work.take(out.c * t),
                }),
            };
            for ch in 0..out.c {
                f.data[ch * t + a..ch * t + b]
                    .copy_from_slice(&out.data[ch * len + a - lo..ch * len + b - lo]);
            }
            work.pool.push(out.data);
            a = b;
        }
        slots[seg.output] = full;
        let freed = match up {
            Some((u, _, _)) => u.frees.then_some(u.input),
            None => seg.frees_input.then_some(seg.input),
        };
        if let Some(x) = freed.and_then(|f| slots[f].take()) {
            work.pool.push(x.data);
        }
        Ok(true)
    }

    /// The output of input steps `[a, b)` of `frames`: run on `[a − margin, b + margin)`
    /// (within the input) and return the output with the range of `[a, b)` in it.
    fn piece(
        &self,
        work: &mut Work,
        shaped: &[(usize, usize, &[f32])],
        a: usize,
        b: usize,
        frames: usize,
        margin: usize,
    ) -> Result<(Tensor, usize, usize), String> {
        let (lo, hi) = (a.saturating_sub(margin), (b + margin).min(frames));
        let out = self.run(work, shaped, lo, hi)?;
        let hop = out.t / (hi - lo);
        if hop == 0 || out.t != hop * (hi - lo) {
            return Err(format!(
                "{} output steps for {} input steps: the region does not upsample by a whole factor",
                out.t,
                hi - lo
            ));
        }
        Ok((out, (a - lo) * hop, (b - lo) * hop))
    }
}

impl Work {
    /// A buffer of `n` values (contents unspecified) from the pool.
    fn take(&mut self, n: usize) -> Vec<f32> {
        let best = self
            .pool
            .iter()
            .enumerate()
            .filter(|(_, b)| b.capacity() >= n)
            .min_by_key(|(_, b)| b.capacity())
            .map(|(i, _)| i);
        let mut b = match best {
            Some(i) => self.pool.swap_remove(i),
            None => self
                .pool
                .iter()
                .enumerate()
                .max_by_key(|(_, b)| b.capacity())
                .map(|(i, _)| i)
                .map(|i| self.pool.swap_remove(i))
                .unwrap_or_default(),
        };
        b.resize(n, 0.0);
        b
    }

    fn step(&mut self, step: &Step, slots: &[Option<Tensor>]) -> Result<Tensor, String> {
        let get = |s: usize| {
            slots[s]
                .as_ref()
                .ok_or_else(|| "an input was freed too early".to_owned())
        };
        let engine = self.engine;
        match &step.op {
            Op::Conv {
                conv,
                input,
                leaky,
                res,
            } => {
                let x = get(*input)?;
                channels(x, conv.ins())?;
                let n = conv.out_len(x.t).ok_or("input shorter than the kernel")?;
                let r = res.iter().map(|&r| get(r)).collect::<Result<Vec<_>, _>>()?;
                // The kernel adds the leading residuals of the output's shape; the others
                // (broadcast ones) are added after it, in order.
                let same = r
                    .iter()
                    .take_while(|r| r.c == conv.outs() && r.t == n)
                    .count();
                let fused: Vec<&[f32]> = r[..same].iter().map(|r| r.data.as_slice()).collect();
                let mut out = self.take(conv.outs() * n);
                conv.run(
                    engine,
                    Input {
                        data: &x.data,
                        steps: x.t,
                        leaky: *leaky,
                    },
                    &fused,
                    &mut out,
                    &mut self.scratch,
                )?;
                let mut y = Tensor {
                    c: conv.outs(),
                    t: n,
                    data: out,
                };
                for r in &r[same..] {
                    binary_in_place(Binary::Add, &mut y, r, true)?;
                }
                Ok(y)
            }
            Op::ConvT { conv, input, leaky } => {
                let x = get(*input)?;
                channels(x, conv.ins())?;
                let n = conv.out_len(x.t).ok_or("input too short")?;
                let mut out = self.take(conv.outs() * n);
                let input = Input {
                    data: &x.data,
                    steps: x.t,
                    leaky: *leaky,
                };
                conv.run(engine, input, &mut out, &mut self.scratch)?;
                Ok(Tensor {
                    c: conv.outs(),
                    t: n,
                    data: out,
                })
            }
            Op::Unary(u, input) => {
                let x = get(*input)?;
                let mut out = self.take(x.data.len());
                for (y, &v) in out.iter_mut().zip(&x.data) {
                    *y = match *u {
                        Unary::Leaky(a) => {
                            if v < 0.0 {
                                v * a
                            } else {
                                v
                            }
                        }
                        Unary::Relu => v.max(0.0),
                        Unary::Tanh => v.tanh(),
                        Unary::Sigmoid => 1.0 / (1.0 + (-v).exp()),
                    };
                }
                Ok(Tensor {
                    c: x.c,
                    t: x.t,
                    data: out,
                })
            }
            Op::Binary(kind, a, b) => match (a, b) {
                (Operand::Slot(a), Operand::Slot(b)) => {
                    let (a, b) = (get(*a)?, get(*b)?);
                    // The larger operand's shape; the other broadcasts over time.
                    let (big, small, flipped) = if b.t > a.t {
                        (b, a, true)
                    } else {
                        (a, b, false)
                    };
                    let mut out = self.take(big.data.len());
                    out.copy_from_slice(&big.data);
                    let mut y = Tensor {
                        c: big.c,
                        t: big.t,
                        data: out,
                    };
                    binary_in_place(*kind, &mut y, small, !flipped)?;
                    Ok(y)
                }
                (Operand::Slot(a), Operand::Const(c)) | (Operand::Const(c), Operand::Slot(a)) => {
                    let x = get(*a)?;
                    let const_first = matches!(b, Operand::Slot(_));
                    let mut out = self.take(x.data.len());
                    for (y, &v) in out.iter_mut().zip(&x.data) {
                        let (l, r) = if const_first { (*c, v) } else { (v, *c) };
                        *y = apply(*kind, l, r);
                    }
                    Ok(Tensor {
                        c: x.c,
                        t: x.t,
                        data: out,
                    })
                }
                (Operand::Const(_), Operand::Const(_)) => Err("two constants".into()),
            },
        }
    }
}

/// Columns `[a, b)` of every row of `x` (rows of `t`) into `out` (rows of `b − a`).
fn copy_columns(x: &[f32], t: usize, (a, b): (usize, usize), out: &mut [f32]) {
    for (row, to) in x.chunks(t.max(1)).zip(out.chunks_mut((b - a).max(1))) {
        to.copy_from_slice(&row[a..b]);
    }
}

/// Whether `x` has the `ins` channels a convolution's weight takes.
fn channels(x: &Tensor, ins: usize) -> Result<(), String> {
    if x.c == ins {
        Ok(())
    } else {
        Err(format!("{} input channels, the weight takes {ins}", x.c))
    }
}

fn apply(kind: Binary, l: f32, r: f32) -> f32 {
    match kind {
        Binary::Add => l + r,
        Binary::Sub => l - r,
        Binary::Mul => l * r,
        Binary::Div => l / r,
    }
}

/// `y = y ∘ x` (or `x ∘ y` when `!y_first`), `x` of `y`'s shape or `[C, 1]`.
fn binary_in_place(kind: Binary, y: &mut Tensor, x: &Tensor, y_first: bool) -> Result<(), String> {
    let f = |a: f32, b: f32| {
        if y_first {
            apply(kind, a, b)
        } else {
            apply(kind, b, a)
        }
    };
    if x.c == y.c && x.t == y.t {
        for (a, &b) in y.data.iter_mut().zip(&x.data) {
            *a = f(*a, b);
        }
    } else if x.c == y.c && x.t == 1 {
        for (row, &b) in y.data.chunks_mut(y.t.max(1)).zip(&x.data) {
            for a in row {
                *a = f(*a, b);
            }
        }
    } else {
        return Err(format!(
            "operands of shapes [{}, {}] and [{}, {}] do not broadcast",
            y.c, y.t, x.c, x.t
        ));
    }
    Ok(())
}

/// How many input steps on each side can change one output of the exit (rounded up, plus
/// one): rates and radii are followed from the entries (1 sample per step, radius 0).
fn receptive_radius(
    steps: &[Step],
    entries: &[(String, usize)],
    exit: usize,
    slots: usize,
) -> Result<usize, String> {
    // Per slot: samples per input step, radius in input steps.
    let mut field: Vec<Option<(f64, f64)>> = vec![None; slots];
    for (_, s) in entries {
        field[*s] = Some((1.0, 0.0));
    }
    for step in steps {
        let of =
            |s: usize| field[s].ok_or_else(|| format!("{}: an input without a field", step.name));
        let out = match &step.op {
            Op::Conv {
                conv, input, res, ..
            } => {
                let (rate, r) = of(*input)?;
                let mut r = r + conv.reach() as f64 / rate;
                for x in res {
                    r = r.max(of(*x)?.1);
                }
                (rate, r)
            }
            Op::ConvT { conv, input, .. } => {
                let (rate, r) = of(*input)?;
                (
                    rate * conv.stride() as f64,
                    r + conv.reach_in() as f64 / rate,
                )
            }
            Op::Unary(_, x) => of(*x)?,
            Op::Binary(_, a, b) => {
                let mut best: Option<(f64, f64)> = None;
                for o in [a, b] {
                    if let Operand::Slot(s) = o {
                        let (rate, r) = of(*s)?;
                        best = Some(
                            best.map_or((rate, r), |(br, bradius)| (br.max(rate), bradius.max(r))),
                        );
                    }
                }
                best.ok_or_else(|| format!("{}: no tensor operand", step.name))?
            }
        };
        field[step.out] = Some(out);
    }
    let (_, r) = field[exit].ok_or("the exit has no field")?;
    Ok(r.ceil() as usize + 1)
}

fn reads(op: &Op) -> Vec<usize> {
    match op {
        Op::Conv { input, res, .. } => std::iter::once(*input).chain(res.iter().copied()).collect(),
        Op::ConvT { input, .. } => vec![*input],
        Op::Unary(_, x) => vec![*x],
        Op::Binary(_, a, b) => [a, b]
            .into_iter()
            .filter_map(|o| match o {
                Operand::Slot(s) => Some(*s),
                Operand::Const(_) => None,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::speech::onnx_graph::{Data, Initializer};

    fn node(op: &str, name: &str, inputs: &[&str], output: &str, attrs: &[(&str, Attr)]) -> Node {
        Node {
            op: op.into(),
            name: name.into(),
            inputs: inputs.iter().map(|s| (*s).to_owned()).collect(),
            outputs: vec![output.to_owned()],
            attrs: attrs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
            ..Node::default()
        }
    }

    fn constant(dims: &[i64], data: Vec<f32>) -> Initializer {
        Initializer {
            dims: dims.to_vec(),
            data: Data::F32(data),
        }
    }

    fn ramp(n: usize, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 7 % 11) as f32 - 5.0) * scale)
            .collect()
    }

    /// HiFi-GAN's pattern: two resblocks on the same input, each `conv(leaky(x)) + x`, their
    /// outputs summed and divided. Both residual Adds fold into the convolutions' stores, and so
    /// does the sum (the second convolution adds the first resblock's output too): three steps
    /// instead of seven, with the unfused arithmetic's exact values.
    #[test]
    fn a_sum_of_resblocks_folds_into_the_convolutions() {
        let (c, t) = (3usize, 70usize);
        let leaky = [("alpha", Attr::Float(0.1))];
        let conv = |d: i64| {
            vec![
                ("dilations", Attr::Ints(vec![d])),
                ("pads", Attr::Ints(vec![d, d])),
            ]
        };
        let graph = Graph {
            nodes: vec![
                node("LeakyRelu", "/dec/a0", &["x"], "a0", &leaky),
                node("Conv", "/dec/c0", &["a0", "w0", "b0"], "h0", &conv(1)),
                node("Add", "/dec/r0", &["h0", "x"], "rb0", &[]),
                node("LeakyRelu", "/dec/a1", &["x"], "a1", &leaky),
                node("Conv", "/dec/c1", &["a1", "w1", "b1"], "h1", &conv(2)),
                node("Add", "/dec/r1", &["x", "h1"], "rb1", &[]),
                node("Add", "/dec/sum", &["rb0", "rb1"], "s", &[]),
                node("Div", "/dec/div", &["s", "two"], "y", &[]),
            ],
            initializers: HashMap::from([
                ("w0".to_owned(), constant(&[3, 3, 3], ramp(27, 0.1))),
                ("b0".to_owned(), constant(&[3], vec![0.1, -0.2, 0.3])),
                ("w1".to_owned(), constant(&[3, 3, 3], ramp(27, -0.05))),
                ("b1".to_owned(), constant(&[3], vec![0.0, 0.5, -0.5])),
                ("two".to_owned(), constant(&[], vec![2.0])),
            ]),
            ..Graph::default()
        };
        let mut region =
            Region::new(&graph, "/dec/", &["x".to_owned()], "y", Engine::Portable, 1).unwrap();
        assert_eq!(region.steps(), 3);
        let x = ramp(c * t, 0.3);
        let y = region.run(&[(&[1, c as i64, t as i64], &x)]).unwrap();
        // The same nodes one by one.
        let run = |w: &str, b: &str, d: usize| {
            let w = graph.initializers[w].f32s().unwrap();
            let b = graph.initializers[b].f32s().unwrap();
            let conv = Conv1d::new(w, [c, c, 3], Some(b), d, (d, d)).unwrap();
            let mut out = Vec::new();
            let input = Input {
                data: &x,
                steps: t,
                leaky: Some(0.1),
            };
            conv.run(
                Engine::Portable,
                input,
                &[],
                &mut out,
                &mut Scratch::default(),
            )
            .unwrap();
            out.iter().zip(&x).map(|(h, x)| h + x).collect::<Vec<f32>>()
        };
        let (rb0, rb1) = (run("w0", "b0", 1), run("w1", "b1", 2));
        let want: Vec<f32> = rb0.iter().zip(&rb1).map(|(a, b)| (a + b) / 2.0).collect();
        assert_eq!(y, want);
    }
}
