"""The peer of benches/tts.rs: the piper-tts Python API on the same voice and text.

Usage: tts_peer.py MODEL THREADS REPS TEXT
Prints one JSON line: load_s, first_audio_ms, total_ms, audio_s (best of REPS by total).
The session is rebuilt with THREADS intra-op threads (piper's own load uses every core).
"""

import json
import sys
import time

import onnxruntime
from piper import PiperVoice


def main() -> None:
    model, threads, reps, text = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    t = time.perf_counter()
    voice = PiperVoice.load(model)
    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    voice.session = onnxruntime.InferenceSession(
        model, sess_options=opts, providers=["CPUExecutionProvider"]
    )
    load_s = time.perf_counter() - t
    # Warm up (first run allocates).
    for _ in voice.synthesize("Warming up."):
        pass
    best = None
    for _ in range(reps):
        time.sleep(0.3)  # the pause benches/tts.rs makes before each answer
        start = time.perf_counter()
        first = None
        samples = 0
        rate = 22050
        for chunk in voice.synthesize(text):
            if first is None:
                first = time.perf_counter() - start
            samples += len(chunk.audio_float_array)
            rate = chunk.sample_rate
        total = time.perf_counter() - start
        row = {
            "load_s": load_s,
            "first_audio_ms": first * 1000.0,
            "total_ms": total * 1000.0,
            "audio_s": samples / rate,
        }
        if best is None or row["total_ms"] < best["total_ms"]:
            best = row
    print(json.dumps(best))


if __name__ == "__main__":
    main()
