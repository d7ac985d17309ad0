"""What a feature store holds, for `tgdfer info`: fingerprint, counts, failures, face sources and fallbacks, size."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .labels import CLASSES, ClassSet, stored_classes
from .readers import SKIPPED_AT_READ
from .store import FeatureStore
from .storeintegrity import Damage


@dataclass
class StoreDescription:
    path: str
    backend: str
    clips: int
    views: int
    frames: int
    dim: int
    size_bytes: int
    fingerprint: dict
    coverage: dict[str, int]
    counts: pd.DataFrame  # index class; columns per fold (or split) as "done/all", plus total
    failures: pd.DataFrame  # row, clip_id, reason, writer (row and writer <NA>: a row the store cannot hold)
    text_sets: list[str]
    classes: ClassSet  # the store's class set (the 7 emotions unless its fingerprint records another)
    skipped_at_read: int = 0  # failures the reader found (missing or empty clip), never decoded
    face_sources: dict[str, int] | None = None  # with a face stage: sampled frames per face source (FACE_SOURCES)
    fallbacks: pd.DataFrame | None = None  # with a face stage: done clips cropped by a fallback (row, clip_id, kind)
    damage: list[dict] | None = None  # with verify: damaged clips (row, clip_id, problem); None = not checked
    checksums: bool = True  # False: an older store without per-clip checksums (integrity cannot be verified)
    not_checksummed: list[str] | None = None  # parts without checksums (features, face boxes, text set 'x', clip table)

    def to_json(self) -> dict:
        return {
            "path": self.path, "backend": self.backend, "clips": self.clips, "views": self.views,
            "frames": self.frames, "dim": self.dim, "size_bytes": self.size_bytes,
            "fingerprint": self.fingerprint, "coverage": self.coverage, "text_sets": self.text_sets,
            "classes": list(self.classes.names), "skipped_at_read": self.skipped_at_read,
            "counts": self.counts.to_dict(orient="index"),
            **({} if self.face_sources is None else {
                "face_sources": self.face_sources, "fallbacks": self.fallbacks.to_dict(orient="records")}),
            "failures": self.failures.astype(object).where(self.failures.notna(), None).to_dict(orient="records"),
            "checksums": self.checksums, "not_checksummed": self.not_checksummed or [],
            **({} if self.damage is None else {"damage": self.damage}),
        }


def class_counts(clips: pd.DataFrame, done, classes: tuple[str, ...] = CLASSES) -> pd.DataFrame:
    """Clips per class (of `classes`, label order) and fold (or split) as 'done/all' strings, with totals."""
    group = "fold" if clips["fold"].notna().any() else "split"
    names = list(classes)
    df = clips.assign(done=done, cls=pd.Categorical([names[i] for i in clips["label"]], categories=names))
    keys = [f"{group} {g}" for g in clips[group].astype(object).fillna("-")]  # Int64 refuses "-"
    df = df.assign(group=keys)
    all_ = pd.crosstab(df["cls"], df["group"], margins=True, margins_name="total", dropna=False)
    ok = pd.crosstab(df["cls"], df["group"], values=df["done"].astype(int), aggfunc="sum",
                     margins=True, margins_name="total", dropna=False).reindex_like(all_).fillna(0).astype(int)
    out = ok.astype(str) + "/" + all_.astype(str)
    out.index.name = "class"
    out.columns.name = None
    return out


def face_source_counts(source: np.ndarray) -> dict[str, int]:
    """Sampled frames per face source: {"detected": n, "interpolated": n, "carried": n, "center": n}
    of a face_source array (-1 entries, frames never written, are not counted)."""
    from .facetrack import FACE_SOURCES  # torch comes with it: only for stores with a face stage
    counts = np.bincount(source[source >= 0].ravel().astype(np.int64), minlength=len(FACE_SOURCES))
    return {name: int(c) for name, c in zip(FACE_SOURCES, counts)}


def failure_table(store: FeatureStore) -> pd.DataFrame:
    """Every failure of a store: its failed rows, then the annotation rows it holds no row for (row <NA>)."""
    failed, unplaced = store.failures, store.unplaced
    if unplaced.empty:
        return failed
    failed = failed.astype({"row": "Int64", "writer": "Int64"})
    extra = unplaced.assign(row=pd.array([pd.NA] * len(unplaced), dtype="Int64"),
                            writer=pd.array([pd.NA] * len(unplaced), dtype="Int64"))
    return pd.concat([failed, extra[list(failed.columns)]], ignore_index=True)


def describe(path: str | Path, verify: bool = False) -> StoreDescription:
    """What the store at `path` holds; `verify` also checks every done clip against its checksum (reads all features)."""
    with FeatureStore.open(path) as store:
        damage = None if not verify else [dict(zip(("row", "clip_id", "problem"), _damage_fields(d)))
                                          for d in store.verify()]
        clips = store.clips
        classes = stored_classes(store.fingerprint)
        faces = "faces" in store.fingerprint
        failures = failure_table(store)
        return StoreDescription(
            path=str(path), backend=store.backend, clips=store.n_clips, views=store.views, frames=store.frames,
            dim=store.dim, size_bytes=store.size_on_disk(), fingerprint=store.fingerprint,
            coverage=store.coverage(), counts=class_counts(clips, store.done, classes.names),
            failures=failures, text_sets=list(store.text_sets), classes=classes,
            skipped_at_read=int(failures["reason"].str.startswith(SKIPPED_AT_READ).sum()),
            face_sources=face_source_counts(store.read_face_source()) if faces else None,
            fallbacks=store.face_fallbacks() if faces else None,
            damage=damage, checksums=store.has_checksums, not_checksummed=store.not_checksummed(),
        )


def verify(path: str | Path) -> tuple[dict[str, int], pd.DataFrame, pd.DataFrame]:
    """Coverage counts, the failure table and the damaged clips (row, clip_id, problem) of a store,
    every done clip checked against its checksum (for `tgdfer extract --verify`, `tgdfer info --verify`)."""
    with FeatureStore.open(path) as store:
        return store.coverage(), failure_table(store), damage_table(store.verify())


def damage_table(damage: Sequence[Damage]) -> pd.DataFrame:
    """row, clip_id, problem of each damaged clip; a damaged part that is no clip (a text set) has row and
    clip_id <NA> and names itself in its problem."""
    table = pd.DataFrame([_damage_fields(d) for d in damage], columns=["row", "clip_id", "problem"])
    return table.astype({"row": "Int64"}) if len(table) else table


def _damage_fields(d: Damage) -> tuple:
    """(row, clip_id, problem) of a damaged clip; (None, None, what it is and what is wrong) of a damaged part
    that is no clip (a text set)."""
    return (d.row, d.clip_id, d.problem) if d.row is not None else (None, None, str(d))
