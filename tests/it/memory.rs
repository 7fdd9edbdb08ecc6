//! Memory with the real all-MiniLM-L6-v2 (from `make models`): token ids against Hugging Face
//! `tokenizers`, embeddings against a numpy forward pass over the same safetensors, recall
//! ranking on a fixed set of household facts, near-duplicates, forgetting by id and by
//! contact (table and index in step across a restart), the REST API, the chat API, and the
//! memories the LLM is given (through an Ollama-shaped local server that records the prompt).
//!
//! Peers run with `$LA_TEST_PYTHON` (the venv of `make test-deps`: `tokenizers`, `numpy`,
//! `scipy`).

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use common::{TestDaemon, TestResult};
use local_assistant::config::{Config, LlmBackendKind, MemoryConfig};
use local_assistant::events::EventBus;
use local_assistant::home::memory::embed::Embedder;
use local_assistant::home::memory::tokenizer::WordPiece;
use local_assistant::home::memory::{Memory, NewFact, Outcome};
use local_assistant::store::{Store, StoreOptions};
use serde_json::{json, Value};

fn model_dir() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/models/all-minilm-l6-v2");
    assert!(
        p.join("model.safetensors").exists(),
        "{} is missing: run `make models` (or `local-assistant models pull all-minilm-l6-v2`)",
        p.display()
    );
    p
}

fn python() -> String {
    let p = std::env::var("LA_TEST_PYTHON").unwrap_or_else(|_| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join(".venv-test/bin/python")
            .display()
            .to_string()
    });
    assert!(
        Path::new(&p).exists(),
        "{p} is missing: run `make test-deps` (the Python test peers)"
    );
    p
}

/// Run a Python peer script with arguments; stdout parsed as JSON.
fn run_python(script: &str, args: &[&str]) -> Value {
    let out = Command::new(python())
        .env("OMP_NUM_THREADS", "1")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "python peer failed (run `make test-deps`): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("peer prints JSON")
}

fn memory_config() -> MemoryConfig {
    let mut c = Config::defaults().memory;
    c.model = model_dir().display().to_string();
    c
}

fn tricky_strings() -> Vec<String> {
    let mut v: Vec<String> = [
        "The spare key is under the flower pot.",
        "Hello, World!!! How's it going?",
        "café naïve résumé ÉCOLE Ünïcödé",
        "İstanbul straße ﬁne Ω ½ x² Ⅻ",
        "don't won't y'all e-mail@example.com http://a.b/c?d=1",
        "$1,234.56 costs 3.14159 × 2 = 6.28 (approx.)",
        "中文字符 mixed with English 日本語のテキスト",
        "한국어 텍스트 and Ελληνικά and русский",
        "emoji 😀 test 👍🏽 ok",
        "tab\tand\nnewline\r\nand  many   spaces",
        "zero\u{200b}width\u{feff}bom and control\u{7}bell \u{0}nul \u{fffd}",
        "[MASK] literal [SEP] tokens[CLS]inside",
        "supercalifragilisticexpialidocious antidisestablishmentarianism",
        "«quotes» „German“ ‘single’ naïve—dash…ellipsis",
        "WiFi password: fish123; PIN=0000 #hashtag @mention",
        "   leading and trailing   ",
        "",
        "a̐éö̲ combining marks",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    v.push("x".repeat(150));
    v.push(format!("a{}b", "é".repeat(120)));
    v.push("the quick brown fox jumps over the lazy dog ".repeat(40));
    v
}

const TOKENIZE_PEER: &str = r#"
import json, sys
from tokenizers import Tokenizer
tok = Tokenizer.from_file(sys.argv[1])
tok.no_padding()
tok.enable_truncation(int(sys.argv[2]))
texts = json.load(open(sys.argv[3]))
print(json.dumps([tok.encode(t).ids for t in texts]))
"#;

#[test]
fn token_ids_match_hugging_face_tokenizers_on_tricky_text() -> TestResult {
    let dir = model_dir();
    let tok = WordPiece::from_file(&dir.join("tokenizer.json"))?;
    assert_eq!(tok.vocab_size(), 30522);
    let texts = tricky_strings();
    let tmp = tempfile::tempdir()?;
    let file = tmp.path().join("texts.json");
    std::fs::write(&file, serde_json::to_vec(&texts)?)?;
    let tj = dir.join("tokenizer.json");
    let want = run_python(
        TOKENIZE_PEER,
        &[
            tj.to_str().unwrap_or_default(),
            "256",
            file.to_str().unwrap_or_default(),
        ],
    );
    let want = want.as_array().expect("list of id lists");
    assert_eq!(want.len(), texts.len());
    for (text, ids) in texts.iter().zip(want) {
        let ours = tok.encode(text, 256);
        let theirs: Vec<u32> = ids
            .as_array()
            .expect("ids")
            .iter()
            .filter_map(|v| v.as_u64().and_then(|n| u32::try_from(n).ok()))
            .collect();
        assert_eq!(ours, theirs, "token ids differ for {text:?}");
    }
    Ok(())
}

/// An independent BERT forward pass: safetensors parsed by hand, float64 numpy, erf GELU,
/// mean pooling, L2 normalisation; ids from Hugging Face `tokenizers`.
const EMBED_PEER: &str = r#"
import json, struct, sys
import numpy as np
from scipy.special import erf
from tokenizers import Tokenizer
d = sys.argv[1]
with open(d + '/model.safetensors', 'rb') as f:
    n = struct.unpack('<Q', f.read(8))[0]
    header = json.loads(f.read(n))
    blob = f.read()
W = {}
for k, v in header.items():
    if k == '__metadata__' or v['dtype'] != 'F32':
        continue
    s, e = v['data_offsets']
    W[k] = np.frombuffer(blob[s:e], dtype='<f4').reshape(v['shape']).astype(np.float64)
cfg = json.load(open(d + '/config.json'))
H, D, L, eps = cfg['num_attention_heads'], cfg['hidden_size'], cfg['num_hidden_layers'], cfg['layer_norm_eps']
def ln(x, p):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * W[p + '.weight'] + W[p + '.bias']
def lin(x, p):
    return x @ W[p + '.weight'].T + W[p + '.bias']
def embed(ids):
    n = len(ids)
    x = W['embeddings.word_embeddings.weight'][ids] + W['embeddings.position_embeddings.weight'][:n] + W['embeddings.token_type_embeddings.weight'][0]
    x = ln(x, 'embeddings.LayerNorm')
    hd = D // H
    for l in range(L):
        p = 'encoder.layer.%d.' % l
        q = lin(x, p + 'attention.self.query').reshape(n, H, hd).transpose(1, 0, 2)
        k = lin(x, p + 'attention.self.key').reshape(n, H, hd).transpose(1, 0, 2)
        v = lin(x, p + 'attention.self.value').reshape(n, H, hd).transpose(1, 0, 2)
        a = q @ k.transpose(0, 2, 1) / np.sqrt(hd)
        a = np.exp(a - a.max(-1, keepdims=True))
        a = a / a.sum(-1, keepdims=True)
        c = (a @ v).transpose(1, 0, 2).reshape(n, D)
        x = ln(lin(c, p + 'attention.output.dense') + x, p + 'attention.output.LayerNorm')
        h = lin(x, p + 'intermediate.dense')
        h = 0.5 * h * (1.0 + erf(h / np.sqrt(2.0)))
        x = ln(lin(h, p + 'output.dense') + x, p + 'output.LayerNorm')
    m = x.mean(0)
    return m / np.linalg.norm(m)
tok = Tokenizer.from_file(d + '/tokenizer.json')
tok.no_padding()
tok.enable_truncation(256)
texts = json.loads(sys.argv[2])
print(json.dumps([embed(tok.encode(t).ids).tolist() for t in texts]))
"#;

#[test]
fn embeddings_match_a_numpy_forward_pass_over_the_same_weights() -> TestResult {
    let dir = model_dir();
    let texts = [
        "The spare key is under the flower pot.",
        "where is the spare key",
        "My dentist appointment is on Tuesday at 3 PM, café Ünïcödé 中文",
        "the wifi password is fish123",
    ];
    let want = run_python(
        EMBED_PEER,
        &[
            dir.to_str().unwrap_or_default(),
            &serde_json::to_string(&texts)?,
        ],
    );
    let e = Embedder::load(&dir, 256, 1)?;
    assert_eq!(e.dims(), 384);
    let mut ours = Vec::new();
    for (text, theirs) in texts.iter().zip(want.as_array().expect("list")) {
        let v = e.embed(text)?;
        let theirs: Vec<f64> = theirs
            .as_array()
            .expect("vector")
            .iter()
            .filter_map(Value::as_f64)
            .collect();
        assert_eq!(v.len(), theirs.len());
        let norm: f64 = v.iter().map(|x| f64::from(*x) * f64::from(*x)).sum::<f64>();
        assert!((norm - 1.0).abs() < 1e-4, "not unit length: {norm}");
        let cos: f64 = v.iter().zip(&theirs).map(|(a, b)| f64::from(*a) * b).sum();
        eprintln!("{text:?}: cosine to numpy {cos:.6}");
        assert!(cos >= 0.999, "{text:?}: cosine {cos} < 0.999");
        ours.push(v);
    }
    // Sanity of meaning: the question is closer to its answer than to the wifi fact.
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    assert!(dot(&ours[0], &ours[1]) > dot(&ours[3], &ours[1]) + 0.2);
    Ok(())
}

/// The word-embedding table (47 MB, half of all-MiniLM) is read from the memory-mapped
/// checkpoint and its pages are released after each lookup: after embedding texts with a few
/// hundred different words, the mapping holds almost nothing of this process's memory (each
/// word's row would otherwise keep a 4 kB page).
#[test]
fn the_word_table_is_read_from_the_mapped_file_and_not_kept() -> TestResult {
    let e = Embedder::load(&model_dir(), 256, 1)?;
    let mut texts: Vec<String> = FACTS.iter().map(|s| s.to_string()).collect();
    texts.extend(tricky_strings());
    let mut ids: Vec<u32> = texts.iter().flat_map(|t| e.token_ids(t)).collect();
    for t in &texts {
        e.embed(t)?;
    }
    ids.sort_unstable();
    ids.dedup();
    assert!(ids.len() > 200, "only {} different tokens", ids.len());
    let (addr, len) = e.word_table().mapping();
    assert!(
        len > 80 << 20,
        "the mapping is {len} bytes, not the whole file"
    );
    let smaps = std::fs::read_to_string("/proc/self/smaps")?;
    let start = format!("{addr:x}-");
    let rss_kb: u64 = smaps
        .lines()
        .skip_while(|l| !l.starts_with(&start))
        .find_map(|l| l.strip_prefix("Rss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or("the word table's mapping is not in /proc/self/smaps")?;
    assert!(
        rss_kb <= 64,
        "{rss_kb} kB of the mapped checkpoint resident after {} different words",
        ids.len()
    );
    Ok(())
}

const FACTS: &[&str] = &[
    "the spare key is under the flower pot",
    "the wifi password is fish123",
    "the dentist appointment is on Tuesday at 3 PM",
    "Grandma's birthday is on March 14th",
    "the car is parked on level 2 of the garage",
    "the passport is in the top drawer of the desk",
    "the cat gets fed twice a day, at 7 and at 6",
    "the plumber's number is 555 0134",
    "the water meter is behind the washing machine",
    "the recycling goes out on Thursday mornings",
    "the fuse box is in the basement next to the stairs",
    "Tom is allergic to peanuts",
    "the garden hose is in the shed",
    "the alarm code is 4821",
    "the landlord is called Mrs. Patel",
    "the kids' swimming lessons are on Saturday at 10",
    "the printer ink is in the hall cupboard",
    "the thermostat should stay at 20 degrees at night",
    "the bike lock combination is 1-9-8-4",
    "the vet is Dr. Green on Main Street",
];

/// (query, expected top-1, also acceptable within the top 3).
const QUERIES: &[(&str, &str)] = &[
    (
        "where is the spare key",
        "the spare key is under the flower pot",
    ),
    ("what's the wifi password", "the wifi password is fish123"),
    (
        "when do I see the dentist",
        "the dentist appointment is on Tuesday at 3 PM",
    ),
    (
        "when is grandma's birthday",
        "Grandma's birthday is on March 14th",
    ),
    (
        "where did I park the car",
        "the car is parked on level 2 of the garage",
    ),
    (
        "where is my passport",
        "the passport is in the top drawer of the desk",
    ),
    (
        "how do I call the plumber",
        "the plumber's number is 555 0134",
    ),
    (
        "which day is recycling collected",
        "the recycling goes out on Thursday mornings",
    ),
    ("what is Tom allergic to", "Tom is allergic to peanuts"),
    ("what's the code for the alarm", "the alarm code is 4821"),
    (
        "where's the fuse box",
        "the fuse box is in the basement next to the stairs",
    ),
    (
        "how warm should the heating be at night",
        "the thermostat should stay at 20 degrees at night",
    ),
];

async fn open_memory(dir: &Path, cfg: MemoryConfig) -> TestResult<(Store, Arc<EventBus>, Memory)> {
    let store = Store::open(
        &dir.join("db.sqlite"),
        &StoreOptions::from(&Config::defaults().store),
    )?;
    let events = Arc::new(EventBus::new(256));
    let memory = Memory::open(store.clone(), events.clone(), cfg, dir).await?;
    assert!(memory.status().is_ok(), "{:?}", memory.status());
    Ok((store, events, memory))
}

#[tokio::test]
async fn recall_ranks_the_right_household_fact_first() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (store, _events, memory) = open_memory(tmp.path(), memory_config()).await?;
    for f in FACTS {
        let r = memory
            .remember(NewFact {
                text: (*f).to_owned(),
                ..NewFact::default()
            })
            .await?;
        assert_eq!(r.outcome, Outcome::Created, "{f}");
    }
    assert_eq!(memory.len(), FACTS.len());
    let mut top1 = 0;
    for (q, want) in QUERIES {
        let hits = memory.search(q, 3, 0.0, None).await?;
        let texts: Vec<&str> = hits.iter().map(|h| h.fact.text.as_str()).collect();
        eprintln!("{q:?} → {:?} ({:.3})", texts.first(), hits[0].score);
        assert!(
            texts.contains(want),
            "{q:?}: {want:?} not in the top 3 {texts:?}"
        );
        if texts[0] == *want {
            top1 += 1;
        }
        assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
    }
    eprintln!("top-1: {top1}/{}", QUERIES.len());
    assert!(top1 >= QUERIES.len() - 1, "top-1 {top1}/{}", QUERIES.len());
    // The first query must be exactly right.
    let hits = memory
        .search("where is the spare key", 1, 0.0, None)
        .await?;
    assert_eq!(hits[0].fact.text, "the spare key is under the flower pot");
    // A threshold keeps unrelated facts out.
    let none = memory
        .search("what is the capital of France", 3, 0.5, None)
        .await?;
    assert!(none.is_empty(), "{none:?}");
    store.close().await;
    Ok(())
}

#[tokio::test]
async fn near_duplicates_update_and_a_source_message_is_remembered_once() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (store, events, memory) = open_memory(tmp.path(), memory_config()).await?;
    store
        .write(|c| {
            c.execute(
                "INSERT INTO contacts (id, display_name, trust, created_at, updated_at) \
                 VALUES (7, 'Gus', 'known', 0, 0)",
                [],
            )?;
            Ok(())
        })
        .await?;
    let mut rx = events.subscribe();
    let a = memory
        .remember(NewFact {
            text: "the spare key is under the flower pot".into(),
            ..NewFact::default()
        })
        .await?;
    let b = memory
        .remember(NewFact {
            text: "The spare key is under the flower pot!".into(),
            ..NewFact::default()
        })
        .await?;
    assert_eq!(b.outcome, Outcome::Updated);
    assert_eq!(b.fact.id, a.fact.id);
    assert_eq!(b.fact.text, "The spare key is under the flower pot!");
    assert_eq!(memory.len(), 1);
    // A different contact's similar fact is its own.
    let c = memory
        .remember(NewFact {
            text: "the spare key is under the flower pot".into(),
            contact_id: Some(7),
            ..NewFact::default()
        })
        .await?;
    assert_eq!(c.outcome, Outcome::Created);
    let other = memory
        .remember(NewFact {
            text: "the spare key is in the garage".into(),
            ..NewFact::default()
        })
        .await?;
    assert_eq!(
        other.outcome,
        Outcome::Created,
        "a different fact is not a duplicate"
    );
    let kinds: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok())
        .map(|e| serde_json::to_value(e).unwrap_or_default()["updated"].to_string())
        .collect();
    assert_eq!(kinds, ["false", "true", "false", "false"]);
    let e = memory
        .remember(NewFact {
            text: "  ".into(),
            ..NewFact::default()
        })
        .await
        .expect_err("empty");
    assert_eq!(e.to_string(), "text: must not be empty");
    store.close().await;
    Ok(())
}

#[tokio::test]
async fn forgetting_by_id_and_by_contact_keeps_table_and_index_in_step_across_a_restart(
) -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (store, _events, memory) = open_memory(tmp.path(), memory_config()).await?;
    store
        .write(|c| {
            c.execute_batch(
                "INSERT INTO contacts (id, display_name, trust, created_at, updated_at) \
                 VALUES (1, 'Anna', 'household', 0, 0), (2, 'Ben', 'known', 0, 0), \
                 (3, 'Cleo', 'known', 0, 0)",
            )?;
            Ok(())
        })
        .await?;
    // A fact of a contact that does not exist is refused, naming the field.
    let err = memory
        .remember(NewFact {
            text: "Dana likes tea".into(),
            contact_id: Some(42),
            ..NewFact::default()
        })
        .await
        .err()
        .map(|e| e.to_string());
    assert_eq!(err.as_deref(), Some("contact_id: there is no contact 42"));
    let mut ids = Vec::new();
    for (i, f) in FACTS.iter().take(6).enumerate() {
        let r = memory
            .remember(NewFact {
                text: (*f).to_owned(),
                contact_id: Some(if i % 2 == 0 { 1 } else { 2 }),
                ..NewFact::default()
            })
            .await?;
        ids.push(r.fact.id);
    }
    // Contact filter.
    let hits = memory
        .search("where is the spare key", 6, -1.0, Some(2))
        .await?;
    assert_eq!(hits.len(), 3);
    assert!(hits.iter().all(|h| h.fact.contact_id == Some(2)));
    // By id.
    assert_eq!(memory.forget(vec![ids[0], 9999]).await?, vec![ids[0]]);
    let hits = memory
        .search("where is the spare key", 1, 0.0, None)
        .await?;
    assert_ne!(hits[0].fact.id, ids[0]);
    // By contact.
    let gone = memory.forget_contact(2).await?;
    assert_eq!(gone.len(), 3);
    assert_eq!(memory.len(), 2);
    assert!(memory.list(Some(2), None, 10).await?.is_empty());
    store.close().await;
    drop(memory);
    // A restart builds the index from the table: the same two remain.
    let (store, _events, memory) = open_memory(tmp.path(), memory_config()).await?;
    assert_eq!(memory.len(), 2);
    let all = memory.search("anything", 10, -1.0, None).await?;
    let mut got: Vec<i64> = all.iter().map(|h| h.fact.id).collect();
    got.sort_unstable();
    assert_eq!(got, vec![ids[2], ids[4]]);
    // A contact deleted while its facts stayed (a crash between the two): the facts are
    // erased when memory opens, before anyone could inherit them with a reused id.
    let cleo = memory
        .remember(NewFact {
            text: "Cleo's cat is called Pixel".into(),
            contact_id: Some(3),
            ..NewFact::default()
        })
        .await?;
    store
        .write(|c| {
            c.execute("DELETE FROM contacts WHERE id = 3", [])?;
            Ok(())
        })
        .await?;
    store.close().await;
    drop(memory);
    let (store, _events, memory) = open_memory(tmp.path(), memory_config()).await?;
    assert!(memory.get(cleo.fact.id).await?.is_none());
    assert_eq!(memory.len(), 2);
    store.close().await;
    Ok(())
}

fn with_memory(c: &mut Config) {
    c.memory.model = model_dir().display().to_string();
}

#[tokio::test]
async fn memories_api_creates_lists_searches_and_erases_with_named_errors() -> TestResult {
    let d = TestDaemon::start_with(with_memory, Vec::new()).await?;
    // Contacts 1 and 2 (a fresh database numbers them so).
    for name in ["Anna", "Ben"] {
        let r = d
            .post("/api/v1/contacts")
            .json(&json!({"display_name": name, "trust": "household"}))
            .send()
            .await?;
        assert_eq!(r.status(), 201);
    }
    let mut events = d.app().events().subscribe();
    let mut ids = Vec::new();
    for (i, f) in FACTS.iter().take(5).enumerate() {
        let resp = d
            .post("/api/v1/memories")
            .json(&json!({"text": f, "contact_id": if i < 3 { 1 } else { 2 }, "tags": ["home"]}))
            .send()
            .await?;
        assert_eq!(resp.status(), 201);
        let v: Value = resp.json().await?;
        assert_eq!(v["outcome"], "created");
        ids.push(v["memory"]["id"].as_i64().unwrap_or(0));
    }
    let ev = events.recv().await?;
    assert_eq!(serde_json::to_value(&ev)?["type"], "memory.stored");
    // A near-duplicate updates.
    let resp = d
        .post("/api/v1/memories")
        .json(&json!({"text": "The spare key is under the flower pot.", "contact_id": 1}))
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await?;
    assert_eq!(v["outcome"], "updated");
    assert_eq!(v["memory"]["id"], ids[0]);
    // Pages, newest first.
    let p1: Value = d
        .get("/api/v1/memories?limit=2")
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(p1["items"].as_array().map(Vec::len), Some(2));
    assert_eq!(p1["items"][0]["id"], ids[4]);
    let cursor = p1["next_cursor"].as_str().unwrap_or("").to_owned();
    let p2: Value = d
        .get(&format!("/api/v1/memories?limit=2&cursor={cursor}"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(p2["items"][0]["id"], ids[2]);
    let by_contact: Value = d
        .get("/api/v1/memories?contact_id=2")
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(by_contact["items"].as_array().map(Vec::len), Some(2));
    // Search.
    let s: Value = d
        .get("/api/v1/memories?q=where%20did%20I%20park%20the%20car&limit=2")
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(
        s["items"][0]["text"],
        "the car is parked on level 2 of the garage"
    );
    assert!(s["items"][0]["score"].as_f64().unwrap_or(0.0) > 0.4);
    // Validation names the field.
    for (req, field) in [
        (json!({"text": " "}), "text"),
        (json!({"text": "x", "contact_id": 0}), "contact_id"),
        (json!({"text": "x", "contact_id": 99}), "contact_id"),
        (json!({"text": "x", "tags": [""]}), "tags"),
    ] {
        let r = d.post("/api/v1/memories").json(&req).send().await?;
        assert_eq!(r.status(), 422, "{req}");
        let v: Value = r.json().await?;
        let msg = v["error"]["message"].as_str().unwrap_or("");
        assert!(msg.starts_with(&format!("{field}:")), "{msg}");
    }
    for (path, field) in [
        ("/api/v1/memories?limit=0", "limit"),
        ("/api/v1/memories?q=", "q"),
        ("/api/v1/memories?cursor=abc", "cursor"),
        ("/api/v1/memories?contact_id=-3", "contact_id"),
        ("/api/v1/memories/zero", "id"),
    ] {
        let r = d.get(path).send().await?;
        assert_eq!(r.status(), 400, "{path}");
        let v: Value = r.json().await?;
        let msg = v["error"]["message"].as_str().unwrap_or("");
        assert!(msg.starts_with(&format!("{field}:")), "{path}: {msg}");
    }
    let r = d
        .client
        .delete(d.url("/api/v1/memories"))
        .bearer_auth(common::TOKEN)
        .send()
        .await?;
    assert_eq!(r.status(), 400);
    // Forget one, then a contact.
    let r = d
        .client
        .delete(d.url(&format!("/api/v1/memories/{}", ids[1])))
        .bearer_auth(common::TOKEN)
        .send()
        .await?;
    assert_eq!(r.status(), 204);
    let r = d
        .client
        .delete(d.url(&format!("/api/v1/memories/{}", ids[1])))
        .bearer_auth(common::TOKEN)
        .send()
        .await?;
    assert_eq!(r.status(), 404);
    assert_eq!(
        d.get(&format!("/api/v1/memories/{}", ids[1]))
            .send()
            .await?
            .status(),
        404
    );
    let r: Value = d
        .client
        .delete(d.url("/api/v1/memories?contact_id=1"))
        .bearer_auth(common::TOKEN)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(r["deleted"].as_array().map(Vec::len), Some(2));
    let left: Value = d.get("/api/v1/memories").send().await?.json().await?;
    let left: Vec<i64> = left["items"]
        .as_array()
        .map(|a| a.iter().filter_map(|m| m["id"].as_i64()).collect())
        .unwrap_or_default();
    assert_eq!(left, vec![ids[4], ids[3]]);
    let s: Value = d
        .get("/api/v1/memories?q=spare%20key&limit=10&min_score=-1")
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(s["items"].as_array().map(Vec::len), Some(2), "{s}");
    // Deleting contact 2 erases its facts with it.
    let r = d
        .client
        .delete(d.url("/api/v1/contacts/2"))
        .bearer_auth(common::TOKEN)
        .send()
        .await?;
    assert_eq!(r.status(), 204);
    let left: Value = d.get("/api/v1/memories").send().await?.json().await?;
    assert_eq!(left["items"].as_array().map(Vec::len), Some(0), "{left}");
    // The OpenAPI document has the routes.
    let doc: Value = d.get("/api/v1/openapi.json").send().await?.json().await?;
    assert!(doc["paths"]["/api/v1/memories"]["delete"].is_object());
    assert!(doc["paths"]["/api/v1/memories/{id}"]["get"].is_object());
    Ok(())
}

async fn say(d: &TestDaemon, conv: Option<i64>, text: &str) -> TestResult<Value> {
    let mut body = json!({ "text": text });
    if let Some(c) = conv {
        body["conversation_id"] = json!(c);
    }
    let resp = d.post("/api/v1/chat").json(&body).send().await?;
    assert_eq!(resp.status(), 200, "{text}");
    let v: Value = resp.json().await?;
    eprintln!(
        "> {text}\n< {} [{} {}]",
        v["reply"], v["intent"], v["outcome"]
    );
    Ok(v)
}

#[tokio::test]
async fn remember_recall_and_forget_through_the_chat_api() -> TestResult {
    let d = TestDaemon::start_with(with_memory, Vec::new()).await?;
    let a = say(
        &d,
        None,
        "remember that the spare key is under the flower pot",
    )
    .await?;
    assert_eq!(a["intent"], "memory.remember");
    assert_eq!(a["tool_calls"][0]["name"], "memory_remember");
    assert_eq!(
        a["reply"],
        "Okay, I'll remember that the spare key is under the flower pot."
    );
    let c = a["conversation_id"].as_i64();
    // Slot filling when the fact is missing.
    let q = say(&d, c, "remember").await?;
    assert_eq!(q["reply"], "What should I remember?");
    assert_eq!(q["state"], "awaiting_slot");
    let r = say(&d, c, "that the wifi password is fish123").await?;
    assert_eq!(
        r["tool_calls"][0]["arguments"]["text"],
        "the wifi password is fish123"
    );
    say(
        &d,
        c,
        "remember the recycling goes out on Thursday mornings",
    )
    .await?;
    let r = say(&d, c, "what did I say about the spare key").await?;
    assert_eq!(r["intent"], "memory.recall");
    assert_eq!(
        r["reply"],
        "You told me: The spare key is under the flower pot."
    );
    let r = say(&d, c, "what did I tell you about the internet password").await?;
    assert!(
        r["reply"].as_str().unwrap_or("").contains("fish123"),
        "{}",
        r["reply"]
    );
    // Forget: found, confirmed, gone.
    let f = say(&d, c, "forget what I said about the spare key").await?;
    assert_eq!(f["intent"], "memory.forget");
    assert_eq!(f["state"], "awaiting_confirmation");
    assert_eq!(
        f["reply"],
        "Should I forget \"the spare key is under the flower pot\"?"
    );
    let y = say(&d, c, "yes").await?;
    assert_eq!(y["tool_calls"][0]["name"], "memory_forget");
    assert_eq!(y["state"], "idle");
    let r = say(&d, c, "what did I say about the spare key").await?;
    assert!(
        !r["reply"].as_str().unwrap_or("").contains("flower pot"),
        "{}",
        r["reply"]
    );
    // Declining keeps it.
    say(&d, c, "forget what I said about recycling").await?;
    let n = say(&d, c, "no").await?;
    assert_eq!(n["reply"], "Okay, I'll keep it.");
    let list: Value = d.get("/api/v1/memories").send().await?.json().await?;
    let texts: Vec<&str> = list["items"]
        .as_array()
        .map(|a| a.iter().filter_map(|m| m["text"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        texts,
        [
            "the recycling goes out on Thursday mornings",
            "the wifi password is fish123"
        ]
    );
    // The stored fact points at the message that said it.
    let src = list["items"][1]["source_message_id"].as_i64();
    assert!(src.is_some_and(|s| s > 0));
    Ok(())
}

#[tokio::test]
async fn unknown_senders_may_not_use_memory() -> TestResult {
    let d = TestDaemon::start_with(with_memory, Vec::new()).await?;
    let resp = d
        .post("/api/v1/chat")
        .json(&json!({"text": "remember that the alarm code is 4821", "from": "+15550001111"}))
        .send()
        .await?;
    let v: Value = resp.json().await?;
    assert_eq!(v["outcome"], "refused", "{v}");
    let list: Value = d.get("/api/v1/memories").send().await?.json().await?;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(0));
    Ok(())
}

#[tokio::test]
async fn without_the_model_memory_says_so_instead_of_failing() -> TestResult {
    let d = TestDaemon::start_with(
        |c| c.memory.model = "/nonexistent/all-minilm-l6-v2".into(),
        Vec::new(),
    )
    .await?;
    let r = d
        .post("/api/v1/memories")
        .json(&json!({"text": "the spare key is under the flower pot"}))
        .send()
        .await?;
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await?;
    assert_eq!(v["error"]["code"], "memory_unavailable");
    let ready = d.get("/readyz").send().await?;
    assert_eq!(
        ready.status(),
        200,
        "a missing model degrades, it does not block"
    );
    let a = say(
        &d,
        None,
        "remember that the spare key is under the flower pot",
    )
    .await?;
    assert!(
        a["reply"]
            .as_str()
            .unwrap_or("")
            .contains("memory is unavailable"),
        "{}",
        a["reply"]
    );
    Ok(())
}

// ---- the LLM's context, seen through an Ollama-shaped server -----------------------------

#[derive(Clone, Default)]
struct Prompts(Arc<Mutex<Vec<Value>>>);

async fn fake_chat(
    axum::extract::State(p): axum::extract::State<Prompts>,
    axum::Json(req): axum::Json<Value>,
) -> String {
    p.0.lock().map(|mut v| v.push(req)).unwrap_or(());
    let piece = json!({"model": "m", "created_at": "2025-01-01T00:00:00Z",
        "message": {"role": "assistant", "content": "Under the flower pot."}, "done": false});
    let done = json!({"model": "m", "created_at": "2025-01-01T00:00:00Z",
        "message": {"role": "assistant", "content": ""}, "done_reason": "stop", "done": true});
    format!("{piece}\n{done}\n")
}

#[tokio::test]
async fn relevant_memories_reach_the_llm_prompt_and_irrelevant_ones_do_not() -> TestResult {
    let prompts = Prompts::default();
    let app = axum::Router::new()
        .route("/api/chat", axum::routing::post(fake_chat))
        .with_state(prompts.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    let d = TestDaemon::start_with(
        move |c| {
            with_memory(c);
            c.llm.backend = LlmBackendKind::Ollama;
            c.llm.ollama_url = format!("http://{addr}");
        },
        Vec::new(),
    )
    .await?;
    for f in FACTS {
        let r = d
            .post("/api/v1/memories")
            .json(&json!({"text": f}))
            .send()
            .await?;
        assert_eq!(r.status(), 201);
    }
    let r = say(&d, None, "where did we hide the key to the front door?").await?;
    assert_eq!(r["reply"], "Under the flower pot.");
    // The facts come as a system note right before the new message; the fixed system prompt
    // stays the same for every turn (the engine's cached prefix).
    let sys = |i: usize| -> String {
        let msgs = prompts.0.lock().map_or_else(
            |_| Vec::new(),
            |v| v[i]["messages"].as_array().cloned().unwrap_or_default(),
        );
        let n = msgs.len();
        assert!(n >= 2, "{msgs:?}");
        assert_eq!(msgs[n - 1]["role"], "user", "{msgs:?}");
        let first = msgs[0]["content"].as_str().unwrap_or("");
        assert!(!first.contains("remember"), "{first}");
        if n >= 3 && msgs[n - 2]["role"] == "system" {
            msgs[n - 2]["content"].as_str().unwrap_or("").to_owned()
        } else {
            String::new()
        }
    };
    let s = sys(0);
    eprintln!("{s}");
    assert!(s.contains("- the spare key is under the flower pot"), "{s}");
    assert!(!s.contains("Grandma"), "{s}");
    assert!(
        s.lines().filter(|l| l.starts_with("- ")).count() <= 3,
        "{s}"
    );
    // Nothing relevant: no memory section.
    say(&d, None, "tell me a joke about penguins").await?;
    let s = sys(1);
    assert!(!s.contains("remember"), "{s}");
    // An unknown sender's turn gets no memories.
    d.post("/api/v1/chat")
        .json(&json!({"text": "where is the spare key hidden", "from": "+15550002222"}))
        .send()
        .await?;
    let s = sys(2);
    assert!(!s.contains("flower pot"), "{s}");
    Ok(())
}
