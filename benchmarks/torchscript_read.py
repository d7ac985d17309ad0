"""TorchScript weights read as data (tgdfer.torchscript) versus TorchScript's own loader, on one archive.

Scripts an open_clip model with random weights (fp16, as OpenAI ships ViT-B-32.pt) into a
temporary archive, then reads it both ways, checks that the state dicts are equal (keys in order,
dtypes, values) and prints the seconds of each. The loader runs in this process only because the
archive was made here.

    python benchmarks/torchscript_read.py                  # ViT-B-32 (about 290 MB)
    python benchmarks/torchscript_read.py --model tgdfer-tiny-vit
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import open_clip
import torch

from tgdfer.encoders import register_model_configs
from tgdfer.torchscript import read_torchscript_state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ViT-B-32")
    args = parser.parse_args()
    register_model_configs()
    warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.pt"
        model = open_clip.create_model(args.model, quick_gelu=True).eval().half()
        torch.jit.save(torch.jit.script(model), str(path))
        t = time.perf_counter()
        ours = read_torchscript_state(path)
        t_ours = time.perf_counter() - t
        t = time.perf_counter()
        theirs = torch.jit.load(str(path)).state_dict()  # the archive is our own: safe to run here
        t_theirs = time.perf_counter() - t
        same = list(ours) == list(theirs) and all(
            ours[k].dtype == v.dtype and torch.equal(ours[k], v) for k, v in theirs.items())
        print(f"{args.model}: {path.stat().st_size / 2**20:.0f} MB, {len(ours)} tensors, equal state dicts: {same}")
        print(f"tgdfer.torchscript {t_ours:.2f} s   TorchScript's loader + state_dict() {t_theirs:.2f} s")


if __name__ == "__main__":
    main()
