//! 1-D convolutions (and transposed convolutions) with bfloat16 operands and float32 sums, for
//! CPUs with bfloat16 dot products (x86-64 AVX512-BF16: AMD Zen 4 and later, Intel Sapphire
//! Rapids and later). `vdpbf16ps` does 32 multiply-adds per instruction where float32 FMA does
//! 16, so a convolution costs about half of its float32 time. Inputs and weights are rounded to
//! bfloat16 (8 significant bits, round to nearest even); every sum is float32.
//!
//! Layout: a tensor is `[C][T]` float32, row-major. A convolution's input is converted once into
//! *pairs*: row `p` holds, per time step, channels `2p` (low half) and `2p + 1` (high half) as two
//! bfloat16 in one `u32`, with zeros for the padding. Weights are packed at load, per block of
//! [`OB`] output channels, as `[pair][tap][OB]`. The kernel keeps `OB` × [`TB`] vectors of 16
//! float32 sums in registers and adds bias and an optional residual when it stores them.
//!
//! A transposed convolution of stride `s` is `s` ordinary convolutions over its input (one per
//! output phase, each with the taps of that phase), interleaved into the output.
//!
//! [`portable`] is the same arithmetic in plain Rust (the reference of the tests; any CPU).

use std::sync::atomic::{AtomicBool, Ordering};

/// Output channels per block of the kernel.
pub const OB: usize = 8;
/// Vectors of 16 time steps per block of the kernel.
pub const TB: usize = 3;
/// Time steps per block.
const TSPAN: usize = 16 * TB;

/// Whether this CPU has the bfloat16 dot products the fast path needs.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `x` rounded to bfloat16 (to nearest, ties to even), as its 16 bits.
pub fn to_bf16(x: f32) -> u16 {
    let u = x.to_bits();
    if x.is_nan() {
        return ((u >> 16) | 0x40) as u16;
    }
    let rounded = u.wrapping_add(0x7fff + ((u >> 16) & 1));
    (rounded >> 16) as u16
}

/// A bfloat16's value.
pub fn from_bf16(b: u16) -> f32 {
    f32::from_bits(u32::from(b) << 16)
}

/// Two values as one pair (`lo` in the low half).
fn pair(lo: f32, hi: f32) -> u32 {
    u32::from(to_bf16(lo)) | (u32::from(to_bf16(hi)) << 16)
}

/// Which implementation runs the kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// AVX512-BF16 (only where [`available`]).
    Avx512,
    /// Plain Rust, the same rounding (reference and fallback).
    Portable,
}

impl Engine {
    /// The fastest engine this CPU runs.
    pub fn best() -> Self {
        if available() {
            Self::Avx512
        } else {
            Self::Portable
        }
    }
}

/// Reusable buffers of the kernels (kept between runs: fresh pages cost more than the work
/// on them); [`Scratch::clear`] gives them back.
#[derive(Debug, Default)]
pub struct Scratch {
    pairs: Vec<u32>,
    phase: Vec<f32>,
}

impl Scratch {
    /// Give the memory back.
    pub fn clear(&mut self) {
        self.pairs = Vec::new();
        self.phase = Vec::new();
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.pairs.capacity() * 4 + self.phase.capacity() * 4
    }
}

/// A convolution's input: `channels × steps` values, and the slope of a leaky ReLU to apply to
/// them first, if any.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// `[C][T]`, row-major.
    pub data: &'a [f32],
    /// `T`.
    pub steps: usize,
    /// Leaky ReLU slope.
    pub leaky: Option<f32>,
}

impl Input<'_> {
    /// Whether the data holds `channels` rows of `steps`.
    fn check(&self, channels: usize) -> Result<(), String> {
        if self.data.len() == channels * self.steps {
            Ok(())
        } else {
            Err(format!(
                "input of {} values, expected {channels} channels × {}",
                self.data.len(),
                self.steps
            ))
        }
    }
}

/// Input converted to pairs: `rows` rows of `row` u32, the data at columns `left..left + t`.
struct Pairs<'a> {
    data: &'a [u32],
    row: usize,
}

/// Convert `x` (`c` rows of `t`) into pairs with `left` zero columns before the data and rows of
/// `row` columns (zeros after the data), applying a leaky ReLU of slope `leaky` on the way.
fn to_pairs<'a>(
    engine: Engine,
    input: &Input<'_>,
    c: usize,
    (left, row): (usize, usize),
    buf: &'a mut Vec<u32>,
) -> Pairs<'a> {
    let (x, t, leaky) = (input.data, input.steps, input.leaky);
    let rows = c.div_ceil(2);
    // Every column is written below (the padding with zeros), so the old contents may stay.
    buf.resize(rows * row, 0);
    for p in 0..rows {
        buf[p * row..p * row + left].fill(0);
        buf[p * row + left + t..(p + 1) * row].fill(0);
        let lo = &x[2 * p * t..(2 * p + 1) * t];
        let hi = if 2 * p + 1 < c {
            Some(&x[(2 * p + 1) * t..(2 * p + 2) * t])
        } else {
            None
        };
        let dst = &mut buf[p * row + left..p * row + left + t];
        match engine {
            #[cfg(target_arch = "x86_64")]
            Engine::Avx512 => {
                // SAFETY: `Engine::Avx512` is only chosen where `available()`; slices are equal
                // in length.
                unsafe { avx::pack_row(lo, hi, leaky, dst) }
            }
            _ => {
                let f = |v: f32| match leaky {
                    Some(a) if v < 0.0 => v * a,
                    _ => v,
                };
                for (i, d) in dst.iter_mut().enumerate() {
                    *d = pair(f(lo[i]), hi.map_or(0.0, |h| f(h[i])));
                }
            }
        }
    }
    Pairs { data: buf, row }
}

/// Where the kernel writes: `o` rows of `n` outputs, row `r` at `out[r * stride..]`.
struct Dest<'a> {
    out: &'a mut [f32],
    stride: usize,
    n: usize,
}

/// One kernel call: `out[o][t] = Σ_{p,j} x[p][off + t + j·dil] · w[o][p][j] + bias[o] + res₁[o][t]
/// + res₂[o][t]`, added in that order (the residuals that are given).
struct Call<'a> {
    x: &'a Pairs<'a>,
    off: usize,
    w: &'a [u32],
    pairs: usize,
    taps: usize,
    dil: usize,
    outs: usize,
    bias: &'a [f32],
    res: [Option<&'a [f32]>; 2],
}

fn kernel(engine: Engine, call: &Call<'_>, dest: &mut Dest<'_>) {
    match engine {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: only chosen where `available()`; the callers size `x` rows to
        // `off + round_up(n, TSPAN) + (taps - 1) · dil` and `w` to whole blocks.
        Engine::Avx512 => unsafe { avx::kernel(call, dest) },
        _ => portable::kernel(call, dest),
    }
}

/// A convolution's weights, packed.
#[derive(Debug, Clone)]
pub struct Conv1d {
    outs: usize,
    ins: usize,
    taps: usize,
    dil: usize,
    pads: (usize, usize),
    w: Vec<u32>,
    bias: Vec<f32>,
}

/// Packed weights: `[block][pair][tap][OB]`, `weight(o, i, j)` giving the float value.
fn pack(
    outs: usize,
    ins: usize,
    taps: usize,
    weight: impl Fn(usize, usize, usize) -> f32,
) -> Vec<u32> {
    let pairs = ins.div_ceil(2);
    let blocks = outs.div_ceil(OB);
    let mut w = vec![0u32; blocks * pairs * taps * OB];
    for b in 0..blocks {
        for p in 0..pairs {
            for j in 0..taps {
                for oo in 0..OB {
                    let o = b * OB + oo;
                    if o >= outs {
                        continue;
                    }
                    let lo = weight(o, 2 * p, j);
                    let hi = if 2 * p + 1 < ins {
                        weight(o, 2 * p + 1, j)
                    } else {
                        0.0
                    };
                    w[((b * pairs + p) * taps + j) * OB + oo] = pair(lo, hi);
                }
            }
        }
    }
    w
}

impl Conv1d {
    /// From an ONNX `Conv` weight `[outs, ins, taps]` (group 1, stride 1), its bias (or none),
    /// dilation and pads.
    pub fn new(
        weight: &[f32],
        dims: [usize; 3],
        bias: Option<&[f32]>,
        dil: usize,
        pads: (usize, usize),
    ) -> Result<Self, String> {
        let [outs, ins, taps] = dims;
        check_weight(weight, dims, ("convolution", "dilation", dil))?;
        let bias = bias_of(bias, outs)?;
        let w = pack(outs, ins, taps, |o, i, j| weight[(o * ins + i) * taps + j]);
        Ok(Self {
            outs,
            ins,
            taps,
            dil,
            pads,
            w,
            bias,
        })
    }

    /// Input channels.
    pub fn ins(&self) -> usize {
        self.ins
    }

    /// Output channels.
    pub fn outs(&self) -> usize {
        self.outs
    }

    /// How far (in input steps) an output reaches to either side.
    pub fn reach(&self) -> usize {
        self.pads
            .0
            .max((self.dil * (self.taps - 1)).saturating_sub(self.pads.0))
    }

    /// Output length for an input of `t` steps (`None`: shorter than the kernel).
    pub fn out_len(&self, t: usize) -> Option<usize> {
        (t + self.pads.0 + self.pads.1).checked_sub(self.dil * (self.taps - 1))
    }

    /// Convolve `x` (`ins` rows of `t`), after a leaky ReLU of slope `leaky` if given, adding
    /// the residuals `res` (at most two, each `outs` rows of the output length) one after the
    /// other; the output replaces `out`'s contents.
    pub fn run(
        &self,
        engine: Engine,
        input: Input<'_>,
        res: &[&[f32]],
        out: &mut Vec<f32>,
        scratch: &mut Scratch,
    ) -> Result<usize, String> {
        // The kernel writes every output; `run_into` refuses what has none.
        out.resize(self.outs * self.out_len(input.steps).unwrap_or(0), 0.0);
        self.run_into(engine, input, res, out, scratch, (1, &scoped))
    }

    /// Output length for an input of `t` steps, or why there is none.
    pub fn out_steps(&self, t: usize) -> Result<usize, String> {
        self.out_len(t)
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("input of {t} steps is shorter than the kernel"))
    }

    /// [`Conv1d::run`] into `out` (`outs` rows of the output length), its output channels cut
    /// into `parts` that `par` runs (in parallel; [`scoped`] on threads of our own), the input
    /// converted once and read by all.
    pub fn run_into(
        &self,
        engine: Engine,
        input: Input<'_>,
        res: &[&[f32]],
        out: &mut [f32],
        scratch: &mut Scratch,
        (parts, par): (usize, &Parallel<'_>),
    ) -> Result<usize, String> {
        let t = input.steps;
        input.check(self.ins)?;
        let n = self.out_steps(t)?;
        if out.len() != self.outs * n {
            return Err(format!(
                "output of {} values for {} channels × {n}",
                out.len(),
                self.outs
            ));
        }
        if res.iter().any(|r| r.len() != self.outs * n) {
            return Err("residual of another shape than the output".into());
        }
        let res = match *res {
            [] => [None, None],
            [a] => [Some(a), None],
            [a, b] => [Some(a), Some(b)],
            _ => return Err(format!("{} residuals, at most 2", res.len())),
        };
        let row = n.next_multiple_of(TSPAN) + self.dil * (self.taps - 1) + 16;
        let row = row.max(self.pads.0 + t);
        let pairs = to_pairs(
            engine,
            &input,
            self.ins,
            (self.pads.0, row),
            &mut scratch.pairs,
        );
        let np = self.ins.div_ceil(2);
        let blocks = self.outs.div_ceil(OB);
        let parts = parts.clamp(1, blocks);
        // Part k: blocks [blocks·k/parts, blocks·(k+1)/parts); its first block and output rows.
        let part = |k: usize| {
            let (b0, b1) = (blocks * k / parts, blocks * (k + 1) / parts);
            (b0, b0 * OB, (b1 * OB).min(self.outs))
        };
        let call = |k: usize, out: &mut [f32]| {
            let (b0, o0, o1) = part(k);
            let call = Call {
                x: &pairs,
                off: 0,
                w: &self.w[b0 * np * self.taps * OB..],
                pairs: np,
                taps: self.taps,
                dil: self.dil,
                outs: o1 - o0,
                bias: &self.bias[o0..o1],
                res: res.map(|r| r.map(|r| &r[o0 * n..o1 * n])),
            };
            kernel(engine, &call, &mut Dest { out, stride: n, n });
        };
        if parts == 1 {
            call(0, out);
            return Ok(n);
        }
        let mut rest = out;
        let mut chunks = Vec::with_capacity(parts);
        for k in 0..parts {
            let (_, o0, o1) = part(k);
            let (mine, after) = rest.split_at_mut((o1 - o0) * n);
            chunks.push(std::sync::Mutex::new(Some(mine)));
            rest = after;
        }
        let done: Vec<AtomicBool> = (0..parts).map(|_| AtomicBool::new(false)).collect();
        par(parts, &|k: usize| {
            // Each part takes its own chunk, once, and says when it is written.
            let chunk = chunks
                .get(k)
                .and_then(|c| c.lock().ok().and_then(|mut c| c.take()));
            if let (Some(chunk), Some(d)) = (chunk, done.get(k)) {
                call(k, chunk);
                d.store(true, Ordering::Release);
            }
        })?;
        if done.iter().any(|d| !d.load(Ordering::Acquire)) {
            return Err("a part of the output was not computed".into());
        }
        Ok(n)
    }
}

/// Runs `f(0)`, …, `f(n − 1)`, in parallel or not; an error if it could not run them all.
pub type Parallel<'a> = dyn Fn(usize, &(dyn Fn(usize) + Sync)) -> Result<(), String> + 'a;

/// [`Parallel`] on scoped threads of our own (part 0 on the caller's).
pub fn scoped(n: usize, f: &(dyn Fn(usize) + Sync)) -> Result<(), String> {
    std::thread::scope(|s| {
        let others: Vec<_> = (1..n).map(|k| s.spawn(move || f(k))).collect();
        f(0);
        others.into_iter().try_for_each(|h| {
            h.join()
                .map_err(|_| "a convolution thread panicked".to_owned())
        })
    })
}

/// A weight of `dims` (none 0) holds their product of values; `step` (dilation or stride) is
/// not 0.
fn check_weight(
    weight: &[f32],
    dims: [usize; 3],
    (kind, step_name, step): (&str, &str, usize),
) -> Result<(), String> {
    if dims.contains(&0) || step == 0 {
        return Err(format!("{kind} of dimensions {dims:?}, {step_name} {step}"));
    }
    if weight.len() != dims.iter().product::<usize>() {
        return Err(format!(
            "weight of {} values for dimensions {dims:?}",
            weight.len()
        ));
    }
    Ok(())
}

fn bias_of(bias: Option<&[f32]>, outs: usize) -> Result<Vec<f32>, String> {
    match bias {
        Some(b) if b.len() != outs => Err(format!(
            "bias of {} values for {outs} output channels",
            b.len()
        )),
        Some(b) => Ok(b.to_vec()),
        None => Ok(vec![0.0; outs]),
    }
}

/// One output phase of a transposed convolution.
#[derive(Debug, Clone)]
struct Phase {
    /// Its residue: outputs at `u ≡ rho (mod stride)`, `u` = output index + first pad.
    rho: usize,
    /// Taps of this phase.
    taps: usize,
    w: Vec<u32>,
}

/// A transposed convolution's weights, packed per output phase.
#[derive(Debug, Clone)]
pub struct ConvTranspose1d {
    outs: usize,
    ins: usize,
    taps: usize,
    stride: usize,
    pads: (usize, usize),
    extra: usize,
    phases: Vec<Phase>,
    bias: Vec<f32>,
}

impl ConvTranspose1d {
    /// From an ONNX `ConvTranspose` weight `[ins, outs, taps]` (group 1, dilation 1), its bias,
    /// stride, pads and output padding.
    pub fn new(
        weight: &[f32],
        dims: [usize; 3],
        bias: Option<&[f32]>,
        stride: usize,
        pads: (usize, usize),
        extra: usize,
    ) -> Result<Self, String> {
        let [ins, outs, taps] = dims;
        check_weight(weight, dims, ("transposed convolution", "stride", stride))?;
        let bias = bias_of(bias, outs)?;
        let phases = (0..stride.min(taps))
            .map(|rho| {
                let n = (taps - rho).div_ceil(stride);
                // Tap j' of the phase is the weight's tap rho + stride·(n − 1 − j').
                let w = pack(outs, ins, n, |o, i, j| {
                    weight[(i * outs + o) * taps + rho + stride * (n - 1 - j)]
                });
                Phase { rho, taps: n, w }
            })
            .collect();
        Ok(Self {
            outs,
            ins,
            taps,
            stride,
            pads,
            extra,
            phases,
            bias,
        })
    }

    /// Output channels.
    pub fn outs(&self) -> usize {
        self.outs
    }

    /// Input channels.
    pub fn ins(&self) -> usize {
        self.ins
    }

    /// How far (in input steps) an output reaches to either side, at most.
    pub fn reach_in(&self) -> usize {
        self.taps.div_ceil(self.stride) + 1
    }

    /// Output steps per input step.
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// Output length for an input of `t` steps.
    pub fn out_len(&self, t: usize) -> Option<usize> {
        ((t.checked_sub(1)?) * self.stride + self.taps + self.extra)
            .checked_sub(self.pads.0 + self.pads.1)
    }

    /// The inputs `[i_lo, i_hi)` (of `t`) that outputs `[lo, hi)` (of the output of all `t`)
    /// read, and where output `lo` is in the output of those inputs alone. There outputs
    /// `[lo, hi)` have the same values as in the whole output (the same products, in the same
    /// order). `None` if `[lo, hi)` is empty or past the output.
    pub fn inputs_for(&self, lo: usize, hi: usize, t: usize) -> Option<(usize, usize, usize)> {
        let s = self.stride;
        if lo >= hi || hi > self.out_len(t)? {
            return None;
        }
        // Output u takes inputs i with stride·i + k = u + pad for a tap k < taps.
        let first = (lo + self.pads.0).saturating_sub(self.taps - 1).div_ceil(s);
        // Output lo is at lo − stride·i_lo of the piece's output: not before it.
        let i_lo = first.min(lo / s);
        let mut i_hi = ((hi - 1 + self.pads.0) / s + 1).min(t);
        // The piece's output (its right pad cut off) must reach hi.
        while i_hi < t && self.out_len(i_hi - i_lo)? < hi - s * i_lo {
            i_hi += 1;
        }
        Some((i_lo, i_hi, lo - s * i_lo))
    }

    /// The phase's output range `m_lo..m_lo + count` (outputs `u = stride·m + rho`).
    fn range(&self, rho: usize, len: usize) -> (usize, usize) {
        let (s, pad) = (self.stride, self.pads.0);
        // u in [pad, pad + len) with u ≡ rho: m from ceil((pad − rho)/s) to floor((pad + len − 1 − rho)/s).
        let lo = if rho >= pad {
            0
        } else {
            (pad - rho).div_ceil(s)
        };
        let last = pad + len - 1;
        if last < rho {
            return (lo, 0);
        }
        let hi = (last - rho) / s;
        (lo, (hi + 1).saturating_sub(lo))
    }

    /// Apply to `x` (`ins` rows of `t`) after a leaky ReLU of slope `leaky` if given; the output
    /// replaces `out`'s contents.
    pub fn run(
        &self,
        engine: Engine,
        input: Input<'_>,
        out: &mut Vec<f32>,
        scratch: &mut Scratch,
    ) -> Result<usize, String> {
        let t = input.steps;
        input.check(self.ins)?;
        let len = self
            .out_len(t)
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("input of {t} steps gives no output"))?;
        // Zero columns before the data: enough for every phase's first output.
        let mut left = 0usize;
        let mut row = 0usize;
        let ranges: Vec<(usize, usize)> =
            self.phases.iter().map(|p| self.range(p.rho, len)).collect();
        for (p, &(lo, _)) in self.phases.iter().zip(&ranges) {
            left = left.max((p.taps - 1).saturating_sub(lo));
        }
        for (p, &(lo, count)) in self.phases.iter().zip(&ranges) {
            // off = left + lo − (taps − 1) ≥ 0 by the choice of `left`.
            let off = left + lo - (p.taps - 1);
            row = row.max(off + count.next_multiple_of(TSPAN) + p.taps + 16);
        }
        row = row.max(left + t);
        let Scratch { pairs, phase } = scratch;
        let xp = to_pairs(engine, &input, self.ins, (left, row), pairs);
        // The phases write every output a tap reaches, the bias the others (below).
        out.resize(self.outs * len, 0.0);
        for (p, &(lo, count)) in self.phases.iter().zip(&ranges) {
            if count == 0 {
                continue;
            }
            // The kernel writes every value.
            phase.resize(self.outs * count, 0.0);
            let call = Call {
                x: &xp,
                off: left + lo - (p.taps - 1),
                w: &p.w,
                pairs: self.ins.div_ceil(2),
                taps: p.taps,
                dil: 1,
                outs: self.outs,
                bias: &self.bias,
                res: [None, None],
            };
            kernel(
                engine,
                &call,
                &mut Dest {
                    out: phase,
                    stride: count,
                    n: count,
                },
            );
            let first = self.stride * lo + p.rho - self.pads.0;
            for o in 0..self.outs {
                let src = &phase[o * count..(o + 1) * count];
                let dst = &mut out[o * len..(o + 1) * len];
                for (i, v) in src.iter().enumerate() {
                    dst[first + i * self.stride] = *v;
                }
            }
        }
        // Outputs no tap reaches (a stride longer than the kernel) hold the bias.
        if self.stride > self.taps {
            for o in 0..self.outs {
                for u in self.pads.0..self.pads.0 + len {
                    if u % self.stride >= self.taps {
                        out[o * len + u - self.pads.0] = self.bias[o];
                    }
                }
            }
        }
        Ok(len)
    }
}

/// The kernels in plain Rust.
pub mod portable {
    use super::{from_bf16, Call, Dest, OB};

    pub(super) fn kernel(call: &Call<'_>, dest: &mut Dest<'_>) {
        let x = call.x;
        for o in 0..call.outs {
            let (b, oo) = (o / OB, o % OB);
            let wb = &call.w[b * call.pairs * call.taps * OB..];
            let row = &mut dest.out[o * dest.stride..o * dest.stride + dest.n];
            for (t, y) in row.iter_mut().enumerate() {
                let mut s = 0.0f32;
                for p in 0..call.pairs {
                    for j in 0..call.taps {
                        let xv = x.data[p * x.row + call.off + t + j * call.dil];
                        let wv = wb[(p * call.taps + j) * OB + oo];
                        s += from_bf16(xv as u16) * from_bf16(wv as u16)
                            + from_bf16((xv >> 16) as u16) * from_bf16((wv >> 16) as u16);
                    }
                }
                let mut y0 = s + call.bias[o];
                for r in call.res.iter().flatten() {
                    y0 += r[o * dest.n + t];
                }
                *y = y0;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx {
    use std::arch::x86_64::*;

    use super::{Call, Dest, OB, TB, TSPAN};

    /// Pack one row of pairs from `lo` and `hi` (or zeros), with a leaky ReLU if given.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub(super) unsafe fn pack_row(
        lo: &[f32],
        hi: Option<&[f32]>,
        leaky: Option<f32>,
        dst: &mut [u32],
    ) {
        let n = dst.len();
        // Interleave: word 2i is the low channel's value i (word i of the conversion), word
        // 2i + 1 the high channel's (word 16 + i).
        let mut idx = [0i16; 32];
        for i in 0..16 {
            idx[2 * i] = i as i16;
            idx[2 * i + 1] = 16 + i as i16;
        }
        let idx = _mm512_loadu_si512(idx.as_ptr().cast());
        let slope = _mm512_set1_ps(leaky.unwrap_or(1.0));
        let zero = _mm512_setzero_ps();
        let act = |v: __m512| -> __m512 {
            if leaky.is_some() {
                let neg = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(v, zero);
                _mm512_mask_mul_ps(v, neg, v, slope)
            } else {
                v
            }
        };
        let mut i = 0;
        while i < n {
            let m: __mmask16 = if n - i >= 16 {
                0xffff
            } else {
                (1u16 << (n - i)) - 1
            };
            let a = act(_mm512_maskz_loadu_ps(m, lo.as_ptr().add(i)));
            let b = match hi {
                Some(h) => act(_mm512_maskz_loadu_ps(m, h.as_ptr().add(i))),
                None => zero,
            };
            // Low 256 bits: a's 16 values; high 256: b's.
            let packed: __m512i =
                std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(b, a));
            let inter = _mm512_permutexvar_epi16(idx, packed);
            _mm512_mask_storeu_epi32(dst.as_mut_ptr().add(i).cast(), m, inter);
            i += 16;
        }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub(super) unsafe fn kernel(call: &Call<'_>, dest: &mut Dest<'_>) {
        let blocks = call.outs.div_ceil(OB);
        let block_len = call.pairs * call.taps * OB;
        let xd = call.x.data.as_ptr();
        // Time outside, channels inside: a block of input stays in the first-level cache while
        // every output channel is computed from it.
        let mut t0 = 0;
        while t0 < dest.n {
            for b in 0..blocks {
                let wb = call.w.as_ptr().add(b * block_len);
                let mut acc = [[_mm512_setzero_ps(); TB]; OB];
                for p in 0..call.pairs {
                    let xr = xd.add(p * call.x.row + call.off + t0);
                    let wr = wb.add(p * call.taps * OB);
                    for j in 0..call.taps {
                        let xp = xr.add(j * call.dil);
                        let mut xv: [__m512bh; TB] = std::mem::zeroed();
                        for (tt, v) in xv.iter_mut().enumerate() {
                            *v = std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(
                                xp.add(16 * tt).cast(),
                            ));
                        }
                        let wj = wr.add(j * OB);
                        for (oo, a) in acc.iter_mut().enumerate() {
                            let wv: __m512bh = std::mem::transmute::<__m512i, __m512bh>(
                                _mm512_set1_epi32(*wj.add(oo) as i32),
                            );
                            for tt in 0..TB {
                                a[tt] = _mm512_dpbf16_ps(a[tt], xv[tt], wv);
                            }
                        }
                    }
                }
                for (oo, a) in acc.iter().enumerate() {
                    let o = b * OB + oo;
                    if o >= call.outs {
                        break;
                    }
                    let bias = _mm512_set1_ps(call.bias[o]);
                    for (tt, v) in a.iter().enumerate() {
                        let t = t0 + 16 * tt;
                        if t >= dest.n {
                            break;
                        }
                        let left = dest.n - t;
                        let m: __mmask16 = if left >= 16 {
                            0xffff
                        } else {
                            (1u16 << left) - 1
                        };
                        let mut y = _mm512_add_ps(*v, bias);
                        for r in call.res.iter().flatten() {
                            y = _mm512_add_ps(
                                y,
                                _mm512_maskz_loadu_ps(m, r.as_ptr().add(o * dest.n + t)),
                            );
                        }
                        _mm512_mask_storeu_ps(dest.out.as_mut_ptr().add(o * dest.stride + t), m, y);
                    }
                }
            }
            t0 += TSPAN;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (xorshift).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    fn r(x: f32) -> f32 {
        from_bf16(to_bf16(x))
    }

    /// ONNX `Conv` (1-D, group 1) on bfloat16-rounded operands, in f64.
    #[allow(clippy::too_many_arguments)]
    fn conv_ref(
        x: &[f32],
        t: usize,
        w: &[f32],
        dims: [usize; 3],
        bias: &[f32],
        dil: usize,
        pads: (usize, usize),
        leaky: Option<f32>,
    ) -> Vec<f32> {
        let [o_n, i_n, k] = dims;
        let n = t + pads.0 + pads.1 - dil * (k - 1);
        let act = |v: f32| match leaky {
            Some(a) if v < 0.0 => v * a,
            _ => v,
        };
        let mut y = vec![0.0; o_n * n];
        for o in 0..o_n {
            for s in 0..n {
                let mut acc = f64::from(bias[o]);
                for i in 0..i_n {
                    for j in 0..k {
                        let u = s + j * dil;
                        if u < pads.0 || u - pads.0 >= t {
                            continue;
                        }
                        acc += f64::from(r(act(x[i * t + u - pads.0])))
                            * f64::from(r(w[(o * i_n + i) * k + j]));
                    }
                }
                y[o * n + s] = acc as f32;
            }
        }
        y
    }

    /// ONNX `ConvTranspose` (1-D, group 1) on bfloat16-rounded operands, in f64.
    fn conv_t_ref(
        x: &[f32],
        t: usize,
        w: &[f32],
        dims: [usize; 3],
        bias: &[f32],
        s: usize,
        pads: (usize, usize),
    ) -> Vec<f32> {
        let [i_n, o_n, k] = dims;
        let len = (t - 1) * s + k - pads.0 - pads.1;
        let mut y: Vec<f64> = (0..o_n * len).map(|i| f64::from(bias[i / len])).collect();
        for i in 0..i_n {
            for ti in 0..t {
                for o in 0..o_n {
                    for j in 0..k {
                        let u = ti * s + j;
                        if u < pads.0 || u - pads.0 >= len {
                            continue;
                        }
                        y[o * len + u - pads.0] +=
                            f64::from(r(x[i * t + ti])) * f64::from(r(w[(i * o_n + o) * k + j]));
                    }
                }
            }
        }
        y.into_iter().map(|v| v as f32).collect()
    }

    fn engines() -> Vec<Engine> {
        let mut e = vec![Engine::Portable];
        if available() {
            e.push(Engine::Avx512);
        }
        e
    }

    fn close(a: &[f32], b: &[f32], what: &str) {
        assert_eq!(a.len(), b.len(), "{what}: length");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
                "{what}: [{i}] {x} vs {y}"
            );
        }
    }

    #[test]
    fn bf16_rounds_to_nearest_even() {
        assert_eq!(to_bf16(1.0), 0x3f80);
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even (1.0).
        assert_eq!(to_bf16(1.0 + 1.0 / 256.0), 0x3f80);
        // Just above halfway rounds up.
        assert_eq!(to_bf16(f32::from_bits(0x3f80_8001)), 0x3f81);
        // 1 + 3·2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6: up to even.
        assert_eq!(to_bf16(1.0 + 3.0 / 256.0), 0x3f82);
        assert_eq!(from_bf16(0xc040), -3.0);
        assert!(from_bf16(to_bf16(f32::NAN)).is_nan());
    }

    #[test]
    fn convolutions_match_onnx_semantics_on_rounded_operands() {
        // (outs, ins, taps, dilation, pads, steps, leaky): odd channel counts, outputs not a
        // multiple of the block, lengths under one vector and across several blocks.
        let cases = [
            (8, 16, 3, 1, (1, 1), 100, None),
            (5, 7, 5, 2, (4, 4), 61, Some(0.1)),
            (1, 32, 7, 1, (3, 3), 130, Some(0.01)),
            (13, 4, 7, 12, (36, 36), 9, None),
            (16, 3, 1, 1, (0, 0), 1, None),
            (9, 10, 4, 3, (2, 5), 50, Some(0.2)),
        ];
        for (seed, &(o, i, k, dil, pads, t, leaky)) in cases.iter().enumerate() {
            let seed = seed as u64;
            let x = values(i * t, seed);
            let w = values(o * i * k, seed + 100);
            let b = values(o, seed + 200);
            let res = values(o * (t + pads.0 + pads.1 - dil * (k - 1)), seed + 300);
            let res2 = values(res.len(), seed + 400);
            let conv = Conv1d::new(&w, [o, i, k], Some(&b), dil, pads).unwrap();
            let mut want = conv_ref(&x, t, &w, [o, i, k], &b, dil, pads, leaky);
            for engine in engines() {
                let what = format!("{engine:?} conv {o}x{i}x{k} d{dil} {pads:?} t{t}");
                let input = Input {
                    data: &x,
                    steps: t,
                    leaky,
                };
                let mut scratch = Scratch::default();
                let mut run = |res: &[&[f32]]| {
                    let mut out = Vec::new();
                    let n = conv
                        .run(engine, input, res, &mut out, &mut scratch)
                        .unwrap();
                    assert_eq!(Some(n), conv.out_len(t));
                    out
                };
                close(&run(&[]), &want, &what);
                let with: Vec<f32> = want.iter().zip(&res).map(|(a, b)| a + b).collect();
                close(&run(&[&res]), &with, &format!("{what} + residual"));
                let out = run(&[&res, &res2]);
                let with: Vec<f32> = with.iter().zip(&res2).map(|(a, b)| a + b).collect();
                close(&out, &with, &format!("{what} + two residuals"));
                // Output channels in parts on several threads: the same values.
                for parts in [2, 3] {
                    let mut split = vec![f32::NAN; out.len()];
                    let mut scratch = Scratch::default();
                    conv.run_into(
                        engine,
                        input,
                        &[&res, &res2],
                        &mut split,
                        &mut scratch,
                        (parts, &scoped),
                    )
                    .unwrap();
                    assert_eq!(split, out, "{what} in {parts} parts");
                }
                // A runner that leaves a part out is an error, not a hole in the output.
                let lazy = |n: usize, f: &(dyn Fn(usize) + Sync)| -> Result<(), String> {
                    (0..n).filter(|&k| k != 1).for_each(f);
                    Ok(())
                };
                if o > OB {
                    let e = conv
                        .run_into(
                            engine,
                            input,
                            &[],
                            &mut vec![0.0; out.len()],
                            &mut Scratch::default(),
                            (2, &lazy),
                        )
                        .unwrap_err();
                    assert!(e.contains("not computed"), "{e}");
                }
            }
            want.clear();
        }
    }

    #[test]
    fn transposed_convolutions_match_onnx_semantics_on_rounded_operands() {
        // (ins, outs, taps, stride, pads, steps): Piper's upsamplers (16/8/4, 8/4/2) and odd ones.
        let cases = [
            (16, 8, 16, 8, (4, 4), 20),
            (8, 4, 8, 4, (2, 2), 33),
            (5, 3, 5, 2, (1, 2), 17),
            (4, 9, 3, 3, (0, 0), 1),
            (6, 2, 2, 4, (1, 0), 7),
            (3, 3, 7, 2, (3, 3), 40),
        ];
        for (seed, &(i, o, k, s, pads, t)) in cases.iter().enumerate() {
            let seed = seed as u64 + 7;
            let x = values(i * t, seed);
            let w = values(o * i * k, seed + 100);
            let b = values(o, seed + 200);
            let ct = ConvTranspose1d::new(&w, [i, o, k], Some(&b), s, pads, 0).unwrap();
            let want = conv_t_ref(&x, t, &w, [i, o, k], &b, s, pads);
            for engine in engines() {
                let what = format!("{engine:?} conv-t {i}x{o}x{k} s{s} {pads:?} t{t}");
                let mut out = Vec::new();
                let n = ct
                    .run(
                        engine,
                        Input {
                            data: &x,
                            steps: t,
                            leaky: None,
                        },
                        &mut out,
                        &mut Scratch::default(),
                    )
                    .unwrap();
                assert_eq!(Some(n), ct.out_len(t), "{what}");
                close(&out, &want, &what);
                // Any range of outputs from only the inputs it reads: the same values.
                for (lo, hi) in [(0, 1), (0, n), (n / 3, n / 2 + 1), (n - 1, n), (n / 2, n)] {
                    if lo >= hi {
                        continue;
                    }
                    let (a, b, at) = ct.inputs_for(lo, hi, t).unwrap();
                    let mut piece = Vec::new();
                    let m = ct
                        .run(
                            engine,
                            Input {
                                data: &rows(&x, t, a, b),
                                steps: b - a,
                                leaky: None,
                            },
                            &mut piece,
                            &mut Scratch::default(),
                        )
                        .unwrap();
                    let got = rows(&piece, m, at, at + hi - lo);
                    assert_eq!(got, rows(&out, n, lo, hi), "{what} outputs {lo}..{hi}");
                }
                assert_eq!(ct.inputs_for(0, n + 1, t), None);
                assert_eq!(ct.inputs_for(n, n, t), None);
            }
        }
    }

    /// Columns `[a, b)` of every row of `x` (rows of `t`).
    fn rows(x: &[f32], t: usize, a: usize, b: usize) -> Vec<f32> {
        x.chunks(t).flat_map(|r| r[a..b].iter().copied()).collect()
    }

    #[test]
    fn bad_shapes_are_refused_with_the_reason() {
        let e = Conv1d::new(&[0.0; 5], [2, 2, 2], None, 1, (0, 0)).unwrap_err();
        assert!(e.contains("5 values"), "{e}");
        let e = Conv1d::new(&[0.0; 8], [2, 2, 2], Some(&[0.0]), 1, (0, 0)).unwrap_err();
        assert!(e.contains("bias of 1"), "{e}");
        let conv = Conv1d::new(&[0.0; 8], [2, 2, 2], None, 3, (0, 0)).unwrap();
        let e = conv
            .run(
                Engine::Portable,
                Input {
                    data: &[0.0; 6],
                    steps: 3,
                    leaky: None,
                },
                &[],
                &mut Vec::new(),
                &mut Scratch::default(),
            )
            .unwrap_err();
        assert!(e.contains("shorter than the kernel"), "{e}");
        let e = conv
            .run(
                Engine::Portable,
                Input {
                    data: &[0.0; 5],
                    steps: 3,
                    leaky: None,
                },
                &[],
                &mut Vec::new(),
                &mut Scratch::default(),
            )
            .unwrap_err();
        assert!(e.contains("5 values"), "{e}");
        let conv = Conv1d::new(&[0.0; 8], [2, 2, 2], None, 1, (0, 0)).unwrap();
        let input = Input {
            data: &[0.0; 6],
            steps: 3,
            leaky: None,
        };
        let (r, short) = ([0.0; 4], [0.0; 3]);
        for (res, reason) in [
            (&[&r[..], &r, &r][..], "3 residuals"),
            (&[&r[..], &short], "another shape"),
        ] {
            let e = conv
                .run(
                    Engine::Portable,
                    input,
                    res,
                    &mut Vec::new(),
                    &mut Scratch::default(),
                )
                .unwrap_err();
            assert!(e.contains(reason), "{e}");
        }
        assert!(ConvTranspose1d::new(&[0.0; 8], [2, 2, 2], None, 0, (0, 0), 0).is_err());
    }
}
