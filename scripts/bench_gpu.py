#!/usr/bin/env python3
"""autosp against PyTorch on one GPU: the driver behind scripts/bench_gpu.sh (read its header).

Python standard library only (it runs under whatever python3 the GPU machine has). For each
sequence length: the --plan prediction (step time, MFU, memory), a few training steps of
autosp-train (median step_ms of the steps after the warm-up ones, peak device memory from the
metrics file), then ../shared/bench/torch_llama_baseline.py on the same GPU, and the ratios.
Every run has a timeout, and nothing starts past --deadline; results are rewritten to the
JSON file after each run, so a kill keeps what finished.

FLOP per token, for autosp and PyTorch alike (and as `autosp-train --plan` counts them):
  6 * N_dense + 6 * n_layers * d_model * seq_len
with N_dense = every parameter except the token embedding (so the LM head and the norms are
in; a tied head counts vocab * d_model once more, as the plan does). The second term is
causal attention: QK^T and PV forward are 2 * 2 * T * d per token per layer, halved by the
mask, times 3 for forward + backward. Recompute is not counted (MFU, not HFU).
MFU = tokens_per_s * FLOP_per_token / 989e12 (dense bf16 peak of the H100/H200 SXM).
"""
import argparse
import datetime
import json
import math
import os
import re
import signal
import statistics
import subprocess
import time

PEAK_FLOPS = 989e12
GIB = float(1 << 30)
LONG_SEQS = [131072, 262144, 524288]
DEFAULT_SEQS = [8192, 32768]
BIG = 32768  # above this: PyTorch only with activation checkpointing and a chunked loss


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("seqs", nargs="*", type=int, help="sequence lengths (default 8192 32768; --long: 131072 262144 524288)")
    p.add_argument("--long", action="store_true", help="long-context mode: 131072 262144 524288, then the longest that fits")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch baseline")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile baseline")
    p.add_argument("--no-max-seq", action="store_true", help="--long without the longest-context search")
    p.add_argument("--steps", type=int, default=0, help="autosp steps per case (default by length: 8, 3 or 2)")
    p.add_argument("--config", default=os.environ.get("BENCH_CONFIG", "configs/llama-270m.json"))
    p.add_argument("--bin", default=os.environ.get("AUTOSP_BIN", ""), help="autosp-train (default build-cuda/ or build/)")
    p.add_argument("--memory-gib", type=float, default=float(os.environ.get("BENCH_MEMORY_GIB", "-1")),
                   help="per-GPU budget for recompute auto and --max-seq (default 90%% of the card)")
    p.add_argument("--hardware", default=os.environ.get("BENCH_HARDWARE", ""), help="--plan preset (default from the GPU name)")
    p.add_argument("--device", default=os.environ.get("BENCH_DEVICE", ""), help="--set train.device (default: the config's)")
    p.add_argument("--dtype", default=os.environ.get("BENCH_DTYPE", ""), help="--set train.dtype (default: the config's)")
    p.add_argument("--set", dest="sets", action="append", default=[], help="extra autosp-train --set KEY=VALUE")
    p.add_argument("--deadline", type=float, default=float(os.environ.get("BENCH_DEADLINE", "0")),
                   help="Unix time after which no run starts and running ones are cut (default: 1 hour from now)")
    p.add_argument("--timeout", type=float, default=float(os.environ.get("BENCH_TIMEOUT_S", "0")),
                   help="seconds per autosp run (default 120, longer for long contexts)")
    p.add_argument("--torch-baseline", default=os.environ.get("TORCH_BASELINE", ""))
    p.add_argument("--python", default=os.environ.get("BENCH_PYTHON", "python3"), help="python with torch")
    p.add_argument("--out", default="", help="JSON output (default $OUT/bench_gpu.json or build/bench/bench_gpu.json)")
    a = p.parse_args()
    if not a.seqs:
        a.seqs = list(LONG_SEQS if a.long else DEFAULT_SEQS)
    a.seqs = sorted(set(a.seqs))
    if not a.deadline:
        a.deadline = time.time() + 3600
    if not a.out:
        a.out = os.path.join(os.environ["OUT"], "bench_gpu.json") if os.environ.get("OUT") else "build/bench/bench_gpu.json"
    if not a.bin:
        a.bin = next((b for b in ("build-cuda/autosp-train", "build/autosp-train") if os.path.exists(b)),
                     "build-cuda/autosp-train")
    if not a.torch_baseline:
        a.torch_baseline = next((b for b in (".gpu/bench/torch_llama_baseline.py", "../shared/bench/torch_llama_baseline.py")
                                 if os.path.exists(b)), "")
    return a


def log(*args):
    print(*args, flush=True)


def strip_comments(text):
    """JSON with // comments (the trainer's config format) to plain JSON."""
    out, i, in_str = [], 0, False
    while i < len(text):
        c = text[i]
        if in_str:
            out.append(c)
            if c == "\\":
                out.append(text[i + 1])
                i += 1
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
            out.append(c)
        elif text.startswith("//", i):
            while i < len(text) and text[i] != "\n":
                i += 1
            continue
        else:
            out.append(c)
        i += 1
    return "".join(out)


def load_config(path, sets):
    cfg = json.loads(strip_comments(open(path).read()))
    for s in sets:
        key, _, value = s.partition("=")
        section, _, name = key.partition(".")
        try:
            v = json.loads(value)
        except ValueError:
            v = value
        cfg.setdefault(section, {})[name] = v
    return cfg


def model_counts(m):
    d, L, h, kv, f, V = (int(m.get(k, dflt)) for k, dflt in (("d_model", 128), ("n_layers", 2), ("n_heads", 4),
                                                              ("n_kv_heads", 4), ("ffn_hidden", 344), ("vocab_size", 257)))
    hd = d // h
    per_layer = d * h * hd + 2 * d * kv * hd + h * hd * d + 3 * d * f + 2 * d  # q, k+v, o, SwiGLU, 2 RMSNorms
    n_dense = L * per_layer + d + V * d  # + final norm + LM head (a tied head still does V*d per token)
    n_params = n_dense + (0 if m.get("tie_embeddings") else V * d)
    return dict(d_model=d, n_layers=L, n_heads=h, n_kv_heads=kv, ffn_hidden=f, vocab_size=V,
                n_params=n_params, n_dense=n_dense)


def flops_per_token(mc, T):
    return 6.0 * mc["n_dense"] + 6.0 * mc["n_layers"] * mc["d_model"] * T


def gpu_info():
    try:
        r = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader,nounits"],
                           capture_output=True, text=True, timeout=30)
        name, mem, drv = [x.strip() for x in r.stdout.strip().splitlines()[0].split(",")]
        return dict(name=name, memory_total_mib=int(float(mem)), driver=drv)
    except Exception as e:  # no GPU here: a smoke test on the CPU
        return dict(name="none", memory_total_mib=0, driver="", error=str(e))


class Runner:
    """Runs commands with a timeout (whole process group), keeps their output in logdir."""

    def __init__(self, deadline, logdir):
        self.deadline, self.logdir, self.n = deadline, logdir, 0
        self.current = None  # the running command's Popen
        os.makedirs(logdir, exist_ok=True)

    @staticmethod
    def stop(proc):
        """SIGTERM, then SIGKILL, to proc's whole process group, 10 s apart."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(timeout=10)
                return
            except subprocess.TimeoutExpired:
                pass

    def stop_current(self):
        """Stops the running command: its own session is not signalled with ours, and a leftover
        run would hold the GPU (and its memory) into whatever runs next on the machine."""
        if self.current is not None and self.current.poll() is None:
            self.stop(self.current)

    def left(self):
        return self.deadline - time.time()

    def run(self, name, cmd, timeout, env=None):
        self.n += 1
        path = os.path.join(self.logdir, f"{self.n:02d}-{name}.log")
        timeout = max(1.0, min(timeout, self.left()))
        log(f"$ {' '.join(cmd)}    # timeout {timeout:.0f} s")
        t0 = time.time()
        with open(path, "w") as f:
            try:
                proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True)
            except OSError as e:  # a missing program
                return dict(rc=127, timed_out=False, seconds=0.0, text=str(e), log=path)
            timed_out = False
            self.current = proc
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                self.stop(proc)
                rc = proc.returncode if proc.returncode is not None else -9
            finally:
                self.current = None
        text = open(path, errors="replace").read()
        return dict(rc=rc, timed_out=timed_out, seconds=round(time.time() - t0, 1), text=text, log=path)


def tail(text, n):
    return "\n".join(text.rstrip().splitlines()[-n:])


def parse_plan(j):
    """The fields this script uses from autosp-train --plan-json's JSON."""
    step, mem, rec = j["step"], j["memory_bytes"], j["recompute"]
    first = j["prediction"]["steps"][0]  # as planned
    plan = dict(seq_len=step["seq_len"], batch=step["batch"], recompute=rec["policy"], mlp_chunks=rec["mlp_chunks"],
                recompute_reason=rec["reason"])
    for key, field in (("parameters", "parameters"), ("gradients", "gradients"), ("optimizer", "optimizer"),
                       ("activations", "activations"), ("total", "total")):
        plan[f"{key}_gib"] = round(mem[field] / GIB, 3)
    plan["flops_per_token"] = j["prediction"]["flops_per_token"]
    plan["pred_tokens_per_s"], plan["pred_mfu"] = round(first["tokens_per_s"]), round(first["mfu"], 4)
    plan["pred_step_s"] = round(first["step_s"], 5)
    if "longest_seq_len" in j:
        plan["longest_seq_len"] = j["longest_seq_len"]["tokens"]
    return plan


def ensure_data(path, n_tokens, vocab):
    """Uniform random u16 tokens in [0, vocab): no documents, so attention takes the plain causal path."""
    if os.path.exists(path) and os.path.getsize(path) >= 2 * n_tokens:
        return
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    n_tokens = max(n_tokens, 1 << 22)
    t0 = time.time()
    try:
        import numpy as np
        np.random.default_rng(0).integers(0, vocab, n_tokens, dtype=np.uint16).tofile(path + ".tmp")
    except ImportError:
        import array
        import random
        rng = random.Random(0)
        with open(path + ".tmp", "wb") as f:
            array.array("H", (rng.randrange(vocab) for _ in range(n_tokens))).tofile(f)
    os.replace(path + ".tmp", path)
    log(f"wrote {path}: {n_tokens} random tokens < {vocab} ({time.time() - t0:.1f} s)")


class Bench:
    def __init__(self, a):
        self.a = a
        self.t_start = time.time()
        self.hung = None  # the shortest length at which autosp-train timed out before any step
        self.probe_sets = []  # extra --set for a probe run (the one-layer model at the longest length)
        self.runner = Runner(a.deadline, "build/bench/logs")  # each run's whole output (not in $OUT: 8 files at most)
        self.cfg = load_config(a.config, a.sets)
        self.mc = model_counts(self.cfg.get("model", {}))
        self.gpu = gpu_info()
        if a.memory_gib < 0:
            a.memory_gib = math.floor(self.gpu["memory_total_mib"] / 1024 * 0.9 * 2) / 2  # 90% of the card, to 0.5 GiB
        if not a.hardware:
            a.hardware = "h200" if "H200" in self.gpu["name"] else "h100"
        self.result = dict(
            schema="autosp bench_gpu 1", started=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            mode="long" if a.long else "default", gpu=self.gpu, hardware_preset=a.hardware,
            memory_budget_gib=a.memory_gib, peak_tflops=PEAK_FLOPS / 1e12, config=a.config, extra_sets=a.sets,
            autosp_bin=a.bin, torch_baseline=a.torch_baseline, model=self.mc,
            flops_formula="per token: 6*N_dense + 6*n_layers*d_model*seq_len (causal attention); N_dense = all "
                          "parameters except the token embedding (LM head and norms included); MFU = tokens_per_s * "
                          "that / 989e12, the same for autosp and PyTorch (recompute not counted)",
            seqs=a.seqs, cases=[], ratios=[])
        self.base_env = dict(os.environ)
        if "AUTOSP_BASE_LD_LIBRARY_PATH" in os.environ:  # PyTorch without the carried Debian libraries
            self.base_env["LD_LIBRARY_PATH"] = os.environ["AUTOSP_BASE_LD_LIBRARY_PATH"]
        self.base_env["PYTHONUNBUFFERED"] = "1"

    def save(self):
        self.result["elapsed_s"] = round(time.time() - self.t_start, 1)
        self.result["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        os.makedirs(os.path.dirname(self.a.out) or ".", exist_ok=True)
        with open(self.a.out + ".tmp", "w") as f:
            json.dump(self.result, f, indent=1)
        os.replace(self.a.out + ".tmp", self.a.out)

    def add(self, case):
        self.result["cases"].append(case)
        self.save()
        return case

    def autosp_args(self, T):
        a = self.a
        args = [a.bin, "--config", a.config, "--set", f"train.seq_len={T}",
                "--set", f"model.max_seq_len={max(T, int(self.cfg.get('model', {}).get('max_seq_len', T)))}",
                "--set", f"train.memory_gib={a.memory_gib}"]
        if a.device:
            args += ["--set", f"train.device={a.device}"]
        if a.dtype:
            args += ["--set", f"train.dtype={a.dtype}"]
        for s in a.sets + self.probe_sets:
            args += ["--set", s]
        return args

    def plan(self, T, max_seq=False):
        name = f"plan-{'max' if max_seq else T}"
        out = os.path.join(self.runner.logdir, f"{name}.json")
        extra = ["--plan", "--hardware", self.a.hardware, "--plan-json", out]
        if max_seq:
            extra += ["--max-seq", "--memory-gib", str(self.a.memory_gib)]
        if os.path.exists(out):
            os.remove(out)
        r = self.runner.run(name, self.autosp_args(T) + extra, 120)
        if r["rc"] != 0 or not os.path.exists(out):
            plan = dict(rc=r["rc"], error_tail=tail(r["text"], 8))
            log(tail(r["text"], 8))
        else:
            with open(out) as f:
                plan = parse_plan(json.load(f))
            log("  plan: " + ", ".join(f"{k} {v}" for k, v in plan.items() if k != "recompute_reason"))
        return plan, r["text"]

    def est_step_s(self, T):
        """A step at 40% MFU (on a GPU): for timeouts when the plan gives no prediction."""
        if self.gpu["memory_total_mib"] == 0:
            return 0.0
        return T * float(self.cfg.get("train", {}).get("batch_size", 1)) * flops_per_token(self.mc, T) / (0.4 * PEAK_FLOPS)

    def default_steps(self, T):
        if self.a.steps:
            return self.a.steps, 0 if self.a.steps == 1 else min(3, self.a.steps // 2)
        return (8, 3) if T <= BIG else (3, 1) if T <= 131072 else (2, 1)

    def train(self, T, plan, label="autosp", steps=None, warm=None):
        a = self.a
        if steps is None:
            steps, warm = self.default_steps(T)
        case = dict(impl=label, seq_len=T, steps=steps, warmup_steps_excluded=warm, plan=plan)
        pred = plan.get("pred_step_s") or self.est_step_s(T)
        # ~15 s at 32k tokens: a hang there must not eat the budget of the longer cases.
        timeout = a.timeout or (60 if T <= BIG else max(120, 90 + 3 * steps * pred))
        need = min(timeout, 30 + 1.5 * steps * pred)
        if not os.path.exists(a.bin):
            case["error"] = f"{a.bin} not built"
            log(f"  {label} {T}: {case['error']}")
            return self.add(case)
        if self.runner.left() < need:
            case["skipped"] = f"deadline: {self.runner.left():.0f} s left, needs ~{need:.0f} s"
            log(f"  {label} {T}: skipped ({case['skipped']})")
            return self.add(case)
        if self.hung is not None and T >= self.hung:
            case["skipped"] = f"autosp-train at {self.hung} tokens timed out before its first step"
            log(f"  {label} {T}: skipped ({case['skipped']})")
            return self.add(case)
        data = self.cfg.get("data", {}).get("train", "build/data/random32k.u16")
        ensure_data(data, T * steps + 1, self.mc["vocab_size"])
        metrics = f"build/bench/metrics/{label}-{T}.jsonl"
        if os.path.exists(metrics):
            os.remove(metrics)
        cmd = self.autosp_args(T) + ["--set", f"train.steps={steps}", "--set", "log.every=1",
                                     "--set", f"log.metrics_file={metrics}", "--set", "checkpoint.every=0",
                                     "--set", "train.eval_every=0"]
        r = self.runner.run(f"{label}-{T}", cmd, timeout)
        case.update(rc=r["rc"], timed_out=r["timed_out"], wall_s=r["seconds"])
        rows = []
        if os.path.exists(metrics):
            rows = [json.loads(line) for line in open(metrics) if line.strip()]
        m = re.search(r"activation arena (\S+ \S+)", r["text"])
        if m:
            case["arena"] = m.group(1)
        # What the kernels said about themselves ("autosp: cuDNN SDPA ... not supported, using
        # the fallback kernels", "... non-deterministic algorithm"): why a run is slower than planned.
        notes = sorted({line.strip() for line in r["text"].splitlines() if line.startswith("autosp: ")})
        if notes:
            case["notes"] = notes[:20]
            log("\n".join("    " + n for n in notes[:20]))
        if rows:
            measured = [x for x in rows if x["step"] > warm] or rows[-1:]
            case["includes_first_step"] = measured[0]["step"] == 1  # start-up costs (allocation, plans) inside
            ms = statistics.median(x["step_ms"] for x in measured)
            batch = int(self.cfg.get("train", {}).get("batch_size", 1))
            tps = T * batch / (ms / 1000)
            mc = model_counts(load_config(a.config, a.sets + self.probe_sets).get("model", {})) if self.probe_sets else self.mc
            case.update(steps_done=len(rows), step_ms_all=[round(x["step_ms"], 2) for x in rows],
                        step_ms_median=round(ms, 2), tokens_per_s=round(tps),
                        mfu=round(tps * flops_per_token(mc, T) / PEAK_FLOPS, 4),
                        peak_mem_gib=round(max(x.get("mem_bytes", 0) for x in rows) / GIB, 3),
                        loss_first=rows[0].get("loss"), loss_last=rows[-1].get("loss"))
            if len(rows) < steps:
                case["partial"] = f"{len(rows)} of {steps} steps" + (" (timed out)" if r["timed_out"] else "")
            if plan.get("pred_step_s"):
                case["measured_over_predicted_step"] = round(ms / 1000 / plan["pred_step_s"], 3)
            if plan.get("total_gib"):
                case["measured_over_planned_mem"] = round(case["peak_mem_gib"] / plan["total_gib"], 3)
        if r["timed_out"] and not rows:  # a hang: longer lengths would hang too, and eat the budget
            self.hung = T if self.hung is None else min(self.hung, T)
        if r["rc"] != 0 or not rows:
            case["error_tail"] = tail(r["text"], 15)
            log(case["error_tail"])
        log(f"  {label} {T}: " + (f"{case.get('tokens_per_s', 0)} tok/s, MFU {case.get('mfu', 0):.3f}, "
                                  f"{case.get('peak_mem_gib', 0)} GiB" if rows else f"failed rc {r['rc']}")
            + (" (timed out)" if r["timed_out"] else ""))
        return self.add(case)

    def torch(self, T, variant):
        a = self.a
        label = {"eager": "pytorch-eager", "compile": "pytorch-compile", "ckpt": "pytorch-eager+ckpt+ce8192"}[variant]
        case = dict(impl=label, seq_len=T)
        if not a.torch_baseline:
            case["error"] = "torch_llama_baseline.py not found (run scripts/gpu_prepare.sh: .gpu/bench/)"
            return self.add(case)
        warm, steps = (3, 5) if T <= BIG else (1, 2) if T <= 131072 else (1, 1)
        est = max(self.est_step_s(T), next((c.get("plan", {}).get("pred_step_s") or 0 for c in self.result["cases"]
                                             if c["impl"] == "autosp" and c["seq_len"] == T), 0))
        timeout = {"eager": 150, "compile": 300}.get(variant) or max(150, 60 + 3 * (warm + steps) * est)
        need = {"eager": 40, "compile": 120}.get(variant) or 40 + 2 * (warm + steps) * est
        if self.runner.left() < need:
            case["skipped"] = f"deadline: {self.runner.left():.0f} s left, needs ~{need:.0f} s"
            log(f"  {label} {T}: skipped ({case['skipped']})")
            return self.add(case)
        mc = self.mc
        cmd = [a.python, a.torch_baseline, "--seq", str(T), "--warmup", str(warm), "--steps", str(steps),
               "--vocab", str(mc["vocab_size"]), "--d-model", str(mc["d_model"]), "--n-layers", str(mc["n_layers"]),
               "--n-heads", str(mc["n_heads"]), "--n-kv-heads", str(mc["n_kv_heads"]),
               "--ffn-hidden", str(mc["ffn_hidden"])]
        cmd += {"eager": [], "compile": ["--compile"], "ckpt": ["--ckpt", "--ce-chunk", "8192"]}[variant]
        r = self.runner.run(f"{label}-{T}", cmd, timeout, env=self.base_env)
        case.update(rc=r["rc"], timed_out=r["timed_out"], wall_s=r["seconds"], warmup=warm, steps=steps)
        lines = [json.loads(x) for x in r["text"].splitlines() if x.startswith("{")]
        if lines:
            res = lines[-1]
            case["baseline"] = res
            if res.get("oom"):
                case["oom"] = True
            elif "tokens_per_s" in res:
                case.update(tokens_per_s=res["tokens_per_s"], step_ms_median=round(res["step_s"] * 1000, 2),
                            mfu=round(res["tokens_per_s"] * flops_per_token(mc, T) / PEAK_FLOPS, 4),
                            peak_mem_gib=res.get("peak_GiB"))
        if r["rc"] != 0 or "tokens_per_s" not in case:
            case["error_tail"] = tail(r["text"], 15)
            log(case["error_tail"])
        log(f"  {label} {T}: " + (f"{case['tokens_per_s']} tok/s, MFU {case['mfu']:.3f}, {case['peak_mem_gib']} GiB"
                                  if "tokens_per_s" in case else "OOM" if case.get("oom") else f"failed rc {r['rc']}"))
        return self.add(case)

    def ratios(self):
        out = []
        for c in self.result["cases"]:
            if c["impl"] != "autosp" or "tokens_per_s" not in c:
                continue
            for t in self.result["cases"]:
                if t["impl"].startswith("pytorch") and t["seq_len"] == c["seq_len"]:
                    row = dict(seq_len=c["seq_len"], vs=t["impl"])
                    if "tokens_per_s" in t:
                        row["tokens_per_s_ratio"] = round(c["tokens_per_s"] / t["tokens_per_s"], 3)
                        if t.get("peak_mem_gib"):
                            row["peak_mem_ratio"] = round(c["peak_mem_gib"] / t["peak_mem_gib"], 3)
                    else:
                        row["pytorch"] = "oom" if t.get("oom") else t.get("skipped") or "failed"
                    out.append(row)
        self.result["ratios"] = out
        self.save()

    def main(self):
        a = self.a
        log(f"bench_gpu: GPU {self.gpu['name']} ({self.gpu['memory_total_mib']} MiB), --plan --hardware {a.hardware}, "
            f"budget {a.memory_gib} GiB, lengths {a.seqs}{' + longest' if a.long and not a.no_max_seq else ''}, "
            f"{self.runner.left():.0f} s left; N_dense {self.mc['n_dense'] / 1e6:.2f}M of {self.mc['n_params'] / 1e6:.2f}M")
        self.save()
        plans = {}
        for T in a.seqs:
            plans[T], _ = self.plan(T)
        for T in a.seqs:
            self.train(T, plans[T])
        if not a.no_torch:
            # The comparisons the targets name first (eager at the shorter lengths, torch.compile
            # at the longest compiled one), then the others: a cold torch.compile takes minutes,
            # and the deadline must cut the runs that matter least.
            short = [T for T in a.seqs if T <= BIG]
            top = max(short, default=None)
            first = [(T, "compile" if T == top and not a.no_compile else "eager") for T in short]
            rest = [(T, v) for v in ("eager", "compile") for T in short
                    if (T, v) not in first and (v == "eager" or not a.no_compile)]
            for T, variant in first + rest + [(T, "ckpt") for T in a.seqs if T > BIG]:
                self.torch(T, variant)
        self.ratios()
        if a.long and not a.no_max_seq:
            self.max_seq()
        self.ratios()
        self.print_table()
        # exit 1 when autosp produced no number at all (the JSON says why)
        return 0 if any(c["impl"].startswith("autosp") and "tokens_per_s" in c for c in self.result["cases"]) else 1

    def max_seq(self):
        """The longest context the plan says fits the budget, then one step of it (issue 8)."""
        plan, _ = self.plan(max(self.a.seqs), max_seq=True)
        entry = dict(memory_budget_gib=self.a.memory_gib, plan=plan)
        self.result["max_seq"] = entry
        n = plan.get("longest_seq_len", 0)
        if n <= 0:
            entry["error"] = "no longest length from --plan --max-seq"
            self.save()
            return
        T = n // 1024 * 1024  # a round length at or under the planned longest
        entry["planned_longest"], entry["seq_len"] = n, T
        plan_t, _ = self.plan(T)
        steps = self.a.steps or 1
        case = self.train(T, plan_t, label="autosp-longest", steps=steps, warm=0 if steps == 1 else 1)
        entry["case"] = case
        if "skipped" in case:
            # The whole step outlasts what is left of the device call (at ~2M tokens it is ~18
            # minutes on an H200): one layer at the same length instead, whose memory and step
            # time the plan predicts for that one-layer model. It runs every kernel at this
            # length (row counts past 2^31 elements included), and checks the plan's memory
            # where a layer's working set is largest; the whole model's figure stays a plan.
            self.probe_sets = ["model.n_layers=1"]
            plan_1, _ = self.plan(T)
            entry["one_layer"] = self.train(T, plan_1, label="autosp-longest-1layer", steps=1, warm=0)
            self.probe_sets = []
        self.save()

    def print_table(self):
        r = self.result
        log(f"\n== bench_gpu on {r['gpu']['name']} (plan preset {r['hardware_preset']}, budget {r['memory_budget_gib']} GiB; "
            f"MFU vs 989 TFLOP/s, FLOP/token = 6*N_dense + 6*L*d*T, N_dense {self.mc['n_dense'] / 1e6:.1f}M)")
        log(f"{'impl':<27}{'seq_len':>8}{'tok/s':>10}{'MFU':>7}{'ms/step':>10}{'peak GiB':>9}"
            f"{'pred ms':>9}{'plan GiB':>9}  recompute / note")
        for c in r["cases"]:
            p = c.get("plan", {})
            note = c.get("skipped") or c.get("error") or ("OOM" if c.get("oom") else "")
            if not note and "tokens_per_s" not in c:
                note = f"failed rc {c.get('rc')}" + (" (timeout)" if c.get("timed_out") else "")
            if not note and c.get("partial"):
                note = "partial: " + c["partial"]
            if not note and c["impl"].startswith("autosp"):
                note = p.get("recompute", "") + (f", MLP/{p['mlp_chunks']}" if p.get("mlp_chunks", 1) > 1 else "")

            def fmt(k, f):
                return format(c[k], f) if c.get(k) is not None else "-"
            pred = format(p["pred_step_s"] * 1000, ".1f") if p.get("pred_step_s") else "-"
            log(f"{c['impl']:<27}{c['seq_len']:>8}{fmt('tokens_per_s', 'd'):>10}{fmt('mfu', '.3f'):>7}"
                f"{fmt('step_ms_median', '.1f'):>10}{fmt('peak_mem_gib', '.2f'):>9}{pred:>9}"
                f"{format(p['total_gib'], '.2f') if p.get('total_gib') else '-':>9}  {note}")
        for x in r["ratios"]:
            if "tokens_per_s_ratio" in x:
                log(f"ratio autosp / {x['vs']} at {x['seq_len']}: tokens/s x{x['tokens_per_s_ratio']}"
                    + (f", peak memory x{x['peak_mem_ratio']}" if "peak_mem_ratio" in x else ""))
            else:
                log(f"ratio autosp / {x['vs']} at {x['seq_len']}: PyTorch {x['pytorch']}")
        if "max_seq" in r:
            m = r["max_seq"]
            log(f"longest context: planned {m.get('planned_longest', '-')} tokens within {m['memory_budget_gib']} GiB, "
                f"tried {m.get('seq_len', '-')}: " + (f"{m['case'].get('tokens_per_s')} tok/s, MFU {m['case'].get('mfu')}, "
                                                      f"{m['case'].get('peak_mem_gib')} GiB measured vs "
                                                      f"{m['case'].get('plan', {}).get('total_gib')} planned"
                                                      if m.get("case", {}).get("tokens_per_s") else
                                                      (m.get("case", {}).get("skipped") or m.get("error") or "failed")))
            one = m.get("one_layer")
            if one:
                log(f"  one layer at {one['seq_len']} tokens: " +
                    (f"{one['step_ms_median'] / 1000:.1f} s/step (predicted {one['plan'].get('pred_step_s')} s), "
                     f"{one['peak_mem_gib']} GiB measured vs {one['plan'].get('total_gib')} planned"
                     if one.get("tokens_per_s") else (one.get("skipped") or "failed")))
        log(f"wrote {self.a.out} ({r['elapsed_s']} s)")


def main():
    bench = Bench(parse_args())

    def on_signal(signum, _frame):
        # gpu_check.sh's stage limit (timeout's SIGTERM) or ^C: stop the run in flight, keep
        # what was measured.
        log(f"bench_gpu: signal {signum}, stopping")
        bench.runner.stop_current()
        bench.save()
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return bench.main()


if __name__ == "__main__":
    raise SystemExit(main())
