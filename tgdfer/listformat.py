"""Plain annotation lists, one clip a line, whitespace-separated -> clip table.

Plain lists (`read_list`): `path n_frames label` a line (DFER-CLIP's `annotation/*.txt`,
SynthDFER's `lists/`), `path label` (no frame count: counted when read), or `path` alone with
the label taken from the path; separated by whitespace (paths cannot hold spaces, as in
DFER-CLIP's own loader); label 0-based by default. `clip_id` is the clip's path relative to the
deepest folder that holds all clips of the table, video extension dropped (`frames/00001` and
`videos/00001.mp4` under one root both give `00001`; FERV39k folders give `Action/Happy/0267`).
A header line is skipped with a warning: a first line whose numeric fields are not numbers.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from .annotations import (INTEGER, Labels, Missing, PathLabel, PathLike, PathMap, Role, annotation_files,
                          check_missing, make_labels, parse_int, path_label_reader, read_lines, read_test_list,
                          row_label, toml_none)
from .cliptable import DEFAULT_FRAME_CACHE, ClipTable, Entry, FrameCountCache, build_table, ids_from_paths
from .errors import AnnotationError, ConfigError

# The readers log as one logger, `tgdfer.readers`, whichever of their modules warns: the name that
# users and tests filter on.
logger = logging.getLogger("tgdfer.readers")


LIST_FIELDS = ("path", "n_frames", "label")


def read_list(
    files: PathLike | Sequence[PathLike] | Mapping[str, PathLike],
    root: PathLike | None = None,
    *,
    pattern: str = "*.txt",
    fields: Sequence[str] | None = None,
    label_base: int = 0,
    label_names: Sequence[str] | None = None,
    label_from_path: PathLabel = None,
    path_map: Mapping[str, str] | None = None,
    test_list: PathLike | None = None,
    class_names: Sequence[str] | None = None,
    frame_cache: PathLike | None = DEFAULT_FRAME_CACHE,
    missing: Missing = "error",
) -> ClipTable:
    """Plain whitespace-separated lists -> clip table.

    A line is `path n_frames label`, `path label` (frames counted when read) or `path` (label
    from the path); `fields` fixes the layout instead (e.g. ["path", "label"]), otherwise the
    field count of each file's first line decides. Labels are integers counted from `label_base` (0) or names.
    `files` is a folder (its files matching `pattern`), one file, a list of files or a mapping
    {role: file}; roles `set_<k>_train`/`set_<k>_test` give folds (fold = k of the test list
    holding the clip), roles `train`/`test` give splits (see `annotations`), and the
    mapping key `all` marks a whole-set list: no split, or with `test_list` (a file naming the
    test clips, one a line, by path as written or clip id) test = listed, train = the rest.
    Relative paths are relative to `root` (default: each list file's folder).
    """
    check_missing(missing)
    test_list = toml_none(test_list)
    labels = make_labels(class_names, label_names, label_base)
    by_path, paths = path_label_reader(label_from_path), PathMap(path_map)
    layout = _list_layout(fields, by_path is not None)
    raw: list[tuple[Role, int, Path, int | None, int, str | None]] = []  # role, line, path, n_frames, label, problem
    written: list[str] = []  # each row's path as written, for test_list
    roles = annotation_files(files, pattern)
    if test_list is not None and [r.part for r in roles] != ["all"]:
        raise ConfigError("test_list", "goes with one whole-set list: files = { all = \"list.txt\" }; these "
                                       "files already say their part: " + ", ".join(str(r.path) for r in roles))
    for role in roles:
        base = Path(root) if root is not None else role.path.parent
        lines = _skip_header_line(read_lines(role.path), layout, labels, role.path)
        names = layout or _LIST_LAYOUTS.get((len(lines[0][1].split()), by_path is not None))  # first line decides
        if names is not None and "label" in names:
            at = names.index("label")
            labels.check_base(role.path, [c[at] for _, t in lines if len(c := t.split()) == len(names)], "label")
        for line, text in lines:
            cells = text.split()
            if names is None or len(cells) != len(names):
                expected = " ".join(names) if names else "path n_frames label', 'path label"
                raise AnnotationError(role.path, f"expected {len(names) if names else '2 or 3'} fields "
                                                 f"'{expected}', got {len(cells)}: {text!r}", line=line)
            row = dict(zip(names, cells))
            n_frames = parse_int(row["n_frames"], role.path, line, "n_frames", low=1) if "n_frames" in row else None
            label, problem = row_label(labels, by_path, row.get("label"), row["path"], role.path, line, "label",
                                        missing)
            raw.append((role, line, (base / paths(row["path"])).resolve(), n_frames, label, problem))
            written.append(row["path"])
    paths.check_used(", ".join(str(r.path) for r in roles))
    ids = ids_from_paths([r[2] for r in raw])
    tested = read_test_list(Path(test_list), written, ids) if test_list is not None else None
    entries = [Entry(role.path, line, clip_id, (path,), label, n, role.fold,
                      _part(role.part, tested, clip_id), problem, text)
               for (role, line, path, n, label, problem), clip_id, text in zip(raw, ids, written)]
    return build_table(entries, missing=missing, labels=labels, cache=FrameCountCache(frame_cache),
                  path_map=paths)


def _part(part: str, tested: set[str] | None, clip_id: str) -> str | None:
    """A row's split: its file's part, or for a whole-set list the test_list's say (None without one)."""
    if part != "all":
        return part
    return None if tested is None else ("test" if clip_id in tested else "train")


def _skip_header_line(lines: list[tuple[int, str]], layout: tuple[str, ...] | None, labels: Labels,
                      source: Path) -> list[tuple[int, str]]:
    """The lines without a header line: a first line whose numeric fields are not numbers.

    Numeric fields are n_frames (with `fields`), or the fields after the path that hold integers
    in each of the next lines (up to 20; e.g. `path n_frames label` over `clips/00001 32 0`), where
    the first line holds neither integers nor class names. Skipping it is logged.
    """
    first = lines[0][1].split()
    rest = [t.split() for _, t in lines[1:21]]
    if layout is not None and "n_frames" in layout and len(first) == len(layout):
        header = not INTEGER.fullmatch(first[layout.index("n_frames")])
    elif rest and all(len(r) == len(first) for r in rest):
        numeric = [i for i in range(1, len(first)) if all(INTEGER.fullmatch(r[i]) for r in rest)]
        header = bool(numeric) and not any(INTEGER.fullmatch(first[i]) or _is_class(labels, first[i]) for i in numeric)
    else:
        header = False
    if not header or len(lines) == 1:
        return lines
    logger.warning("%s: line %d %r is a header line (its numeric fields are not numbers); skipped it",
                   source, lines[0][0], lines[0][1])
    return lines[1:]


def _is_class(labels: Labels, text: str) -> bool:
    try:
        labels.lookup(text)
        return True
    except ValueError:
        return False


# (field count of a file's first line, label from the path?) -> its lines' fields, when `fields` is not given
_LIST_LAYOUTS = {(3, False): LIST_FIELDS, (2, False): ("path", "label"), (3, True): LIST_FIELDS,
                 (2, True): ("path", "label"), (1, True): ("path",)}


def _list_layout(fields: Sequence[str] | None, by_path: bool) -> tuple[str, ...] | None:
    if fields is None:
        return None
    names = tuple(fields)
    if isinstance(fields, str) or "path" not in names or len(set(names)) != len(names) \
            or not set(names) <= set(LIST_FIELDS) or ("label" not in names and not by_path):
        raise ConfigError("fields", f"must list 'path' and, unless label_from_path is set, 'label', each once, "
                                    f"from {', '.join(LIST_FIELDS)}; got {fields!r}")
    return names
