//! Our bfloat16 convolution ([`super::bf16::Conv1d`]) as an ONNX Runtime custom operator, so
//! that single `Conv` nodes of a model ONNX Runtime runs (Piper's flow and text encoder) use it
//! while ONNX Runtime keeps everything around them. [`super::onnx_2d::convs_to_domain`] moves
//! the nodes to [`DOMAIN`] and takes their weights out of the model; the operator reads the same
//! attributes as ONNX's `Conv` (1-D, group 1, stride 1), gets its weights from the domain
//! ([`domain`]) and packs them once when the session is made. It
//! shares its output channels among the session's threads, and writes into the output ONNX
//! Runtime allocates; the converted input is kept in one buffer for all the session's nodes
//! (ONNX Runtime runs them one at a time), which [`Shared`] gives back when idle.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ort::operator::{
    BoxedKernel, ComputeContext, KernelContext, Operator, OperatorDomain, OperatorInput,
    OperatorOutput,
};
use ort::value::TensorElementType;

use super::bf16::{Conv1d, Engine, Input, Scratch};
use super::onnx_2d::{ConvWeights, WEIGHTS_ATTR};

/// The operator domain of the rewritten nodes.
pub const DOMAIN: &str = "local-assistant.bf16";

/// `Conv` in [`DOMAIN`].
#[derive(Debug, Clone)]
pub struct Bf16Conv {
    threads: usize,
    scratch: Shared,
}

/// What all of a session's nodes of [`DOMAIN`] share: the buffers, and the weights taken out
/// of the model ([`super::onnx_2d::convs_to_domain`]) until the nodes have packed them.
#[derive(Debug, Clone, Default)]
pub struct Shared {
    scratch: Arc<Mutex<Scratch>>,
    weights: Arc<Mutex<HashMap<String, ConvWeights>>>,
}

/// A lock whose holder panicked (caught, reported as an error) left only buffers behind.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    /// Give the buffers back (between answers).
    pub fn clear(&self) {
        lock(&self.scratch).clear();
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        lock(&self.scratch).bytes()
    }

    /// Drop the weights not packed yet (once the session has made its kernels).
    pub fn forget_weights(&self) {
        *lock(&self.weights) = HashMap::new();
    }
}

/// The domain with its one operator, for a session builder's `with_operators`, running on
/// `threads` threads, with the weights of the nodes that name theirs; and what it shares.
pub fn domain(
    threads: usize,
    weights: HashMap<String, ConvWeights>,
) -> ort::Result<(OperatorDomain, Shared)> {
    let scratch = Shared {
        weights: Arc::new(Mutex::new(weights)),
        ..Shared::default()
    };
    let op = Bf16Conv {
        threads: threads.max(1),
        scratch: scratch.clone(),
    };
    Ok((OperatorDomain::new(DOMAIN)?.add(op)?, scratch))
}

fn err(reason: impl std::fmt::Display) -> ort::Error {
    ort::Error::new(format!("{DOMAIN}:Conv: {reason}"))
}

fn one_pair(v: Option<Vec<i64>>, default: (usize, usize)) -> ort::Result<(usize, usize)> {
    match v.as_deref() {
        None => Ok(default),
        Some(&[a, b]) => Ok((
            usize::try_from(a).map_err(err)?,
            usize::try_from(b).map_err(err)?,
        )),
        Some(v) => Err(err(format!("pads {v:?}"))),
    }
}

impl Operator for Bf16Conv {
    type Kernel<'attr> = BoxedKernel<'attr>;

    fn name(&self) -> &str {
        "Conv"
    }

    fn inputs(&self) -> impl IntoIterator<Item = OperatorInput> {
        [
            OperatorInput::required(TensorElementType::Float32),
            // An empty placeholder: the weights were taken out of the model.
            OperatorInput::required(TensorElementType::Float32),
        ]
    }

    fn outputs(&self) -> impl IntoIterator<Item = OperatorOutput> {
        [OperatorOutput::required(TensorElementType::Float32)]
    }

    fn create_kernel<'attr>(&self, k: &KernelContext<'attr>) -> ort::Result<Self::Kernel<'attr>> {
        // ONNX Runtime calls this from C: no panic may unwind into it.
        let conv = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            prepare(k, &self.scratch.weights)
        }))
        .unwrap_or_else(|_| Err(err("packing the weight panicked")))?;
        let engine = Engine::best();
        let (threads, scratch) = (self.threads, self.scratch.clone());
        Ok(Box::new(move |ctx: &ComputeContext| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                compute(ctx, &conv, engine, &mut lock(&scratch.scratch), threads)
            }))
            .unwrap_or_else(|_| Err(err("the convolution panicked")))
        }))
    }
}

/// The packed convolution of a node: its weight and bias (taken out of the model and named by
/// its [`WEIGHTS_ATTR`] attribute), and its attributes.
fn prepare(
    k: &KernelContext<'_>,
    weights: &Mutex<HashMap<String, ConvWeights>>,
) -> ort::Result<Conv1d> {
    let dil = match k.get::<Vec<i64>>("dilations").as_deref() {
        None => 1,
        Some(&[d]) => usize::try_from(d).map_err(err)?,
        Some(v) => return Err(err(format!("dilations {v:?}"))),
    };
    let pads = one_pair(k.get::<Vec<i64>>("pads"), (0, 0))?;
    let key = k
        .get::<String>(WEIGHTS_ATTR)
        .ok_or_else(|| err(format!("no {WEIGHTS_ATTR} attribute")))?;
    let weights = lock(weights);
    let w = weights
        .get(&key)
        .ok_or_else(|| err(format!("no weights {key:?} given with the domain")))?;
    Conv1d::new(&w.weight, w.dims, w.bias.as_deref(), dil, pads).map_err(err)
}

/// One run: the input convolved into the output ONNX Runtime allocates.
fn compute(
    ctx: &ComputeContext,
    conv: &Conv1d,
    engine: Engine,
    scratch: &mut Scratch,
    threads: usize,
) -> ort::Result<()> {
    let x = ctx.input(0)?.ok_or_else(|| err("no input"))?;
    let (shape, data) = x.try_extract_tensor::<f32>()?;
    let &[1, c, t] = &shape[..] else {
        return Err(err(format!(
            "input of dimensions {:?}, expected [1, C, T]",
            &shape[..]
        )));
    };
    let t = usize::try_from(t).map_err(err)?;
    if usize::try_from(c).ok() != Some(conv.ins()) {
        return Err(err(format!(
            "{c} input channels, the weight takes {}",
            conv.ins()
        )));
    }
    let input = Input {
        data,
        steps: t,
        leaky: None,
    };
    let n = conv.out_steps(t).map_err(err)?;
    let mut y = ctx
        .output(0, vec![1, conv.outs() as i64, n as i64])?
        .ok_or_else(|| err("no output"))?;
    let (_, ys) = y.try_extract_tensor_mut::<f32>()?;
    // Parts on ONNX Runtime's own threads (its pool's threads would spin against ours).
    let par = |parts: usize, f: &(dyn Fn(usize) + Sync)| -> Result<(), String> {
        // ONNX Runtime calls the parts from C: no panic may unwind into it.
        let call = |k: usize| {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(k)));
        };
        ctx.par_for(parts, parts, call).map_err(|e| e.to_string())
    };
    conv.run_into(engine, input, &[], ys, scratch, (threads, &par))
        .map_err(err)?;
    Ok(())
}
