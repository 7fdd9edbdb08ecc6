"""llama.cpp peer for benches/llm.rs: the same GGUF, thread count and ChatML prompt, measured
the same way (prefill tok/s, decode tok/s, time to first token without and with a reused
system-prompt KV cache, peak RSS). Prints one JSON object.

Usage: python llm_peer.py MODEL THREADS SPEC_JSON
SPEC_JSON: {"system": ..., "users": [user message for the cold run, user message for the warm
run], "decode_tokens": N, "reps": N}
"""

import json
import sys
import time

from llama_cpp import Llama


def peak_rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def chatml(system, user):
    return (
        f"<|im_start|>system\n{system}<|im_end|>\n"
        f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
    )


def main():
    model, threads, spec = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
    llm = Llama(
        model_path=model,
        n_threads=threads,
        n_threads_batch=threads,
        n_ctx=2048,
        n_batch=512,
        use_extra_bufts=False,  # GGML_NATIVE builds segfault on AMX CPUs otherwise
        verbose=False,
    )
    cold_user, warm_user = spec["users"]
    prompt = llm.tokenize(chatml(spec["system"], cold_user).encode(), add_bos=False, special=True)
    warm = llm.tokenize(chatml(spec["system"], warm_user).encode(), add_bos=False, special=True)
    sys_len = len(
        llm.tokenize(
            f"<|im_start|>system\n{spec['system']}<|im_end|>\n".encode(), add_bos=False, special=True
        )
    )

    prefill, ttft_cold, ttft_warm, decode = [], [], [], []
    for _ in range(spec["reps"]):
        # Cold: empty cache, whole prompt, first token.
        llm.reset()
        llm._ctx.kv_cache_clear()
        t0 = time.perf_counter()
        llm.eval(prompt)
        t1 = time.perf_counter()
        tok = llm.sample(top_k=1, temp=0.0)
        t2 = time.perf_counter()
        prefill.append(len(prompt) / (t1 - t0))
        ttft_cold.append(t2 - t0)
        # Decode: greedy tokens after that prompt (end-of-turn ignored so every run decodes N).
        n = spec["decode_tokens"]
        t0 = time.perf_counter()
        for _ in range(n):
            llm.eval([tok])
            tok = llm.sample(top_k=1, temp=0.0)
        decode.append(n / (time.perf_counter() - t0))
        # Warm: keep the system prompt's KV cache, prefill only the new turn.
        llm.n_tokens = sys_len
        llm._ctx.kv_cache_seq_rm(-1, sys_len, -1)
        t0 = time.perf_counter()
        llm.eval(warm[sys_len:])
        llm.sample(top_k=1, temp=0.0)
        ttft_warm.append(time.perf_counter() - t0)

    best = max
    print(
        json.dumps(
            {
                "engine": "llama.cpp",
                "prompt_tokens": len(prompt),
                "warm_new_tokens": len(warm) - sys_len,
                "prefill_tok_s": best(prefill),
                "decode_tok_s": best(decode),
                "ttft_cold_ms": min(ttft_cold) * 1000,
                "ttft_warm_ms": min(ttft_warm) * 1000,
                "peak_rss_mb": peak_rss_mb(),
            }
        )
    )


if __name__ == "__main__":
    main()
