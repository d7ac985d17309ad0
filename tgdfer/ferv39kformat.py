"""FERV39k's annotation format: its official setup lists -> clip table.

FERV39k (`read_ferv39k`): the official setup lists `FERV39k/4_setups/All_scenes/train_All.csv`
and `test_All.csv` are not comma-separated: one clip a line, `<Scene>/<Emotion>/<NNNN> <Emotion>`
(e.g. `Action/Happy/0267 Happy`), space-separated, no header, label as a word from {Happy, Sad,
Neutral, Angry, Surprise, Disgust, Fear}. Paths are relative to `FERV39k/2_ClipsforFaceCrop/`,
which holds one folder of face-crop JPEGs per clip. Found in MAE-DFER's and SVFAP's
`preprocess/ferv39k.py` (sunlicai/MAE-DFER, read with `header=None, delimiter=' '`) and in
third-party loaders that document the line as `"Action/Sad/0010 Sad"`; DFER-CLIP's
`annotation/FERV39K_train.txt` (zengqunzhao/DFER-CLIP) lists the same folders as
`.../2_ClipsforFaceCrop/Action/Happy/0267 29 0`, label 0-based in the DFEW order, which is the
plain list format (`listformat`). Assumptions: no header line (one loader skips a first row; the
official-format readers above do not); a clip's number is unique only within its
Scene/Emotion folder, so `clip_id` is the whole relative path `Action/Happy/0267`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from .annotations import (Missing, PathLabel, PathLike, PathMap, annotation_files, check_missing, existing_dir,
                          make_labels, path_label_reader, read_lines, row_label)
from .cliptable import DEFAULT_FRAME_CACHE, ClipTable, Entry, FrameCountCache, build_table
from .errors import AnnotationError


def read_ferv39k(
    lists: PathLike | Sequence[PathLike] | Mapping[str, PathLike],
    root: PathLike,
    *,
    pattern: str = "*.csv",
    label_from_path: PathLabel = None,
    path_map: Mapping[str, str] | None = None,
    class_names: Sequence[str] | None = None,
    frame_cache: PathLike | None = DEFAULT_FRAME_CACHE,
    missing: Missing = "error",
) -> ClipTable:
    """FERV39k's official setup lists (`Scene/Emotion/NNNN Emotion` a line) -> clip table.

    `lists` is a setup folder such as `FERV39k/4_setups/All_scenes` (its `train_*.csv` and
    `test_*.csv`), one file, a list of files, or {"train": file, "test": file}; `root` is the
    `2_ClipsforFaceCrop` folder the listed paths are relative to. split = the list holding the clip.
    `label_from_path = -2` also checks every line's label word against its Emotion folder.
    """
    check_missing(missing)
    root = existing_dir(root, "root")
    labels = make_labels(class_names, None, 0)
    by_path, paths = path_label_reader(label_from_path), PathMap(path_map)
    entries: list[Entry] = []
    roles = annotation_files(lists, pattern, "lists")
    for role in roles:
        for line, text in read_lines(role.path):
            fields = text.split()
            if len(fields) != 2:
                raise AnnotationError(role.path, f"expected 2 fields 'Scene/Emotion/NNNN Emotion', got {len(fields)}: "
                                                 f"{text!r}", line=line)
            rel, word = fields
            label, problem = row_label(labels, by_path, word, rel, role.path, line, "label", missing)
            clip_id = Path(rel).as_posix().strip("/")
            path = (root / paths(rel)).resolve()
            entries.append(Entry(role.path, line, clip_id, (path,), label, None, role.fold, role.part, problem, rel))
    paths.check_used(", ".join(str(r.path) for r in roles))
    return build_table(entries, missing=missing, labels=labels, cache=FrameCountCache(frame_cache),
                  path_map=paths)
