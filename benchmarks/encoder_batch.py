"""Images per forward on a CPU: the image tower's throughput at several batch sizes, side by side.

    python benchmarks/encoder_batch.py                      # the demo's proxy CLIP (needs the proxy file)
    python benchmarks/encoder_batch.py --model ViT-B-32 --pretrained none --images 256 --sizes 128 64 32 16
    python benchmarks/encoder_batch.py --model tgdfer-tiny-vit --pretrained none

Why `encode_images` feeds a CPU tower `enc.cpu_batch` images at a time: extraction hands it
batch_clips x views x frames images (hundreds to thousands), and one forward over all of them is
slower per image than forwards of a few dozen. Each size runs once a round, the order reversed
every other round; the median round is shown with the minor page faults per image and the share
of the CPU time spent in the kernel: glibc serves a block larger than its mmap threshold (at most
32 MiB) with a fresh mapping whose pages fault in at every forward, which is what
`encoders.cpu_image_batch` keeps the largest activation under. `picks` marks the size it chooses;
`features` compares each size's features with those of one forward over all the images.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch


def usage() -> tuple[int, float, float]:
    """(minor page faults, user CPU s, system CPU s) of this process so far."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_minflt, r.ru_utime, r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tgdfer-proxy-vit")
    ap.add_argument("--pretrained", default="cache/proxy/tgdfer-proxy-vit.safetensors")
    ap.add_argument("--images", type=int, default=3264, help="images per measurement (4 clips x 51 views x 16)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 256, 128, 64, 32],
                    help="images per forward (the whole --images is always measured too)")
    ap.add_argument("--repeats", type=int, default=3, help="rounds; the median is shown")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from tgdfer.encoders import EncoderConfig, load_encoder

    enc = load_encoder(EncoderConfig(model=args.model, pretrained=args.pretrained, precision="fp32"), device="cpu")
    x = torch.randn(args.images, 3, enc.image_size, enc.image_size)  # [N, 3, S, S]
    sizes = [args.images] + [s for s in args.sizes if s < args.images]
    runs: dict[int, list[tuple[float, float, float]]] = {s: [] for s in sizes}  # images/s, faults/image, kernel share
    feats: dict[int, torch.Tensor] = {}  # size -> [N, D] features of the first round, compared below
    with torch.inference_mode():
        enc.model.encode_image(x[:max(sizes[1:], default=8)])
        for r in range(args.repeats):
            for step in sizes if r % 2 == 0 else sizes[::-1]:
                f0, u0, s0 = usage()
                t = time.perf_counter()
                out = [enc.model.encode_image(x[i:i + step]) for i in range(0, len(x), step)]
                seconds = time.perf_counter() - t
                f1, u1, s1 = usage()
                runs[step].append((len(x) / seconds, (f1 - f0) / len(x), (s1 - s0) / max(u1 - u0 + s1 - s0, 1e-9)))
                feats.setdefault(step, torch.cat(out))
    whole = statistics.median(rate for rate, _, _ in runs[args.images])
    print(f"{args.model}, {args.threads} thread(s), {args.images} images, {args.repeats} rounds (median); "
          f"cpu_image_batch picks {enc.cpu_batch}")
    for step in sizes:
        rate = statistics.median(v[0] for v in runs[step])
        faults = statistics.median(v[1] for v in runs[step])
        kernel = statistics.median(v[2] for v in runs[step])
        mark = "  <- picks" if step == enc.cpu_batch else ""
        diff = (feats[step] - feats[args.images]).abs().max().item()
        same = "same bits" if torch.equal(feats[step], feats[args.images]) else f"max diff {diff:.1e}"
        print(f"  {step:>5} images a forward: {rate:8.1f} images/s  ({rate / whole:.2f}x one forward over all)  "
              f"{faults:7.0f} faults/image  kernel {kernel:5.1%}  features: {same}{mark}")


if __name__ == "__main__":
    main()
