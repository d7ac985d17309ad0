"""Images per forward on a CPU: the image tower's throughput at several batch sizes, side by side.

    python benchmarks/encoder_batch.py                      # the demo's proxy CLIP (needs the proxy file)
    python benchmarks/encoder_batch.py --model tgdfer-tiny-vit --pretrained none

Why `encoders.CPU_IMAGE_BATCH` exists: extraction hands the tower batch_clips x views x frames images
(thousands), and one forward over all of them is slower per image than forwards of about a hundred.
"""

from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tgdfer-proxy-vit")
    ap.add_argument("--pretrained", default="cache/proxy/tgdfer-proxy-vit.safetensors")
    ap.add_argument("--images", type=int, default=3264, help="images per measurement (4 clips x 51 views x 16)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from tgdfer.encoders import EncoderConfig, load_encoder

    enc = load_encoder(EncoderConfig(model=args.model, pretrained=args.pretrained, precision="fp32"), device="cpu")
    x = torch.randn(args.images, 3, enc.image_size, enc.image_size)
    rates = {}
    with torch.inference_mode():
        enc.model.encode_image(x[:8])
        for step in (args.images, 1024, 256, 128, 64, 32):
            t = time.perf_counter()
            for i in range(0, len(x), step):
                enc.model.encode_image(x[i:i + step])
            rates[step] = len(x) / (time.perf_counter() - t)
    whole = rates[args.images]
    print(f"{args.model}, {args.threads} thread(s), {args.images} images")
    for step, r in rates.items():
        print(f"  {step:>5} images a forward: {r:8.1f} images/s  ({r / whole:.2f}x one forward over all)")


if __name__ == "__main__":
    main()
