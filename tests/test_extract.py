"""Stage 1 (`tgdfer extract`): backends, resume after SIGKILL, two shard processes, bad clips,
fingerprint refusal, features equal to a direct encoder call, and the CLI.

Every run uses the tiny open_clip ViT with weights saved once per session (conftest), so all
processes compute with the same weights and their stores can be compared byte for byte with
the session's uninterrupted reference run.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import random
import re
import shutil
import signal
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from tgdfer.augment import AugmentConfig, ClipTransform
from tgdfer.cli import app
from tgdfer.encoders import EncoderConfig, encode_texts, load_encoder
from tgdfer.errors import ConfigError, StoreMismatchError, TgdferError
from tgdfer.extraction import ClipViews, ExtractConfig, _loader, annotation_digest, collate_views, extract
from tgdfer.frames import open_frames
from tgdfer.labels import CLASSES
from tgdfer.prompts import build_prompt_sets
from tgdfer.readers import read_dfew
from tgdfer.sampling import view_indices, view_seed
from tgdfer.store import FeatureStore, hdf5_staging_path

runner = CliRunner()


def assert_same_store(path, ref: dict) -> None:
    """The store at `path` holds exactly the reference bytes (features, frame indices, text)."""
    with FeatureStore.open(path) as s:
        assert s.done.all(), f"{int((~s.done).sum())} clips not done"
        assert len(s.failures) == 0
        feats, index = s.read_feats(), s.read_frame_index()
        assert feats.dtype == np.float16 and index.dtype == np.int32
        assert feats.tobytes() == ref["feats"].tobytes()
        assert index.tobytes() == ref["frame_index"].tobytes()
        assert s.text_sets == sorted(ref["text"])
        for name, (prompts, tokens, emb) in ref["text"].items():
            got = s.text(name)
            assert got[0] == prompts and np.array_equal(got[1], tokens) and np.array_equal(got[2], emb)


def flat(text: str) -> str:
    """CLI output without whitespace: rich wraps long paths at the console width."""
    return "".join(text.split())


# ---------------------------------------------------------------------------------------------
# Extraction in a separate process (for SIGKILL and concurrent shards)
# ---------------------------------------------------------------------------------------------


def _extract_child(conn, go, table, cfg, encoder, shard_id, num_shards, slow) -> None:
    """`extract` in a child process; reports "ready", "progress" (clips) and "result" through `conn`.

    Its own session, so SIGKILL to the group takes its DataLoader workers too. `slow` sleeps before
    every encoder call so that 20 tiny clips last long enough to be killed half-way; `go` (an Event)
    lines several children up at the start line.
    """
    os.setsid()
    logging.disable(logging.WARNING)
    torch.set_num_threads(1)  # two shard children on a 2-core machine: one thread each, not the parent's count each
    multiprocessing.set_start_method("fork", force=True)  # DataLoader workers as under the CLI, not forkserver
    import tgdfer.extraction as ex

    if slow:
        encode = ex.encode_images

        def slow_encode(enc, pixels):
            time.sleep(slow)
            return encode(enc, pixels)

        ex.encode_images = slow_encode
    conn.send(("ready", 0))
    if go is not None:
        go.wait(60)
    r = ex.extract(cfg, AugmentConfig(), encoder, table, data_kind="dfew", shard_id=shard_id, num_shards=num_shards,
                   on_progress=lambda clips, images: conn.send(("progress", clips)))
    conn.send(("result", dict(extracted=r.extracted, failed=r.failed, skipped=r.skipped, coverage=r.coverage)))


def _context():
    """Children fork from a server that imported tgdfer once (a fresh interpreter costs ~4 s of imports)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["tgdfer.extraction", "open_clip"])
    return ctx


@pytest.fixture
def children():
    """Processes a test started; any still running at the end are killed."""
    procs = []
    yield procs
    for proc in procs:
        if proc.is_alive():
            kill(proc)


def start_extract(children, table, cfg, encoder, *, shard_id=0, num_shards=1, slow=0.0, go=None):
    """Start `extract` in a child process; returns (process, receiving end of its message pipe)."""
    ctx = _context()
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_extract_child, args=(send, go, table, cfg, encoder, shard_id, num_shards, slow))
    proc.start()
    children.append(proc)
    send.close()
    return proc, recv


def wait_for(proc, conn, kind: str, count: int = 1, timeout: float = 60.0):
    """Read the child's messages until `count` of `kind` came; returns the last one's value."""
    deadline, seen, value = time.monotonic() + timeout, 0, None
    while seen < count:
        left = deadline - time.monotonic()
        assert left > 0, f"no {count}x {kind!r} from the extract process within {timeout} s"
        if conn.poll(min(left, 0.5)):
            try:
                what, value = conn.recv()
            except EOFError:
                raise AssertionError(f"the extract process ended (exit {proc.exitcode}) before {count}x {kind!r}")
            seen += what == kind
        elif not proc.is_alive() and not conn.poll():
            raise AssertionError(f"the extract process ended (exit {proc.exitcode}) before {count}x {kind!r}")
    return value


def kill(proc) -> None:
    os.killpg(proc.pid, signal.SIGKILL)  # the child and its DataLoader workers (its own session)
    proc.join(30)
    assert proc.exitcode == -signal.SIGKILL


def done_count(store: Path) -> int:
    with FeatureStore.open(store) as s:
        return int(s.done.sum())


# ---------------------------------------------------------------------------------------------
# Backends
# ---------------------------------------------------------------------------------------------


def test_hdf5_backend_exports_the_same_bytes_as_zarr(tmp_path, clip_table, encoder_cfg, extract_config, ref):
    h5 = tmp_path / "out" / "x.h5"
    result = extract(extract_config(h5, backend="hdf5"), AugmentConfig(), encoder_cfg, clip_table, data_kind="dfew")
    assert result.store == str(h5) and h5.is_file() and result.ok
    with FeatureStore.open(h5) as s:
        assert s.backend == "hdf5"
        assert s.fingerprint == ref["fingerprint"]
        assert s.clips.equals(ref["clips"])
    assert_same_store(h5, ref)
    # a re-run finds everything done in the staging store and exports again
    again = extract(extract_config(h5, backend="hdf5"), AugmentConfig(), encoder_cfg, clip_table, data_kind="dfew")
    assert (again.extracted, again.skipped, again.store) == (0, len(clip_table), str(h5))
    assert_same_store(h5, ref)


@pytest.mark.parametrize("backend, name", [("zarr", "thesis"), ("hdf5", "thesis.h5")])
def test_what_is_not_a_store_is_never_replaced(tmp_path, clip_table, encoder_cfg, extract_config, backend, name):
    """A typo in --store must not delete a user's folder or file, with or without --overwrite."""
    target = tmp_path / name
    if backend == "zarr":
        target.mkdir()
        (target / "chapter1.tex").write_text("precious")
    else:
        target.write_text("precious")
    cfg = extract_config(target, backend=backend)
    with pytest.raises(TgdferError) as e:
        extract(cfg, AugmentConfig(), encoder_cfg, clip_table.iloc[:2])
    assert str(target) in str(e.value) and "not a tgdfer feature store" in str(e.value)
    assert "--overwrite" not in str(e.value)  # no advice to delete it
    with pytest.raises(TgdferError, match="not a tgdfer feature store"):
        extract(cfg, AugmentConfig(), encoder_cfg, clip_table.iloc[:2], overwrite=True)
    kept = target / "chapter1.tex" if backend == "zarr" else target
    assert kept.read_text() == "precious" and not hdf5_staging_path(target).exists()


def test_an_hdf5_file_name_needs_the_hdf5_backend(tmp_path):
    with pytest.raises(ConfigError, match=r"store: .*x\.h5 names an HDF5 file; set backend"):
        ExtractConfig(store=str(tmp_path / "x.h5"))
    result = runner.invoke(app, ["extract", "--store", str(tmp_path / "x.h5")])
    assert result.exit_code == 2 and "extract.store" in result.output and "--backendhdf5" in flat(result.output)
    assert not any(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------
# Resume after SIGKILL, sharded writers
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow  # four extraction processes (make test-slow): tests/test_store.py kills writers at any moment too
def test_resume_after_sigkill_ends_with_the_uninterrupted_bytes(tmp_path, clip_table, encoder_cfg,
                                                                 extract_config, ref, children):
    """Three kills at random moments (start-up, then in the batch after 1 and after 3), then a normal run."""
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    store = tmp_path / "s.zarr"
    n = len(clip_table)
    cfg = extract_config(store, batch_clips=2)  # 10 batches of 2 clips, each >= 0.1 s (slow=0.1)
    log = [f"seed {seed}"]
    # 1: anywhere in encoder loading, store creation, text writing or the first batch
    proc, conn = start_extract(children, clip_table, cfg, encoder_cfg, slow=0.1)
    wait_for(proc, conn, "ready")
    delay = rng.uniform(0.0, 2.0)
    conn.poll(delay)  # no later than the first batch's report
    kill(proc)
    done = done_count(store) if (store / "zarr.json").exists() else 0
    log.append(f"start-up: kill after <= {delay:.3f} s, {done} done")
    assert done <= 2, log
    # 2, 3: some batches in, at a random point of the next one (decoding, encoder call or writes)
    for batches in (1, 3):
        before = done
        proc, conn = start_extract(children, clip_table, cfg, encoder_cfg, slow=0.1)
        wait_for(proc, conn, "progress", count=batches)
        delay = rng.uniform(0.0, 0.15)
        time.sleep(delay)
        kill(proc)
        done = done_count(store)
        log.append(f"kill {delay:.3f} s after {batches} batches, {done} done")
        assert before + 2 * batches <= done < n, log
    # the rest in this process, with a DataLoader worker this time (the worker count must not matter)
    result = extract(replace(cfg, workers=1), AugmentConfig(), encoder_cfg, clip_table, data_kind="dfew")
    assert (result.skipped, result.extracted, result.failed) == (done, n - done, 0), log
    assert_same_store(store, ref)
    assert not any((store / ".tmp").iterdir()), "temporary files of the killed runs were left behind"


def test_two_shard_processes_fill_one_store(tmp_path, clip_table, encoder_cfg, extract_config, ref,
                                            children):
    """Both processes create the store at the same moment (creation race), then write their own blocks."""
    store = tmp_path / "sharded.zarr"
    cfg = extract_config(store)  # block_size 4: shard 0 owns rows 0-3, 8-11, 16-19; shard 1 rows 4-7, 12-15
    go = _context().Event()
    shards = [start_extract(children, clip_table, cfg, encoder_cfg, shard_id=k, num_shards=2, go=go) for k in (0, 1)]
    for proc, conn in shards:
        wait_for(proc, conn, "ready")
    go.set()
    results = [wait_for(proc, conn, "result") for proc, conn in shards]
    for proc, _ in shards:
        proc.join(30)
        assert proc.exitcode == 0
    assert [(r["extracted"], r["failed"], r["skipped"]) for r in results] == [(12, 0, 0), (8, 0, 0)]
    assert_same_store(store, ref)
    assert [p.name for p in tmp_path.iterdir()] == ["sharded.zarr"]  # the losing skeleton was removed


def test_rerun_completes_and_updates_the_text_sets(tmp_path, clip_table, encoder_cfg, extract_config, ref):
    """A kill between two prompt sets leaves some sets out: the next run adds them. A new descriptors
    file replaces the stored descriptors (the features stay valid: they do not depend on prompts)."""
    store = tmp_path / "t.zarr"
    table = clip_table.iloc[:4]
    extract(extract_config(store), AugmentConfig(), encoder_cfg, table, data_kind="dfew")
    shutil.rmtree(store / "text" / "descriptors")  # as if killed before the last set was swapped in
    extract(extract_config(store), AugmentConfig(), encoder_cfg, table, data_kind="dfew")
    with FeatureStore.open(store) as s:
        assert s.text_sets == sorted(ref["text"])
        assert s.text("descriptors")[0] == ref["text"]["descriptors"][0]

    mine = [f"face of class {k}, with some wrinkles." for k in range(7)]
    descriptors = tmp_path / "mine.json"
    descriptors.write_text(json.dumps(mine))
    result = extract(extract_config(store, descriptors=str(descriptors)), AugmentConfig(), encoder_cfg, table,
                     data_kind="dfew")
    assert (result.extracted, result.skipped) == (0, 4)
    with FeatureStore.open(store) as s:
        prompts, tokens, emb = s.text("descriptors")
        assert prompts == mine
        want_tokens, want_emb = encode_texts(load_encoder(encoder_cfg), mine)
        assert np.array_equal(tokens, want_tokens.numpy())
        np.testing.assert_allclose(emb, want_emb.numpy(), rtol=1e-5, atol=1e-6)
        assert s.text("class_names")[2].tobytes() == ref["text"]["class_names"][2].tobytes()


# ---------------------------------------------------------------------------------------------
# Unreadable clips
# ---------------------------------------------------------------------------------------------


def write_pipeline(path: Path, data_args: dict, store: Path, encoder: EncoderConfig, **extract_fields) -> Path:
    """A pipeline TOML with the tests' extract settings (paths quoted as JSON strings, valid TOML)."""
    fields = dict(store=str(store), views=2, frames=8, seed=3, workers=0, batch_clips=4, block_size=4)
    fields.update(extract_fields)
    lines = ["[data]", 'kind = "dfew"',
             "args = { " + ", ".join(f"{k} = {json.dumps(str(v))}" for k, v in data_args.items()) + " }",
             "[encoder]", f"model = {json.dumps(encoder.model)}", f"pretrained = {json.dumps(encoder.pretrained)}",
             "[extract]", *(f"{k} = {json.dumps(v)}" for k, v in fields.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_corrupt_videos_are_recorded_skipped_and_retried(tmp_path, synth_dir, encoder_cfg, extract_config):
    data = tmp_path / "data"
    shutil.copytree(synth_dir / "videos", data / "videos")
    shutil.copytree(synth_dir / "EmoLabel_DataSplit", data / "EmoLabel_DataSplit")
    videos = data / "videos"
    truncated, garbage, emptied = videos / "00003.mp4", videos / "00008.mp4", videos / "00014.mp4"
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    garbage.write_bytes(np.random.default_rng(0).bytes(garbage.stat().st_size))
    table = read_dfew(data / "EmoLabel_DataSplit", videos_dir=videos).table
    original = emptied.read_bytes()
    emptied.write_bytes(b"")  # emptied after the annotations were read (the reader would refuse it)
    bad = {"00003", "00008", "00014"}
    rows = np.flatnonzero(table["clip_id"].isin(bad))
    store = tmp_path / "v.zarr"
    cfg = extract_config(store)

    first = extract(cfg, AugmentConfig(), encoder_cfg, table, data_kind="dfew")
    assert (first.extracted, first.failed, first.ok) == (len(table) - 3, 3, False)
    assert {c for c, _ in first.failures} == bad
    assert first.coverage == {"clips": len(table), "done": len(table) - 3, "failed": 3, "pending": 0}
    with FeatureStore.open(store) as s:
        failures = s.failures
        assert set(failures["clip_id"]) == bad and failures["row"].tolist() == rows.tolist()
        for clip_id, reason in zip(failures["clip_id"], failures["reason"]):
            assert f"{clip_id}.mp4" in reason and len(reason) > len(str(videos / f"{clip_id}.mp4")) + 10
        assert not s.done[rows].any() and s.done.sum() == len(table) - 3
        assert np.isnan(s.read_feats(rows).astype(np.float32)).all()
        good_feats = s.read_feats()[s.done]

    todo = []
    second = extract(cfg, AugmentConfig(), encoder_cfg, table, data_kind="dfew",
                     on_start=lambda n, done: todo.append((n, done)))
    assert todo == [(3, len(table) - 3)]  # only the failed clips are tried again
    assert (second.extracted, second.failed, second.skipped) == (0, 3, len(table) - 3)

    # The CLI on the same store: the emptied clip is back, the two corrupt ones still fail -> exit 1.
    emptied.write_bytes(original)
    config = write_pipeline(tmp_path / "videos.toml", dict(split_dir=data / "EmoLabel_DataSplit", videos_dir=videos),
                            store, encoder_cfg)
    result = runner.invoke(app, ["extract", "--config", str(config)])
    assert result.exit_code == 1, result.output
    assert "failed 00003" in result.output and "failed 00008" in result.output
    assert "failed 00014" not in result.output and "Traceback" not in result.output
    with FeatureStore.open(store) as s:
        assert set(s.failures["clip_id"]) == {"00003", "00008"}
        assert s.done.sum() == len(table) - 2 and np.isnan(s.read_feats()[~s.done].astype(np.float32)).all()
        assert s.read_feats(np.flatnonzero(s.done & ~table["clip_id"].isin(bad).to_numpy())).tobytes() \
            == good_feats.tobytes()  # finished clips were not recomputed
    verify = runner.invoke(app, ["extract", "--config", str(config), "--verify"])
    assert verify.exit_code == 1 and "00003" in verify.output and "00008" in verify.output


def test_annotation_digest_ignores_paths_and_frame_counts(clip_table):
    """Moving the data or repairing a video (n_frames unknown before) keeps the fingerprint; labels do not."""
    moved = clip_table.assign(path=[p.replace("/frames/", "/elsewhere/") for p in clip_table["path"]],
                              n_frames=pd.array([pd.NA] * len(clip_table), dtype="Int64"))
    relabelled = clip_table.copy()
    relabelled.loc[5, "label"] = (relabelled.loc[5, "label"] + 1) % 7
    refolded = clip_table.copy()
    refolded.loc[5, "fold"] = 3 - refolded.loc[5, "fold"]
    digest = annotation_digest(clip_table)
    assert annotation_digest(moved) == digest
    assert len({digest, annotation_digest(relabelled), annotation_digest(refolded)}) == 3


def test_a_repaired_video_is_extracted_by_the_next_run(tmp_path, synth_dir, encoder_cfg, extract_config):
    data = tmp_path / "data"
    shutil.copytree(synth_dir / "videos", data / "videos")
    shutil.copytree(synth_dir / "EmoLabel_DataSplit", data / "EmoLabel_DataSplit")
    broken = data / "videos" / "00002.mp4"
    original = broken.read_bytes()
    broken.write_bytes(original[: len(original) // 2])
    table = read_dfew(data / "EmoLabel_DataSplit", videos_dir=data / "videos").table
    cfg = extract_config(tmp_path / "r.zarr")
    first = extract(cfg, AugmentConfig(), encoder_cfg, table, data_kind="dfew")
    assert (first.extracted, first.failed) == (len(table) - 1, 1)
    broken.write_bytes(original)  # the user repairs the file and runs the same command again
    table = read_dfew(data / "EmoLabel_DataSplit", videos_dir=data / "videos").table
    again = extract(cfg, AugmentConfig(), encoder_cfg, table, data_kind="dfew")
    assert (again.extracted, again.failed, again.skipped) == (1, 0, len(table) - 1)


# ---------------------------------------------------------------------------------------------
# Fingerprint: a store refuses a run with other settings
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_store(tmp_path_factory, clip_table, encoder_cfg, extract_config) -> Path:
    """A finished store of the first 4 clips with the tests' settings."""
    path = tmp_path_factory.mktemp("small") / "small.zarr"
    extract(extract_config(path), AugmentConfig(), encoder_cfg, clip_table.iloc[:4], data_kind="dfew")
    return path


@pytest.mark.parametrize(
    "change, differs",
    [
        ({"views": 3}, "sampling.views: stored 2, requested 3"),
        ({"frames": 4}, "sampling.frames: stored 8, requested 4"),
        ({"seed": 4}, "sampling.seed: stored 3, requested 4"),
        ({"normalize": "none"}, "preprocessing.normalize: stored 'clip', requested 'none'"),
        ({"augment": AugmentConfig(brightness=0.1)}, "sampling.augment.brightness"),
        ({"encoder": "other weights"}, "encoder.weights_sha256"),
        ({"encoder": "other model"}, "encoder.model: stored 'tgdfer-tiny-vit', requested 'tgdfer-tiny-vit-customtext'"),
        ({"label": 1}, "annotations.sha256"),
    ],
    ids=lambda v: str(next(iter(v))) if isinstance(v, dict) else None,
)
def test_a_run_with_other_settings_is_refused(small_store, clip_table, encoder_cfg, extract_config, other_weights,
                                              change, differs):
    table = clip_table.iloc[:4].copy()
    augment, encoder, fields = AugmentConfig(), encoder_cfg, dict(change)
    augment = fields.pop("augment", augment)
    if fields.get("encoder") == "other weights":
        encoder = replace(encoder_cfg, pretrained=str(other_weights))
    elif fields.get("encoder") == "other model":
        encoder = EncoderConfig(model="tgdfer-tiny-vit-customtext", pretrained="none")
    fields.pop("encoder", None)
    if "label" in fields:
        table.loc[0, "label"] = (table.loc[0, "label"] + fields.pop("label")) % 7
    before = small_store.stat().st_mtime_ns, sorted(p.name for p in small_store.rglob("*"))
    with pytest.raises(TgdferError) as e:
        extract(extract_config(small_store, **fields), augment, encoder, table, data_kind="dfew")
    message = str(e.value)
    assert isinstance(e.value, StoreMismatchError)  # what the demo turns into `make clean-demo`
    assert str(small_store) in message and differs in message and "--overwrite" in message
    assert message.count("\n  - ") <= 3  # only what differs is listed
    assert (small_store.stat().st_mtime_ns, sorted(p.name for p in small_store.rglob("*"))) == before


def test_overwrite_rebuilds_with_the_new_settings(tmp_path, clip_table, encoder_cfg, extract_config, ref):
    store = tmp_path / "o.zarr"
    table = clip_table.iloc[:4]
    extract(extract_config(store), AugmentConfig(), encoder_cfg, table, data_kind="dfew")
    with pytest.raises(TgdferError, match="sampling.views"):
        extract(extract_config(store, views=3), AugmentConfig(), encoder_cfg, table, data_kind="dfew")
    result = extract(extract_config(store, views=3), AugmentConfig(), encoder_cfg, table, data_kind="dfew",
                     overwrite=True)
    assert (result.extracted, result.skipped) == (4, 0)
    with FeatureStore.open(store) as s:
        assert s.views == 3 and s.fingerprint["sampling"]["views"] == 3
        # a view depends only on (seed, clip, view): the first two views are the reference store's
        assert s.read_feats()[:, :2].tobytes() == ref["feats"][:4].tobytes()


# ---------------------------------------------------------------------------------------------
# Cached features = the encoder on the same frames
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("row", [0, 7, 19])
def test_cached_features_equal_a_direct_encoder_call(row, clip_table, encoder_cfg, ref):
    enc = load_encoder(encoder_cfg)
    clip_id, path = clip_table["clip_id"][row], clip_table["path"][row]
    fp = ref["fingerprint"]["sampling"]
    seed, frames = fp["seed"], fp["frames"]
    with open_frames(path) as src:
        n = len(src)
        index = ref["frame_index"][row]  # [V, T]
        assert np.array_equal(index[0], view_indices(n, clip_id, 0, seed, frames))
        assert np.array_equal(index[1], view_indices(n, clip_id, 1, seed, frames))
        clips = [src.read(index[v]) for v in range(2)]  # [T, H, W, 3] uint8 each
    kw = dict(size=enc.image_size, config=AugmentConfig(), normalize="clip", mean=enc.mean, std=enc.std)
    pixels = [ClipTransform(train=False, **kw)(clips[0]),
              ClipTransform(train=True, **kw)(clips[1], seed=view_seed(seed, clip_id, 1))]  # [T, 3, S, S]
    with torch.no_grad():
        direct = np.stack([enc.model.encode_image(p).numpy() for p in pixels])  # [V, T, D] float32
    stored = ref["feats"][row].astype(np.float32)  # [V, T, D]
    # float16 keeps 11 significant bits: relative error <= 2**-11, plus fp32 noise of the other batch shape
    np.testing.assert_allclose(stored, direct, rtol=2**-10, atol=1e-5)
    assert not np.allclose(stored[0], stored[1], atol=1e-2)  # the augmented view shows something else


@pytest.mark.parametrize("workers", [0, 1])
def test_workers_hand_over_uint8_that_converts_to_the_float_pixels_bit_for_bit(workers, clip_table, extract_config):
    """The data path's handover (uint8 batches, float conversion in the main process) changes no pixel:
    the converted batch equals the per-view float32 transform of every clip exactly."""
    cfg = extract_config("unused.zarr", workers=workers, batch_clips=3)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    dataset = ClipViews(clip_table, np.arange(5), cfg, AugmentConfig(), 24, mean, std)
    batches = list(_loader(dataset, cfg, torch.device("cpu")))
    assert [len(b["items"]) for b in batches] == [3, 2]
    pixels = torch.cat([b["pixels"] for b in batches])  # [5, V, T, 3, S, S]
    assert pixels.dtype == torch.uint8 and pixels.shape == (5, cfg.views, cfg.frames, 3, 24, 24)
    kw = dict(size=24, config=AugmentConfig(), normalize="clip", mean=mean, std=std)
    test_tf, train_tf = ClipTransform(train=False, **kw), ClipTransform(train=True, **kw)
    for row in range(5):
        clip_id, index = clip_table["clip_id"][row], np.stack([it["index"] for b in batches for it in b["items"]])[row]
        with open_frames(clip_table["path"][row]) as src:
            old = torch.stack([test_tf(src.read(index[0])),
                               train_tf(src.read(index[1]), seed=view_seed(cfg.seed, clip_id, 1))])  # [V, T, 3, S, S]
        assert torch.equal(dataset.to_float(pixels[row]), old)


def test_collate_keeps_unreadable_clips_out_of_the_pixel_batch():
    a, b = torch.zeros(2, 1, 3, 4, 4, dtype=torch.uint8), torch.ones(2, 1, 3, 4, 4, dtype=torch.uint8)
    items = [{"row": 0, "pixels": a, "error": None}, {"row": 1, "pixels": None, "error": "bad"},
             {"row": 2, "pixels": b, "error": None}]
    out = collate_views(items)
    assert [it["row"] for it in out["items"]] == [0, 1, 2] and all("pixels" not in it for it in out["items"])
    assert torch.equal(out["pixels"], torch.stack([a, b]))
    assert collate_views([items[1]])["pixels"] is None


def test_a_store_extracted_by_two_workers_equals_the_reference(tmp_path, clip_table, encoder_cfg, extract_config, ref):
    result = extract(extract_config(tmp_path / "w2.zarr", workers=2), AugmentConfig(), encoder_cfg, clip_table,
                     data_kind="dfew")
    assert result.ok
    with FeatureStore.open(tmp_path / "w2.zarr") as s:
        assert s.read_feats().tobytes() == ref["feats"].tobytes()


def test_text_features_equal_encode_texts(ref, encoder_cfg):
    enc = load_encoder(encoder_cfg)
    sets = build_prompt_sets()
    assert sorted(sets) == sorted(ref["text"]) and len(sets) == 3
    for name, prompts in sets.items():
        stored_prompts, tokens, emb = ref["text"][name]
        want_tokens, want_emb = encode_texts(enc, prompts)
        assert stored_prompts == prompts and len(prompts) == 7
        assert np.array_equal(tokens, want_tokens.numpy())
        assert emb.shape == (7, enc.embed_dim)
        np.testing.assert_allclose(emb, want_emb.numpy(), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def frames_pipeline(tmp_path, synth_dir, encoder_cfg) -> tuple[Path, Path]:
    store = tmp_path / "cli.zarr"
    args = dict(split_dir=synth_dir / "EmoLabel_DataSplit", frames_dir=synth_dir / "frames")
    return write_pipeline(tmp_path / "p.toml", args, store, encoder_cfg), store


def test_cli_extract_verify_and_info(frames_pipeline, clip_table, ref):
    config, store = frames_pipeline
    n = len(clip_table)
    result = runner.invoke(app, ["extract", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert f"store: {n}/{n} done, 0 failed, 0 pending" in result.output
    assert f"extract->{store}" in flat(result.output)
    assert_same_store(store, ref)

    verify = runner.invoke(app, ["extract", "--config", str(config), "--verify"])
    assert verify.exit_code == 0, verify.output
    assert re.search(rf"clips\s+done\s+failed\s+pending\s+━+\s+{n}\s+{n}\s+0\s+0\s", verify.output), verify.output

    again = runner.invoke(app, ["extract", "--config", str(config)])  # nothing left to do
    assert again.exit_code == 0 and f"store: {n}/{n} done" in again.output

    info = runner.invoke(app, ["info", str(store)])
    assert info.exit_code == 0, info.output
    assert f"{n} clips x 2 views x 8 frames x 32 dims" in info.output
    assert re.search(rf"\n\s*total(\s+\d+/\d+)+\s+{n}/{n}\s", info.output), info.output
    for name in ("class_names", "class_sentences", "descriptors"):
        assert name in info.output

    as_json = runner.invoke(app, ["info", str(store), "--json"])
    assert as_json.exit_code == 0, as_json.output
    d = json.loads(as_json.stdout)
    assert (d["clips"], d["views"], d["frames"], d["dim"], d["backend"]) == (n, 2, 8, 32, "zarr")
    assert d["coverage"] == {"clips": n, "done": n, "failed": 0, "pending": 0}
    assert d["fingerprint"] == ref["fingerprint"] and d["failures"] == []
    assert d["counts"]["total"]["total"] == f"{n}/{n}"
    labels = clip_table["label"].value_counts()
    for label, count in labels.items():
        assert d["counts"][CLASSES[label]]["total"] == f"{count}/{count}"


def test_cli_unknown_field_is_named_without_traceback(frames_pipeline):
    config, store = frames_pipeline
    result = runner.invoke(app, ["extract", "--config", str(config), "--set", "extract.viewz=2"])
    assert result.exit_code == 2, result.output
    assert "extract.viewz" in result.output and "Traceback" not in result.output
    assert not store.exists()


@pytest.mark.parametrize("arg", ["split_dir", "frames_dir"])
def test_cli_missing_annotation_folder_is_named(frames_pipeline, tmp_path, arg):
    config, store = frames_pipeline
    missing = tmp_path / "nowhere" / arg
    result = runner.invoke(app, ["extract", "--config", str(config), "--set", f"data.args.{arg}={missing}"])
    assert result.exit_code == 2, result.output
    assert str(missing) in flat(result.output) and "Traceback" not in result.output
    assert not store.exists()


def test_augment_test_false_encodes_test_clips_at_view_0_only(tmp_path, clip_table, encoder_cfg, extract_config, ref):
    """A train/test dataset (fold 1 as the test split): train clips get the same V views as always, test clips
    view 0 (the same bytes as a full extraction's) in every view; the fingerprint says so; folds refuse it."""
    table = clip_table.assign(split=np.where(clip_table["fold"] == 1, "test", "train"), fold=np.nan)
    test = (table["split"] == "test").to_numpy()
    full = extract(extract_config(tmp_path / "full.zarr"), AugmentConfig(), encoder_cfg, table, data_kind="csv")
    lean = extract(extract_config(tmp_path / "lean.zarr", augment_test=False), AugmentConfig(), encoder_cfg, table,
                   data_kind="csv")
    assert full.ok and lean.ok and lean.extracted == full.extracted == len(table)
    assert 0 < test.sum() < len(table) and lean.frames < full.frames  # the test clips' views were not encoded
    with FeatureStore.open(tmp_path / "full.zarr") as f, FeatureStore.open(tmp_path / "lean.zarr") as g:
        a, b = f.read_feats(), g.read_feats()  # [N, V, T, D]
        ia, ib = f.read_frame_index(), g.read_frame_index()
        assert "test_views" not in f.fingerprint and g.fingerprint["test_views"] == "view 0 repeated"
        assert not g.verify()  # checksums written for what is stored
    assert np.array_equal(a[~test], b[~test]) and np.array_equal(ia[~test], ib[~test])
    V = a.shape[1]
    assert np.array_equal(b[test], np.repeat(a[test][:, :1], V, axis=1))
    assert np.array_equal(ib[test], np.repeat(ia[test][:, :1], V, axis=1))
    assert not np.array_equal(a[test][:, 1], a[test][:, 0])  # a full extraction's test views do differ
    with pytest.raises(ConfigError, match="augment_test"):
        extract(extract_config(tmp_path / "folds.zarr", augment_test=False), AugmentConfig(), encoder_cfg, clip_table,
                data_kind="dfew")
    assert not (tmp_path / "folds.zarr").exists()
