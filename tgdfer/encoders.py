"""The one open_clip loader tgdfer uses: frozen image and text encoders, their tokenizer and a fingerprint.

`load_encoder(EncoderConfig(...))` builds an open_clip model from a model name and a weights
source (an open_clip tag such as "openai", a local weights file, or "none" for random weights),
decides whether the model needs QuickGELU, freezes it and records what was loaded in a
fingerprint that the feature store keeps. `encode_images` / `encode_texts` run the frozen towers
under `torch.inference_mode` and autocast.

QuickGELU. OpenAI's CLIP (and a few other releases) were trained with QuickGELU; open_clip's plain
configs (`ViT-B-32`) build nn.GELU, and open_clip 3.3 does NOT switch for a tag: it only warns on
a mismatch (factory.py `create_model`, "Check compatibility (e.g., QuickGELU warning for tags)").
A weights file carries no flag at all. Without the right activation the features are silently
wrong, so `decide_quick_gelu` decides, in this order:
  1. an explicit `quick_gelu` in the config wins (a warning if it contradicts the evidence);
  2. the model config says so (`*-quickgelu` names have `"quick_gelu": true`);
  3. a known tag: its pretrained config's `quick_gelu` (pretrained.py `_pcfg(..., quick_gelu=True)`);
  4. a file: a TorchScript archive (only OpenAI ships those), a sha256 that matches a checkpoint in
     open_clip's pretrained table (the OpenAI URLs carry the full sha256, the LAION ones a prefix),
     OpenAI's release file name (`ViT-B-32.pt`), a Hugging Face cache path of a QuickGELU repo, or
     "quickgelu" in the file name;
  5. otherwise nn.GELU, with a warning that says how to force QuickGELU.

Shapes: N images, P prompts, S image side, D embedding width, L context length (77).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from .errors import ConfigError, TgdferError
from .threads import fixed_threads
from .weights import is_torchscript_archive, load_into, read_state_dict

logger = logging.getLogger(__name__)

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"  # tiny test configs, registered on first load
PRECISIONS = ("fp32", "bf16", "fp16")
TOWERS = ("image", "text")
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
RANDOM_WEIGHTS_SEED = 0  # pretrained="none": the same random model in every process
CPU_IMAGE_BATCH = 128  # the most images per forward on a CPU: the proxy CLIP 1.54x as fast as one forward over
#   3,264 images, whose activations fault in from fresh mappings (benchmarks/encoder_batch.py)
CPU_ACTIVATION_BUDGET = 24 << 20  # bytes of a forward's largest activation on a CPU: under glibc's 32 MiB
#   ceiling for serving a block from the heap; a larger block is a fresh mmap whose pages fault in at every
#   forward (ViT-B/32 at 128 images: 6,450 faults an image, 11 % of the CPU time in the kernel;
#   benchmarks/encoder_batch.py)


@dataclass
class EncoderConfig:
    """Which open_clip encoder to load and how to run it."""

    model: str = "ViT-B-32"  # open_clip model name (built-in, or a tgdfer tiny config such as "tgdfer-tiny-vit")
    pretrained: str = "openai"  # open_clip tag, a local weights file path, or "none" (random weights)
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # autocast dtype of the forward (features are stored as fp16)
    quick_gelu: bool | None = None  # None = decide (OpenAI weights need QuickGELU); True/False forces it
    cache_dir: str | None = None  # where open_clip downloads tagged weights (None: the Hugging Face cache)
    # unpickle a weights file in full / run a TorchScript archive's code (can run code): the user's opt-in only
    trust_weights: bool = field(default=False, metadata={
        "not_in_files": "no config file can grant trust; pass --trust-weights or set TGDFER_TRUST_WEIGHTS=1"})

    def __post_init__(self) -> None:
        if not self.model or not isinstance(self.model, str):
            raise ConfigError("model", "must name an open_clip model, e.g. 'ViT-B-32'")
        if self.model.startswith(("hf-hub:", "local-dir:")):
            raise ConfigError("model", f"{self.model!r}: schema names are not supported; use a built-in "
                              "model name and pass the weights file as pretrained")
        if not self.pretrained or not isinstance(self.pretrained, str):
            raise ConfigError("pretrained", "must be an open_clip tag (e.g. 'openai'), a weights file path or 'none'")
        if self.precision not in PRECISIONS:
            raise ConfigError("precision", f"{self.precision!r} is not one of {', '.join(PRECISIONS)}")
        if self.quick_gelu is not None and not isinstance(self.quick_gelu, bool):
            raise ConfigError("quick_gelu", f"expected true, false or unset, got {self.quick_gelu!r}")


@dataclass(frozen=True)
class WeightsSource:
    """Where the weights come from, resolved from `EncoderConfig.pretrained`."""

    kind: Literal["tag", "file", "none"]  # open_clip tag, local file, or random init
    tag: str | None = None  # the tag, for kind == "tag"
    path: str | None = None  # the weights file (downloaded for a tag), None for "none"
    sha256: str | None = None  # hex digest of the weights file
    torchscript: bool = False  # the file is a TorchScript archive (OpenAI's release format)


@dataclass
class LoadedEncoder:
    """A frozen open_clip model and everything downstream needs to feed it and to record it."""

    model: torch.nn.Module  # open_clip CLIP or CustomTextCLIP, eval(), requires_grad False
    tokenizer: Any  # open_clip tokenizer: list[str] -> LongTensor [P, L]
    image_size: int  # S, square input side
    mean: tuple[float, ...]  # per-channel normalisation the weights expect
    std: tuple[float, ...]
    embed_dim: int  # D
    context_length: int  # L
    device: torch.device
    precision: str  # effective autocast precision (fp16 on CPU falls back to bf16)
    towers: tuple[str, ...]  # towers kept: "image" and/or "text"
    quick_gelu_reason: str  # why quick_gelu is what it is (also logged)
    # model, pretrained (tag | "file" | "none"), weights_sha256, quick_gelu, precision, open_clip_version
    fingerprint: dict[str, Any] = field(default_factory=dict)
    cpu_batch: int = CPU_IMAGE_BATCH  # images per image-tower forward on a CPU (cpu_image_batch); a GPU takes all at once


def register_model_configs() -> None:
    """Make tgdfer's tiny configs (tgdfer/model_configs/*.json) known to open_clip; idempotent."""
    import open_clip

    names = {p.stem for p in MODEL_CONFIG_DIR.glob("*.json")}
    if not names <= set(open_clip.list_models()):
        open_clip.add_model_config(MODEL_CONFIG_DIR)


def file_sha256(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    """sha256 hex digest of a file, read in chunks (weights files are hundreds of MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            h.update(chunk)
    return h.hexdigest()


PROXY_HINT = ("or the demo's proxy CLIP, trained here without downloads (`make demo` or `tgdfer proxy -c "
              "pipelines/synthetic.toml`): --model tgdfer-proxy-vit --pretrained cache/proxy/tgdfer-proxy-vit.safetensors")
HUB_PROBE_SECONDS = 5.0  # one connection attempt to the hub (or the proxy) before a download is tried


def _download_hint(model: str) -> str:
    return (f"Without network access, download the weights elsewhere and pass the file: "
            f"--pretrained /path/to/{model}.pt (OpenAI's release) or an open_clip "
            f"open_clip_pytorch_model.bin / .safetensors file; {PROXY_HINT}")


def resolve_weights(cfg: EncoderConfig) -> WeightsSource:
    """Turn `cfg.pretrained` into a WeightsSource, downloading a tag's weights (TgdferError on failure)."""
    import open_clip

    if cfg.pretrained.lower() == "none":
        return WeightsSource(kind="none")
    tag_cfg = open_clip.get_pretrained_cfg(cfg.model, cfg.pretrained)
    if tag_cfg:
        path = cached_tag_weights(tag_cfg, cfg.cache_dir)
        offline = None if path else hub_unreachable(tag_cfg)
        if offline:  # fail now, not after huggingface_hub's retries (a minute per file offline)
            raise TgdferError(f"could not download weights for {cfg.model}/{cfg.pretrained}: {offline}. "
                              f"{_download_hint(cfg.model)}.")
        try:
            path = path or open_clip.download_pretrained(tag_cfg, cache_dir=cfg.cache_dir)
        except Exception as e:  # network, hub and checksum errors all mean the same to the user
            raise TgdferError(f"could not download weights for {cfg.model}/{cfg.pretrained}: {str(e).rstrip('.')}. "
                              f"{_download_hint(cfg.model)}.") from e
        if not path or not os.path.isfile(path):
            raise TgdferError(f"could not download weights for {cfg.model}/{cfg.pretrained}. "
                              f"{_download_hint(cfg.model)}.")
        tag = cfg.pretrained.lower().replace("-", "_")  # open_clip's own tag normalisation
        return WeightsSource(kind="tag", tag=tag, path=str(path), sha256=file_sha256(path))
    if os.path.isfile(cfg.pretrained):
        path = os.path.abspath(cfg.pretrained)
        return WeightsSource(kind="file", path=path, sha256=file_sha256(path),
                             torchscript=is_torchscript_archive(path))
    tags = open_clip.list_pretrained_tags_by_model(cfg.model)
    raise ConfigError("pretrained", f"{cfg.pretrained!r} is neither a weights file that exists nor a known "
                      f"open_clip tag for {cfg.model} (tags: {', '.join(tags) or 'none'}; "
                      "or 'none' for random weights)")


def _hub_file(tag_cfg: dict[str, Any]) -> tuple[str, list[str]] | None:
    """(repo, file names open_clip tries in order) of a tag downloaded from the Hugging Face hub, else None."""
    from open_clip import pretrained

    if not tag_cfg.get("hf_hub") or not pretrained.has_hf_hub():
        return None
    repo, filename = os.path.split(tag_cfg["hf_hub"])  # "org/name/" names the repo only (open_clip's reading)
    filename = filename or pretrained.HF_WEIGHTS_NAME
    safe = getattr(pretrained, "_get_safe_alternatives", lambda name: [])  # open_clip >= 2.23 prefers .safetensors
    return repo, [*safe(filename), filename]


def cached_tag_weights(tag_cfg: dict[str, Any], cache_dir: str | None = None) -> str | None:
    """A tag's weights file already in the Hugging Face cache (found without the network), else None."""
    hub = _hub_file(tag_cfg)
    if hub is None:
        return tag_cfg.get("file")
    from huggingface_hub import try_to_load_from_cache

    repo, names = hub
    for name in names:
        found = try_to_load_from_cache(repo, name, cache_dir=cache_dir)
        if isinstance(found, str) and os.path.isfile(found):
            return found
    return None


def hub_unreachable(tag_cfg: dict[str, Any], env: dict[str, str] | None = None) -> str | None:
    """Why the Hugging Face hub cannot serve a tag's weights now (HF_HUB_OFFLINE, or one failed connection to
    the hub or to the HTTPS proxy), else None. Offline, huggingface_hub retries each file for a minute."""
    import socket
    from urllib.parse import urlparse
    from urllib.request import getproxies

    if _hub_file(tag_cfg) is None:
        return None  # a URL download (urllib) fails at once by itself
    env = os.environ if env is None else env
    if env.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE"):
        return "HF_HUB_OFFLINE is set and they are not in the Hugging Face cache"
    endpoint = urlparse(env.get("HF_ENDPOINT") or "https://huggingface.co")
    proxy = getproxies().get(endpoint.scheme or "https")
    target = urlparse(proxy if "//" in (proxy or "//") else f"http://{proxy}") if proxy else endpoint
    host = target.hostname or "huggingface.co"
    port = target.port or (443 if target.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=HUB_PROBE_SECONDS).close()
    except OSError as e:
        what = "the HTTPS proxy " if proxy else ""
        return f"cannot reach {what}{host} ({e.strerror or e})"
    return None


def _known_checkpoints(model: str) -> list[dict[str, Any]]:
    """open_clip's pretrained table for `model`: tag, quick_gelu, sha256 prefix, file name, HF repo."""
    import open_clip

    out = []
    for tag in open_clip.list_pretrained_tags_by_model(model):
        pcfg = open_clip.get_pretrained_cfg(model, tag)
        url = pcfg.get("url", "")
        filename = os.path.basename(url)
        if "openaipublic" in url:  # .../clip/models/<sha256>/ViT-B-32.pt
            sha = url.split("/")[-2]
        elif "mlfoundations" in url:  # .../vit_b_32-quickgelu-laion400m_e31-d867053b.pt
            sha = os.path.splitext(filename)[0].split("-")[-1]
        else:
            sha = ""
        out.append({"tag": tag, "quick_gelu": bool(pcfg.get("quick_gelu", False)), "sha256": sha,
                    "filename": filename, "hf_repo": pcfg.get("hf_hub", "").strip("/")})
    return out


def _file_evidence(model: str, src: WeightsSource) -> tuple[bool, str] | None:
    """QuickGELU evidence from a weights file, or None when the file says nothing."""
    if src.torchscript:
        return True, "the weights file is a TorchScript archive (OpenAI's release format)"
    known = _known_checkpoints(model)
    for k in known:
        if k["sha256"] and src.sha256 and src.sha256.startswith(k["sha256"]):
            return k["quick_gelu"], f"the file's sha256 matches open_clip's {model}/{k['tag']} checkpoint"
    name = os.path.basename(src.path or "")
    for k in known:
        if k["quick_gelu"] and k["tag"] == "openai" and name == k["filename"]:
            return True, f"the file name {name} is OpenAI's release name for {model}"
        cache_dir = "models--" + k["hf_repo"].replace("/", "--")
        if k["quick_gelu"] and k["hf_repo"] and cache_dir in (src.path or ""):
            return True, f"the file is in the Hugging Face cache of {k['hf_repo']} (quick_gelu tag {k['tag']})"
    if "quickgelu" in name.lower():
        return True, f"the file name {name} says quickgelu"
    return None


def decide_quick_gelu(model: str, src: WeightsSource, explicit: bool | None = None) -> tuple[bool, str]:
    """Whether `model` loaded from `src` must use QuickGELU, and why (see the module docstring)."""
    import open_clip

    model_cfg = open_clip.get_model_config(model) or {}
    if model_cfg.get("quick_gelu", False):
        evidence: tuple[bool, str] | None = (True, f"model config {model} sets quick_gelu")
    elif src.kind == "tag":
        tag_qg = bool(open_clip.get_pretrained_cfg(model, src.tag or "").get("quick_gelu", False))
        evidence = (tag_qg, f"open_clip's pretrained config for {model}/{src.tag} has quick_gelu={tag_qg}")
    elif src.kind == "file":
        evidence = _file_evidence(model, src) or _own_config_evidence(model)
    else:
        evidence = (False, f"random weights; model config {model} has no quick_gelu")
    if explicit is not None:
        if evidence is not None and evidence[0] != explicit:
            logger.warning("quick_gelu=%s set explicitly although %s (which implies quick_gelu=%s); "
                           "features will not match how the weights were trained", explicit, evidence[1], evidence[0])
        return explicit, "set explicitly in the encoder config"
    if evidence is None:
        return False, (f"nothing identifies {os.path.basename(src.path or '')} as a QuickGELU checkpoint, so nn.GELU "
                       "is used; if these are OpenAI (or LAION-400M) weights set quick_gelu=true")
    return evidence


PROXY_MODELS = ("tgdfer-proxy-vit",)  # model configs whose weights only `tgdfer proxy` trains (nn.GELU)


def _own_config_evidence(model: str) -> tuple[bool, str] | None:
    """A proxy CLIP config (model_configs/) has weights from `tgdfer proxy` only, trained with nn.GELU."""
    if model in PROXY_MODELS:
        return False, f"{model} is tgdfer's proxy CLIP config, trained by `tgdfer proxy` with nn.GELU (no quick_gelu)"
    return None


DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"


def named_device(name: str, option: str = "device") -> torch.device:
    """A device the user named (`cpu`, `cuda`, `cuda:N`, `mps`), checked: ConfigError naming `option`
    for a misspelt name, a GPU index that is not there, or CUDA on a machine without it."""
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(option, f"{name!r} is not a device; use {DEVICE_CHOICES}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(option, f"{name!r}: CUDA is not available on this machine; use cpu (or auto)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(option, f"{name!r}: this machine has {torch.cuda.device_count()} GPU(s), "
                              f"cuda:0..cuda:{torch.cuda.device_count() - 1}")
    return dev


def effective_precision(precision: str, device: torch.device) -> str:
    """The autocast precision actually used: fp16 autocast on CPU falls back to bf16 (with a warning)."""
    if precision == "fp16" and device.type == "cpu":
        logger.warning("precision fp16 is not used on CPU (slow and poorly supported there); using bf16 autocast")
        return "bf16"
    return precision


def _drop_image_tower(model: torch.nn.Module) -> None:
    model.visual = None


def _drop_text_tower(model: torch.nn.Module) -> None:
    if hasattr(model, "text") and isinstance(model.text, torch.nn.Module):  # CustomTextCLIP
        model.text = None
        return
    for name in ("transformer", "token_embedding", "ln_final", "positional_embedding", "text_projection", "attn_mask"):
        if hasattr(model, name):  # CLIP keeps its text tower in these attributes
            setattr(model, name, None)


def _square_size(size: Any, model: str) -> int:
    sizes = (size, size) if isinstance(size, int) else tuple(size)
    if sizes[0] != sizes[1]:
        raise ConfigError("model", f"{model} takes {sizes[0]}x{sizes[1]} images; tgdfer needs square inputs")
    return int(sizes[0])


def load_encoder(cfg: EncoderConfig, device: str | torch.device = "cpu",
                 towers: tuple[str, ...] = TOWERS) -> LoadedEncoder:
    """Build, load and freeze the open_clip model `cfg` names, keeping only `towers`."""
    import open_clip

    towers = tuple(towers)
    if not towers or not set(towers) <= set(TOWERS):
        raise ConfigError("towers", f"{towers!r}: choose one or both of {', '.join(TOWERS)}")
    register_model_configs()
    model_cfg = open_clip.get_model_config(cfg.model)
    if model_cfg is None:
        raise ConfigError("model", f"unknown open_clip model {cfg.model!r}; e.g. ViT-B-32, ViT-B-16, "
                          "tgdfer-tiny-vit (see open_clip.list_models())")
    device = torch.device(device)
    src = resolve_weights(cfg)
    quick_gelu, reason = decide_quick_gelu(cfg.model, src, cfg.quick_gelu)
    log = logger.warning if src.kind == "file" and cfg.model not in PROXY_MODELS else logger.info
    log("%s: quick_gelu=%s because %s", cfg.model, quick_gelu, reason)
    model = _create(cfg, src, quick_gelu, bool(model_cfg.get("quick_gelu", False)))
    if src.kind == "none":
        logger.warning("%s has RANDOM weights (pretrained='none'): its features are meaningless for real "
                       "results; use this only for tests and smoke runs", cfg.model)
    pp = dict(model.visual.preprocess_cfg)
    if "image" not in towers:
        _drop_image_tower(model)
    if "text" not in towers:
        _drop_text_tower(model)
    model.to(device).eval().requires_grad_(False)  # built on the CPU: a dropped tower never reaches the GPU
    precision = effective_precision(cfg.precision, device)
    fingerprint = {
        "model": cfg.model,
        "pretrained": src.tag if src.kind == "tag" else src.kind,
        "weights_sha256": src.sha256,
        "quick_gelu": quick_gelu,
        "precision": precision,
        "open_clip_version": open_clip.__version__,
    }
    image_size = _square_size(pp["size"], cfg.model)
    cpu_batch = cpu_image_batch(model.visual, image_size) if "image" in towers and device.type == "cpu" else CPU_IMAGE_BATCH
    return LoadedEncoder(
        model=model, tokenizer=tokenizer_for(cfg.model), image_size=image_size, cpu_batch=cpu_batch,
        mean=tuple(float(m) for m in pp["mean"]), std=tuple(float(s) for s in pp["std"]),
        embed_dim=int(model_cfg["embed_dim"]), context_length=int(model.context_length), device=device,
        precision=precision, towers=towers, quick_gelu_reason=reason, fingerprint=fingerprint)


@functools.lru_cache(maxsize=8)
def tokenizer_for(model: str) -> Any:
    """open_clip's tokenizer for `model`, built once per process and shared by every encoder of that model.

    Building CLIP's BPE tokenizer reads and ranks its 49k merges (0.3 s on a CPU core); a tokenizer
    maps texts to the same tokens every time (what it keeps is a memo of words already split), so
    one object can serve every load.
    """
    import open_clip

    return open_clip.get_tokenizer(model)


def _create(cfg: EncoderConfig, src: WeightsSource, quick_gelu: bool, config_quick_gelu: bool) -> torch.nn.Module:
    """open_clip.create_model on the CPU with the decided activation; weights stay float32 (autocast does the rest)."""
    import open_clip

    kwargs: dict[str, Any] = {}
    if not quick_gelu and config_quick_gelu:
        kwargs["quick_gelu"] = False  # force_quick_gelu can only switch it on; model kwargs override the config
    # Weights never go through open_clip's torch.load: tgdfer reads the file itself (weights.read_state_dict:
    # safetensors, TorchScript as data, anything else weights_only) and loads it as open_clip would.
    state = read_state_dict(src.path, trust=cfg.trust_weights) if src.path else None  # UnsafeWeightsError
    try:
        # Weights from a file replace every parameter and persistent buffer (load_into's strict load),
        # so the random values open_clip draws first are skipped (benchmarks/encoder_load.py: ViT-B/32 1.7 s, 46 ms without).
        no_init = _SkipRandomInit() if state is not None else contextlib.nullcontext()
        with torch.random.fork_rng(devices=[]), _quiet_open_clip(), no_init:
            # Random weights ("none") come from a fixed seed so that every stage rebuilds the same model:
            # train-head's text tower must match the one whose embeddings extract stored.
            torch.manual_seed(RANDOM_WEIGHTS_SEED)
            model = open_clip.create_model(cfg.model, pretrained=None, precision="fp32", device="cpu",
                                           force_quick_gelu=quick_gelu, cache_dir=cfg.cache_dir,
                                           force_preprocess_cfg=_tag_preprocess(cfg.model, src), **kwargs)
        if state is not None:
            load_into(model, state)
        return model
    except Exception as e:  # load_state_dict fails in many ways on weights of another model
        if src.kind == "none":
            raise
        raise TgdferError(f"could not load {cfg.model} weights from {src.path}: {str(e).strip()}. Check that the "
                          f"file holds weights for {cfg.model} (a CLIP state dict, an open_clip checkpoint or "
                          f"OpenAI's TorchScript release)") from e


class _SkipRandomInit(torch.overrides.TorchFunctionMode):
    """Inside it, torch.nn.init's random initialisers and `Tensor.normal_`/`uniform_` leave their tensor as
    it is (uninitialised memory): only for building a model whose every parameter and persistent buffer a
    strict `load_state_dict` overwrites next. Everything else (buffers computed in `__init__`, `randn`
    calls) runs as usual."""

    SKIPPED = frozenset({torch.Tensor.normal_, torch.Tensor.uniform_, torch.nn.init.normal_, torch.nn.init.uniform_,
                         torch.nn.init.trunc_normal_, torch.nn.init.kaiming_uniform_, torch.nn.init.kaiming_normal_,
                         torch.nn.init.xavier_uniform_, torch.nn.init.xavier_normal_, torch.nn.init.orthogonal_})

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.SKIPPED:
            return args[0] if args else kwargs["tensor"]
        return func(*args, **kwargs)


@contextlib.contextmanager
def _quiet_open_clip():
    """Drop open_clip's "initialized randomly" warning: tgdfer loads the weights itself right after
    (and warns in its own words when they really are random, pretrained = "none")."""
    def keep(record: logging.LogRecord) -> bool:
        return "initialized randomly" not in record.getMessage()

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def _tag_preprocess(model: str, src: WeightsSource) -> dict[str, Any]:
    """The image preprocessing a pretrained tag declares (mean, std, size, ...), as open_clip applies it."""
    import open_clip
    from open_clip.transform import merge_preprocess_dict

    return merge_preprocess_dict({}, open_clip.get_pretrained_cfg(model, src.tag)) if src.kind == "tag" else {}


def check_weights(enc: LoadedEncoder, sha256: str | None, source: str, features_of: str) -> None:
    """TgdferError unless `enc` holds the weights (sha256) the features of `features_of` were extracted with.

    `sha256` None or empty (a tag checked by open_clip, random weights): nothing to compare.
    """
    got = enc.fingerprint.get("weights_sha256")
    if sha256 and got != sha256:
        raise TgdferError(f"{source}: sha256 {got} differs from the weights the features of {features_of} "
                          f"were extracted with ({sha256})")


def autocast_context(enc: LoadedEncoder) -> torch.autocast:
    dtype = _AUTOCAST_DTYPES.get(enc.precision, torch.bfloat16)
    return torch.autocast(device_type=enc.device.type, dtype=dtype, enabled=enc.precision != "fp32")


def cpu_image_batch(visual: torch.nn.Module, image_size: int, budget: int = CPU_ACTIVATION_BUDGET,
                    most: int = CPU_IMAGE_BATCH) -> int:
    """Images per image-tower forward on a CPU: the largest power of two, at most `most`, whose largest
    module output (float32) fits in `budget` bytes; at least 1. One probe forward of a single image finds
    that output (ViT-B/32: the MLP's hidden layer, 50 tokens x 3072 = 600 KiB an image -> 32 images)."""
    largest = [0]

    def see(_module, _inputs, out) -> None:
        if isinstance(out, torch.Tensor):
            largest[0] = max(largest[0], out.numel() * 4)  # float32 bytes, whatever the probe's dtype

    hooks = [m.register_forward_hook(see) for m in visual.modules()]
    try:
        with torch.inference_mode():
            visual(torch.zeros(1, 3, image_size, image_size, device=next(visual.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
    n = most
    while n > 1 and n * largest[0] > budget:
        n //= 2
    return n


def encode_images(enc: LoadedEncoder, pixels: torch.Tensor) -> torch.Tensor:
    """Image features, not L2-normalised: pixels [N, 3, S, S] float, already normalised -> [N, D] float32.

    On a CPU the images go through the tower `enc.cpu_batch` at a time (a GPU takes them all at once);
    each image's features are those of one forward over all, to float32 rounding (tests/test_encoders.py).
    """
    if "image" not in enc.towers:
        raise TgdferError("this encoder was loaded without its image tower (towers=('text',))")
    if len(pixels) == 0:
        return torch.zeros(0, enc.embed_dim)
    step = enc.cpu_batch if enc.device.type == "cpu" else len(pixels)
    with torch.inference_mode(), autocast_context(enc):
        feats = torch.cat([enc.model.encode_image(pixels[i:i + step].to(enc.device, torch.float32))
                           for i in range(0, len(pixels), step)])  # [N, D]
    return feats.float().clone()  # clone outside inference mode: a normal tensor callers may modify


def encode_texts(enc: LoadedEncoder, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokenise and encode prompts: P texts -> (tokens [P, L] int64, embeddings [P, D] float32, not normalised).

    Both come back on the CPU whatever the encoder's device: they are stored, hashed and turned into
    numpy by the callers, and the head moves them with its own `.to(device)`.
    """
    if "text" not in enc.towers:
        raise TgdferError("this encoder was loaded without its text tower (towers=('image',))")
    tokens = enc.tokenizer(list(texts)).to(torch.int64)  # [P, L]
    # one thread: the embeddings go into the store, which must not depend on the thread count
    with torch.inference_mode(), autocast_context(enc), fixed_threads(1):
        emb = enc.model.encode_text(tokens.to(enc.device))  # [P, D]
    return tokens.cpu(), emb.float().cpu().clone()
