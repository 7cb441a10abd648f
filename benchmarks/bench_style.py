"""Per-crop time of the extractors on the CPU by precision and batching: what the detector's defaults rest on.

    python benchmarks/bench_style.py [--net style|content] [--precisions bf16,fp32] [--batches 1,4,8,16,32]
                                     [--stems 1,all] [--configs bf16:16:all,fp32:4:1] [--crops 16]
                                     [--rounds 3] [--levers] [--preset full]

Style (``--net style``): FULL preset, random weights, random 256x256 crops. A configuration is
``precision:batch:stem`` (``StyleEncoder.forward(x, stem_batch)``: the input layer and the first
two stages run ``stem`` faces at a time, ``all`` = the whole batch); ``--configs`` lists them, else
the grid ``--precisions`` x ``--batches`` x ``--stems``. Each configuration runs the detector's own
code (``style_inputs``, ``det._autocast()``, ``det.style``) over ``max(--crops, batch)`` crops in
chunks of ``batch``. ``--levers`` adds, for each bf16 configuration, the same with the conv weights
stored in bf16 once (``bf16w``: autocast then casts nothing) instead of cast by autocast at each call.

Content (``--net content``): the 3D ResNet on ``batch`` clips of 3x16x112x112 per pass
(``det.content``), over ``max(--crops, batch)`` clips.

Rounds go through the configurations in turn (the machines are shared: configurations are
compared within a round, each one's figure is the median over rounds, and the load average is
printed per round). Printed per configuration: seconds per crop (or clip; median, min and max over
rounds), the speed-up against the first configuration (median of the per-round ratios, and the
ratio of the fastest rounds: load only ever adds time), the process's CPU seconds per crop (all
threads; with ``--threads 1`` the figure least disturbed by other processes, though it ranks
single-thread work only), the peak RSS above the start of the pass (sampled every 2 ms), and the
smallest cosine similarity of its outputs to fp32's (the detector's fp32 path, 4 faces per pass),
and the share of the cores other processes kept busy meanwhile (median; in parentheses per round).
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import threading
import time

from _common import ForeignLoad, median, rss_mb, set_threads, table, wait_until_idle  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402


class PeakRSS:
    """Peak resident set size above the start, sampled in a thread while the block runs (MB)."""

    def __enter__(self) -> "PeakRSS":
        self.start = rss_mb()
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, rss_mb())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())

    @property
    def above(self) -> float:
        return self.peak - self.start


def bf16_weights(module: torch.nn.Module) -> torch.nn.Module:
    """A copy whose conv weights and biases are stored in bf16 (autocast then passes them through)."""
    out = copy.deepcopy(module)
    for m in out.modules():
        if isinstance(m, torch.nn.Conv2d | torch.nn.Conv3d):
            fmt = torch.channels_last if m.weight.ndim == 4 else torch.channels_last_3d
            m.weight.data = m.weight.data.to(torch.bfloat16).contiguous(memory_format=fmt)
            if m.bias is not None:
                m.bias.data = m.bias.data.to(torch.bfloat16)
    return out


def parse_configs(args) -> list[tuple[str, int, int | None, str]]:
    """(precision, batch, stem or None, lever) for each configuration."""
    def stem(v: str) -> int | None:
        return None if v in ("all", "none", "None") else int(v)

    if args.configs:
        out = []
        for c in args.configs.split(","):
            parts = c.split(":")
            out.append((parts[0], int(parts[1]), stem(parts[2]) if len(parts) > 2 else None,
                        parts[3] if len(parts) > 3 else "autocast"))
        return out
    stems = [stem(s) for s in args.stems.split(",")] if args.net == "style" else [None]
    out = []
    for p in args.precisions.split(","):
        for b in map(int, args.batches.split(",")):
            for s in stems:
                s = None if s is None or s >= b else s  # a stem batch >= the batch is the whole batch
                for lever in ["autocast" if p == "bf16" else "-"] + (["bf16w"] if args.levers and p == "bf16" else []):
                    if (p, b, s, lever) not in out:
                        out.append((p, b, s, lever))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--net", default="style", choices=("style", "content"))
    ap.add_argument("--preset", default="full", choices=("full", "tiny"))
    ap.add_argument("--precisions", default="bf16")
    ap.add_argument("--batches", default="1,4,8,16,32")
    ap.add_argument("--stems", default="1,all")
    ap.add_argument("--configs", default=None, help="explicit list precision:batch[:stem[:lever]], first = base")
    ap.add_argument("--crops", type=int, default=16,
                    help="crops (clips) per configuration and round, at least one batch")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--levers", action="store_true", help="also bf16 weights stored once (bf16w)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--wait-idle", type=float, default=0.0,
                    help="before each measurement wait up to this many seconds for other processes to use "
                         "< 10%% of the cores")
    args = ap.parse_args(argv)
    threads = set_threads(args.threads)

    from stylefusion.config import preset_config
    from stylefusion.detector import StyleFusionDetector
    from stylefusion.precision import describe_cpu
    from stylefusion.transforms import content_frames, style_inputs

    t_start = time.perf_counter()
    configs = parse_configs(args)
    torch.manual_seed(0)
    dets = {p: StyleFusionDetector(preset_config(args.preset), precision=p).eval()
            for p in sorted({c[0] for c in configs} | {"fp32"})}
    for d in dets.values():
        d.load_state_dict(dets["fp32"].state_dict())  # the same random weights
    cfg = dets["fp32"].config
    n_max = max(args.crops, *(c[1] for c in configs))
    rng = np.random.default_rng(0)
    if args.net == "style":
        inputs = rng.integers(0, 256, (n_max, cfg.face_size, cfg.face_size, 3), dtype=np.uint8)
    else:
        frames = rng.integers(0, 256, (cfg.clip_len, cfg.face_size, cfg.face_size, 3), dtype=np.uint8)
        with torch.inference_mode():
            clip = content_frames(frames, cfg).view(1, cfg.clip_len, 3, cfg.content_size, cfg.content_size)
        clip = clip.transpose(1, 2)  # [1, 3, L, s, s]
        inputs = (clip + 0.1 * torch.randn(n_max, *clip.shape[1:])).contiguous()  # n_max different clips
    nets = {}
    for p, _, _, lever in [*configs, ("fp32", 0, None, "-")]:
        net = dets[p].style if args.net == "style" else dets[p].content
        nets[(p, lever)] = bf16_weights(net) if lever == "bf16w" else net

    def run(p: str, batch: int, stem: int | None, lever: str, n: int) -> torch.Tensor:
        det, net = dets[p], nets[(p, lever)]
        out = []
        with torch.inference_mode(), det._autocast():
            for s in range(0, n, batch):
                if args.net == "style":
                    x = style_inputs(torch.from_numpy(inputs[s:s + batch]), cfg)
                    out.append(net(x, stem).float())
                else:
                    out.append(net(inputs[s:s + batch]).float())
        return torch.cat(out)

    # fp32 reference outputs (the detector's fp32 path) for the cosine check
    ref = run("fp32", 4, 1 if args.net == "style" else None, "-", n_max)
    print(f"# bench_style --net {args.net}: preset {args.preset}, {threads} threads, torch {torch.__version__}, "
          f"{len(configs)} configurations x {args.rounds} rounds; setup {time.perf_counter() - t_start:.0f}s")
    print(f"# {describe_cpu()}", flush=True)
    for c in configs:  # warm-up: oneDNN primitives, Winograd filters
        run(*c, c[1])
    times: dict = {c: [] for c in configs}
    cpu: dict = {c: [] for c in configs}
    foreign: dict = {c: [] for c in configs}
    peaks: dict = {c: [] for c in configs}
    cosines: dict = {}
    loads = []
    for r in range(args.rounds):
        for c in configs:
            n = max(args.crops, c[1])
            n -= n % c[1]
            if args.wait_idle:
                wait_until_idle(args.wait_idle)
            with PeakRSS() as mem, ForeignLoad() as load:
                t0, c0 = time.perf_counter(), time.process_time()
                out = run(*c, n)
                times[c].append((time.perf_counter() - t0) / n)
                cpu[c].append((time.process_time() - c0) / n)
            foreign[c].append(load.share)
            peaks[c].append(mem.above)
            if c not in cosines:
                cos = torch.nn.functional.cosine_similarity(out.flatten(1), ref[:n].flatten(1))
                cosines[c] = float(cos.min())
        loads.append(os.getloadavg()[0])
        print(f"  round {r + 1}: " + ", ".join(f"{_name(c)} {times[c][-1]:.3f} ({foreign[c][-1]:.0%})" for c in configs)
              + f" s/{'crop' if args.net == 'style' else 'clip'}; load average {loads[-1]:.2f} "
              f"({time.perf_counter() - t_start:.0f}s)", flush=True)
    base = times[configs[0]]
    rows = [[_name(c), median(times[c]), min(times[c]), max(times[c]),
             median(b / t for b, t in zip(base, times[c])), min(base) / min(times[c]), median(cpu[c]),
             median(peaks[c]), f"{cosines[c]:.6f}", median(foreign[c])] for c in configs]
    unit = "crop" if args.net == "style" else "clip"
    print(f"\n## {args.net} per {unit}, {args.rounds} rounds, {threads} threads; speed-up against "
          f"{_name(configs[0])}: median of the per-round ratios, and ratio of the fastest rounds")
    print(table(rows, ["precision:batch:stem lever", f"s/{unit}", "min", "max", "speed-up", "speed-up (min)",
                       f"CPU s/{unit}", "peak MB above", "min cosine vs fp32", "others' load"]))
    print(f"load average per round: {', '.join(f'{v:.2f}' for v in loads)}; {describe_cpu()}")
    print(f"wall time {time.perf_counter() - t_start:.0f}s")
    return 0


def _name(c) -> str:
    p, b, s, lever = c
    return f"{p}:{b}:{'all' if s is None else s}" + ("" if lever in ("-", "autocast") else f" {lever}")


if __name__ == "__main__":
    sys.exit(main())
