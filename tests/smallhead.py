"""The small TG-DFER head the tests train wherever what they check does not depend on the paper's sizes.

HeadConfig's defaults are DFER-CLIP's temporal transformer (8 heads of 64, feed-forward 1024): on the
tiny encoder's D = 32 features every training step would cost what the paper-sized head costs.
Resume equality, replicas, selection protocols, bookkeeping, CLI output, files and reports are the
same code at any width, so those tests train 2 heads of 8 with a feed-forward of 32 instead (issue
22). Tests of the paper's defaults themselves keep HeadConfig() as it is.
"""

from __future__ import annotations

from tgdfer.head import HeadConfig

SMALL_HEAD = dict(heads=2, dim_head=8, mlp_dim=32)  # HeadConfig fields: small encoder layers, paper defaults elsewhere
# the same as `--set` options of the CLI (train-head, sweep, ...) and as lines of a pipeline file's [head] table
SMALL_HEAD_SET = [arg for k, v in SMALL_HEAD.items() for arg in ("--set", f"head.{k}={v}")]
SMALL_HEAD_OVERRIDES = [f"head.{k}={v}" for k, v in SMALL_HEAD.items()]  # load_pipeline(path, overrides)
SMALL_HEAD_TOML = "".join(f"{k} = {v}\n" for k, v in SMALL_HEAD.items())


def small_pipeline_toml(store, weights, epochs: int, batch_size: int, extra: str = "") -> str:
    """A pipeline file's text: the tiny encoder at `weights`, the small head with fixed prompts, training on `store`."""
    return f"""
[encoder]
model = "tgdfer-tiny-vit"
pretrained = "{weights}"
[head]
{SMALL_HEAD_TOML}learnable = false
[train]
store = "{store}"
epochs = {epochs}
batch_size = {batch_size}
milestones = [1]
{extra}"""


def small_head(**changes) -> HeadConfig:
    """HeadConfig with the small encoder layers and `changes`, the paper's defaults elsewhere."""
    return HeadConfig(**{**SMALL_HEAD, **changes})
