//! The embedded GGUF engine on candle: loads a `llama` (SmolLM2, Llama 3.x) or `qwen2` GGUF,
//! tokenizes with its own byte-level BPE ([`tokenizer`]), renders ChatML or Llama 3 prompts
//! ([`template`]), runs the forward pass with explicit KV-cache state ([`model`]) and streams
//! text, constraining tool-call JSON with [`super::constrain`].
//!
//! KV-cache reuse: the state after the system prompt (tools included) is kept as a shared
//! snapshot, and each session keeps the state after its last turn (bounded LRU). A request
//! starts from whichever cached state shares the longest token prefix with its prompt and
//! prefills only the rest.
//!
//! Threads: candle's quantized matmul runs on a process-wide pool sized from
//! `CANDLE_NUM_THREADS` when first used; [`CandleBackend::load`] sets that variable from
//! [`CandleOptions::threads`] if it is unset (the first load in a process wins, see
//! [`CandleBackend::threads`]). The remaining tensor ops run in a dedicated rayon pool of
//! `threads` threads. This module never runs on the async runtime.

pub mod model;
pub mod template;
pub mod tokenizer;

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::Device;
use rand::{Rng, SeedableRng};

use super::constrain::{parse_tool_call, tools_prompt, ToolCallMatcher, ToolGrammar};
use super::{
    ChatMessage, FinishReason, GenerateOutput, GenerateRequest, GenerateStats, LlmBackend,
    LlmError, Priority, Role, ToolMode, ToolSpec, REPEAT_WINDOW,
};
use model::{KvState, Model, KV_STEP};
use template::ChatTemplate;
use tokenizer::{Tokenizer, Utf8Stream};

/// Tokens per forward pass while prefilling (cancellation and foreground speech work are
/// checked between passes): about 0.45 s of two cores for SmolLM2-135M here.
const PREFILL_CHUNK: usize = 64;
/// Prefill chunk of Background requests: about 0.1 s of one core for SmolLM2-135M here.
const YIELD_CHUNK: usize = 8;
/// How often the engine looks again while foreground work runs.
const YIELD_POLL: std::time::Duration = std::time::Duration::from_millis(2);
/// The marker some models put before a JSON tool call.
const TOOL_CALL_TAG: &str = "<tool_call>";

/// How to run the engine.
#[derive(Debug, Clone, PartialEq)]
pub struct CandleOptions {
    /// Compute threads (≥ 1). Default: one less than the available cores, at most 4.
    pub threads: usize,
    /// Context window in tokens (capped at the model's trained length). Default 2048.
    pub context_tokens: usize,
    /// Sessions whose KV cache is kept between turns (LRU). Default 8.
    pub sessions: usize,
    /// Shared system-prompt snapshots kept (LRU). Default 4.
    pub prefix_snapshots: usize,
    /// Reuse cached KV state at all (false: every request prefills from scratch).
    pub kv_reuse: bool,
}

impl Default for CandleOptions {
    fn default() -> Self {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        Self {
            threads: cores.saturating_sub(1).clamp(1, 4),
            context_tokens: 2048,
            sessions: 8,
            prefix_snapshots: 4,
            kv_reuse: true,
        }
    }
}

/// Cached KV states: per session and shared prompt prefixes, most recently used last.
struct PromptCache {
    sessions: Vec<(String, KvState)>,
    prefixes: Vec<KvState>,
}

/// The candle engine. Weights are shared read-only; the cache sits behind a mutex that is held
/// only to take or return a state, never during a forward pass.
pub struct CandleBackend {
    model: Model,
    tokenizer: Tokenizer,
    template: ChatTemplate,
    end_ids: Vec<u32>,
    pool: rayon::ThreadPool,
    opts: CandleOptions,
    threads: usize,
    cache: Mutex<PromptCache>,
}

fn load_err(path: &Path, reason: impl Into<String>) -> LlmError {
    LlmError::Load {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

fn infer_err(e: impl std::fmt::Display) -> LlmError {
    LlmError::Inference(e.to_string())
}

impl CandleBackend {
    /// Load a GGUF model. Errors name the file and what is wrong with it (unreadable, not GGUF,
    /// unsupported architecture or tokenizer, missing tensor).
    pub fn load(path: &Path, opts: CandleOptions) -> Result<Self, LlmError> {
        if opts.threads == 0 {
            return Err(load_err(path, "threads must be at least 1"));
        }
        if opts.context_tokens < 16 {
            return Err(load_err(path, "context_tokens must be at least 16"));
        }
        if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
            // Read once by candle when its matmul pool starts (below, on the first forward).
            std::env::set_var("CANDLE_NUM_THREADS", opts.threads.to_string());
        }
        let threads = candle_core::utils::barrier_pool().n_workers() + 1;
        if threads != opts.threads {
            tracing::warn!(
                requested = opts.threads,
                effective = threads,
                "candle's matmul pool was already started with another thread count"
            );
        }
        let file = File::open(path).map_err(|e| load_err(path, format!("cannot open: {e}")))?;
        let mut reader = BufReader::new(file);
        let ct = gguf_file::Content::read(&mut reader)
            .map_err(|e| load_err(path, format!("not a readable GGUF file: {e}")))?;
        let tokenizer = Tokenizer::from_gguf(&ct).map_err(|e| load_err(path, e))?;
        let template = ChatTemplate::from_gguf(&ct);
        let model =
            Model::load(&ct, &mut reader, opts.context_tokens).map_err(|e| load_err(path, e))?;
        if model.vocab_size() != tokenizer.vocab_size() {
            return Err(load_err(
                path,
                format!(
                    "the embedding has {} rows but the tokenizer {} tokens",
                    model.vocab_size(),
                    tokenizer.vocab_size()
                ),
            ));
        }
        let mut end_ids: Vec<u32> = template
            .end_tokens()
            .iter()
            .filter_map(|t| tokenizer.token_id(t))
            .collect();
        end_ids.extend(tokenizer.eos());
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(opts.threads)
            .thread_name(|i| format!("llm-candle-{i}"))
            .build()
            .map_err(|e| load_err(path, format!("cannot start the thread pool: {e}")))?;
        Ok(Self {
            model,
            tokenizer,
            template,
            end_ids,
            pool,
            threads,
            cache: Mutex::new(PromptCache {
                sessions: Vec::new(),
                prefixes: Vec::new(),
            }),
            opts,
        })
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The chat template in use.
    pub fn template(&self) -> ChatTemplate {
        self.template
    }

    /// Compute threads actually used by candle's matmul pool.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The model's hyper-parameters.
    pub fn config(&self) -> &model::Config {
        &self.model.cfg
    }

    /// Drop every cached KV state.
    pub fn clear_cache(&self) {
        if let Ok(mut c) = self.cache.lock() {
            c.sessions.clear();
            c.prefixes.clear();
        }
    }

    fn forward(&self, tokens: &[u32], state: &mut KvState) -> Result<Vec<f32>, LlmError> {
        let mut logits = Vec::new();
        for chunk in tokens.chunks(PREFILL_CHUNK) {
            logits = self
                .pool
                .install(|| self.model.forward(chunk, state))
                .map_err(infer_err)?;
        }
        Ok(logits)
    }

    /// The messages the model sees: tools are described in the system prompt.
    fn effective_messages(&self, req: &GenerateRequest) -> Vec<ChatMessage> {
        let mut msgs = req.messages.clone();
        let (tools, required) = match &req.tools {
            ToolMode::None => return msgs,
            ToolMode::Auto(t) => (t, false),
            ToolMode::Required(t) => (t, true),
        };
        let mut section = tools_prompt(tools);
        if required {
            section.push_str("\nAnswer this request with one tool call in JSON.\n");
        }
        match msgs.first_mut() {
            Some(m) if m.role == Role::System => {
                m.content = format!("{}\n\n{section}", m.content);
            }
            _ => msgs.insert(0, ChatMessage::new(Role::System, section)),
        }
        msgs
    }

    /// Prompt tokens, split as (system prefix length, all tokens), after dropping the oldest
    /// history that does not fit.
    fn prompt_tokens(
        &self,
        mut msgs: Vec<ChatMessage>,
        max_tokens: usize,
    ) -> Result<(usize, Vec<u32>), LlmError> {
        let ctx = self.model.cfg.ctx;
        let tail = self.tokenizer.encode(self.template.assistant_prefix());
        let mut parts: Vec<Vec<u32>> = msgs
            .iter()
            .enumerate()
            .map(|(i, m)| self.tokenizer.encode(&self.template.render(m, i == 0)))
            .collect();
        loop {
            let total = parts.iter().map(Vec::len).sum::<usize>() + tail.len();
            if total + max_tokens <= ctx {
                break;
            }
            let last_user = msgs.iter().rposition(|m| m.role == Role::User);
            let droppable = msgs
                .iter()
                .enumerate()
                .position(|(i, m)| m.role != Role::System && Some(i) != last_user);
            match droppable {
                Some(i) => {
                    msgs.remove(i);
                    parts.remove(i);
                    if i == 0 {
                        // The new first message may need the begin-of-text marker.
                        if let Some(m) = msgs.first() {
                            parts[0] = self.tokenizer.encode(&self.template.render(m, true));
                        }
                    }
                }
                None => {
                    return Err(LlmError::ContextOverflow {
                        tokens: total + max_tokens,
                        ctx,
                    })
                }
            }
        }
        let sys_len = match msgs.first() {
            Some(m) if m.role == Role::System => parts[0].len(),
            _ => 0,
        };
        let mut all: Vec<u32> = parts.into_iter().flatten().collect();
        all.extend(tail);
        Ok((sys_len, all))
    }

    /// The cached state sharing the longest prefix with `prompt` (moved out of the cache for a
    /// session, deep-copied for a shared snapshot), truncated to that prefix.
    fn take_state(&self, session: Option<&str>, prompt: &[u32]) -> Result<KvState, LlmError> {
        if !self.opts.kv_reuse {
            return Ok(KvState::empty());
        }
        let mut cache = self
            .cache
            .lock()
            .map_err(|_| infer_err("the KV cache lock is poisoned"))?;
        let keep = prompt.len().saturating_sub(1); // at least one token must be computed
        let own = session.and_then(|s| {
            let i = cache.sessions.iter().position(|(k, _)| k == s)?;
            Some(cache.sessions.remove(i).1)
        });
        let best_prefix = cache
            .prefixes
            .iter()
            .enumerate()
            .map(|(i, p)| (i, common_prefix(&p.tokens, prompt).min(keep)))
            .max_by_key(|&(_, l)| l);
        let own_reuse = own.as_ref().map(|s| reuse(&s.tokens, prompt, keep));
        match (own, own_reuse, best_prefix) {
            (Some(mut s), Some(r), bp) if bp.is_none_or(|(_, pl)| r.total() >= pl) => {
                s.truncate(r.prefix + r.gap + r.tail);
                if r.gap > 0 {
                    // Older messages left the window: drop them and keep what follows.
                    self.model
                        .drop_tokens(&mut s, r.prefix, r.gap)
                        .map_err(infer_err)?;
                }
                debug_assert_eq!(s.tokens[..], prompt[..r.total()]);
                Ok(s)
            }
            (_, _, Some((i, l))) if l > 0 => {
                let snap = cache.prefixes.remove(i);
                let forked = snap.fork(&self.model.cfg, self.model.device(), l, KV_STEP);
                cache.prefixes.push(snap);
                forked.map_err(infer_err)
            }
            _ => Ok(KvState::empty()),
        }
    }

    fn store_prefix(&self, state: &KvState) -> Result<(), LlmError> {
        if !self.opts.kv_reuse || self.opts.prefix_snapshots == 0 {
            return Ok(());
        }
        let snap = state
            .fork(&self.model.cfg, self.model.device(), state.len(), 0)
            .map_err(infer_err)?;
        let mut cache = self
            .cache
            .lock()
            .map_err(|_| infer_err("the KV cache lock is poisoned"))?;
        cache.prefixes.retain(|p| p.tokens != snap.tokens);
        cache.prefixes.push(snap);
        while cache.prefixes.len() > self.opts.prefix_snapshots {
            cache.prefixes.remove(0);
        }
        Ok(())
    }

    fn store_session(&self, session: &str, state: KvState) {
        if !self.opts.kv_reuse || self.opts.sessions == 0 {
            return;
        }
        if let Ok(mut cache) = self.cache.lock() {
            cache.sessions.retain(|(k, _)| k != session);
            cache.sessions.push((session.to_string(), state));
            while cache.sessions.len() > self.opts.sessions {
                cache.sessions.remove(0);
            }
        }
    }

    fn run(
        &self,
        req: &GenerateRequest,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<GenerateOutput, LlmError> {
        let start = Instant::now();
        let (tools, required): (&[ToolSpec], bool) = match &req.tools {
            ToolMode::None => (&[], false),
            ToolMode::Auto(t) => (t, false),
            ToolMode::Required(t) => (t, true),
        };
        let grammar = if tools.is_empty() {
            if required {
                return Err(infer_err("ToolMode::Required needs at least one tool"));
            }
            None
        } else {
            Some(ToolGrammar::new(tools).map_err(|e| infer_err(format!("bad tool schema: {e}")))?)
        };
        if let Some(e) = req.repeat_penalty_error() {
            return Err(infer_err(e));
        }
        let msgs = self.effective_messages(req);
        let (sys_len, prompt) = self.prompt_tokens(msgs, req.max_tokens)?;
        let mut state = self.take_state(req.session.as_deref(), &prompt)?;
        let cached = state.len();

        let prefill_start = Instant::now();
        // Cancellation and foreground speech work are checked between chunks; Background work
        // (a cache pre-warm) uses small ones so that a live request waits for at most one.
        let chunk = if req.priority == Priority::Background {
            YIELD_CHUNK
        } else {
            PREFILL_CHUNK
        };
        let mut logits = Vec::new();
        // The system prompt first (its state becomes the shared snapshot), then the rest.
        for (upto, system) in [(sys_len, true), (prompt.len(), false)] {
            let from = state.len();
            if from >= upto {
                continue;
            }
            for piece in prompt[from..upto].chunks(chunk) {
                wait_for_foreground(req);
                if req.cancel.is_cancelled() {
                    // What was prefilled stays in the session for the next request.
                    if let Some(s) = &req.session {
                        self.store_session(s, state);
                    }
                    return Ok(GenerateOutput {
                        text: String::new(),
                        tool_call: None,
                        finish: FinishReason::Cancelled,
                        stats: GenerateStats {
                            prompt_tokens: prompt.len(),
                            cached_tokens: cached,
                            generated_tokens: 0,
                            prefill: prefill_start.elapsed(),
                            first_token: start.elapsed(),
                            total: start.elapsed(),
                        },
                    });
                }
                logits = self.forward(piece, &mut state)?;
            }
            if system {
                self.store_prefix(&state)?;
            }
        }
        let prefill = prefill_start.elapsed();

        let mut gen = Generation {
            on_text,
            stops: &req.stop,
            text: String::new(),
            emitted: 0,
            utf8: Utf8Stream::default(),
            held: String::new(),
            json: String::new(),
            mode: match (&grammar, required) {
                (Some(g), true) => Mode::Tool(g.matcher()),
                (Some(_), false) => Mode::Undecided,
                (None, _) => Mode::Text,
            },
            stopped: false,
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(req.seed);
        let mut generated = 0usize;
        let mut reply_ids: Vec<u32> = Vec::with_capacity(req.max_tokens.min(4096));
        let mut first_token = None;
        let finish = loop {
            if req.cancel.is_cancelled() {
                break FinishReason::Cancelled;
            }
            if generated >= req.max_tokens {
                break FinishReason::Length;
            }
            let next = match &gen.mode {
                Mode::Tool(m) => {
                    match pick_constrained(&logits, m, &self.tokenizer, req.temperature, &mut rng) {
                        Some(t) => t,
                        None => break FinishReason::Stop,
                    }
                }
                _ => {
                    let recent = &reply_ids[reply_ids.len().saturating_sub(REPEAT_WINDOW)..];
                    penalize(&mut logits, recent, req.repeat_penalty, &self.end_ids);
                    pick(&logits, req.temperature, &mut rng)
                }
            };
            reply_ids.push(next);
            first_token.get_or_insert_with(|| start.elapsed());
            generated += 1;
            if self.end_ids.contains(&next) {
                break FinishReason::Stop;
            }
            let bytes = self.tokenizer.token_bytes(next);
            match gen.push(bytes, grammar.as_ref()) {
                Step::Continue => {}
                Step::Stop => break FinishReason::Stop,
                Step::ToolDone => break FinishReason::ToolCall,
            }
            if generated >= req.max_tokens {
                break FinishReason::Length;
            }
            wait_for_foreground(req);
            if req.cancel.is_cancelled() {
                break FinishReason::Cancelled;
            }
            logits = self.forward(&[next], &mut state)?;
        };
        let (text, tool_call, finish) = gen.finish(tools, finish);
        if let Some(s) = &req.session {
            self.store_session(s, state);
        }
        Ok(GenerateOutput {
            text,
            tool_call,
            finish,
            stats: GenerateStats {
                prompt_tokens: prompt.len(),
                cached_tokens: cached,
                generated_tokens: generated,
                prefill,
                first_token: first_token.unwrap_or_else(|| start.elapsed()),
                total: start.elapsed(),
            },
        })
    }
}

impl LlmBackend for CandleBackend {
    fn name(&self) -> &'static str {
        "candle"
    }

    fn generate(
        &self,
        req: &GenerateRequest,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<GenerateOutput, LlmError> {
        self.run(req, on_text)
    }
}

/// Speech a person is waiting for (recognising what they said, synthesizing the sentence they
/// hear next) goes first: the engine waits between forward passes while any is under way (see
/// `platform::foreground`), so that its threads never take the cores from it.
fn wait_for_foreground(req: &GenerateRequest) {
    while crate::platform::foreground::busy() && !req.cancel.is_cancelled() {
        std::thread::sleep(YIELD_POLL);
    }
}

/// Shortest run of tokens worth a context shift.
const MIN_SHIFT: usize = 8;

/// How much of a prompt a cached token sequence gives: their common prefix and, when the
/// prompt's next tokens come again further on in the cache (the conversation's oldest messages
/// left its history window), the gap to drop from the cache and the run after it that matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reuse {
    prefix: usize,
    gap: usize,
    tail: usize,
}

impl Reuse {
    /// Prompt tokens whose keys and values are reused.
    fn total(self) -> usize {
        self.prefix + self.tail
    }
}

/// The [`Reuse`] of `cached` for `prompt`, at most `keep` tokens; a run shorter than
/// [`MIN_SHIFT`] is not worth the shift.
fn reuse(cached: &[u32], prompt: &[u32], keep: usize) -> Reuse {
    let keep = keep.min(prompt.len());
    let prefix = common_prefix(cached, prompt).min(keep);
    let mut best = Reuse {
        prefix,
        gap: 0,
        tail: 0,
    };
    let want = &prompt[prefix..keep];
    let Some(&first) = want.first() else {
        return best;
    };
    for from in prefix + 1..cached.len() {
        if cached[from] != first {
            continue;
        }
        let tail = common_prefix(&cached[from..], want);
        if tail > best.tail {
            best.gap = from - prefix;
            best.tail = tail;
        }
    }
    if best.tail < MIN_SHIFT {
        best.gap = 0;
        best.tail = 0;
    }
    best
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Make the tokens of the reply's last [`REPEAT_WINDOW`] less likely (each once, however often
/// it occurred): positive logits are divided by `penalty`, negative ones multiplied, so the
/// token always loses. End-of-turn tokens are exempt: a reply may always end.
fn penalize(logits: &mut [f32], recent: &[u32], penalty: f32, exempt: &[u32]) {
    if penalty == 1.0 {
        return;
    }
    let mut seen: Vec<u32> = Vec::with_capacity(recent.len());
    for &t in recent {
        if exempt.contains(&t) || seen.contains(&t) {
            continue;
        }
        seen.push(t);
        if let Some(l) = logits.get_mut(t as usize) {
            *l = if *l > 0.0 { *l / penalty } else { *l * penalty };
        }
    }
}

fn argmax(xs: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best as u32
}

/// Scores whose argmax is a sample from softmax(logits / t) (Gumbel-max); the logits for t = 0.
fn scores(logits: &[f32], temperature: f32, rng: &mut impl Rng) -> Vec<f32> {
    if temperature <= 0.0 {
        return logits.to_vec();
    }
    logits
        .iter()
        .map(|&l| {
            let u: f32 = rng.random_range(f32::MIN_POSITIVE..1.0);
            l / temperature - (-u.ln()).ln()
        })
        .collect()
}

fn pick(logits: &[f32], temperature: f32, rng: &mut impl Rng) -> u32 {
    if temperature <= 0.0 {
        argmax(logits)
    } else {
        argmax(&scores(logits, temperature, rng))
    }
}

/// The best-scoring token whose bytes keep the tool call valid: candidates are tried in
/// descending score order (the top 64 first, the rest only if none of them fits).
fn pick_constrained(
    logits: &[f32],
    matcher: &ToolCallMatcher,
    tok: &Tokenizer,
    temperature: f32,
    rng: &mut impl Rng,
) -> Option<u32> {
    let s = scores(logits, temperature, rng);
    let mut ids: Vec<u32> = (0..s.len() as u32).collect();
    let by_score = |a: &u32, b: &u32| s[*b as usize].total_cmp(&s[*a as usize]);
    let top = 64.min(ids.len());
    if top < ids.len() {
        ids.select_nth_unstable_by(top, by_score);
    }
    ids[..top].sort_unstable_by(by_score);
    let fits = |id: u32| {
        let b = tok.token_bytes(id);
        !b.is_empty() && matcher.accepts(b)
    };
    if let Some(&id) = ids[..top].iter().find(|&&id| fits(id)) {
        return Some(id);
    }
    let rest = &mut ids[top..];
    rest.sort_unstable_by(by_score);
    rest.iter().copied().find(|&id| fits(id))
}

enum Mode {
    /// Plain text.
    Text,
    /// Auto tool mode before the first visible character decides.
    Undecided,
    /// Inside a constrained tool call.
    Tool(ToolCallMatcher),
}

enum Step {
    Continue,
    Stop,
    ToolDone,
}

/// Output state of one generation: visible text with stop-string hold-back, or tool JSON.
struct Generation<'a> {
    on_text: &'a mut dyn FnMut(&str),
    stops: &'a [String],
    /// Visible text so far (never includes a stop string).
    text: String,
    /// Bytes of `text` already passed to `on_text`.
    emitted: usize,
    utf8: Utf8Stream,
    /// Auto mode: text held until it is clear whether a tool call starts.
    held: String,
    /// Tool-call JSON so far.
    json: String,
    mode: Mode,
    /// A stop string was found.
    stopped: bool,
}

impl Generation<'_> {
    fn push(&mut self, bytes: &[u8], grammar: Option<&ToolGrammar>) -> Step {
        if let Mode::Tool(m) = &mut self.mode {
            if !m.feed(bytes) {
                return Step::Stop; // not reachable: tokens were checked before
            }
            self.json.push_str(&String::from_utf8_lossy(bytes));
            return if m.is_complete() {
                Step::ToolDone
            } else {
                Step::Continue
            };
        }
        let piece = self.utf8.push(bytes);
        if let (Mode::Undecided, Some(g)) = (&self.mode, grammar) {
            self.held.push_str(&piece);
            let t = self.held.trim_start();
            let json_start = if t.starts_with('{') {
                Some(t.to_string())
            } else {
                t.strip_prefix(TOOL_CALL_TAG).map(str::to_string)
            };
            if let Some(js) = json_start {
                let mut m = g.matcher();
                if m.feed(js.as_bytes()) {
                    let done = m.is_complete();
                    self.json = js;
                    self.mode = Mode::Tool(m);
                    return if done { Step::ToolDone } else { Step::Continue };
                }
            } else if t.is_empty() || TOOL_CALL_TAG.starts_with(t) {
                return Step::Continue;
            }
            self.mode = Mode::Text;
            let held = std::mem::take(&mut self.held);
            return self.text_piece(&held);
        }
        self.text_piece(&piece)
    }

    /// Add visible text; emit what can no longer turn into a stop string.
    fn text_piece(&mut self, piece: &str) -> Step {
        let search_from = self.emitted;
        self.text.push_str(piece);
        let found = self
            .stops
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| {
                self.text[search_from..]
                    .find(s.as_str())
                    .map(|i| search_from + i)
            })
            .min();
        if let Some(i) = found {
            self.text.truncate(i);
            self.emit_to(i);
            self.stopped = true;
            return Step::Stop;
        }
        let hold = self
            .stops
            .iter()
            .flat_map(|s| {
                s.char_indices()
                    .skip(1)
                    .map(|(k, _)| &s[..k])
                    .filter(|p| self.text[self.emitted..].ends_with(*p))
                    .map(str::len)
                    .collect::<Vec<_>>()
            })
            .max()
            .unwrap_or(0);
        self.emit_to(self.text.len() - hold);
        Step::Continue
    }

    fn emit_to(&mut self, end: usize) {
        if end > self.emitted {
            (self.on_text)(&self.text[self.emitted..end]);
            self.emitted = end;
        }
    }

    /// Flush held text and build the result.
    fn finish(
        mut self,
        tools: &[ToolSpec],
        finish: FinishReason,
    ) -> (String, Option<super::ToolCall>, FinishReason) {
        if let Mode::Tool(_) = self.mode {
            return match parse_tool_call(tools, &self.json) {
                Ok(call) => (self.json, Some(call), finish),
                Err(e) => {
                    tracing::debug!(error = %e, "tool call rejected; answering with the text");
                    let json = std::mem::take(&mut self.json);
                    (self.on_text)(&json);
                    (json, None, finish)
                }
            };
        }
        if !self.stopped {
            let rest = self.utf8.finish();
            let held = std::mem::take(&mut self.held);
            self.text.push_str(&held);
            self.text.push_str(&rest);
            let end = self.text.len();
            self.emit_to(end);
        }
        (self.text, None, finish)
    }
}

/// Rewrite a GGUF file with its quantized weight tensors converted to `target` (e.g. `q8_0`),
/// keeping the metadata; used by `models pull` when the target format runs faster in candle.
///
/// Tensors already in `target`, unquantized tensors (norms, f32/f16) and tensors whose rows do
/// not divide into the target's blocks are copied unchanged. `general.file_type` is updated.
/// The output is written to `<dst>.part` and renamed, so `dst` is never half-written.
pub fn requantize_gguf(src: &Path, dst: &Path, target: &str) -> Result<(), LlmError> {
    let (dtype, file_type) = match target.to_ascii_lowercase().as_str() {
        "q8_0" => (GgmlDType::Q8_0, 7u32),
        "q4_0" => (GgmlDType::Q4_0, 2),
        "q4_1" => (GgmlDType::Q4_1, 3),
        "q4_k" | "q4k" => (GgmlDType::Q4K, 15),
        "q6_k" | "q6k" => (GgmlDType::Q6K, 18),
        other => {
            return Err(load_err(
                src,
                format!(
                "unknown target quantization `{other}` (supported: q8_0, q4_0, q4_1, q4_k, q6_k)"
            ),
            ))
        }
    };
    let file = File::open(src).map_err(|e| load_err(src, format!("cannot open: {e}")))?;
    let mut reader = BufReader::new(file);
    let ct = gguf_file::Content::read(&mut reader)
        .map_err(|e| load_err(src, format!("not a readable GGUF file: {e}")))?;
    let mut infos: Vec<(&String, &gguf_file::TensorInfo)> = ct.tensor_infos.iter().collect();
    infos.sort_by_key(|(_, i)| i.offset);
    let mut tensors: Vec<(String, QTensor)> = Vec::with_capacity(infos.len());
    for (name, info) in infos {
        let qt = ct
            .tensor(&mut reader, name, &Device::Cpu)
            .map_err(|e| load_err(src, format!("tensor `{name}`: {e}")))?;
        let from = info.ggml_dtype;
        let quantized = !matches!(from, GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16);
        let row = info.shape.dims().last().copied().unwrap_or(0);
        let convert = quantized && from != dtype && row % dtype.block_size() == 0;
        let qt = if convert {
            let t = qt
                .dequantize(&Device::Cpu)
                .map_err(|e| load_err(src, format!("dequantize `{name}`: {e}")))?;
            QTensor::quantize(&t, dtype)
                .map_err(|e| load_err(src, format!("quantize `{name}` to {target}: {e}")))?
        } else {
            qt
        };
        tensors.push((name.clone(), qt));
    }
    let mut metadata: Vec<(String, gguf_file::Value)> = ct
        .metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    metadata.sort_by(|a, b| a.0.cmp(&b.0));
    for (k, v) in metadata.iter_mut() {
        if k == "general.file_type" {
            *v = gguf_file::Value::U32(file_type);
        }
    }
    let part = dst.with_extension("part");
    let write = || -> Result<(), String> {
        let mut out = std::io::BufWriter::new(File::create(&part).map_err(|e| e.to_string())?);
        let md: Vec<(&str, &gguf_file::Value)> =
            metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let ts: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
        gguf_file::write(&mut out, &md, &ts).map_err(|e| e.to_string())?;
        use std::io::Write;
        out.flush().map_err(|e| e.to_string())?;
        std::fs::rename(&part, dst).map_err(|e| e.to_string())
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&part);
        load_err(dst, format!("cannot write: {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_moved_history_window_is_found_after_the_dropped_messages() {
        let sys: Vec<u32> = (100..110).collect();
        let (a, b, c, d): (Vec<u32>, Vec<u32>, Vec<u32>, Vec<u32>) = (
            (200..230).collect(),
            (300..320).collect(),
            (400..425).collect(),
            (500..505).collect(),
        );
        let cat = |parts: &[&[u32]]| parts.concat();
        // The cache holds system + A + B + C; the prompt's window dropped A and added D.
        let cached = cat(&[&sys, &a, &b, &c]);
        let prompt = cat(&[&sys, &b, &c, &d]);
        let r = reuse(&cached, &prompt, prompt.len() - 1);
        assert_eq!(
            r,
            Reuse {
                prefix: 10,
                gap: 30,
                tail: 45
            }
        );
        assert_eq!(r.total(), 55);
        // The prompt only grew: a plain prefix, nothing to drop.
        let grown = cat(&[&sys, &a, &b, &c, &d]);
        let r = reuse(&cached, &grown, grown.len() - 1);
        assert_eq!((r.prefix, r.gap, r.tail), (cached.len(), 0, 0));
        // At most `keep` tokens are reused, shifted or not.
        let r = reuse(&cached, &prompt, 20);
        assert_eq!((r.prefix, r.gap, r.tail), (10, 30, 10));
        // A run shorter than MIN_SHIFT after the gap is not worth a shift.
        let short = cat(&[&sys, &b[..5], &d]);
        let r = reuse(&cached, &short, short.len() - 1);
        assert_eq!((r.prefix, r.gap, r.tail), (10, 0, 0));
        // Nothing in common.
        let r = reuse(&cached, &d, d.len());
        assert_eq!(r.total(), 0);
    }

    #[test]
    fn the_repeat_penalty_lowers_recent_tokens_once_and_spares_the_end_token() {
        let mut l = vec![2.0, -1.0, 3.0, 0.5, 4.0];
        // Token 2 occurred twice, token 1 once, token 4 is the end of turn.
        penalize(&mut l, &[2, 1, 2, 4], 2.0, &[4]);
        assert_eq!(l, [2.0, -2.0, 1.5, 0.5, 4.0]);
        // Greedy picks change: 2 was the best non-end token, now 0 is.
        assert_eq!(argmax(&l[..4]), 0);
        let mut same = vec![1.0, -1.0];
        penalize(&mut same, &[0, 1], 1.0, &[]);
        assert_eq!(same, [1.0, -1.0]);
        // Ids outside the vocabulary are ignored.
        penalize(&mut same, &[7], 1.5, &[]);
        assert_eq!(same, [1.0, -1.0]);
    }
}
