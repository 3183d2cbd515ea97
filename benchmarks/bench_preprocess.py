"""preprocess: tokens/s against the raw engines, scaling with workers, start-up, memory.

    python benchmarks/bench_preprocess.py [--mb 64] [--workers N] [--datatrove PYTHON] [--skip-memory]

In one run on one machine, for Japanese text (the sample corpus repeated) and English text
(docstrings of the installed Python packages, one per line), each with an 8k SentencePiece
unigram tokenizer trained by preprocess on it:
  raw engines    SentencePiece and the `tokenizers` library on the same tokenizer, in this
                 process, one thread, text in memory, in batches as large as the pipeline's
  preprocess     `--workers 1` and `--workers N` on that text as a file: the encoding phase
                 (first block back from a worker to the last one written) and the whole command
                 (a subprocess, launch to exit), each against the raw engine preprocess uses;
                 the best of two runs (raw engines: of three passes), as the machine may be shared
  datatrove      its DocumentTokenizer (the `tokenizers` engine) on the same text and tokenizer,
                 where --datatrove names a Python that has datatrove installed
Start-up: CPU seconds of all processes from launch to the first encoded token (a sitecustomize
hook in the subprocesses records it), and the whole run on a 200-document file.
Memory: peak PSS of the process tree on a corpus of 1x and 10x the size (flat is the goal).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (CORPUS, ROOT, first_token_hook, machine, make_tokenizer, mb, private, rate, run_timed,
                               tree)


def japanese(path: Path, megabytes: float) -> int:
    """The sample corpus repeated to about `megabytes` MB; returns its byte size."""
    text = (CORPUS / "train.txt").read_bytes()
    reps = max(1, int(megabytes * 1e6 // len(text)) + 1)
    with open(path, "wb") as f:
        for _ in range(reps):
            f.write(text)
    return path.stat().st_size


def english(path: Path, megabytes: float) -> int:
    """English-like text: the docstrings of installed packages (one per line, whitespace folded,
    at least 80 characters, each once), repeated if there are fewer than `megabytes` MB of them."""
    import site

    want, lines, seen = megabytes * 1e6, [], set()
    size = 0
    for base in site.getsitepackages():
        for py in sorted(Path(base).rglob("*.py")):
            try:
                tree_ = ast.parse(py.read_text(encoding="utf-8"))
            except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
                continue
            for node in ast.walk(tree_):
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                    doc = ast.get_docstring(node)
                    if doc and len(doc) >= 80:
                        line = " ".join(doc.split())
                        if line not in seen:
                            seen.add(line)
                            lines.append(line)
                            size += len(line.encode()) + 1
            if size >= want:
                break
        if size >= want:
            break
    body = ("\n".join(lines) + "\n").encode()
    with open(path, "wb") as f:
        for _ in range(max(1, int(want // len(body)) + 1)):
            f.write(body)
    return path.stat().st_size


def batches(text: Path) -> list[list[str]]:
    """The lines in batches of about the pipeline's largest block."""
    from preprocess.encoding import BATCH_BYTES

    out, cur, size = [], [], 0
    for line in text.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        cur.append(line)
        size += len(line.encode())
        if size >= BATCH_BYTES:
            out.append(cur)
            cur, size = [], 0
    return out + [cur]


def raw_rates(text: Path, tok_dir: Path, megabytes: float = 16, repeats: int = 3) -> dict[str, tuple[float, int]]:
    """(tokens/s, tokens) of each engine alone, one thread, on the same batches (the first
    `megabytes` of the text): the best of `repeats` passes, the engines taking turns, so that
    other load on a shared machine hits all of them alike."""
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    import sentencepiece as spm
    from tokenizers import Tokenizer

    from preprocess.engines import choose_engine, make_encoder

    sp = spm.SentencePieceProcessor(model_file=str(tok_dir / "tokenizer.model"))
    tk = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
    tk.encode_special_tokens = True
    engines = {"SentencePiece": lambda b: sp.encode(b, num_threads=1),
               "tokenizers": lambda b: [e.ids for e in tk.encode_batch_fast(b, add_special_tokens=False)]}
    chosen = choose_engine(tok_dir, tok_dir.parent)
    if chosen.engine == "sentencepiece":  # what the workers run: SentencePiece with its exactness rules
        engines["preprocess's SentencePiece engine"] = make_encoder(chosen)
    data, out, size = [], {}, 0
    for b in batches(text):
        data.append(b)
        size += sum(len(t.encode()) for t in b)
        if size >= megabytes * 1e6:
            break
    for _ in range(repeats):
        for name, encode in engines.items():
            n, t0 = 0, time.perf_counter()
            for b in data:
                n += sum(map(len, encode(b)))
            best = out.get(name, (0.0, n))[0]
            out[name] = (max(best, n / (time.perf_counter() - t0)), n)
    return out


def pipeline_rate(text: Path, tok_dir: Path, out: Path, workers: int) -> tuple[float, int]:
    """(tokens/s of the encoding phase, tokens) of one in-process preprocess run."""
    from preprocess.config import PreprocessConfig
    from preprocess.pipeline import run

    cfg = PreprocessConfig(inputs=(str(text),), out=out, tokenizer=str(tok_dir), workers=workers, quiet=True,
                           overwrite=True)
    summary = run(cfg, say=lambda s: None)
    return summary.encode_rate, sum(m.num_tokens for m in summary.manifests.values())


def command(text: Path, tok_dir: Path, out: Path, workers: int, hook: Path) -> dict[str, float]:
    """`preprocess` as a user runs it: wall and CPU seconds (all processes) to exit, and to the
    first encoded token."""
    args = [str(text), "--tokenizer", str(tok_dir), "--out", str(out), "--workers", str(workers), "-q", "--overwrite"]
    return run_timed([sys.executable, "-m", "preprocess", *args], hook)


def datatrove_rate(python: str, text: Path, tok_dir: Path, work: Path, workers: int,
                   threads: bool = True) -> tuple[float, int]:
    """(tokens/s, tokens) of datatrove's DocumentTokenizer, whole run (reader + tokenizer +
    writer, `workers` tasks), in a subprocess of the Python that has datatrove. By default the
    `tokenizers` library inside it uses its own thread pool, as datatrove leaves it;
    threads=False sets TOKENIZERS_PARALLELISM=false (one core per worker, as preprocess runs)."""
    inputs = work / "jsonl"
    if not inputs.exists():
        inputs.mkdir(parents=True)
        lines = [ln for ln in text.read_text(encoding="utf-8").splitlines() if ln.strip()]
        for k in range(2):  # one file per task
            with open(inputs / f"part{k}.jsonl", "w", encoding="utf-8") as f:
                for ln in lines[k::2]:
                    f.write(json.dumps({"text": ln}, ensure_ascii=False) + "\n")
    script = f"""
import json, sys, time
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.tokens import DocumentTokenizer
out = {str(work / f"dt{workers}")!r}
t0 = time.perf_counter()
LocalPipelineExecutor(pipeline=[JsonlReader({str(inputs)!r}, glob_pattern="*.jsonl"),
    DocumentTokenizer(out, tokenizer_name_or_path={str(tok_dir / "tokenizer.json")!r}, eos_token="</s>",
                      shuffle_documents=False)],
    tasks=2, workers={workers}, logging_dir={str(work / f"dtlog{workers}")!r}, skip_completed=False).run()
secs = time.perf_counter() - t0
import glob, os
tokens = sum(os.path.getsize(p) // 2 for p in glob.glob(out + "/*.ds"))
print(json.dumps({{"seconds": secs, "tokens": tokens}}))
"""
    env = {**os.environ, "PYTHONPATH": ""}
    env.pop("TOKENIZERS_PARALLELISM", None)
    if not threads:
        env["TOKENIZERS_PARALLELISM"] = "false"
    r = subprocess.run([python, "-c", script], capture_output=True, text=True, env=env)
    if r.returncode:
        raise RuntimeError(r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "datatrove failed")
    got = json.loads(r.stdout.strip().splitlines()[-1])
    return got["tokens"] / got["seconds"], got["tokens"]


def peak_memory(text: Path, tok_dir: Path, out: Path, workers: int) -> tuple[int, int]:
    """(peak total PSS of the process tree, peak RSS of its largest process) in bytes.

    PSS splits shared pages between the processes sharing them, so a child caught between fork
    and exec (a copy of its parent for a moment) is not counted twice, as summed RSS would.
    """
    cmd = [sys.executable, "-m", "preprocess", str(text), "--tokenizer", str(tok_dir), "--out", str(out),
           "--workers", str(workers), "-q", "--overwrite"]
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": str(ROOT)})
    total = largest = 0
    while proc.poll() is None:
        pss, sizes = [], []
        for pid in tree(proc.pid):
            try:
                mem = private(pid)
                pss.append(mem["pss"])
                sizes.append(mem["rss"])
            except (OSError, KeyError):
                pass
        total, largest = max(total, sum(pss)), max([largest, *sizes])
        time.sleep(0.05)
    if proc.returncode:
        raise SystemExit(f"preprocess failed: {proc.returncode}")
    return total, largest


def throughput(name: str, text: Path, tok: Path, root: Path, workers: list[int], hook: Path, datatrove: str | None):
    size = text.stat().st_size
    print(f"\n[{name}] {size / 1e6:.0f} MB, SentencePiece unigram, vocab 8000 (trained by preprocess on this text)")
    raws = raw_rates(text, tok)
    for engine, (r, n) in raws.items():
        print(f"  raw {engine}, 1 process, 1 thread: {rate(r)} tokens/s (best of 3 passes over {n:,} tokens)")
    ref_name = "preprocess's SentencePiece engine" if "preprocess's SentencePiece engine" in raws else "tokenizers"
    ref = raws["SentencePiece" if ref_name != "tokenizers" else "tokenizers"][0]
    print(f"  (preprocess uses {'SentencePiece' if ref_name != 'tokenizers' else 'tokenizers'}: ratios below are "
          f"against its raw rate, {rate(ref)} tokens/s)")
    for w in workers:  # the best of two runs each, as for the raw engines
        r, n = max(pipeline_rate(text, tok, root / f"out{w}", w) for _ in range(2))
        whole = min((command(text, tok, root / f"cmd{w}", w, hook) for _ in range(2)), key=lambda t: t["wall"])
        goal = 0.85 * w
        print(f"  preprocess --workers {w}: encoding {rate(r)} tokens/s = {r / ref:.2f} x raw (goal >= {goal:.2f}: "
              f"{'met' if r / ref >= goal else 'NOT met'}); whole command {whole['wall']:.1f} s = "
              f"{rate(n / whole['wall'])} tokens/s = {n / whole['wall'] / ref:.2f} x raw")
    if datatrove:
        for w, threads in [(1, False)] + [(w, True) for w in workers]:
            try:
                r, n = datatrove_rate(datatrove, text, tok, root / f"datatrove-{name}", w, threads)
                how = "its tokenizers thread pool on" if threads else "TOKENIZERS_PARALLELISM=false"
                print(f"  datatrove DocumentTokenizer, {w} worker(s), {how}, whole run: {rate(r)} tokens/s "
                      f"({n:,} tokens)")
            except (RuntimeError, OSError) as e:
                print(f"  datatrove: could not run it ({e})")


def bpe_trade(text: Path, root: Path) -> None:
    """BPE: preprocess encodes with `tokenizers` (exact by construction), not SentencePiece's own
    BPE (not the same algorithm implementation): what that costs."""
    bpe = make_tokenizer(root / "bpe-tok", model_type="bpe")
    raws = raw_rates(text, bpe)
    sp, tk = raws["SentencePiece"][0], raws["tokenizers"][0]
    r, _ = max(pipeline_rate(text, bpe, root / "bpe-out", 1) for _ in range(2))
    print(f"\n[BPE] the same Japanese text, SentencePiece BPE, vocab 8000: raw SentencePiece {rate(sp)} tokens/s, "
          f"raw tokenizers {rate(tk)} tokens/s ({tk / sp:.2f} x); preprocess --workers 1 (tokenizers engine) "
          f"encoding {rate(r)} tokens/s = {r / tk:.2f} x raw tokenizers, {r / sp:.2f} x raw SentencePiece")


def startup(tok: Path, root: Path, hook: Path) -> None:
    small = root / "small.txt"
    lines = (CORPUS / "train.txt").read_text(encoding="utf-8").splitlines()[:200]
    small.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"\n[start-up] a 200-document file ({small.stat().st_size / 1e3:.0f} kB), --tokenizer DIR (as trained)")
    for w in (0, 1, 2):
        t = command(small, tok, root / f"small{w}", w, hook)
        print(f"  --workers {w}: first token after {t['first_cpu']:.2f} s of CPU (all processes; "
              f"{t['first_wall']:.2f} s wall); whole run {t['cpu']:.2f} s CPU, {t['wall']:.2f} s wall")
    t = run_timed([sys.executable, "-m", "preprocess", "--help"], hook)
    print(f"  preprocess --help: {t['cpu']:.2f} s CPU, {t['wall']:.2f} s wall")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=64, help="corpus size for the rates (MB), per language")
    ap.add_argument("--memory-mb", type=float, default=20, help="the 1x corpus of the memory check (MB)")
    ap.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--datatrove", metavar="PYTHON", help="a Python interpreter with datatrove installed")
    ap.add_argument("--skip-memory", action="store_true")
    args = ap.parse_args()
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.2f} at start")
    workers = sorted({1, args.workers})
    with tempfile.TemporaryDirectory(prefix="bench-pre-") as tmp:
        root = Path(tmp)
        hook = first_token_hook(root / "hook")
        ja = root / "ja.txt"
        japanese(ja, args.mb)
        ja_tok = make_tokenizer(root / "ja-tok")
        throughput("Japanese", ja, ja_tok, root, workers, hook, args.datatrove)
        startup(ja_tok, root, hook)
        bpe_trade(ja, root)
        ja.unlink()
        # Collecting docstrings takes minutes: kept between runs in the system's temp directory.
        en = Path(tempfile.gettempdir()) / f"shardtrain-bench-english-{args.mb:g}MB.txt"
        if not en.exists():
            english(root / "en.txt", args.mb)
            (root / "en.txt").replace(en)
        en_tok = make_tokenizer(root / "en-tok", text=en, sample_bytes=10_000_000)
        throughput("English", en, en_tok, root, workers, hook, args.datatrove)
        if not args.skip_memory:
            print(f"\n[memory] peak memory, --workers {args.workers}, Japanese")
            for factor in (1, 10):
                t = root / f"mem{factor}.txt"
                s = japanese(t, args.memory_mb * factor)
                total, largest = peak_memory(t, ja_tok, root / f"mem{factor}", args.workers)
                print(f"  {s / 1e6:6.0f} MB corpus: peak memory of all processes (PSS) {mb(total)}, "
                      f"largest process (RSS) {mb(largest)}")
                t.unlink()
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
