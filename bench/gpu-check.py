#!/usr/bin/env python3
"""GPU check, part 2: runs on the GPU machine (python3 + numpy; PyTorch optional) over the bundle
that bench/gpu-check.ts prepared (libraries, manifests, weights, CPU references). It drives the
generated libraries through their C ABI (ctypes), exactly as the Node runtime does:

  1. every generated kernel, through the graphs that use them, against the CPU backend on fresh
     random inputs (same seeds, same z): forward logits by ||gpu - cpu|| / ||cpu|| (outputs poisoned
     with NaN first, every element must be written), losses with and without perturbation (the lm
     loss, and the distill loss against a random top-8 teacher where the spec has one), and the
     QZO update of every trainable tensor (<= 1 float32 ulp for gaussian z, exact for rademacher);
  2. a short QZO run of stories260K Q4_0 on the GPU against the CPU trajectory;
  3. the fused dequant-perturb-matmul at M = 1, 16, 256, 4096 on Llama-2-7B layer shapes for q4_0
     and gptq_int4 against the unfused baseline (own: dequantize to fp16, then the same tensor-core
     matmul; PyTorch: dequantize to bf16, then torch.matmul) and the roofline;
  4. the tuning variants of the large-M kernel (stages x CTAs per multiprocessor), timed, with
     outputs equal to the default variant's;
  5. step time and peak GPU memory of a full QZO step of a Llama-2-7B-shaped gptq_int4 model
     (random weights) at batch 16 x 256, against its inference (unperturbed loss) memory.
Each part runs in its own process (--part NAME --result-file F) under a time limit, inside the
overall --budget SECONDS (default 420), so that a crash or a hang costs one part only.
Writes bench/results/<device>-<date>.json and .md (and copies them to $OUT when set).
Without a GPU it says which parts it skipped and exits 0.
"""
import base64, ctypes, datetime, json, math, os, sys, time
import numpy as np

BUNDLE = sys.argv[1] if len(sys.argv) > 1 else ".qzo-cache/gpu-bundle"
QUICK = "--quick" in sys.argv
# --selftest-cpu: drive the CPU libraries of the bundle (same ABI) through the correctness and training
# parts, to check this script's plumbing on a machine without a GPU (they must agree exactly-ish).
SELFTEST = "--selftest-cpu" in sys.argv
LIBNAME = "cpu.so" if SELFTEST else "lib.so"
RESULTS = {"skipped": [], "failed": [], "correctness": [], "training": None, "matmul": [], "variants": [], "peaks": None, "step7b": None}
T_START = time.time()


def log(*a):
    print(f"[{time.time() - T_START:6.1f}s]", *a, flush=True)


class Lib:
    def __init__(self, path):
        self.lib = ctypes.CDLL(os.path.abspath(path))
        if hasattr(self.lib, "qzo_cuda_status"):
            self.lib.qzo_cuda_status.restype = ctypes.c_char_p
        self.lib.qzo_last_error.restype = ctypes.c_char_p
        self.lib.qzo_manifest.restype = ctypes.c_char_p

    def status(self):
        return self.lib.qzo_cuda_status().decode()

    def call(self, name, arrays, scalars, check=True):
        if SELFTEST and name in ("qzo_sync_masters", "qzo_release") and not hasattr(self.lib, name):
            return 0  # the CPU library reads the host masters directly
        f = getattr(self.lib, name)
        f.restype = ctypes.c_int
        f.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_double), ctypes.c_int64, ctypes.c_int64]
        ptrs = (ctypes.c_void_p * max(1, len(arrays)))(*[a.ctypes.data for a in arrays])
        sc = (ctypes.c_double * max(1, len(scalars)))(*[float(s) for s in scalars])
        rc = f(ptrs, sc, len(arrays), len(scalars))
        if rc != 0 and check:
            raise RuntimeError(f"{name}: rc {rc}: {self.lib.qzo_last_error().decode()}")
        return rc


def load_weights(man, path=None):
    """The weight slots: from weights.bin (CPU-side arrays), else random (timing / 7B)."""
    out = []
    if path:
        raw = np.fromfile(path, dtype=np.uint8)
        off = 0
        for s in man["weights"]:
            n = s["bytes"]
            b = raw[off:off + n].copy()
            off += n
            out.append(b if s["part"] == "codes" else b.view(np.float32))
        return out
    rng = np.random.default_rng(1234)
    for s in man["weights"]:
        part, n = s["part"], s["bytes"]
        if part == "codes":
            out.append(rng.integers(0, 256, size=n, dtype=np.uint8))
        elif part == "scales":
            # about 1/(8 sqrt(K)) per code step: the 7B-shaped model's activations stay O(1) over 32
            # layers (larger scales overflow the 16-bit tensor-core operands within a few layers)
            out.append((rng.standard_normal(n // 4, dtype=np.float32) * 0.0005 + 0.002).astype(np.float32))
        elif part == "zeros":
            out.append(rng.integers(1, 17, size=n // 4).astype(np.float32))
        elif part == "mins":
            out.append((rng.standard_normal(n // 4, dtype=np.float32) * 0.01).astype(np.float32))
        else:
            norm = "norm" in s["param"] or s["param"].endswith("_w")
            a = rng.standard_normal(n // 4, dtype=np.float32) * (0.05 if norm else 0.02)
            out.append((a + (1.0 if norm else 0.0)).astype(np.float32))
    return out


def masters_of(man, slots):
    return [slots[t["slot"]] for t in man["trainables"]]


def graph(man, name):
    return next(g for g in man["graphs"] if g["name"] == name)


def run_args(g, inputs, out, dims, p):
    """The pointers and scalars of a graph call, by the ABI the library's manifest describes."""
    ptrs = []
    for a in g["pointers"]:
        ptrs += [inputs[a["name"]]] if a["kind"] == "input" else [out] if a["kind"] == "output" else SLOTS
    p = p or {}
    values = {f"dim:{d}": dims[d] for d in g["dims"]}
    values.update(seed_lo=p.get("seedLo", 0), seed_hi=p.get("seedHi", 0), sign=p.get("sign", 0), eps=p.get("eps", 0),
                  relative=1 if p.get("epsMode") == "relative" else 0, rademacher=1 if p.get("dist") == "rademacher" else 0,
                  period=p.get("period", 1), threads=1)
    return ptrs, [values[n] for n in g["scalars"]]


def update_scalars(man, u):
    values = dict(seed_lo=u["seedLo"], seed_hi=u["seedHi"], d=u["d"], lr=u["lr"], relative=1 if u["epsMode"] == "relative" else 0,
                  rademacher=1 if u["dist"] == "rademacher" else 0, period=u.get("period", 1), floor=u["floor"])
    return [values[n] for n in man["update"]["scalars"]]


def b64(s, dt):
    return np.frombuffer(base64.b64decode(s), dtype=dt).copy()


def rel(a, b):
    a = a.astype(np.float64); b = b.astype(np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def ulps(a, b):
    a = a.astype(np.float32); b = b.astype(np.float32)
    sp = np.abs(np.spacing(b)).astype(np.float64)
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)) / sp)) if a.size else 0.0


def run_lm(lib, man, tokens, mask, B, T, p):
    out = np.full(1, np.nan, dtype=np.float32)
    g = graph(man, "lm")
    lib.call(g["entry"], *run_args(g, {"tokens": tokens, "mask": mask}, out, {"B": B, "T": T}, p))
    return float(out[0])


def run_distill(lib, man, ins, B, T, K, p):
    out = np.full(1, np.nan, dtype=np.float32)
    g = graph(man, "distill")
    lib.call(g["entry"], *run_args(g, ins, out, {"B": B, "T": T, "K": K}, p))
    return float(out[0])


# ---------------------------------------------------------------------------------------------
def correctness(index, only=None):
    global SLOTS
    for c in index["correctness"]:
        if only and c["name"] != only:
            continue
        d = os.path.join(BUNDLE, c["dir"])
        man = json.load(open(os.path.join(d, "manifest.json")))
        cases = json.load(open(os.path.join(d, "cases.json")))
        lib = Lib(os.path.join(d, LIBNAME))
        SLOTS = load_weights(man, os.path.join(d, "weights.bin"))
        masters = masters_of(man, SLOTS)
        before = [m.copy() for m in masters]
        row = {"case": c["name"], "kernels": cases["kernels"], "runs": [], "update": []}
        ok = True
        vocab = None
        for r in cases["runs"]:
            B, T = r["B"], r["T"]
            tokens = b64(r["tokens"], np.int32); mask = b64(r["mask"], np.float32); ref = b64(r["logits"], np.float32)
            vocab = ref.size // (B * T)
            g = graph(man, "forward") if any(x["name"] == "forward" for x in man["graphs"]) else None
            res = {"B": B, "T": T, "M": B * T}
            if g:
                out = np.full(ref.size, np.nan, dtype=np.float32)
                lib.call(g["entry"], *run_args(g, {"tokens": tokens}, out, {"B": B, "T": T}, None))
                res["all_written"] = bool(np.isfinite(out).all())
                res["logits_rel"] = rel(out, ref)
                ok &= res["all_written"] and res["logits_rel"] < 1e-2
            res["loss_rel"] = []
            for L in r["losses"]:
                got = run_lm(lib, man, tokens, mask, B, T, L["perturb"])
                e = abs(got - L["loss"]) / max(abs(L["loss"]), 1e-6)
                res["loss_rel"].append(e)
                ok &= math.isfinite(got) and e < 5e-3
            dc = r.get("distill")
            if dc:
                ins = {"tokens": b64(dc["tokens"], np.int32), "mask": b64(dc["mask"], np.float32),
                       "teacher_ids": b64(dc["teacher_ids"], np.int32), "teacher_probs": b64(dc["teacher_probs"], np.float32)}
                res["distill_rel"] = []
                for L in dc["losses"]:
                    got = run_distill(lib, man, ins, B, T, dc["K"], L["perturb"])
                    e = abs(got - L["loss"]) / max(abs(L["loss"]), 1e-6)
                    res["distill_rel"].append(e)
                    ok &= math.isfinite(got) and e < 5e-3
            row["runs"].append(res)
        for u in cases["updates"]:
            for m, b in zip(masters, before):
                m[:] = b
            lib.call("qzo_sync_masters", masters, [])
            lib.call("qzo_update", masters, update_scalars(man, u))
            worst = max(ulps(m, b64(e, np.float32)) for m, e in zip(masters, u["masters"]))
            row["update"].append({"dist": u["dist"], "max_ulps": worst})
            ok &= worst <= (0 if u["dist"] == "rademacher" else 1)
        for m, b in zip(masters, before):
            m[:] = b
        lib.call("qzo_sync_masters", masters, [])
        lib.call("qzo_release", [], [])
        row["pass"] = bool(ok)
        RESULTS["correctness"].append(row)
        if not ok:
            RESULTS["failed"].append(f"correctness:{c['name']}")
        log(f"correctness {c['name']:22s} {'PASS' if ok else 'FAIL'}  logits rel {[round(x.get('logits_rel', 0), 6) for x in row['runs']]}  loss rel max {max(max(x['loss_rel']) for x in row['runs']):.2e}  distill rel max {max((max(x['distill_rel']) for x in row['runs'] if 'distill_rel' in x), default=float('nan')):.2e}  update ulps {[x['max_ulps'] for x in row['update']]}")


def training(index):
    global SLOTS
    t = index.get("training")
    if not t:
        RESULTS["skipped"].append("training (not in the bundle: no stories260K-q4_0.gguf where it was prepared)")
        return
    d = os.path.join(BUNDLE, t["dir"])
    man = json.load(open(os.path.join(d, "manifest.json")))
    tr = json.load(open(os.path.join(d, "train.json")))
    lib = Lib(os.path.join(d, LIBNAME))
    SLOTS = load_weights(man, os.path.join(d, "weights.bin"))
    masters = masters_of(man, SLOTS)
    B, T, h = tr["B"], tr["T"], tr["hyper"]
    et = b64(tr["eval"]["tokens"], np.int32); em = b64(tr["eval"]["mask"], np.float32)
    rows = []
    t0 = time.time()
    for s, (batch, ref) in enumerate(zip(tr["batches"], tr["trajectory"])):
        tok, msk = batch.split("|")
        tok = b64(tok, np.int32); msk = b64(msk, np.float32)
        p = {"seedLo": ref["seedLo"], "seedHi": ref["seedHi"], "eps": h["eps"], "epsMode": h["epsMode"], "dist": h["dist"]}
        lp = run_lm(lib, man, tok, msk, B, T, {**p, "sign": 1})
        lm = run_lm(lib, man, tok, msk, B, T, {**p, "sign": -1})
        dd = min(max((lp - lm) / (2 * h["eps"]), -h["clip"]), h["clip"])
        lib.call("qzo_update", masters, update_scalars(man, {"seedLo": ref["seedLo"], "seedHi": ref["seedHi"], "d": dd, "lr": h["lr"], "epsMode": h["epsMode"], "dist": h["dist"], "floor": h["floor"]}))
        ev = run_lm(lib, man, et, em, B, T, None)
        rows.append({"step": s, "gpu": {"loss_plus": lp, "loss_minus": lm, "d": dd, "eval_loss": ev}, "cpu": {k: ref[k] for k in ("loss_plus", "loss_minus", "d", "eval_loss")}})
    secs = time.time() - t0
    lib.call("qzo_release", [], [])
    ev_rel = max(abs(r["gpu"]["eval_loss"] - r["cpu"]["eval_loss"]) / abs(r["cpu"]["eval_loss"]) for r in rows)
    d_rel = [abs(r["gpu"]["d"] - r["cpu"]["d"]) / max(abs(r["cpu"]["d"]), 1e-3) for r in rows]
    ok = ev_rel < 5e-3 and all(math.isfinite(r["gpu"]["eval_loss"]) for r in rows)
    RESULTS["training"] = {"steps": len(rows), "seconds": secs, "max_eval_rel": ev_rel, "median_d_rel": float(np.median(d_rel)), "first_eval": [rows[0]["gpu"]["eval_loss"], rows[0]["cpu"]["eval_loss"]], "last_eval": [rows[-1]["gpu"]["eval_loss"], rows[-1]["cpu"]["eval_loss"]], "rows": rows, "pass": ok}
    if not ok:
        RESULTS["failed"].append("training")
    log(f"training stories260K q4_0: {len(rows)} steps in {secs:.1f}s; eval gpu {rows[-1]['gpu']['eval_loss']:.4f} cpu {rows[-1]['cpu']['eval_loss']:.4f}; max eval rel {ev_rel:.2e}; median |d| rel diff {np.median(d_rel):.2e} {'PASS' if ok else 'FAIL'}")


def peaks():
    """Measured ceilings through PyTorch (bf16 8192^3 matmul; device-to-device copy), else None."""
    try:
        import torch
    except Exception as e:  # noqa
        RESULTS["skipped"].append(f"PyTorch ceilings and baseline (no torch: {e})")
        return None
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16); b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    ts = []
    for _ in range(10):
        s = torch.cuda.Event(enable_timing=True); e = torch.cuda.Event(enable_timing=True)
        s.record(); a @ b; e.record(); e.synchronize(); ts.append(s.elapsed_time(e))
    tflops = 2 * 8192 ** 3 / (np.median(ts) * 1e-3) / 1e12
    x = torch.empty(2 * 1024 ** 3 // 4, device="cuda", dtype=torch.float32).normal_(); y = torch.empty_like(x)
    for _ in range(3):
        y.copy_(x)
    ts = []
    for _ in range(10):
        s = torch.cuda.Event(enable_timing=True); e = torch.cuda.Event(enable_timing=True)
        s.record(); y.copy_(x); e.record(); e.synchronize(); ts.append(s.elapsed_time(e))
    gbs = 2 * x.numel() * 4 / (np.median(ts) * 1e-3) / 1e9
    del a, b, x, y
    torch.cuda.empty_cache()
    return {"bf16_tflops": float(tflops), "copy_gbs": float(gbs), "source": "measured (torch)"}


def torch_unfused(fmt, N, K, M, reps=10):
    """PyTorch baseline: dequantize to bf16, then torch.matmul (ms, median), and the matmul alone."""
    try:
        import torch
    except Exception:
        return None
    g = torch.Generator(device="cuda").manual_seed(1)
    x = torch.randn(M, K, device="cuda", dtype=torch.float32, generator=g)
    if fmt == "q4_0":
        qs = torch.randint(0, 256, (N, K // 32, 16), device="cuda", dtype=torch.uint8, generator=g)
        d = (torch.randn(N, K // 32, 1, device="cuda", generator=g) * 0.01).to(torch.float16)
        def deq():
            q = torch.cat([qs & 15, qs >> 4], dim=2).to(torch.bfloat16) - 8
            return (q * d.to(torch.bfloat16)).reshape(N, K)
        def mm(w):
            return x.to(torch.bfloat16) @ w.t()
    else:
        qw = torch.randint(-2 ** 31, 2 ** 31 - 1, (K // 8, N), device="cuda", dtype=torch.int32, generator=g)
        qz = torch.randint(-2 ** 31, 2 ** 31 - 1, (K // 128, N // 8), device="cuda", dtype=torch.int32, generator=g)
        sc = (torch.randn(K // 128, N, device="cuda", generator=g) * 0.01).to(torch.float16)
        shifts = torch.arange(0, 32, 4, device="cuda", dtype=torch.int32)
        def deq():
            q = ((qw.unsqueeze(1) >> shifts.view(1, 8, 1)) & 15).reshape(K, N)
            z = ((qz.unsqueeze(2) >> shifts.view(1, 1, 8)) & 15).reshape(K // 128, N) + 1
            w = (q.view(K // 128, 128, N) - z.view(K // 128, 1, N)).to(torch.bfloat16) * sc.to(torch.bfloat16).view(K // 128, 1, N)
            return w.reshape(K, N)
        def mm(w):
            return x.to(torch.bfloat16) @ w
    def timed(f):
        for _ in range(3):
            f()
        torch.cuda.synchronize()
        ts = []
        for _ in range(reps):
            s = torch.cuda.Event(enable_timing=True); e = torch.cuda.Event(enable_timing=True)
            s.record(); f(); e.record(); e.synchronize(); ts.append(s.elapsed_time(e))
        return float(np.median(ts))
    w = deq()
    full = timed(lambda: mm(deq()))
    only = timed(lambda: mm(w))
    del x, w
    torch.cuda.empty_cache()
    return {"deq_plus_matmul_ms": full, "matmul_only_ms": only}


def datasheet(name):
    n = name.upper()
    if "H200" in n:
        return {"fp16_tflops": 989.0, "gbs": 4800.0, "source": "datasheet H200 SXM"}
    if "H100" in n:
        return {"fp16_tflops": 989.0, "gbs": 3350.0, "source": "datasheet H100 SXM"}
    if "A100" in n:
        return {"fp16_tflops": 312.0, "gbs": 2039.0, "source": "datasheet A100 80GB SXM"}
    return {"fp16_tflops": float("nan"), "gbs": float("nan"), "source": "unknown device"}


def matmul(index, device, only=None):
    global SLOTS
    pk = RESULTS["peaks"]
    ds = datasheet(device)
    peak_tf = pk["bf16_tflops"] if pk else ds["fp16_tflops"]
    peak_bw = pk["copy_gbs"] if pk else ds["gbs"]
    Ms = [1, 16, 256] if QUICK else [1, 16, 256, 4096]
    entries = {e["name"]: e for e in index["matmul"]}
    for e in index["matmul"]:
        if e["unfused"] or (only and e["name"] != only):
            continue
        fmt, N, K = e["fmt"], e["N"], e["K"]
        libs = {}
        for kind in ("fused", "unfused"):
            ent = entries[f"{fmt}-{N}x{K}-{kind}"]
            d = os.path.join(BUNDLE, ent["dir"])
            man = json.load(open(os.path.join(d, "manifest.json")))
            libs[kind] = (Lib(os.path.join(d, "lib.so")), man)
        SLOTS = load_weights(libs["fused"][1])
        wbytes = sum(w["bytes"] for w in libs["fused"][1]["weights"])
        for M in Ms:
            x = np.random.default_rng(M).standard_normal((M, K), dtype=np.float32)
            row = {"fmt": fmt, "N": N, "K": K, "M": M}
            outs = {}
            for kind, sign in (("fused", 0), ("fused_perturbed", 1), ("unfused", 0)):
                lib, man = libs["fused" if kind.startswith("fused") else "unfused"]
                y = np.full((M, N), np.nan, dtype=np.float32)
                reps = 15 if M < 4096 else 7
                inner = 50 if M <= 16 else 10 if M <= 256 else 1  # replays of the captured CUDA graph per timed repeat
                times = np.zeros(reps, dtype=np.float32)
                p = {"seedLo": 3, "seedHi": 4, "sign": sign, "eps": 1e-2, "epsMode": "relative", "dist": "gaussian"} if sign else None
                ptrs, sc = run_args(graph(man, "lin"), {"x": x}, y, {"M": M}, p)
                lib.call("qzo_time_lin", ptrs + [times], sc + [3, reps, inner])
                row[f"{kind}_ms"] = float(np.median(times))
                row[f"{kind}_spread_ms"] = float(np.max(times) - np.min(times))
                outs[kind] = y
            row["all_written"] = bool(np.isfinite(outs["fused"]).all())
            row["fused_vs_unfused_rel"] = rel(outs["fused"], outs["unfused"])
            flops = 2.0 * M * N * K
            bytes_ = wbytes + M * K * 4 + M * N * 4
            t = row["fused_ms"] * 1e-3
            row["tflops"] = flops / t / 1e12
            row["pct_peak_flops"] = 100 * row["tflops"] / peak_tf
            row["gbs"] = bytes_ / t / 1e9
            row["pct_bandwidth"] = 100 * row["gbs"] / peak_bw
            row["floor_ms"] = max(flops / (peak_tf * 1e12), bytes_ / (peak_bw * 1e9)) * 1e3
            tb = torch_unfused(fmt, N, K, M)
            if tb:
                row["torch_deq_matmul_ms"] = tb["deq_plus_matmul_ms"]
                row["torch_matmul_only_ms"] = tb["matmul_only_ms"]
            ok = row["all_written"] and row["fused_vs_unfused_rel"] < 1e-2
            if not ok:
                RESULTS["failed"].append(f"matmul {fmt} {N}x{K} M={M}")
            RESULTS["matmul"].append(row)
            log(f"matmul {fmt:9s} {N:5d}x{K:5d} M={M:4d}: fused {row['fused_ms']:.3f} ms (perturbed {row['fused_perturbed_ms']:.3f}), own unfused {row['unfused_ms']:.3f}, torch {row.get('torch_deq_matmul_ms', float('nan')):.3f} ms; {row['tflops']:.1f} TFLOP/s ({row['pct_peak_flops']:.1f}%), {row['gbs']:.0f} GB/s ({row['pct_bandwidth']:.1f}%); floor {row['floor_ms']:.3f} ms; rel vs unfused {row['fused_vs_unfused_rel']:.1e}")
        for lib, _ in libs.values():
            lib.call("qzo_release", [], [])


def variants(index):
    """mm_pipe tuning variants (QZO_PIPE_STAGES x QZO_PIPE_MIN_BLOCKS) at M = 256 and 4096: time, and
    the output against the default variant's (the same arithmetic in the same order: must be equal)."""
    global SLOTS
    base = {}
    for e in index.get("variants", []):
        d = os.path.join(BUNDLE, e["dir"])
        man = json.load(open(os.path.join(d, "manifest.json")))
        lib = Lib(os.path.join(d, "lib.so"))
        SLOTS = load_weights(man)
        for M in (256, 4096):
            x = np.random.default_rng(M).standard_normal((M, e["K"]), dtype=np.float32)
            y = np.full((M, e["N"]), np.nan, dtype=np.float32)
            times = np.zeros(7, dtype=np.float32)
            ptrs, sc = run_args(graph(man, "lin"), {"x": x}, y, {"M": M}, None)
            lib.call("qzo_time_lin", ptrs + [times], sc + [3, 7, 10 if M <= 256 else 1])
            key = (e["fmt"], M)
            base.setdefault(key, y)
            same = bool(np.array_equal(y, base[key])) and bool(np.isfinite(y).all())
            ms = float(np.median(times))
            row = {"variant": e["name"], "fmt": e["fmt"], "stages": e["stages"], "min_blocks": e["minBlocks"], "M": M, "ms": ms,
                   "tflops": 2.0 * M * e["N"] * e["K"] / (ms * 1e-3) / 1e12, "same_as_default": same}
            RESULTS["variants"].append(row)
            if not same:
                RESULTS["failed"].append(f"variant {e['name']} M={M}: output differs from the default variant")
            log(f"variant {e['name']:28s} M={M:4d}: {ms:.3f} ms, {row['tflops']:.1f} TFLOP/s, same output: {same}")
        lib.call("qzo_release", [], [])


def step7b(index):
    global SLOTS
    e = index.get("step7b")
    d = os.path.join(BUNDLE, e["dir"])
    man = json.load(open(os.path.join(d, "manifest.json")))
    lib = Lib(os.path.join(d, "lib.so"))
    t0 = time.time()
    SLOTS = load_weights(man)
    masters = masters_of(man, SLOTS)
    log(f"step7b: random weights drawn in {time.time() - t0:.1f}s ({sum(w['bytes'] for w in man['weights']) / 1e9:.2f} GB host)")
    B, T = e["B"], e["T"]
    vocab = next(c for c in man["graphs"] if c["name"] == "lm")
    rng = np.random.default_rng(5)
    tok = rng.integers(0, 32000, size=B * T, dtype=np.int32)
    msk = np.ones(B * T, dtype=np.float32); msk[::T] = 0
    stats = np.zeros(6, dtype=np.float64)
    p = {"seedLo": 11, "seedHi": 12, "eps": 1e-3, "epsMode": "relative", "dist": "gaussian"}
    l0 = run_lm(lib, man, tok, msk, B, T, None)  # uploads the weights (not timed)
    lib.call("qzo_cuda_stats", [stats], [1])
    t0 = time.time(); l0 = run_lm(lib, man, tok, msk, B, T, None); t_inf = time.time() - t0
    lib.call("qzo_cuda_stats", [stats], [1])
    inf_peak, weights = stats[1], stats[2]
    times = []
    for s in range(2 if QUICK else 3):
        t0 = time.time()
        lp = run_lm(lib, man, tok, msk, B, T, {**p, "sign": 1})
        lm = run_lm(lib, man, tok, msk, B, T, {**p, "sign": -1})
        dd = min(max((lp - lm) / 2e-3, -100), 100)
        lib.call("qzo_update", masters, update_scalars(man, {"seedLo": 11, "seedHi": 12 + s, "d": dd, "lr": 1e-7, "epsMode": "relative", "dist": "gaussian", "floor": 1e-7}))
        times.append(time.time() - t0)
    lib.call("qzo_cuda_stats", [stats], [0])
    step_peak, dev_used, dev_total = stats[1], stats[3], stats[4]
    lib.call("qzo_release", [], [])
    RESULTS["step7b"] = {"B": B, "T": T, "loss": l0, "inference_loss_s": t_inf, "step_s": float(np.median(times)), "step_times_s": times,
                         "weights_gb": weights / 1e9, "inference_peak_gb": inf_peak / 1e9, "step_peak_gb": step_peak / 1e9,
                         "device_used_gb": dev_used / 1e9, "device_total_gb": dev_total / 1e9, "step_over_inference": step_peak / inf_peak}
    ok = all(math.isfinite(x) for x in [l0, lp, lm])
    if not ok:
        RESULTS["failed"].append("step7b (non-finite loss)")
    log(f"step7b: QZO step {np.median(times):.3f}s (L+, L-, update), inference loss {t_inf:.3f}s; peak {step_peak / 1e9:.2f} GB vs inference {inf_peak / 1e9:.2f} GB (weights+masters {weights / 1e9:.2f} GB)")


def markdown(device):
    L = [f"# GPU check: {device}, {RESULTS['date']}", ""]
    if RESULTS["correctness"]:
        L += ["## Kernels vs CPU backend", "", "| case | M | logits rel | loss rel (max) | update ulps | pass |", "|---|---|---|---|---|---|"]
        for c in RESULTS["correctness"]:
            for r in c["runs"]:
                L.append(f"| {c['case']} | {r['M']} | {r.get('logits_rel', float('nan')):.2e} | {max(r['loss_rel']):.2e} | {','.join(str(u['max_ulps']) for u in c['update'])} | {'yes' if c['pass'] else 'NO'} |")
        L.append("")
    if RESULTS["training"]:
        t = RESULTS["training"]
        L += ["## stories260K Q4_0 QZO, GPU vs CPU", "", f"{t['steps']} steps; eval loss first {t['first_eval'][0]:.4f} (cpu {t['first_eval'][1]:.4f}), last {t['last_eval'][0]:.4f} (cpu {t['last_eval'][1]:.4f}); max eval rel diff {t['max_eval_rel']:.2e}; median d rel diff {t['median_d_rel']:.2e}", ""]
    if RESULTS["matmul"]:
        pk = RESULTS["peaks"] or {}
        L += ["## Fused dequant-perturb-matmul", "", f"ceilings: {pk.get('bf16_tflops', float('nan')):.0f} TFLOP/s bf16, {pk.get('copy_gbs', float('nan')):.0f} GB/s ({pk.get('source', 'datasheet')})", "",
              "| fmt | N x K | M | fused ms | perturbed ms | own unfused ms | torch deq+mm ms | torch mm ms | TFLOP/s (% peak) | GB/s (% bw) | floor ms |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in RESULTS["matmul"]:
            L.append(f"| {r['fmt']} | {r['N']}x{r['K']} | {r['M']} | {r['fused_ms']:.3f} | {r['fused_perturbed_ms']:.3f} | {r['unfused_ms']:.3f} | {r.get('torch_deq_matmul_ms', float('nan')):.3f} | {r.get('torch_matmul_only_ms', float('nan')):.3f} | {r['tflops']:.1f} ({r['pct_peak_flops']:.1f}%) | {r['gbs']:.0f} ({r['pct_bandwidth']:.1f}%) | {r['floor_ms']:.3f} |")
        L.append("")
    if RESULTS["variants"]:
        L += ["## mm_pipe tuning variants (4096x4096)", "", "| fmt | stages | CTAs/SM bound | M | ms | TFLOP/s | same output |", "|---|---|---|---|---|---|---|"]
        for r in RESULTS["variants"]:
            L.append(f"| {r['fmt']} | {r['stages']} | {r['min_blocks']} | {r['M']} | {r['ms']:.3f} | {r['tflops']:.1f} | {'yes' if r['same_as_default'] else 'NO'} |")
        L.append("")
    if RESULTS["step7b"]:
        s = RESULTS["step7b"]
        L += ["## Llama-2-7B-shaped gptq_int4, batch 16 x 256", "", f"QZO step {s['step_s']:.3f} s; peak {s['step_peak_gb']:.2f} GB vs inference {s['inference_peak_gb']:.2f} GB ({s['step_over_inference']:.3f}x); weights+masters {s['weights_gb']:.2f} GB", ""]
    if RESULTS["skipped"]:
        L += ["## Skipped", ""] + [f"- {s}" for s in RESULTS["skipped"]] + [""]
    for case, report in (RESULTS.get("sanitizer") or {}).items():
        L += [f"## compute-sanitizer memcheck: {case}", "", "```"] + report + ["```", ""]
    if RESULTS["failed"]:
        L += ["## FAILED", ""] + [f"- {s}" for s in RESULTS["failed"]] + [""]
    return "\n".join(L)


def run_part(part, index, device):
    """One part in this process (the child's side of main)."""
    kind, _, arg = part.partition(":")
    if kind == "correctness":
        correctness(index, only=arg)
    elif kind == "training":
        training(index)
    elif kind == "peaks":
        RESULTS["peaks"] = peaks()
    elif kind == "matmul":
        peaks_file = os.environ.get("QZO_GPU_PEAKS")
        RESULTS["peaks"] = json.load(open(peaks_file)) if peaks_file and os.path.exists(peaks_file) else None
        matmul(index, device, only=arg)
    elif kind == "variants":
        variants(index)
    elif kind == "step7b":
        step7b(index)


def merge(into, part):
    for k in ("skipped", "failed", "correctness", "matmul", "variants"):
        into[k] += part.get(k, [])
    for k in ("training", "peaks", "step7b"):
        if part.get(k) is not None:
            into[k] = part[k]


def sanitize(case, budget):
    """compute-sanitizer memcheck on one failing correctness case: the first lines of its report."""
    import shutil, subprocess
    if not shutil.which("compute-sanitizer") or budget < 30:
        return None
    cmd = ["compute-sanitizer", "--tool", "memcheck", "--print-limit", "5", sys.executable, __file__, BUNDLE, "--part", f"correctness:{case}", "--result-file", os.devnull]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=min(90, budget))
        lines = [l for l in (r.stdout + r.stderr).splitlines() if l.startswith("=========")]
        return lines[:40]
    except subprocess.TimeoutExpired:
        return ["compute-sanitizer: timed out"]


def main():
    import subprocess, tempfile
    index = json.load(open(os.path.join(BUNDLE, "index.json")))
    if SELFTEST:
        device = "CPU selftest"
    else:
        probe = next((os.path.join(BUNDLE, c["dir"], "lib.so") for c in index["correctness"] if os.path.exists(os.path.join(BUNDLE, c["dir"], "lib.so"))), None)
        if not probe:
            print("gpu-check.py: the bundle has no libraries (prepare ran without nvcc?)"); return 1
        status = Lib(probe).status()
        if not status.startswith("ok:"):
            parts = ["kernel checks vs CPU", "training GPU vs CPU", "matmul timings + roofline", "7B step time + peak memory"]
            print(f"gpu-check.py: {status}: SKIPPED {', '.join(parts)}")
            return 0
        device = status[4:].strip()
    if PART:
        try:
            run_part(PART, index, device)
        except Exception as e:  # keep what the part measured before it broke
            RESULTS["failed"].append(f"{PART}: {type(e).__name__}: {e}")
            log(f"{PART} FAILED: {type(e).__name__}: {e}")
        json.dump(RESULTS, open(RESULT_FILE, "w"), default=float)
        return 0
    RESULTS["date"] = datetime.datetime.now().strftime("%Y-%m-%d")
    RESULTS["device"] = device
    RESULTS["sanitizer"] = {}
    log(f"device: {device}; time budget {BUDGET:.0f} s")
    tag = device.split("(")[0].strip().replace(" ", "_")
    tmp = tempfile.mkdtemp(prefix="qzo-gpu-check-")
    os.makedirs("bench/results", exist_ok=True)
    base = os.path.join(tmp, "selftest") if SELFTEST else f"bench/results/{tag}-{RESULTS['date']}"
    peaks_file = os.path.join(tmp, "peaks.json")

    def save():
        json.dump(RESULTS, open(base + ".json", "w"), indent=1, default=float)
        open(base + ".md", "w").write(markdown(device))
        if os.environ.get("OUT") and not SELFTEST:
            for ext in (".json", ".md"):
                open(os.path.join(os.environ["OUT"], os.path.basename(base) + ext), "w").write(open(base + ext).read())

    # Each part runs in its own process, so a crash or a hang (an illegal address poisons the whole
    # CUDA context) costs that part alone; results are saved after every part.
    parts = [f"correctness:{c['name']}" for c in index["correctness"]] + ["training"]
    if not SELFTEST:
        parts += ["peaks"] + [f"matmul:{e['name']}" for e in index["matmul"] if not e["unfused"]] + ["variants", "step7b"]
    limits = {"training": 90, "peaks": 60, "step7b": 120}
    for part in parts:
        left = BUDGET - (time.time() - T_START)
        if left < 15:
            RESULTS["skipped"].append(f"{part} (time budget spent)")
            continue
        rf = os.path.join(tmp, part.replace(":", "_") + ".json")
        env = dict(os.environ, QZO_GPU_PEAKS=peaks_file)
        limit = min(left, limits.get(part.split(":")[0], 60))
        try:
            extra = (["--quick"] if QUICK else []) + (["--selftest-cpu"] if SELFTEST else [])
            r = subprocess.run([sys.executable, __file__, BUNDLE, "--part", part, "--result-file", rf] + extra,
                               env=env, timeout=limit, stderr=subprocess.PIPE, text=True)
            if os.path.exists(rf):
                merge(RESULTS, json.load(open(rf)))
                if part == "peaks" and RESULTS["peaks"]:
                    json.dump(RESULTS["peaks"], open(peaks_file, "w"))
            else:
                tail = " | ".join(r.stderr.strip().splitlines()[-3:])
                RESULTS["failed"].append(f"{part}: exit {r.returncode}: {tail}")
                log(f"{part} FAILED (exit {r.returncode}): {tail}")
        except subprocess.TimeoutExpired:
            RESULTS["failed"].append(f"{part}: no result within {limit:.0f} s")
            log(f"{part} FAILED: no result within {limit:.0f} s")
        if part.startswith("correctness:") and any(f.startswith(part) for f in RESULTS["failed"]):
            case = part.split(":", 1)[1]
            report = sanitize(case, BUDGET - (time.time() - T_START) - 120)
            if report is not None:
                RESULTS["sanitizer"][case] = report
                log(f"compute-sanitizer {case}:\n  " + "\n  ".join(report[:12]))
        save()
    print(markdown(device))
    return 1 if RESULTS["failed"] else 0


def flag(name, default=None):
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


PART = flag("--part")
RESULT_FILE = flag("--result-file")
BUDGET = float(flag("--budget", "420"))
SLOTS = []
if __name__ == "__main__":
    sys.exit(main())
