"""Building an open_clip model to load weights into: with open_clip's random init, and without it.

`tgdfer.encoders._create` builds the model it then loads from a weights file inside
`_SkipRandomInit` (torch.nn.init's initialisers and `Tensor.normal_`/`uniform_` leave their tensors
as they are; a strict `load_state_dict` replaces every tensor next). This times
`open_clip.create_model` both ways, alternating, in one process, and checks that the two models
hold the same tensors after loading one state dict into each.

    python benchmarks/encoder_load.py                          # ViT-B-32, the proxy and the tiny model
    python benchmarks/encoder_load.py --models ViT-B-32 --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import open_clip
import torch

from tgdfer.encoders import _SkipRandomInit, register_model_configs
from tgdfer.weights import load_into


def build(name: str, skip: bool) -> tuple[float, torch.nn.Module]:
    t0 = time.perf_counter()
    if skip:
        with _SkipRandomInit():
            model = open_clip.create_model(name, pretrained=None)
    else:
        model = open_clip.create_model(name, pretrained=None)
    return time.perf_counter() - t0, model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["ViT-B-32", "tgdfer-proxy-vit", "tgdfer-tiny-vit"])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    register_model_configs()
    print(f"torch threads {torch.get_num_threads()}; median of {args.rounds} rounds, alternating")
    for name in args.models:
        times: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.rounds):
            for skip in (False, True):
                times[skip].append(build(name, skip)[0])
        _, full = build(name, False)
        _, skipped = build(name, True)
        load_into(skipped, dict(full.state_dict()))
        tensors = [{**dict(m.named_parameters()), **dict(m.named_buffers())} for m in (full, skipped)]  # buffers
        same = tensors[0].keys() == tensors[1].keys() and all(  # not in the state dict (attn_mask) count too
            torch.equal(v, tensors[1][k]) for k, v in tensors[0].items())
        with_init, without = statistics.median(times[False]), statistics.median(times[True])
        print(f"{name:18s} with init {1000 * with_init:8.1f} ms   without {1000 * without:7.1f} ms   "
              f"ratio {with_init / without:6.1f}x   same tensors after loading: {same}")


if __name__ == "__main__":
    main()
