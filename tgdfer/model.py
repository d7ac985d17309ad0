"""The model that fits a feature store: the TG-DFER head, and the CLIP towers the store was extracted with.

`build_head` sizes the head from the store (width D, frames T, classes C, its prompt sets) and
loads the frozen text tower when learnable prompts need it; `load_image_encoder` gives the image
tower for end-to-end training. Both check the weights against the store's fingerprint (sha256),
so a head is never trained or scored on features from other weights.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np
import torch

from .encoders import EncoderConfig, LoadedEncoder, check_weights, load_encoder
from .errors import ConfigError, TgdferError
from .head import HeadConfig, TGDFERHead
from .labels import stored_classes
from .store import FeatureStore
from .text import FrozenTextEncoder


def text_sets(store: FeatureStore) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Every stored prompt set as (tokens [P, L] int64, emb [P, D] float32)."""
    out = {}
    for name in store.text_sets:
        _, tokens, emb = store.text(name)
        out[name] = (torch.as_tensor(tokens, dtype=torch.int64), torch.as_tensor(emb, dtype=torch.float32))
    return out


def load_text_encoder(store: FeatureStore, device: torch.device,
                      encoder: Optional[EncoderConfig] = None) -> FrozenTextEncoder:
    """The store's text tower (only), checked against the embeddings extract stored with it.

    A store extracted from a tag or random weights names everything needed; one extracted from a
    local weights file needs that file again: `encoder.pretrained` (the pipeline's [encoder]).
    """
    return _text_encoder(store, store_encoder_config(store, encoder, "learnable prompts and a token visual prompt need its text tower"), device)


def store_encoder_config(store: FeatureStore, encoder: Optional[EncoderConfig], why: str) -> EncoderConfig:
    """The EncoderConfig of the weights `store` was extracted with (a weights file comes from `encoder`)."""
    fp = store.fingerprint["encoder"]
    pretrained = fp["pretrained"]
    if pretrained == "file":
        if encoder is None or not os.path.isfile(encoder.pretrained):
            problem = (f"{store.path} was extracted from {fp['model']} weights in a local file (sha256 "
                       f"{fp['weights_sha256'][:12]}...); {why}: ")
            error = TgdferError(problem + "set [encoder] pretrained to that file")
            error.cli = problem + "pass it as --pretrained FILE (or set [encoder] pretrained)"
            raise error
        pretrained = encoder.pretrained
    precision = encoder.precision if encoder is not None else fp.get("precision", "fp32")
    return EncoderConfig(model=fp["model"], pretrained=pretrained, quick_gelu=fp["quick_gelu"], precision=precision,
                         trust_weights=encoder.trust_weights if encoder is not None else False)


def check_store_model(store_path: str, model: str) -> None:
    """ConfigError naming --model when the store was extracted with another open_clip model (train-head takes
    the store's; the option is there to say the same as extract's). A store that does not open is left to
    the trainer to report."""
    try:
        with FeatureStore.open(store_path) as store:
            stored = store.fingerprint["encoder"]["model"]
    except (TgdferError, OSError, KeyError):
        return
    if stored != model:
        error = ConfigError("encoder.model", f"{model!r}: {store_path} holds features of {stored}; training uses "
                                             "the store's encoder")
        error.cli = f"--model {model}: {store_path} holds features of {stored}; train-head uses the store's encoder"
        raise error


def load_image_encoder(store: FeatureStore, device: torch.device, encoder: Optional[EncoderConfig] = None,
                       state: Optional[dict] = None) -> LoadedEncoder:
    """The store's image tower for end-to-end training (checked by sha256), optionally with fine-tuned `state`."""
    cfg = store_encoder_config(store, encoder, "end-to-end training needs its image tower")
    enc = load_encoder(cfg, device=device, towers=("image",))
    check_weights(enc, store.fingerprint["encoder"].get("weights_sha256"), cfg.pretrained, str(store.path))
    if state is not None:
        enc.model.visual.load_state_dict(state)
    return enc


def _text_encoder(store: FeatureStore, enc_cfg: EncoderConfig, device: torch.device) -> FrozenTextEncoder:
    enc = load_encoder(enc_cfg, device=device, towers=("text",))
    fp = store.fingerprint["encoder"]
    check_weights(enc, fp.get("weights_sha256"), enc_cfg.pretrained, str(store.path))
    text = FrozenTextEncoder(enc)
    _, tokens, emb = store.text("class_names")
    with torch.no_grad():
        again = text.encode_tokens(torch.as_tensor(tokens, dtype=torch.int64, device=device)).float().cpu()
    if not torch.allclose(again, torch.as_tensor(emb), rtol=1e-2, atol=1e-2 * float(again.abs().max())):
        raise TgdferError(f"the {fp['model']} text tower loaded for training does not reproduce the text "
                          f"embeddings stored in {store.path}: wrong weights?")
    return text


def check_head(head_cfg: HeadConfig, store: FeatureStore) -> None:
    """ConfigError naming the head.* field when the architecture does not fit the store."""
    try:
        head_cfg.check_frames(store.frames)
    except ConfigError as e:  # name the pipeline field: head.window, not window
        raise ConfigError(f"head.{e.field}", f"{str(e).split(': ', 1)[-1]} (the store has {store.frames} frames)") from None
    for field_name, name in (("head.text_prompt", head_cfg.fine_text), ("head.coarse_text", head_cfg.coarse_text)):
        if name not in store.text_sets:
            hint = ("; descriptors of classes outside the 7 emotions come from [classes] prompts_file"
                    if name == "descriptors" else "")
            raise ConfigError(field_name, f"{store.path} has no prompt set {name!r} "
                              f"(it has: {', '.join(store.text_sets) or 'none'}){hint}")


def build_head(head_cfg: HeadConfig, store: FeatureStore, device: torch.device, seed: int | Sequence[int],
               text_encoder: Optional[FrozenTextEncoder] = None,
               encoder: Optional[EncoderConfig] = None) -> TGDFERHead:
    """The head for `store`: one replica per seed (an int: one replica)."""
    seeds = [int(seed)] if isinstance(seed, (int, np.integer)) else [int(s) for s in seed]
    check_head(head_cfg, store)
    if head_cfg.needs_text_encoder and text_encoder is None:
        text_encoder = load_text_encoder(store, device, encoder)
    classes = len(stored_classes(store.fingerprint))
    head = TGDFERHead(head_cfg, dim=store.dim, frames=store.frames, classes=classes, text=text_sets(store),
                      text_encoder=text_encoder if head_cfg.needs_text_encoder else None, replicas=len(seeds),
                      seeds=seeds)
    return head.to(device)

