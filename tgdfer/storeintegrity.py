"""The feature store's integrity: per-clip checksums, digests of the text sets and clip table, damage.

Pure functions over what was read; tgdfer.storeformat says where each part lives, tgdfer.store.FeatureStore
writes the checksums with the data and checks them. Shape legend: ``n`` clips read, ``V`` views,
``T`` frames, ``D`` feature width, ``P`` prompts, ``L`` tokens per prompt.

Integrity. Every clip's checksum is written by its writer in the same ``write_clips`` as its
chunk, over the row index, clip id and the exact feats / frame_index bytes stored, so a flipped
bit, a truncated or missing chunk (it reads as the fill value) and a chunk swapped for another
clip's all show as a mismatch; its box checksum covers its face boxes and face sources the same
way. ``verify`` checks every done clip (and that its features are finite) and every text set;
``read_feats_verified`` does the same for what training loads; a text set is checked whenever it
is read, and the clip table's ids, labels, folds and splits against the fingerprint's digest when
the store is opened; ``content_hash`` sums up the checksums, the clip table's annotations and the text sets so
that a resumed run can see that its store changed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import TgdferError


CHECKSUM = "sha256-64(row, clip_id, feats, frame_index)"  # recorded in the checksum array's attributes
BOX_CHECKSUM = "sha256-64(row, clip_id, boxes, face_source)"  # recorded in the box_checksum array's attributes
NO_CHECKSUMS = "written by an older tgdfer, no checksums; integrity cannot be verified"


def _row_hashes(rows: np.ndarray, clip_ids: Sequence[str], arrays: Sequence[np.ndarray]) -> np.ndarray:
    """``[n]`` uint64: the first 8 bytes of the sha256 of each row's index, clip id and its slice of every
    array in ``arrays`` (each ``[n, ...]``, already in its little-endian storage dtype), in that order."""
    out = np.empty(len(rows), dtype=np.uint64)
    for i, (row, clip_id) in enumerate(zip(rows, clip_ids)):
        h = hashlib.sha256(int(row).to_bytes(8, "little") + str(clip_id).encode("utf-8") + b"\0")
        for array in arrays:
            h.update(array[i].data)
        out[i] = np.uint64(int.from_bytes(h.digest()[:8], "little"))
    return out


def clip_checksums(rows: np.ndarray, clip_ids: Sequence[str], feats: np.ndarray, frame_index: np.ndarray) -> np.ndarray:
    """``[n]`` uint64 checksums of clips as stored: the first 8 bytes of the sha256 of each row's index,
    clip id, feats ``[n, V, T, D]`` float16 bytes and frame_index ``[n, V, T]`` int32 bytes (little-endian).

    The row and id are hashed with the data, so a chunk swapped for another clip's does not match.
    sha256 rather than blake2b: OpenSSL's runs on the CPU's SHA instructions, faster than blake2b
    where they exist (benchmarks/checksum.py measures both).
    """
    return _row_hashes(rows, clip_ids, [np.ascontiguousarray(feats, dtype="<f2"),
                                        np.ascontiguousarray(frame_index, dtype="<i4")])


def box_checksums(rows: np.ndarray, clip_ids: Sequence[str], boxes: np.ndarray, face_source: np.ndarray) -> np.ndarray:
    """``[n]`` uint64 checksums of the face boxes ``[n, V, T, 4]`` float32 and face sources ``[n, V, T]`` int8 of
    clips as stored (NaN / -1 where none were written), hashed like ``clip_checksums``."""
    return _row_hashes(rows, clip_ids, [np.ascontiguousarray(boxes, dtype="<f4"),
                                        np.ascontiguousarray(face_source, dtype="i1")])


def digest(*parts: bytes) -> str:
    """Hex sha256 of ``parts``, each prefixed by its length (so that no two splits of the bytes collide)."""
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()


def text_digest(prompts: Sequence[str], tokens: np.ndarray, emb: np.ndarray) -> str:
    """Hex sha256 of a text set: its prompts (JSON), tokens ``[P, L]`` int32 and embeddings ``[P, D]`` float32 bytes."""
    return digest(json.dumps(list(prompts)).encode("utf-8"), np.ascontiguousarray(tokens, "<i4").tobytes(),
                  np.ascontiguousarray(emb, "<f4").tobytes())


ANNOTATION_COLUMNS = ("clip_id", "label", "fold", "split")  # what annotation_digest reads
BEFORE_2026_11_24 = ANNOTATION_COLUMNS + ("n_frames",)  # what it read when stores made until then were extracted


def annotation_digest(table: pd.DataFrame, columns: Sequence[str] = ANNOTATION_COLUMNS) -> str:
    """sha256 of what the annotations say (ids, labels, folds, splits), not where the files live nor how
    many frames they hold: moving the dataset or repairing a corrupt video (whose n_frames was unknown)
    keeps the store valid, while any change of labels or folds does not. The features never depend on
    `n_frames`: sampling uses the frame count of the opened source."""
    text = table[list(columns)].to_csv(index=False, lineterminator="\n")
    return hashlib.sha256(text.encode()).hexdigest()


def finite_rows(feats: np.ndarray) -> np.ndarray:
    """``[n]`` bool: clips of float16 ``feats [n, ...]`` free of NaN and inf (all-ones exponent bits;
    numpy's float16 isfinite is 2-3x slower)."""
    bits = np.ascontiguousarray(feats, dtype=np.float16).view(np.uint16).reshape(len(feats), -1)
    return ((bits & 0x7C00) != 0x7C00).all(axis=1)


@dataclass(frozen=True)
class Damage:
    """One damaged clip of a store (its row, id and what is wrong), or a damaged part that is no clip
    (``row`` None, ``part`` names it: a text set)."""

    row: int | None
    clip_id: str
    problem: str
    repairable: bool = True  # re-extracting the clip rewrites it (False: the encoder made these values)
    part: str = ""  # for row None: what is damaged, e.g. "text set 'class_names'"

    def __str__(self) -> str:
        if self.row is None:
            return f"{self.part}: {self.problem}"
        return f"clip {self.clip_id!r} (row {self.row}): {self.problem}"


class StoreDamaged(TgdferError):
    """A store's data does not match its checksums, cannot be decoded, or is not finite."""

    def __init__(self, path: str | Path, damage: Sequence[Damage], shown: int = 3):
        self.path, self.damage = str(path), list(damage)
        listed = "; ".join(str(d) for d in self.damage[:shown])
        more = f"; and {len(self.damage) - shown} more" if len(self.damage) > shown else ""
        fix = ("re-run `tgdfer extract` with the store's pipeline: it re-extracts damaged clips"
               + (" and writes damaged text sets again" if any(d.row is None for d in self.damage) else "")
               if any(d.repairable for d in self.damage) else
               "the encoder wrote these values: re-extract into a new store (`tgdfer extract --overwrite`, "
               "which records such clips as failures), e.g. with encoder.precision = \"fp32\"")
        what = "damaged clip(s)" if all(d.row is not None for d in self.damage) else "damaged part(s)"
        super().__init__(f"{path}: {len(self.damage)} {what}: {listed}{more}; {fix} "
                         f"(`tgdfer info --verify {path}` lists them all)")


def find_damage(rows: np.ndarray, clip_ids: np.ndarray, feats: np.ndarray, frame_index: np.ndarray,
                checksums: np.ndarray | None, boxes: np.ndarray | None = None, face_source: np.ndarray | None = None,
                box_checks: np.ndarray | None = None) -> list[Damage]:
    """Damaged clips among ``rows`` (all done) given what was read: feats [n, V, T, D], frame_index [n, V, T],
    their checksums [n] (None: not checksummed), and boxes [n, V, T, 4], face_source [n, V, T] with their box
    checksums [n] (all None: not checksummed). One Damage a clip, by row."""
    if not len(rows):
        return []
    out = []
    ids = clip_ids[rows]
    got = None if checksums is None else clip_checksums(rows, ids, feats, frame_index)
    finite = finite_rows(feats)
    for i, row in enumerate(rows.tolist()):
        if got is not None and checksums[i] == 0:
            out.append(Damage(row, str(ids[i]), "done but its checksum is missing"))
        elif got is not None and got[i] != checksums[i]:
            empty = np.isnan(feats[i]).all() or (frame_index[i] == -1).all()
            why = ("its chunk is missing (reads as the fill value)" if empty else
                   "data does not match its checksum (changed bytes or another clip's chunk)")
            out.append(Damage(row, str(ids[i]), why))
        elif not finite[i]:
            out.append(Damage(row, str(ids[i]), "features are not finite (NaN or inf) though stored intact",
                              repairable=False))
    found = {d.row for d in out}
    out += [d for d in box_damage(rows, clip_ids, boxes, face_source, box_checks) if d.row not in found]
    return sorted(out, key=lambda d: d.row)


def box_damage(rows: np.ndarray, clip_ids: np.ndarray, boxes: np.ndarray | None, face_source: np.ndarray | None,
               box_checks: np.ndarray | None) -> list[Damage]:
    """Clips among ``rows`` (all done) whose boxes [n, V, T, 4] and face_source [n, V, T] as read do not match
    their box checksums [n] (None: not checksummed, nothing to find)."""
    if box_checks is None or not len(rows):
        return []
    ids = clip_ids[rows]
    got = box_checksums(rows, ids, boxes, face_source)
    return [Damage(row, str(ids[i]), "done but its box checksum is missing" if box_checks[i] == 0 else
                   "face boxes or face sources do not match their checksum (changed bytes, another clip's chunk, "
                   "or a missing chunk read as the fill value)")
            for i, row in enumerate(rows.tolist()) if got[i] != box_checks[i]]
