"""Shared session fixtures: one small SynthDFER dataset, fixed tiny-encoder weights, one reference store.

Everything here is made once per test session (a few seconds) and must be treated as read-only
by the tests: copy it into `tmp_path` before changing anything. The session runs torch on the
thread count `tgdfer.threads` chooses (the CPUs this process may use, or OMP_NUM_THREADS), as the
CLI does; the proxy-CLIP learnability check's settings are in tests/proxy_check.py.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from proxy_check import DEMO, OVERRIDES, PROXY_MODULE, cached_heldout_store
from tgdfer.threads import ThreadChoice, apply_threads, auto_threads, cgroup_quota, choose_threads, usable_cpus

# torch and the tgdfer modules that import it are imported where a fixture needs them, not here: the
# xdist controller imports this file and runs no test (9 s of imports before the workers started).

TINY = "tgdfer-tiny-vit"  # 32 px input, D = 32: fast enough for extraction on 2 CPU cores
SYNTH = dict(clips=20, seed=7, format="both", size=32, min_frames=6, max_frames=20, folds=2, workers=1)  # SynthConfig
# Small blocks so that two shards and partial blocks both happen on 20 clips; batches of 4 clips.
EXTRACT = dict(views=2, frames=8, seed=3, workers=0, batch_clips=4, block_size=4)  # ExtractConfig


THREADS = pytest.StashKey[ThreadChoice]()


def pytest_configure(config):
    """One torch thread count for the whole session, set before any test runs torch (no over-subscription).

    Under pytest-xdist (`make test` runs `-n auto`) the workers share the CPUs: each takes its part
    of the automatic choice, so that two workers on two cores run one thread each.
    """
    choice = auto_threads()
    # The xdist controller runs no test: it sets no threads and imports no torch, and its header
    # reports what each of its workers (config.option.tx, one entry per worker) will choose.
    controller = not hasattr(config, "workerinput") and bool(config.getoption("numprocesses", None))
    workers = len(config.getoption("tx")) if controller else int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1 and "OMP_NUM_THREADS" not in os.environ:
        share = max(1, choice.threads // workers)
        choice = ThreadChoice(share, f"{choice.reason}, shared by {workers} xdist workers")
        if not controller:
            # The processes tests start (CLI runs, DataLoader and render workers) take the same share;
            # at two threads each they would spin at OpenMP barriers on cores the other worker holds.
            os.environ["OMP_NUM_THREADS"] = str(share)
    config.stash[THREADS] = choice if controller else apply_threads(choice)
    if not hasattr(config, "workerinput"):  # the xdist controller, or a run without xdist: records module times
        config.pluginmanager.register(ModuleSeconds.from_env(), "tgdfer-module-seconds")


def pytest_collection_modifyitems(config, items):
    """The proxy check's module first, then the other modules longest first. `make test` runs
    `pytest -n auto --dist loadfile`: a module stays on one worker (its module and session fixtures
    are built once there), and the proxy check, the longest unit when its held-out store must be
    built (after any change under tgdfer/), starts at once while the other workers share the rest.
    Longest first (by the module seconds the last `make test` on this machine recorded,
    `module_seconds`) leaves short modules for the end, so that the workers finish
    together instead of one running a long module alone. The order is the same in every worker, as
    xdist needs (every worker reads the same file), and `--no-loadscope-reorder` keeps it (xdist
    would put the modules with most tests first). The grouping is by module because xdist's
    `loadgroup` did not group here (pytest 9.2, xdist 3.8: the "@group" nodeid suffix never appeared).
    """
    seconds = ModuleSeconds.from_env().read()
    # stable: a module's tests keep their order; modules without a record keep theirs, after the others
    items.sort(key=lambda item: (item.module.__name__ != PROXY_MODULE, -seconds.get(item.module.__name__, 0.0)))


class ModuleSeconds:
    """Seconds each test module took in the last `make test` on this machine (TGDFER_TEST_CACHE/module-seconds.json):
    only an order for the scheduler, never a pass or fail. Registered as a plugin in the xdist controller
    (or a run without xdist), it adds up the reports of the workers and writes the file at the end of the
    session (modules not run keep their record)."""

    def __init__(self, path):
        self.path = path
        self.seen: dict[str, float] = {}

    @classmethod
    def from_env(cls) -> ModuleSeconds:
        cache = os.environ.get("TGDFER_TEST_CACHE")
        return cls(Path(cache) / "module-seconds.json" if cache else None)

    def read(self) -> dict[str, float]:
        try:
            return {str(k): float(v) for k, v in json.loads(self.path.read_text()).items()} if self.path else {}
        except (OSError, ValueError):  # absent or unreadable: the collection order
            return {}

    def pytest_runtest_logreport(self, report):
        module = Path(report.nodeid.split("::")[0]).stem
        self.seen[module] = self.seen.get(module, 0.0) + report.duration

    def pytest_sessionfinish(self, session):
        if self.path and self.seen:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps({**self.read(), **self.seen}, indent=1, sort_keys=True))


def pytest_report_header(config):
    choice = config.stash[THREADS]
    return f"torch threads: {choice.threads} ({choice.reason})"


def save_tiny_weights(path: Path, seed: int) -> Path:
    """Random tiny open_clip weights drawn from `seed`, saved as a safetensors state dict (read 7x faster
    than a torch.save file; about 170 loads a session): the same weights in every process that loads
    the file. Seed 0 gives the weights of `pretrained="none"` (encoders.RANDOM_WEIGHTS_SEED)."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    from tgdfer.encoders import register_model_configs

    register_model_configs()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = open_clip.create_model(TINY, pretrained=None)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    """SynthDFER with mp4 videos and JPEG folders (20 clips, 32 px, 6..20 frames, 2 folds)."""
    from tgdfer.synth import SynthConfig, generate

    out = tmp_path_factory.mktemp("synth") / "data"
    generate(out, SynthConfig(**SYNTH))
    return out


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    return save_tiny_weights(tmp_path_factory.mktemp("weights") / "tiny.safetensors", seed=0)


@pytest.fixture(scope="session")
def other_weights(tmp_path_factory) -> Path:
    """A second set of random tiny weights (another sha256), for fingerprint tests."""
    return save_tiny_weights(tmp_path_factory.mktemp("weights2") / "tiny_other.safetensors", seed=1)


@pytest.fixture(scope="session")
def encoder_cfg(tiny_weights):
    """The tiny encoder with fixed weights (pretrained = the saved file, so the fingerprint holds its sha256)."""
    from tgdfer.encoders import EncoderConfig

    return EncoderConfig(model=TINY, pretrained=str(tiny_weights))


@pytest.fixture(scope="session")
def clip_table(synth_dir):
    """The DFEW reader's clip table over the JPEG frame folders."""
    from tgdfer.readers import read_dfew

    return read_dfew(synth_dir / "EmoLabel_DataSplit", frames_dir=synth_dir / "frames").table


@pytest.fixture(scope="session")
def extract_config():
    """Factory: the tests' ExtractConfig writing to `store`, other fields overridable."""
    from tgdfer.extraction import ExtractConfig

    def make(store, **changes) -> ExtractConfig:
        return ExtractConfig(**{**EXTRACT, "store": str(store), **changes})

    return make


@pytest.fixture(scope="session")
def reference_store(tmp_path_factory, clip_table, encoder_cfg, extract_config) -> Path:
    """An uninterrupted single-process Zarr extraction of `clip_table`: what every other run must equal."""
    from tgdfer.augment import AugmentConfig
    from tgdfer.extraction import extract

    path = tmp_path_factory.mktemp("reference") / "ref.zarr"
    result = extract(extract_config(path), AugmentConfig(), encoder_cfg, clip_table, data_kind="dfew")
    assert result.ok and result.extracted == len(clip_table)
    return path


@pytest.fixture(scope="session")
def ref(reference_store) -> dict:
    """The reference store's arrays: feats [N, V, T, D] float16, frame_index [N, V, T] int32, done, text."""
    from tgdfer.store import FeatureStore

    with FeatureStore.open(reference_store) as s:
        return {
            "feats": s.read_feats(), "frame_index": s.read_frame_index(), "done": s.done,
            "fingerprint": s.fingerprint, "clips": s.clips,
            "text": {name: s.text(name) for name in s.text_sets},
        }



# -- the proxy-CLIP learnability check (tests/test_proxy.py): trained once, shared by its tests ----


@pytest.fixture(scope="session")
def proxy_pipe():
    """The demo's pipeline made small (tests/proxy_check.py), training on the CPU."""
    from tgdfer.pipeline import load_pipeline

    return load_pipeline(DEMO, OVERRIDES)


@contextlib.contextmanager
def every_cpu():
    """torch on every CPU the session may use, for the proxy check's training steps.

    Under xdist the other workers run the rest of the suite at one thread each, and finish first;
    the proxy check then has the machine to itself. `make test` sets OMP_WAIT_POLICY=PASSIVE, so
    while the cores are still shared the extra thread sleeps at barriers instead of spinning.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(choose_threads(usable_cpus(), cgroup_quota(), {}).threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="session")
def proxy_weights(tmp_path_factory, proxy_pipe) -> Path:
    """The proxy CLIP trained on its own SynthDFER set (proxy.seed; other people than the held-out set).

    `make test` first builds the demo's proxy file once per machine (`tgdfer proxy`, rebuilt when
    the code or settings it depends on change: Makefile) and names it in TGDFER_TEST_PROXY; it is
    used when its header records exactly these settings. Without it (`make test-slow`, a plain
    `pytest`) the session trains the proxy itself, as before.
    """
    from tgdfer.proxy import train_proxy, trained_with

    cached = os.environ.get("TGDFER_TEST_PROXY")
    if cached and Path(cached).is_file() and trained_with(cached, proxy_pipe.proxy):
        return Path(cached)
    root = tmp_path_factory.mktemp("proxy")
    with every_cpu():
        return train_proxy(root / "proxy.safetensors", proxy_pipe.proxy, workdir=root)


@pytest.fixture(scope="session")
def proxy_store(tmp_path_factory, proxy_pipe, proxy_weights) -> Path:
    """The held-out SynthDFER set (synth.seed) extracted with the proxy weights.

    `make test` names a folder in TGDFER_TEST_CACHE: the store is kept there under a digest of
    everything that decides its bytes (tests/proxy_check.py's `heldout_digest`: the proxy weights,
    the settings, every file of tgdfer/, torch's and open_clip's versions), built again when any
    of them changes, and checked (every chunk's checksum) each time it is used. Without it
    (`make test-slow`, a plain `pytest`) the session builds it in a temporary folder, as before.
    """
    cache = os.environ.get("TGDFER_TEST_CACHE")
    if cache:
        return cached_heldout_store(Path(cache), proxy_pipe, proxy_weights, build_heldout_store)
    return build_heldout_store(tmp_path_factory.mktemp("proxy_store"), proxy_pipe, proxy_weights)


def build_heldout_store(root: Path, pipe, weights: Path) -> Path:
    """Generate the held-out set under root/synth and extract it into root/proxy.zarr."""
    from tgdfer.encoders import EncoderConfig
    from tgdfer.extraction import extract
    from tgdfer.readers import read_dfew
    from tgdfer.synth import generate

    generate(root / "synth", pipe.synth)
    table = read_dfew(root / "synth" / "EmoLabel_DataSplit", frames_dir=root / "synth" / "frames").table
    enc = EncoderConfig(model=pipe.encoder.model, pretrained=str(weights))
    result = extract(replace(pipe.extract, store=str(root / "proxy.zarr")), pipe.augment, enc, table,
                     data_kind="dfew")
    assert result.ok and result.extracted == len(table)
    return Path(result.store)


@pytest.fixture(scope="session")
def proxy_run(tmp_path_factory, proxy_pipe, proxy_weights, proxy_store):
    """The TG-DFER head trained on fold 1 of the proxy store (tgdfer.training.TrainResult).

    At the session's thread count, not `every_cpu`: the head's batches are small, and a second thread
    cost more CPU than it saved (tests/test_reproducibility.py: the same bytes at any thread count).
    """
    from tgdfer.encoders import EncoderConfig
    from tgdfer.training import train

    enc = EncoderConfig(model=proxy_pipe.encoder.model, pretrained=str(proxy_weights))
    out = tmp_path_factory.mktemp("proxy_run") / "run"
    return train(proxy_pipe.head, replace(proxy_pipe.train, store=str(proxy_store), out=str(out)), encoder=enc)
