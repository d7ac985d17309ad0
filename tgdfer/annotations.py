"""Annotation files and their cells, as every format reads them: which part a file plays, its
lines or CSV rows, label cells (`Labels`), annotated paths (`PathMap`, `path_label_reader`).

The format modules (`dfewformat`, `ferv39kformat`, `listformat`, `csvformat`) read their rows
with these and hand them to `cliptable.build_table`; `readers` is the front door.

Which file plays which part (`read_list`, `read_ferv39k`, `read_csv`): `files` (`csv_file`) is a folder
(files matching `pattern` in it), one file, a list of files, or a mapping {role: file}. The role
comes from the mapping key or the file name: a `set_<k>_` before `train`/`test` (or `_set_<k>`
after it) makes it fold k's list (`set_1_test.txt`, `DFEW_set_1_test.txt`, `train_set_1.csv`),
otherwise it is the train or test split (`train.txt`, `FERV39K_test.txt`, `train_All.csv`). A
table is either per-fold (fold = the k whose test list holds the clip, every clip in exactly one
test list; the train lists are only checked against it) or train/test (split = the list that
holds the clip), never both.
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterator, Literal

from .errors import AnnotationError, ConfigError
from .labels import CLASSES, class_index

log = logging.getLogger("tgdfer.readers")


PathLike = str | os.PathLike
Missing = Literal["error", "skip"]
PathLabel = int | str | None  # label_from_path: a path-component index, a regex, or None
FERV39K_LABELS = ("Happy", "Sad", "Neutral", "Angry", "Surprise", "Disgust", "Fear")  # CLASSES order
_NONE = ("", "none")  # how TOML says "no such column / file" (it has no null)

# A file's part from its name or mapping key: "set_<k>_" then train|test, or train|test then "_set_<k>".
_ROLE = re.compile(r"(?:^|_)(?:set_?(?P<fold>\d+)_)?(?P<part>train|test)(?:_?set_?(?P<fold2>\d+))?(?=_|$)",
                   re.IGNORECASE)

INTEGER = re.compile(r"[+-]?\d+")


# ----------------------------------------------------------------------------- annotation files


@dataclass(frozen=True)
class Role:
    """Which part an annotation file plays."""

    path: Path
    fold: int | None  # k for set_<k>_train / set_<k>_test, None for plain train/test
    part: str  # "train" | "test" | "all" (a whole-set list: no split unless a test_list says)


def annotation_files(files: PathLike | Sequence[PathLike] | Mapping[str, PathLike], pattern: str,
                      field: str = "files") -> list[Role]:
    """The annotation files with their roles (see the module docstring), checked for clashes.

    `field` names the option in a ConfigError when `files` is not a path, a list or a table of paths.
    """
    check_paths_arg(files, field)
    if isinstance(files, Mapping):
        named = [(Path(p), str(key), True) for key, p in files.items()]
    elif isinstance(files, (str, os.PathLike)) and Path(files).is_dir():
        named = [(f, f.stem, False) for f in sorted(Path(files).glob(pattern))
                 if f.is_file() and not f.name.startswith(".")]  # not macOS's ._train.csv beside train.csv
    elif isinstance(files, (str, os.PathLike)):
        if not Path(files).exists():
            raise AnnotationError(files, "annotation file or folder not found")
        named = [(Path(files), Path(files).stem, True)]
    else:
        named = [(Path(f), Path(f).stem, True) for f in files]
    roles, ignored = [], []
    for path, name, explicit in named:
        role = role_of(name, path)
        if role is not None:
            roles.append(role)
        elif explicit:
            raise AnnotationError(path, f"cannot tell the part from {name!r}: name it train/test or set_<k>_train/"
                                        f"set_<k>_test, or pass a mapping such as {{'train': ..., 'test': ...}}")
        else:
            ignored.append(path.name)
    if roles and ignored:  # a val.csv beside train.csv and test.csv: its clips are in neither part
        log.warning("%s: read %s; ignored %s (the name says neither train nor test: name the files, or pass a "
                    "mapping, to read it)", files, ", ".join(r.path.name for r in roles), ", ".join(ignored))
    if not roles:
        raise AnnotationError(files, f"no annotation files matching {pattern!r} named train/test or set_<k>_train/test")
    check_roles(roles)
    return roles


def check_paths_arg(files: Any, field: str) -> None:
    """A path, a list of paths or a table {role: path}; anything else is a ConfigError naming `field`."""
    def is_path(v: Any) -> bool:
        return isinstance(v, (str, os.PathLike)) and bool(str(v).strip())

    ok = (is_path(files)
          or (isinstance(files, Mapping) and bool(files) and all(is_path(v) for v in files.values()))
          or (isinstance(files, Sequence) and not isinstance(files, str) and bool(files)
              and all(is_path(v) for v in files)))
    if not ok:
        raise ConfigError(field, f"must be a file or folder, a list of files, or a table such as "
                                 f"{{ train = \"train.csv\", test = \"test.csv\" }}; got {files!r}")


def role_of(name: str, path: Path) -> Role | None:
    """The part a file plays from its name or mapping key, or None when the name does not say."""
    if name.lower() == "all":
        return Role(path, None, "all")
    m = _ROLE.search(name)
    if m is None:
        return None
    fold = m["fold"] or m["fold2"]
    return Role(path, int(fold) if fold else None, m["part"].lower())


def check_roles(roles: list[Role]) -> None:
    """One file per role; all per-fold or all train/test; per-fold needs test lists."""
    seen: dict[tuple[int | None, str], Path] = {}
    for r in roles:
        key = (r.fold, r.part)
        if key in seen:
            raise AnnotationError(r.path, f"both this file and {seen[key]} are the {role_name(r)} list; "
                                          f"pass one (narrow the pattern or use a mapping)")
        seen[key] = r.path
    if any(r.part == "all" for r in roles) and len(roles) > 1:
        raise AnnotationError(roles[0].path, "a whole-set list ('all') comes alone; name its test clips with "
                                             "test_list instead of a second list")
    if len({r.fold is None for r in roles}) > 1:
        raise AnnotationError(roles[0].path, "mixes per-fold lists (set_<k>_train/test) with plain train/test lists; "
                                             "pass one kind")
    if roles[0].fold is not None and not any(r.part == "test" for r in roles):
        raise AnnotationError(roles[0].path, "per-fold lists need the test lists (set_<k>_test): a clip's fold is "
                                             "the test list that holds it")


def role_name(role: Role) -> str:
    return role.part if role.fold is None else f"set_{role.fold}_{role.part}"


def read_lines(path: Path) -> list[tuple[int, str]]:
    """Non-blank lines with their 1-based numbers; AnnotationError if the file is missing or empty."""
    text = _read_text(path)
    lines = [(i, s.strip()) for i, s in enumerate(text.splitlines(), start=1) if s.strip()]
    if not lines:
        raise AnnotationError(path, "holds no clips")
    return lines


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise AnnotationError(path, "file not found") from None
    except OSError as e:
        raise AnnotationError(path, f"cannot read: {e}") from None
    return decode_text(path, data)


# Byte order marks and their codecs; UTF-32 LE's begins with UTF-16 LE's, so it is tried first
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def decode_text(path: str | Path, data: bytes) -> str:
    """An annotation or list file's text: UTF-8, or the encoding its byte order mark names (Excel's
    "Unicode Text" export is UTF-16 with a BOM). AnnotationError naming the line of the first byte
    that is not UTF-8 (a file saved as Latin-1 or Windows-1252) and how to save it."""
    codec = next((name for bom, name in _BOMS if data.startswith(bom)), "utf-8")
    if codec == "utf-8" and b"\0" in data:  # valid UTF-8, but no annotation holds NUL: UTF-16 without its BOM
        line = data[: data.index(b"\0")].count(b"\n") + 1
        raise AnnotationError(path, "holds NUL bytes: UTF-16 or UTF-32 text without a byte order mark, or not "
                                    "a text file; save it as UTF-8", line=line)
    try:
        return data.decode(codec)
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise AnnotationError(path, f"is not {codec.upper().replace('-SIG', '')} text: byte 0x{data[e.start]:02x} "
                                    f"cannot be decoded ({e.reason}); save the file as UTF-8 (Excel: "
                                    "\"CSV UTF-8\")", line=line) from None


def read_csv_rows(path: Path, required: Sequence[str], delimiter: str | None = None,
                   exact: Sequence[str] = ()) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Header and (line, {column: cell}) rows of a CSV; checks columns and field counts.

    `delimiter` None: sniffed from the file's first lines (`csv_delimiter`). Cells are stripped of
    surrounding spaces except in the `exact` columns (paths), which are kept as written: a quoted
    field may hold newlines, commas, leading or trailing spaces. `line` is the line the row ends on.
    """
    text = _read_text(path)
    delimiter = csv_delimiter(text) if delimiter is None else delimiter
    records = csv_records(path, text, delimiter)
    header = [h.strip() for h in next(records, (1, 1, []))[2]]
    absent = [c for c in required if c not in header]
    if absent:
        raise AnnotationError(path, f"no column {absent[0]!r} in the header (columns: {', '.join(header) or 'none'}; "
                                    f"fields separated by {_DELIMITER_NAMES.get(delimiter, repr(delimiter))}: set "
                                    f"delimiter if the file uses another)", line=1)
    names = [h for h in header if h]
    twice = next((h for h in names if names.count(h) > 1), None)
    if twice is not None:  # a dict of the row would keep the last one silently
        raise AnnotationError(path, f"the header names column {twice!r} twice", line=1)
    rows = []
    for start, end, fields in records:
        if not any(f.strip() for f in fields):
            continue
        if len(fields) != len(header):
            raise AnnotationError(path, f"expected {len(header)} fields ({','.join(header)}), got {len(fields)}"
                                        + (f" in the row that runs from here to line {end}: {_OPEN_QUOTE}"
                                           if end > start else ""), line=start)
        rows.append((end, {h: f if h in exact else f.strip() for h, f in zip(header, fields)}))
    if not rows:
        raise AnnotationError(path, "holds no clips (only a header)")
    return header, rows


def csv_records(path: Path, text: str, delimiter: str) -> Iterator[tuple[int, int, list[str]]]:
    """(first line, last line, fields) of each row of a CSV's `text`, blank rows included; the csv module
    splits the lines itself (a quoted field may hold newlines). A row the csv module cannot read (a
    field over its size limit: a quote never closed in a large file) is an AnnotationError at the
    line it starts on."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    while True:
        start = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise AnnotationError(path, f"cannot read the row that starts here ({e}): {_OPEN_QUOTE}", line=start) from None
        yield start, reader.line_num, fields


_OPEN_QUOTE = ('a double quote (") that opens a field on this line is not closed where the field ends, so the '
               'field runs on over the lines after it; remove the quote or close it')
DELIMITERS = ",\t;|"  # what sniffing chooses from
_DELIMITER_NAMES = {",": "','", "\t": "tabs", ";": "';'", "|": "'|'", " ": "spaces"}


def csv_delimiter(text: str) -> str:
    """The field separator of a CSV-family file, sniffed from its first lines (csv.Sniffer, restricted
    to `DELIMITERS`); ',' when they show none (a one-column file)."""
    sample = "\n".join(text.splitlines()[:20])
    try:
        return csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        return ","


def check_delimiter(delimiter: str | None) -> str | None:
    """The `delimiter` option: None (sniff), one character, or "tab"/"\\t" for tabs."""
    delimiter = toml_none(delimiter)
    if delimiter is None:
        return None
    if isinstance(delimiter, str) and delimiter.lower() in ("tab", "\\t"):
        return "\t"
    if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in "\"\r\n":
        raise ConfigError("delimiter", f"must be one character such as \",\" or \"tab\" (or \"none\" to sniff it), "
                                       f"got {delimiter!r}")
    return delimiter


def read_test_list(path: Path, written: list[str], ids: list[str]) -> set[str]:
    """Clip ids named by a test list (one clip a line: its path as written in the CSV, or its id)."""
    by_written = dict(zip(written, ids))
    known = set(ids)
    tested = set()

    def clip(name: str) -> str | None:
        return by_written.get(name) or (name if name in known else None)

    for line, text in read_lines(path):
        name = re.split(r"[,\s]", text, maxsplit=1)[0]
        clip_id = clip(text.strip()) or clip(name)  # the whole line first: a path may hold a space ("take 2")
        if clip_id is None:
            if line == 1 and name.lower() in _LIST_HEADERS:
                continue  # a header line such as "path"
            raise AnnotationError(path, f"{name!r} is neither a path nor a clip id of the CSV", line=line)
        tested.add(clip_id)
    return tested


_LIST_HEADERS = ("path", "clip", "clip_id", "id", "name", "file", "filename", "video", "video_name", "video_id")


# ----------------------------------------------------------------------------- labels


@dataclass(frozen=True)
class Labels:
    """How label cells become 0-based indices into `class_names` (build it with `make_labels`)."""

    class_names: tuple[str, ...]  # the class set
    lookup: Callable[[str], int]  # class name -> index (`class_lookup`), ValueError if unknown
    base: int = 0  # the integer written for the first class (or for label_names[0])
    label_names: tuple[int, ...] | None = None  # class index of file integer base + i

    def parse(self, text: str, source: Path, line: int, field: str) -> int:
        """A class name, or an integer counted from `base`; AnnotationError naming file, line, field."""
        if INTEGER.fullmatch(text):
            value, k = int(text), len(self.label_names or self.class_names)
            low, high = self.base, self.base + k - 1
            if not low <= value <= high:
                what = f"{k} label_names" if self.label_names else f"{k} classes"
                hint = ""
                if value in (low - 1, high + 1):
                    other = 1 - self.base
                    hint = f"; if this file counts labels from {other}, set label_base = {other}"
                raise AnnotationError(source, f"{field} {value} is outside the allowed range {low}..{high} "
                                              f"({what}){hint}", line=line)
            i = value - self.base
            return self.label_names[i] if self.label_names else i
        if re.fullmatch(r"[+-]?\d+\.\d*", text):
            raise AnnotationError(source, f"{field} {text!r} is a decimal number: write integer labels ({text} was "
                                          "probably an integer that a spreadsheet or pandas wrote as a decimal, as "
                                          "they do in a column with an empty cell)", line=line)
        try:
            return self.lookup(text)
        except ValueError:
            default = self.class_names == CLASSES
            raise AnnotationError(source, f"{field} {text!r} is not {'an emotion' if default else 'a class'}; "
                                          f"expected one of {', '.join(self.class_names)}"
                                          + (f" (or {', '.join(FERV39K_LABELS)})" if default else ""),
                                  line=line) from None

    def check_base(self, source: Path, cells: Sequence[str], field: str) -> None:
        """Refuse a file whose integer labels, taken as a whole, count from the other base.

        Base 1 with every label in 0..K-1 and some 0s (or base 0 with every label in 1..K and
        some K) is a file counted from the other end: read with this base, every row would be
        shifted by one class and only the 0s (the Ks) would be flagged. AnnotationError naming
        the file, the counts and the option to set.
        """
        ints = [int(c) for c in cells if c is not None and INTEGER.fullmatch(c)]
        if len(set(ints)) < 2:  # one label value says nothing about the base (the row check still applies)
            return
        k = len(self.label_names or self.class_names)
        low, high = min(ints), max(ints)
        if self.base == 1 and low == 0 and high <= k - 1:
            edge, fits, other = 0, f"0..{k - 1}", 0
        elif self.base == 0 and low >= 1 and high == k:
            edge, fits, other = k, f"1..{k}", 1
        else:
            return
        n_edge = sum(1 for v in ints if v == edge)
        raise AnnotationError(source, f"every {field} of its {len(ints)} rows lies in {fits} and {n_edge} are {edge}: "
                                      f"this file counts labels from {other}, but label_base is {self.base} (read so, "
                                      f"{len(ints) - n_edge} rows would shift one class and {n_edge} would be out of "
                                      f"range); set label_base = {other}")


def class_lookup(class_names: Sequence[str]) -> Callable[[str], int]:
    """name -> index in class_names: exact name, case-insensitive; the emotion aliases of `labels`
    (Happy, Angry, ...) only for the default 7 classes. The function raises ValueError."""
    exact = {n.lower(): i for i, n in enumerate(class_names)}
    default = tuple(class_names) == CLASSES

    def lookup(name: str) -> int:
        key = name.strip().lower()
        if key in exact:
            return exact[key]
        if default:
            return class_index(name)
        raise ValueError(f"unknown class {name!r}; expected one of {', '.join(class_names)}")

    return lookup


def make_labels(class_names: Sequence[str] | None, label_names: Sequence[str] | None, label_base: int) -> Labels:
    """Check the class set and the integer mapping (ConfigError naming the field) and build a Labels."""
    names = tuple(CLASSES if class_names is None else class_names)
    if isinstance(class_names, str) or not names or not all(isinstance(n, str) and n.strip() for n in names):
        raise ConfigError("class_names", f"must be a non-empty list of class names, got {class_names!r}")
    seen: dict[str, str] = {}
    for n in names:
        if n.lower() in seen:
            raise ConfigError("class_names", f"{n!r} appears twice (as {seen[n.lower()]!r}); class names must be "
                                             "unique (case-insensitive)")
        seen[n.lower()] = n
    if isinstance(label_base, bool) or not isinstance(label_base, int) or label_base not in (0, 1):
        raise ConfigError("label_base", f"must be 0 or 1, got {label_base!r}")
    lookup = class_lookup(names)
    mapped = None
    if label_names is not None:
        if isinstance(label_names, str) or not label_names:
            raise ConfigError("label_names", f"must be a non-empty list of class names, got {label_names!r}")
        mapped = []
        for i, n in enumerate(label_names):
            try:
                mapped.append(lookup(str(n)))
            except ValueError:
                raise ConfigError("label_names", f"entry {i} ({n!r}, the file's integer {label_base + i}) is not "
                                                 f"a class; class_names: {', '.join(names)}") from None
        mapped = tuple(mapped)
        _check_merges(mapped, names, label_base)
    return Labels(names, lookup, label_base, mapped)


def _check_merges(mapped: tuple[int, ...], names: tuple[str, ...], base: int) -> None:
    """label_names that send two file integers to one class: a merge (every class still reached, e.g.
    8 labels into 7 classes) is logged; otherwise it is a typo that leaves a class unreachable
    (`["Sad", "Sad"]` for `["Sad", "Surprise"]`), a ConfigError naming both."""
    twice = {c: [base + i for i, m in enumerate(mapped) if m == c] for c in set(mapped) if mapped.count(c) > 1}
    if not twice:
        return
    c, ints = min(twice.items())
    unreached = [n for k, n in enumerate(names) if k not in mapped]
    if unreached:
        raise ConfigError("label_names", f"the file's integers {' and '.join(map(str, ints))} both name {names[c]}, "
                                         f"and no entry names {', '.join(unreached)}: a typo? Give each class once")
    log.info("label_names merges the file's integers %s into %s", " and ".join(map(str, ints)), names[c])


# ----------------------------------------------------------------------------- paths


class PathMap:
    """Rewrites annotated paths written on another machine: {their prefix: our folder}.

    The longest prefix that matches whole path components wins; backslashes read as slashes, in every
    path (a list written on Windows: `DFEW\\clip_224x224\\00001`), mapped or not.
    `check_used` raises a ConfigError naming a prefix that matched no path.
    """

    def __init__(self, mapping: Mapping[str, str] | None):
        if mapping is not None and not isinstance(mapping, Mapping):
            raise ConfigError("path_map", f"must be a table {{\"/their/prefix\" = \"our/folder\"}}, got {mapping!r}")
        items = []
        for prefix, target in (mapping or {}).items():
            if not isinstance(target, (str, os.PathLike)) or not str(prefix).strip():
                raise ConfigError("path_map", f"entry {prefix!r} = {target!r}: both sides must be paths")
            items.append((_slashes(str(prefix)).rstrip("/") or "/", str(target)))
        self.items = sorted(items, key=lambda kv: -len(kv[0]))
        self.used: set[str] = set()

    def __call__(self, raw: str) -> str:
        """`raw` under the longest matching prefix's target; else `raw` with backslashes read as slashes."""
        entry = self.entry(raw)
        if entry is None:
            return _slashes(raw)
        prefix, target = entry
        self.used.add(prefix)
        rest = _slashes(raw)[len(prefix):].lstrip("/")
        return str(Path(target) / rest) if rest else target

    def entry(self, raw: str) -> tuple[str, str] | None:
        """The (prefix, target) entry that maps `raw` (the longest matching prefix), or None."""
        text = _slashes(raw)
        return next(((prefix, target) for prefix, target in self.items
                     if text == prefix or text.startswith(prefix + "/") or prefix == "/"), None)

    def check_used(self, what: str) -> None:
        unused = [p for p, _ in self.items if p not in self.used]
        if unused:
            raise ConfigError("path_map", f"prefix {unused[0]!r} matches none of the paths in {what}; "
                                          "check the prefix as written in the annotation file")


def _slashes(text: str) -> str:
    return text.replace("\\", "/") if "\\" in text else text


def path_label_reader(spec: PathLabel) -> Callable[[str], str] | None:
    """label_from_path -> a function from the annotated path to the label text it holds (or None)."""
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in _NONE):
        return None
    if isinstance(spec, bool):
        raise ConfigError("label_from_path", f"must be a path-component index or a regex, got {spec!r}")
    if isinstance(spec, int):
        def component(raw: str) -> str:
            parts = [p for p in PurePosixPath(_slashes(raw)).parts if p != "/"]
            try:
                part = parts[spec]
            except IndexError:
                raise ValueError(f"the path has {len(parts)} components, no component {spec}") from None
            return part.split(".")[0] if spec == -1 else part
        return component
    try:
        pattern = re.compile(str(spec))
    except re.error as e:
        raise ConfigError("label_from_path", f"{spec!r} is not a valid regular expression: {e}") from None
    if pattern.groups < 1:
        raise ConfigError("label_from_path", f"{spec!r} needs a group that captures the label, e.g. "
                                             r"'/(?P<label>\w+)/\d+$'")
    group = "label" if "label" in pattern.groupindex else 1

    def match(raw: str) -> str:
        m = pattern.search(_slashes(raw))
        if m is None or not m.group(group):
            raise ValueError(f"label_from_path {pattern.pattern!r} does not match")
        return m.group(group)

    return match


def toml_none(value: Any) -> Any:
    """TOML's way to say 'none': the string "none" or "" (any case) -> None."""
    return None if value is None or (isinstance(value, str) and value.strip().lower() in _NONE) else value


# ----------------------------------------------------------------------------- fields


def parse_int(text: str, source: Path, line: int, field: str, *, low: int | None = None,
               high: int | None = None) -> int:
    """An integer field, checked against low..high; AnnotationError naming file, line and field."""
    try:
        value = int(text)
    except ValueError:
        raise AnnotationError(source, f"{field} {text!r} is not an integer", line=line) from None
    if (low is not None and value < low) or (high is not None and value > high):
        allowed = f"{low}..{high}" if high is not None else f">= {low}"
        raise AnnotationError(source, f"{field} {value} is outside the allowed range {allowed}", line=line)
    return value


def parse_split(text: str, source: Path, line: int, field: str) -> str:
    part = text.lower()
    if part not in ("train", "test"):
        raise AnnotationError(source, f"{field} {text!r} must be 'train' or 'test'", line=line)
    return part


def row_label(labels: Labels, by_path: Callable[[str], str] | None, text: str | None, raw_path: str,
               source: Path, line: int, field: str, missing: Missing) -> tuple[int, str | None]:
    """(label, problem) of one row: from the label column, the path, or both checked against each other.

    A path that gives no class, or disagrees with the label column, is a problem: raised with
    missing="error", returned (the row is then skipped) with missing="skip".
    """
    try:
        from_col = labels.parse(text, source, line, field) if text is not None else None
    except AnnotationError as e:  # not a class: with missing="skip", one bad row does not stop the dataset
        if missing == "error":
            raise
        return -1, str(e).removeprefix(f"{source}:{line}: ")
    if by_path is None:
        return from_col, None
    try:
        word = by_path(raw_path)
        from_path = labels.lookup(word)
    except ValueError as e:
        problem = f"no label in the path {raw_path!r}: {e}"
        return _problem(problem, missing, source, line, -1 if from_col is None else from_col)
    if from_col is not None and from_col != from_path:
        names = labels.class_names
        problem = (f"label disagrees with the path: {field} says {names[from_col]} ({text!r}), the path "
                   f"{raw_path!r} says {names[from_path]} ({word!r})")
        return _problem(problem, missing, source, line, from_col)
    return from_path, None


def _problem(message: str, missing: Missing, source: Path, line: int, label: int) -> tuple[int, str]:
    if missing == "error":
        raise AnnotationError(source, f"{message} (fix the row, or leave such rows out: data.args.missing = \"skip\" in a pipeline, "
                              "missing='skip' in Python)",
                              line=line)
    return label, message


# ----------------------------------------------------------------------------- options


def existing_dir(path: PathLike, field: str) -> Path:
    if not Path(path).is_dir():
        raise ConfigError(field, f"folder not found: {path}")
    return Path(path).resolve()


def check_missing(missing: str) -> None:
    if missing not in ("error", "skip"):
        raise ConfigError("missing", f"must be 'error' or 'skip', got {missing!r}")
