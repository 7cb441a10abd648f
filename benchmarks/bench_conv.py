"""The style encoder's 3x3 convolutions: oneDNN direct against our Winograd F(4x4,3x3), per layer.

    python benchmarks/bench_conv.py [--repeats 7] [--batch 1,4]

For each stride-1 3x3 convolution shape of the full pSp encoder (channels-last input, as the
detector runs it) prints the median time of ``F.conv2d`` and of ``winograd_conv3x3`` (filters
transformed once, as the layer caches them), their ratio, the relative error of each against a
float64 convolution, and the share of the encoder's multiply-adds at that shape. This is the
measurement behind ``winograd.MIN_CHANNELS``: the fast path pays from 128 input channels.
"""

from __future__ import annotations

import argparse
import sys
import time

from _common import median, set_threads, table  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

# (C_in, C_out, side, how many in the full encoder): the stride-1 3x3 convs of IR-SE-50 at 256x256.
SHAPES = [(64, 64, 256, 1), (64, 64, 128, 4), (64, 128, 128, 1), (128, 128, 64, 6),
          (128, 256, 64, 1), (256, 256, 32, 26), (256, 512, 32, 1), (512, 512, 16, 4)]


def timed(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return median(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--batch", default="1,4", help="comma list of batch sizes (faces per pass)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: min(2, cores))")
    args = ap.parse_args(argv)
    threads = set_threads(args.threads)

    from stylefusion.models.winograd import MIN_CHANNELS, transform_weight, winograd_conv3x3

    total_macs = sum(ci * co * 9 * s * s * k for ci, co, s, k in SHAPES)
    print(f"# bench_conv: torch {torch.__version__}, {threads} threads, {args.repeats} repeats; "
          f"winograd.MIN_CHANNELS={MIN_CHANNELS}")
    rows = []
    gen = torch.Generator().manual_seed(0)
    for batch in (int(b) for b in args.batch.split(",")):
        for c_in, c_out, side, count in SHAPES:
            x = torch.randn(batch, c_in, side, side, generator=gen).contiguous(memory_format=torch.channels_last)
            w = torch.randn(c_out, c_in, 3, 3, generator=gen) / (3 * c_in ** 0.5)
            w_cl = w.contiguous(memory_format=torch.channels_last)
            u = transform_weight(w)
            with torch.inference_mode():
                ref = F.conv2d(x.double(), w.double(), padding=1)
                scale = float(ref.abs().max())
                err_direct = float((F.conv2d(x, w_cl, padding=1).double() - ref).abs().max()) / scale
                err_wino = float((winograd_conv3x3(x, u).double() - ref).abs().max()) / scale
                t_direct = timed(lambda: F.conv2d(x, w_cl, padding=1), args.repeats)
                t_wino = timed(lambda: winograd_conv3x3(x, u), args.repeats)
            share = c_in * c_out * 9 * side * side * count / total_macs
            rows.append([batch, f"{c_in}->{c_out} @{side}x{side}", count, f"{share:.0%}", t_direct * 1e3,
                         t_wino * 1e3, t_direct / t_wino, f"{err_direct:.1e}", f"{err_wino:.1e}",
                         "yes" if c_in >= MIN_CHANNELS else "no"])
            print(f"  batch {batch} {c_in}->{c_out} @{side}: direct {t_direct * 1e3:.2f} ms, "
                  f"winograd {t_wino * 1e3:.2f} ms", flush=True)
    print()
    print(table(rows, ["batch", "conv", "in encoder", "share of MACs listed", "direct ms", "winograd ms", "speedup",
                       "rel err direct", "rel err winograd", "fast path"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
