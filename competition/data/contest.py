"""The contest folder: index it, check its layout, and load its images (decoded once, through the cache).

A contest folder holds ``train/<Class>/<image>`` (or ``train.csv`` with ``id,label`` and the images in
``train/``), ``test/<image>`` and ``sample_submission.csv``: the default `Layout`. A contest laid out otherwise
(Kaggle's ``train.csv`` with ``id_code,diagnosis`` and ``train_images/``) is declared, not rewritten: the
recipe's data section names its files, folders and columns (recipe.data.layout(), a `Layout`). An id may carry
its image extension or not (``x`` and ``x.png`` both name ``x.png``). `index_contest` checks the layout before
anything is decoded (each problem one line naming the path, the columns or folders that are there, and a
did-you-mean); `load_contest` then decodes every image once (the preflight, competition.data.cache) and
reports every unreadable file together. Input files are only ever opened for reading.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from competition.data.cache import decode_images_at, unreadable_message
from competition.data.decode import IMAGE_EXTENSIONS, DecodeOptions
from competition.errors import CompetitionError
from competition.files import read_string_csv, write_text




@dataclass(frozen=True)
class Layout:
    """Where a contest keeps its files and what its labels file's columns are called; paths are relative to
    the contest folder. The recipe keys of the same names (recipe.data.train_csv, ...) declare it.

    train_csv          the labels file; None: ``train.csv`` when there is one, else class folders
                       (``train_images/<Class>/<image>``)
    id_column          the labels file's image id column
    label_column       its class column
    group_column       its subject (patient, brain) column, or None; it becomes the fold groups
                       (recipe.cv.group_by column:<name>) unless the recipe groups otherwise
    label_separator    a multi-label contest: the text joining an image's labels in the label column
                       ('Effusion|Nodule'); None: one class per image
    label_columns      a multi-label contest whose labels file has one 0/1 column per label (CheXpert's
                       'Cardiomegaly', 'Effusion', ...), instead of a label column; an image's labels are then
                       joined by label_separator ('|' unless declared) in run files. A row of zeros has no label.
    train_images       the folder of the training images
    test_images        the folder of the test images
    sample_submission  the sample submission file
    """

    train_csv: str | None = None
    id_column: str = "id"
    label_column: str = "label"
    group_column: str | None = None
    label_separator: str | None = None
    label_columns: tuple[str, ...] | None = None
    train_images: str = "train"
    test_images: str = "test"
    sample_submission: str = "sample_submission.csv"

    def __post_init__(self) -> None:
        if self.label_columns is not None:  # a list from a recipe or run.json: a tuple, so the layout hashes
            object.__setattr__(self, "label_columns", tuple(str(c) for c in self.label_columns))
            if self.label_separator is None:  # run files join an image's labels with the default separator
                object.__setattr__(self, "label_separator", MULTILABEL_SEPARATORS[0])

    @property
    def allows_no_label(self) -> bool:
        """A multi-label contest whose images may carry none of the labels (one 0/1 column per label: a row of
        zeros), so an empty label text is an image without one. With labels joined in one column every image
        has one ('No Finding' is a label of its own)."""
        return self.label_columns is not None

    def declared(self) -> dict[str, Any]:
        """The fields that differ from the default layout (what a run records; {} for the default)."""
        default = Layout()
        return {k: v for k, v in vars(self).items() if getattr(default, k) != v}

    @classmethod
    def from_record(cls, record: Any) -> Layout:
        """The layout a run recorded (`declared()`), the default for runs that record none."""
        if not isinstance(record, dict):
            return cls()
        def kept(key: str, value: Any) -> bool:
            if key == "label_columns":
                return isinstance(value, list) and all(isinstance(c, str) for c in value)
            return key in cls.__dataclass_fields__ and (isinstance(value, str) or value is None)

        return cls(**{k: v for k, v in record.items() if kept(k, v)})


def _key(layout: Layout, field: str) -> str:
    """'recipe.data.<field> ' when the layout declares `field`, else '' (an error names the key that set a path)."""
    return f"recipe.data.{field}: " if field in layout.declared() else ""


@dataclass
class Contest:
    """An indexed contest. `classes` in probability-column order; `train["label"]` the class name, or for a
    multi-label contest (`separator` set) the image's labels in class order joined by `separator` (the
    canonical form run files store)."""

    root: Path
    train: pd.DataFrame  # id, path, label (+ any other train.csv columns)
    test: pd.DataFrame  # id, path
    classes: list[str]
    sample_path: Path
    separator: str | None = None

    @property
    def multilabel(self) -> bool:
        return self.separator is not None

    def y(self) -> np.ndarray:
        """int64 (n,) class index per training image; multi-label: uint8 (n, n_classes) indicator matrix."""
        return label_targets(self.train["label"], self.classes, self.separator)


def label_targets(labels: Any, classes: Sequence[str], separator: str | None = None) -> np.ndarray:
    """Label texts as targets: int64 (n,) class indices; with `separator` (multi-label), a uint8 (n, len(classes))
    indicator matrix of each text's labels. A label not in `classes` raises KeyError (callers check first)."""
    index = {c: i for i, c in enumerate(classes)}
    labels = pd.Series(labels).astype(str)
    if separator is None:
        return labels.map(index).to_numpy(dtype=np.int64)
    out = np.zeros((len(labels), len(classes)), np.uint8)
    for row, text in enumerate(labels):
        for token in text.split(separator):
            if token.strip():
                out[row, index[token.strip()]] = 1
    return out


def label_counts(labels: Any, classes: Sequence[str], separator: str | None = None) -> np.ndarray:
    """int64 (len(classes),) images per class of the label texts (multi-label: images carrying each label)."""
    targets = label_targets(labels, classes, separator)
    if separator is not None:
        return targets.sum(axis=0).astype(np.int64)
    return np.bincount(targets, minlength=len(classes)).astype(np.int64)


def label_texts(y: np.ndarray, classes: Sequence[str], separator: str | None = None) -> np.ndarray:
    """The inverse of label_targets: object (n,) class names, or (a 2-D indicator matrix) each row's labels in
    class order joined by `separator`."""
    y = np.asarray(y)
    names = np.asarray(classes, dtype=object)
    if y.ndim == 1:
        return names[y]
    joiner = separator or MULTILABEL_SEPARATORS[0]
    return np.asarray([joiner.join(names[np.flatnonzero(row)]) for row in y], dtype=object)



# ---------------------------------------------------------------- finding images


def _has_dicom_preamble(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def _is_image(path: Path) -> bool:
    """An image file by its extension, or a DICOM file by its preamble (DICOM files often have no extension)."""
    if path.name.startswith(".") or not path.is_file():
        return False
    return path.suffix.lower() in IMAGE_EXTENSIONS or _has_dicom_preamble(path)


def image_id(path: Path) -> str:
    """A file's id: its name without the image extension (a DICOM file found by its preamble keeps its whole
    name, since names like ``1.2.840.113619.2.55`` are not name + extension)."""
    return path.stem if path.suffix.lower() in IMAGE_EXTENSIONS else path.name


# Folders that operating systems and archivers leave beside the data: never classes, never images.
SYSTEM_FOLDERS = frozenset({"__MACOSX", "@eaDir", "$RECYCLE.BIN", "System Volume Information"})


def _visible(folder: Path) -> list[Path]:
    """A folder's entries, sorted, without hidden ones (``.DS_Store``, ``._x.png`` AppleDouble files, ...) and
    without the system folders a Mac zip or a NAS adds (``__MACOSX``, ``@eaDir``, ...). A broken symbolic link
    among them stops here, named as one: it is neither an image nor a folder, and would otherwise be
    reported as something it is not (or silently dropped)."""
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith(".") and p.name not in SYSTEM_FOLDERS)
    for path in entries:
        if path.is_symlink() and not path.exists():
            raise CompetitionError(f"{path}: broken symbolic link (it points to {_link_target(path)!r}, which "
                                   "does not exist or loops); fix the link or replace it with the file")
    return entries


def _link_target(path: Path) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return "?"


def _images_in(folder: Path) -> list[Path]:
    return [p for p in _visible(folder) if _is_image(p)]


def _check_name(path: Path) -> None:
    """Names end up as ids and labels in CSV files: they must be valid UTF-8 and free of CSV-breaking characters."""
    name = path.name
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(path)
        raise CompetitionError(f"{shown!r}: file name is not valid UTF-8; rename it") from None
    odd = sorted({c for c in name if c in ',"' or unicodedata.category(c) in {"Cc", "Zl", "Zp"}})
    if odd:
        raise CompetitionError(f"{str(path)!r}: file name contains {', '.join(map(repr, odd))}, which would break "
                               "the CSV files (ids and labels come from names); rename it")


def _duplicate_ids(images: list[Path], ids: list[str], where: Path) -> None:
    seen: dict[str, Path] = {}
    for path, i in zip(images, ids):
        if i in seen:
            raise CompetitionError(f"{where}: id {i!r} is used by two files, {seen[i]} and {path} "
                                   "(an id is the file name without its extension and must be unique)")
        seen[i] = path


def _read_csv(path: Path) -> pd.DataFrame:
    """Every cell as the literal text written ('NA', 'None', 'null', '007' stay as they are), rows checked
    against the header (competition.files.read_string_csv)."""
    return read_string_csv(path)


def _count(n: int, noun: str, plural: str | None = None) -> str:
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


# ---------------------------------------------------------------- indexing and checks


def index_contest(root: str | Path, layout: Layout | None = None) -> Contest:
    """Find every train and test image and the sample submission where `layout` (None: the default layout)
    says they are, and check that they fit together; each problem is a CompetitionError of one line naming
    the offending path (and the recipe key that declared it). Nothing is written."""
    root = Path(root)
    layout = layout or Layout()
    if not root.is_dir():
        raise CompetitionError(f"{root}: contest folder not found{_why_missing(root, 'a folder')}")
    train_dir, test_dir = root / layout.train_images, root / layout.test_images
    sample_path = root / layout.sample_submission
    declared_csv = layout.train_csv is not None
    train_csv = root / (layout.train_csv or "train.csv")
    if declared_csv and not train_csv.is_file():
        raise CompetitionError(f"{train_csv}: recipe.data.train_csv: labels file not found"
                               f"{_why_missing(train_csv, 'a file')}{_entries_hint(root, layout.train_csv, 'file')}")
    if not train_dir.is_dir():
        accepted = ("" if _key(layout, "train_images") else
                    "; the layouts read: train/<Class>/<images>, or train.csv (id,label) with the images in train/, "
                    "or declared ones (recipe.data.train_csv, id_column, label_column, train_images, test_images)")
        raise CompetitionError(f"{train_dir}: {_key(layout, 'train_images')}train folder not found"
                               f"{_why_missing(train_dir, 'a folder')}"
                               f"{_entries_hint(root, layout.train_images, 'folder')}{accepted}")
    if not test_dir.is_dir():
        raise CompetitionError(f"{test_dir}: {_key(layout, 'test_images')}test folder not found"
                               f"{_why_missing(test_dir, 'a folder')}{_entries_hint(root, layout.test_images, 'folder')}")
    if not sample_path.is_file():
        raise CompetitionError(f"{sample_path}: {_key(layout, 'sample_submission')}sample submission not found"
                               f"{_why_missing(sample_path, 'a file')}"
                               f"{_entries_hint(root, layout.sample_submission, 'file')}")
    sample = _read_csv(sample_path)
    if len(sample.columns) < 2 or not value_columns(sample):
        markers = marker_columns(sample)
        also = (f"; {', '.join(map(repr, markers))} is Kaggle's public/private marker, not a value column"
                if markers else "")
        raise CompetitionError(f"{sample_path}: needs an id column and at least one value column "
                               f"(columns: {', '.join(sample.columns)}){also}")
    if not len(sample):
        if not any(_is_image(p) for p in _visible(test_dir)):  # the cause: nothing to submit for
            raise CompetitionError(f"{test_dir}: test folder holds no images")
        raise CompetitionError(f"{sample_path}: no rows, only the header; a sample submission lists every test id "
                               "(one row per image in test/)")

    from_csv = train_csv.is_file()
    if not from_csv and ((layout.id_column, layout.label_column, layout.group_column) != ("id", "label", None)
                         or layout.label_columns is not None):
        raise CompetitionError(f"{train_csv}: labels file not found, but the recipe declares its columns "
                               "(recipe.data.id_column, label_column, label_columns or group_column); set "
                               "recipe.data.train_csv")
    train = _train_from_csv(train_csv, train_dir, layout) if from_csv else _train_from_folders(train_dir)
    source = train_csv if from_csv else train_dir
    if layout.label_columns is not None:  # labels already joined, in class order (_label_columns_frame)
        classes = class_order(layout.label_columns)
    elif layout.label_separator is not None:
        if not from_csv:
            raise CompetitionError(f"{train_dir}: recipe.data.label_separator: {layout.label_separator!r} declares a "
                                   "multi-label contest, whose labels come from a labels file (recipe.data.train_csv), "
                                   "not from class folders")
        train, classes = _multilabel_rows(train, source, layout.label_separator)
    else:
        _check_look_alike_labels(train, source, from_csv=from_csv)
        _refuse_multilabel(train, source)
        classes = class_order(train["label"].unique())
    if len(classes) < 2:
        raise CompetitionError(f"{source}: only one class ({classes[0]}); a classifier needs at least two")
    if layout.label_separator is not None:
        _check_label_counts(train, classes, layout, source)
    _check_sample_classes(sample, sample_path, train, classes, source, separator=layout.label_separator)
    shared = test_dir.resolve() == train_dir.resolve()
    test = _test_images(test_dir, sample, sample_path, shared=shared)
    if shared:  # one folder of images (Kaggle's `images/`): the sample says which are the test's
        _refuse_train_ids_in_sample(train, sample, sample_path, source)
    return Contest(root=root, train=train, test=test, classes=classes, sample_path=sample_path,
                   separator=layout.label_separator)


def contest_test_paths(root: str | Path, layout: Layout | None = None) -> list[Path] | None:
    """The test image files of the contest folder `root` laid out as `layout` (None: the default), in the
    folder's order, or None when `root` is not one (no sample submission or no test folder where `layout` puts
    them). With train and test images in one folder, the images the sample lists. Errors of the test folder
    against the sample as index_contest's (one line); the training side is not read."""
    root, layout = Path(root), layout or Layout()
    test_dir, sample_path = root / layout.test_images, root / layout.sample_submission
    if not (root.is_dir() and test_dir.is_dir() and sample_path.is_file()):
        return None
    shared = test_dir.resolve() == (root / layout.train_images).resolve()
    return [Path(p) for p in _test_images(test_dir, _read_csv(sample_path), sample_path, shared=shared)["path"]]


def class_order(labels: Any) -> list[str]:
    """The classes in probability-column order: by number when every label is a number (grades '1', '2', '10':
    the order an ordinal metric such as quadratic weighted kappa reads), else as text."""
    labels = [str(c) for c in labels]
    try:
        return sorted(labels, key=lambda c: (float(c), c))
    except ValueError:
        return sorted(labels)


MULTILABEL_SEPARATORS = ("|",)


def _refuse_multilabel(train: pd.DataFrame, source: Path) -> None:
    """Labels joined by '|' (ChestX-ray14's 'Effusion|Mass') are several findings of one image: read as classes
    they would be silently trained as label combinations. Refused in one line until multi-label is read."""
    for separator in MULTILABEL_SEPARATORS:
        joined = train["label"].astype(str).str.contains(separator, regex=False).to_numpy()
        if joined.any():
            example = str(train["label"].iloc[int(np.flatnonzero(joined)[0])])
            raise CompetitionError(f"{source}: labels joined by {separator!r} on {_rows_with_ids(train, joined, rows=True)}"
                                   f" (e.g. {example!r}) look multi-label (several findings per image): declare it "
                                   f"with recipe.data.label_separator: {separator!r}, else each combination would be "
                                   "a class of its own")


def _check_label_counts(train: pd.DataFrame, classes: list[str], layout: Layout, source: Path) -> None:
    """A multi-label contest's label on no training image, or on every one, has nothing to learn and cannot be
    scored (its ROC AUC is undefined, its F1 a free 0 or 1): one line naming it."""
    counts = label_counts(train["label"], classes, layout.label_separator)
    for label, count in zip(classes, counts):
        if count == 0:  # only with label columns: the separator form's labels are those the file holds
            raise CompetitionError(f"{source}: label column {label!r} (recipe.data.label_columns) holds no 1: "
                                   "a label no training image has cannot be learnt or scored; leave it out")
        if count == len(train):
            key = "recipe.data.label_columns" if layout.label_columns is not None else "recipe.data.label_separator"
            raise CompetitionError(f"{source}: label {label!r} ({key}) is on every training image: it cannot be "
                                   "learnt or scored (its ROC AUC is undefined, its F1 a free 1.0); leave it out")


def _multilabel_rows(train: pd.DataFrame, source: Path, separator: str) -> tuple[pd.DataFrame, list[str]]:
    """A multi-label labels file's rows with each label cell in canonical form (its labels, stripped, once
    each, in class order, joined by the separator) and the labels found (the classes, class_order). An empty
    label between two separators ('a||b') is one line naming the row; so are look-alike labels."""
    tokens = [[t.strip() for t in str(text).split(separator)] for text in train["label"]]
    for row, found in enumerate(tokens):
        if any(not t for t in found):
            raise CompetitionError(f"{source}: row {row + 1} (id {train['id'].iloc[row]!r}) has an empty label in "
                                   f"{str(train['label'].iloc[row])!r} (labels joined by {separator!r}, "
                                   f"recipe.data.label_separator; rows count from 1 after the header)")
    flat = pd.DataFrame({"id": np.repeat(train["id"].to_numpy(), [len(t) for t in tokens]),
                         "label": [t for found in tokens for t in found]})
    _check_look_alike_labels(flat, source, from_csv=True)
    classes = class_order(flat["label"].unique())
    order = {c: i for i, c in enumerate(classes)}
    canonical = [separator.join(sorted(set(found), key=order.__getitem__)) for found in tokens]
    return train.assign(label=canonical), classes


def _why_missing(path: Path, wanted: str) -> str:
    """Why a path the layout needs is not there: a broken link, or something of the other kind."""
    if path.is_symlink() and not path.exists():
        return f" (a broken symbolic link to {_link_target(path)!r})"
    if path.exists():
        return f" ({'a file' if wanted == 'a folder' else 'a folder'} is there, {wanted} is needed)"
    return ""


def _entries_hint(root: Path, wanted: str, kind: str) -> str:
    """'; did you mean 'x'? (folders in ROOT: a, b)': what the contest folder holds of the kind a layout key
    names, the closest first."""
    import difflib

    try:
        entries = sorted(p.name for p in _visible(root) if (p.is_dir() if kind == "folder" else p.is_file()))
    except (OSError, CompetitionError):
        return ""
    if not entries:
        return f" ({root} holds no {kind}s)"
    close = difflib.get_close_matches(Path(wanted).name, entries, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    shown = ", ".join(map(repr, entries[:12])) + (f" and {len(entries) - 12} more" if len(entries) > 12 else "")
    return f"{hint} ({kind}s in {root}: {shown})"


def _unicode_forms(a: str, b: str) -> str:
    """'only in Unicode normalisation (NFC/NFD): ...' when `a` and `b` are the same text in two Unicode normal
    forms (macOS writes file names decomposed, NFD; most editors write NFC), else ''. The two are shown
    with their code points escaped, since on screen they look the same."""
    if a == b or unicodedata.normalize("NFC", a) != unicodedata.normalize("NFC", b):
        return ""

    def form(text: str) -> str:
        for name in ("NFC", "NFD"):
            if unicodedata.is_normalized(name, text):
                return name
        return "mixed"

    return (f"only in Unicode normalisation (NFC/NFD): {ascii(a)} is {form(a)}, {ascii(b)} is {form(b)}; they "
            "look the same but are different characters")


def _near_miss(name: str, candidates: Sequence[str], what: str) -> str:
    """A hint when `name` is not among `candidates` but one of them differs from it only in a way that is
    easy to miss: Unicode normalisation (NFC/NFD), surrounding whitespace, upper/lower case, leading zeros a
    spreadsheet dropped."""
    for other in candidates:
        forms = _unicode_forms(name, other)
        if forms:
            return f" ({what} {other!r} exists: it differs {forms})"
    stripped = name.strip()
    if stripped != name and stripped in candidates:
        return f" ({what} {stripped!r} exists: {name!r} has surrounding whitespace, and ids are compared as written)"
    for other in candidates:
        if other.strip() == stripped and other != name:
            return f" ({what} {other!r} exists: it differs only by surrounding whitespace)"
    lowered = name.lower()
    for other in candidates:
        if other.lower() == lowered:
            return f" ({what} {other!r} exists: it differs only in upper/lower case)"
    if stripped.isdigit():
        for other in candidates:
            if other.isdigit() and int(other) == int(stripped):
                return f" ({what} {other!r} exists: leading zeros differ; was the file through a spreadsheet?)"
    return ""


def _label_key(label: str) -> str:
    """What a label looks like on screen: Unicode form unified, invisible characters dropped, whitespace runs
    collapsed and trimmed. Two labels with one key would print alike in every table."""
    text = "".join(c for c in unicodedata.normalize("NFKC", label) if unicodedata.category(c) != "Cf")
    return " ".join(text.split())


def _rows_with_ids(frame: pd.DataFrame, mask: np.ndarray, *, rows: bool) -> str:
    """'rows 5, 6, 7 (ids a4, a5, a6) and 2 more' (rows count from 1 after the header) or 'ids a4, a5'."""
    positions = np.flatnonzero(mask)
    shown = positions[:5]
    more = f" and {len(positions) - 5} more" if len(positions) > 5 else ""
    ids = ", ".join(str(frame["id"].iloc[p]) for p in shown)
    if not rows:
        return f"{'id' if len(positions) == 1 else 'ids'} {ids}{more}"
    numbers = ", ".join(str(p + 1) for p in shown)
    return f"{'row' if len(positions) == 1 else 'rows'} {numbers} ({'id' if len(shown) == 1 else 'ids'} {ids}){more}"


def _check_look_alike_labels(train: pd.DataFrame, source: Path, *, from_csv: bool) -> None:
    """Labels are compared as written, so 'Alpha ' and 'Alpha' would be two classes that print alike: stop
    and name the rows (or class folders) whose label differs from another only by whitespace or invisible
    characters."""
    labels = train["label"].astype(str)
    groups: dict[str, list[str]] = {}
    for label in labels.unique():
        groups.setdefault(_label_key(label), []).append(label)
    for key, variants in groups.items():
        if len(variants) < 2:
            continue
        counts = {v: int((labels == v).sum()) for v in variants}
        main = key if key in counts else max(variants, key=lambda v: (counts[v], v == v.strip()))
        odd = next(v for v in variants if v != main)
        how = (_unicode_forms(odd, main) or ("only by surrounding whitespace" if odd.strip() == main.strip()
               else "only by whitespace, invisible characters or Unicode compatibility forms (NFKC)"))
        where = _rows_with_ids(train, (labels == odd).to_numpy(), rows=from_csv)
        if from_csv:
            raise CompetitionError(f"{source}: label {odd!r} on {where} differs from label {main!r} "
                                   f"({counts[main]} rows) {how}; labels are compared as written, so it would be a "
                                   "class of its own: write them the same")
        raise CompetitionError(f"{source}: class folders {odd!r} ({where}) and {main!r} differ {how}; labels are "
                               "compared as written, so they would be two classes that print alike: merge or "
                               "rename them")


def _train_from_folders(train_dir: Path) -> pd.DataFrame:
    entries = _visible(train_dir)
    class_dirs = [p for p in entries if p.is_dir()]
    for path in class_dirs:
        _check_name(path)  # class names become labels
    if not class_dirs:
        raise CompetitionError(f"{train_dir}: no class folders (expected train/<Class>/<images>)")
    loose = [p for p in entries if not p.is_dir() and _is_image(p)]
    if loose:
        raise CompetitionError(f"{loose[0]}: image directly in train/ ({len(loose)} such), but the layout is "
                               "train/<Class>/<image>: move it into its class folder, or remove it")
    rows = []
    for class_dir in class_dirs:
        inside = _visible(class_dir)
        nested = [p for p in inside if p.is_dir()]
        if nested:
            raise CompetitionError(f"{nested[0]}: folder inside a class folder; images must sit directly in "
                                   f"train/{class_dir.name}/ (images in subfolders would be ignored)")
        images = [p for p in inside if _is_image(p)]
        if not images:
            raise CompetitionError(f"{class_dir}: class folder holds no images")
        for path in images:
            _check_name(path)
        rows += [(image_id(p), str(p), class_dir.name) for p in images]
    train = pd.DataFrame(rows, columns=["id", "path", "label"])
    _duplicate_ids([Path(p) for p in train["path"]], train["id"].tolist(), train_dir)
    return train


def _missing_column(train_csv: Path, column: str, columns: list[str], key: str) -> str:
    """The one-line error for a labels-file column that is not there: the key that named it, the columns the
    file has, and the closest one."""
    import difflib

    hint = _near_miss(column, columns, "a column")
    if not hint:
        close = difflib.get_close_matches(column, columns, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
    declare = ("" if key.endswith("group_column") else
               f"; a labels file with other column names is declared with {key} (and its siblings)")
    return (f"{train_csv}: {key}: no column {column!r} (columns: {', '.join(map(repr, columns))}){hint}"
            f"{declare if not hint else ''}")


def _train_from_csv(train_csv: Path, image_dir: Path, layout: Layout | None = None) -> pd.DataFrame:
    """The training rows of a labels file: columns id, path, label first (from the layout's id and label
    columns), then the file's other columns as written (a group column among them)."""
    layout = layout or Layout()
    frame = _read_csv(train_csv)
    for field in [f for f in ("id_column", "label_column", "group_column")
                  if not (f == "label_column" and layout.label_columns is not None)]:
        column = getattr(layout, field)
        if column is not None and column not in frame.columns:
            raise CompetitionError(_missing_column(train_csv, column, list(frame.columns), f"recipe.data.{field}"))
    taken = (layout.id_column,) if layout.label_columns is not None else (layout.id_column, layout.label_column)
    if layout.group_column is not None and layout.group_column in taken:
        what = "id" if layout.group_column == layout.id_column else "label"
        raise CompetitionError(f"{train_csv}: recipe.data.group_column: {layout.group_column!r} is also the {what} "
                               "column; the group column names each image's subject (a patient id), another column")
    if layout.label_columns is not None:
        return _with_images(_label_columns_frame(frame, train_csv, layout), train_csv, image_dir, layout)
    if layout.id_column == layout.label_column:
        raise CompetitionError(f"{train_csv}: recipe.data.label_column: {layout.label_column!r} is also the id column")
    rest = [c for c in frame.columns if c not in (layout.id_column, layout.label_column, "id", "path", "label")]
    frame = pd.DataFrame({"id": frame[layout.id_column], "label": frame[layout.label_column],
                          **{c: frame[c] for c in rest}})
    return _with_images(frame, train_csv, image_dir, layout)


LABEL_VALUES = {"0": 0, "1": 1, "0.0": 0, "1.0": 1}  # a label column's cells, as written (stripped)


def _label_columns_frame(frame: pd.DataFrame, train_csv: Path, layout: Layout) -> pd.DataFrame:
    """A labels file with one 0/1 column per label (layout.label_columns) as id, label rows: each row's labels
    (the columns holding 1) in class order joined by the layout's separator, '' for a row of zeros. A column
    that is not there, is the id or group column, holds the separator in its name, or holds a cell other than
    0 or 1 is one line naming it (a label on no image or on every one: `_check_label_counts`)."""
    columns = list(layout.label_columns or ())
    separator = layout.label_separator or MULTILABEL_SEPARATORS[0]  # set with label_columns (Layout.__post_init__)
    for k, column in enumerate(columns):
        key = f"recipe.data.label_columns[{k}]"
        if column not in frame.columns:
            raise CompetitionError(_missing_column(train_csv, column, list(frame.columns), key))
        if column in (layout.id_column, layout.group_column):
            what = "id" if column == layout.id_column else "group"
            raise CompetitionError(f"{train_csv}: {key}: {column!r} is also the {what} column")
        if separator in column:
            raise CompetitionError(f"{train_csv}: {key}: {column!r} holds {separator!r}, which joins an image's labels "
                                   "in run files and submissions; set recipe.data.label_separator to another text")
    cells = frame[columns].apply(lambda column: column.str.strip())
    bad = ~cells.isin(list(LABEL_VALUES))
    if bad.to_numpy().any():
        row, col = map(int, np.argwhere(bad.to_numpy())[0])
        value = str(frame[columns[col]].iloc[row])
        what = "an empty cell" if not value.strip() else repr(value)
        raise CompetitionError(f"{train_csv}: row {row + 1} (id {frame[layout.id_column].iloc[row]!r}) has {what} in "
                               f"label column {columns[col]!r} (recipe.data.label_columns), expected 0 or 1 "
                               f"({int(bad.to_numpy().sum())} such cells; rows count from 1 after the header)")
    if not len(frame):
        raise CompetitionError(f"{train_csv}: no rows, only the header; it lists the training images, one row "
                               f"({layout.id_column},{','.join(columns)}) each")
    targets = cells.apply(lambda column: column.map(LABEL_VALUES)).astype(np.uint8)
    classes = class_order(columns)
    text = label_texts(targets[classes].to_numpy(), classes, separator)
    rest = [c for c in frame.columns if c not in (layout.id_column, *columns, "id", "path", "label")]
    return pd.DataFrame({"id": frame[layout.id_column], "label": text, **{c: frame[c] for c in rest}})


def _with_images(frame: pd.DataFrame, train_csv: Path, image_dir: Path, layout: Layout) -> pd.DataFrame:
    """The labels file's rows (id, label, other columns) checked (not empty, group cells filled, ids unique,
    labels not empty) and matched to their image files in `image_dir`: the path column inserted after the id."""
    if not len(frame):
        raise CompetitionError(f"{train_csv}: no rows, only the header; it lists the training images, one row "
                               f"({layout.id_column},{layout.label_column}) each")
    if layout.group_column is not None:
        blank = frame.index[frame[layout.group_column].str.strip() == ""]
        if len(blank):
            raise CompetitionError(f"{train_csv}: column {layout.group_column!r} (recipe.data.group_column) is empty "
                                   f"on row {blank[0] + 1} ({len(blank)} such rows; rows count from 1 after the header)")
    repeated = frame.index[frame["id"].duplicated()]
    if len(repeated):
        raise CompetitionError(f"{train_csv}: id {frame['id'][repeated[0]]!r} appears more than once "
                               f"(row {repeated[0] + 1}; rows count from 1 after the header)")
    images = _images_in(image_dir)
    by_id: dict[str, list[Path]] = {}
    for path in images:
        for key in {image_id(path), path.name}:
            by_id.setdefault(key, []).append(path)
    missing = [i for i in frame["id"] if i not in by_id]
    if missing:
        hint = _near_miss(missing[0], list(by_id), "an image named")
        raise CompetitionError(f"{train_csv}: no image in {image_dir} for id {missing[0]!r} ({len(missing)} "
                               f"missing){hint}")
    ambiguous = [i for i in frame["id"] if len(by_id[i]) > 1]
    if ambiguous:
        files = by_id[ambiguous[0]]
        raise CompetitionError(f"{train_csv}: id {ambiguous[0]!r} matches {len(files)} files "
                               f"({', '.join(p.name for p in files)}); ids must name one image")
    empty = frame.index[frame["label"].str.strip() == ""]
    if len(empty) and layout.label_columns is None:  # with label columns, '' is a row of zeros: no label
        raise CompetitionError(f"{train_csv}: row {empty[0] + 1} has an empty label in column {layout.label_column!r} "
                               f"({len(empty)} such rows; rows count from 1 after the header)")
    paths = [by_id[i][0] for i in frame["id"]]
    for path in paths:
        _check_name(path)
    frame.insert(1, "path", [str(p) for p in paths])
    return frame


SampleFormat = Literal["labels", "probabilities", "binary"]
# Columns a sample may hold beside the id and the predictions, by name (compared without case), with the only
# values they hold: Kaggle's public/private split marker, copied from a solution file ("Usage": Public, Private
# or Ignored per row). Such a column is no class and no prediction: it is left out of the submission, because
# Kaggle scores the id and prediction columns and rejects a submission column it does not expect.
MARKER_COLUMNS = {"usage": frozenset({"public", "private", "ignored", ""})}


def marker_columns(sample: pd.DataFrame) -> list[str]:
    """The sample's marker columns (MARKER_COLUMNS): named so, every value one of the marker's values."""
    found = []
    for column in sample.columns[1:]:
        allowed = MARKER_COLUMNS.get(str(column).strip().lower())
        if allowed is not None and sample[column].astype(str).str.strip().str.lower().isin(allowed).all():
            found.append(column)
    return found


def value_columns(sample: pd.DataFrame) -> list[str]:
    """The columns a submission fills (after the id): every column but the id and the marker columns."""
    markers = set(marker_columns(sample))
    return [c for c in sample.columns[1:] if c not in markers]
NEGATIVE_NAMES = frozenset({"0", "no", "false", "negative", "neg", "normal", "benign", "healthy", "absent",
                            "control", "nonmalignant", "non-malignant", "clean", "ok"})


def sample_format(sample: pd.DataFrame, classes: Sequence[str] | None = None, *,
                  probabilities: bool = False, multilabel: bool = False) -> SampleFormat:
    """What a sample submission asks for: "probabilities" (one column per class), "labels" (one column of
    class names) or "binary" (one column of numbers: the positive class's probability in a two-class contest).

    One value column is "binary" when its placeholders are numbers that are not class names: numbers with a
    fraction ('0.5') always; whole numbers ('0') only when `classes` is given and none of them is a class (a
    contest whose classes are '0' and '1' keeps labels), or when the contest metric reads probabilities
    (`probabilities`: ROC AUC, log loss; SIIM-ISIC's sample holds target 0 for a probability). Marker columns
    (Kaggle's 'Usage': `marker_columns`) do not count. A `multilabel` contest's sample is "labels" with one value
    column (each image's labels joined by the separator), else "probabilities" (one per label)."""
    columns = value_columns(sample)
    if multilabel:
        return "labels" if len(columns) <= 1 else "probabilities"
    if len(columns) > 1:
        return "probabilities"
    if len(columns) < 1 or not len(sample):
        return "labels"
    values = sample[columns[0]].astype(str).str.strip()
    if probabilities and pd.to_numeric(values, errors="coerce").notna().all():
        return "binary"
    if classes is not None and values.isin(list(classes)).any():
        return "labels"
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.isna().any():
        return "labels"
    if not values.str.fullmatch(r"[+-]?\d+").all():
        return "binary"
    # whole numbers that are not classes: a two-class contest's placeholder probability; with more classes, the
    # placeholder of a label column (APTOS grades 1-5 with a sample of 0s)
    return "binary" if classes is not None and len(classes) == 2 else "labels"


def positive_class(column: str, classes: Sequence[str], sample_path: str | Path = "the sample",
                   declared: str | None = None) -> str:
    """The class whose probability a one-column ("binary") sample wants: `declared` (recipe.data.positive_class)
    when given, else the class the column is named after ('malignant', 'is_malignant'), else the one that is not
    a 'negative' name (normal, benign, no, 0, ...), else the second of the two sorted classes (as 0/1 encodings
    sort). Refused unless two classes, or when `declared` is not one of them."""
    classes = sorted(classes)
    if len(classes) != 2:
        raise CompetitionError(f"{sample_path}: its one value column {column!r} holds numbers (a two-class "
                               f"contest's positive-class probability), but there are {len(classes)} classes "
                               f"({', '.join(classes[:10])}); the sample's numbers cannot be mapped to them")
    if declared is not None:
        if declared not in classes:
            raise CompetitionError(f"recipe.data.positive_class: {declared!r} is not a class (classes: "
                                   f"{', '.join(classes)})")
        return declared
    if column in classes:
        return column
    tokens = {t for t in re.split(r"[^0-9a-z]+", column.lower()) if t}
    named = [c for c in classes if c.lower() in tokens or c.lower() == column.lower()]
    if len(named) == 1:
        return named[0]
    negative = [c for c in classes if c.strip().lower() in NEGATIVE_NAMES]
    if len(negative) == 1:
        return next(c for c in classes if c != negative[0])
    return classes[1]


def _check_sample_classes(sample: pd.DataFrame, sample_path: Path, train: pd.DataFrame, classes: list[str],
                          source: Path, *, separator: str | None = None) -> None:
    """A probability-format sample (one column per class) must name exactly the training classes; a one-column
    sample of probabilities needs two classes; a label-format sample's placeholder labels are no vocabulary, so
    it is not checked. A multi-label contest's sample is one column of label texts or one column per label."""
    kind = sample_format(sample, classes, multilabel=separator is not None)
    columns = value_columns(sample)
    if kind == "binary":
        positive_class(columns[0], classes, sample_path)  # refuses unless two classes
        return
    if kind == "labels":
        return
    unknown = [c for c in classes if c not in columns]
    if unknown:
        count = int(label_counts(train["label"], classes, separator)[classes.index(unknown[0])])
        hint = _near_miss(unknown[0], columns, "a column")
        raise CompetitionError(f"{source}: label {unknown[0]!r} ({_count(count, 'image')}) is not a column of "
                               f"{sample_path} ({_count(len(unknown), 'such label')}; sample columns: "
                               f"{', '.join(map(repr, columns))}){hint}")
    absent = [c for c in columns if c not in classes]
    if absent:
        raise CompetitionError(f"{sample_path}: column {absent[0]!r} has no training images in {source} "
                               f"({_count(len(absent), 'such column')}; training classes: {', '.join(classes)})")


def _refuse_train_ids_in_sample(train: pd.DataFrame, sample: pd.DataFrame, sample_path: Path, source: Path) -> None:
    """With train and test images in one folder, an id both labelled and asked for would be its own answer."""
    both = train["id"].astype(str).isin(set(sample[sample.columns[0]].astype(str))).to_numpy()
    if both.any():
        raise CompetitionError(f"{sample_path}: {_count(int(both.sum()), 'id')} also labelled in {source}, e.g. "
                               f"{str(train['id'].iloc[int(np.flatnonzero(both)[0])])!r}; train and test images share "
                               "one folder, so the sample's ids must be the unlabelled ones")


def _test_images(test_dir: Path, sample: pd.DataFrame, sample_path: Path, shared: bool = False) -> pd.DataFrame:
    """The test rows (id, path): the images of test_dir, which must be the sample's ids exactly; with `shared`
    (train and test images in one folder) the images the sample lists, the others being the training images."""
    entries = _visible(test_dir)
    nested = [p for p in entries if p.is_dir()]
    if nested:
        raise CompetitionError(f"{nested[0]}: folder inside test/ ({len(nested)} such); test images must sit "
                               "directly in test/ (images in subfolders would be ignored)")
    images = [p for p in entries if _is_image(p)]
    if not images:
        raise CompetitionError(f"{test_dir}: test folder holds no images")
    for path in images:
        _check_name(path)
    sample_ids = sample[sample.columns[0]].tolist()
    wanted = set(sample_ids)
    if shared:
        images = [p for p in images if p.name in wanted or image_id(p) in wanted]
    # Ids are file names without extension, or whole file names when the sample lists them that way.
    ids = [p.name if p.name in wanted else image_id(p) for p in images]
    _duplicate_ids(images, ids, test_dir)
    repeated = pd.Series(sample_ids)[pd.Series(sample_ids).duplicated()]
    if len(repeated):
        raise CompetitionError(f"{sample_path}: id {repeated.iloc[0]!r} appears more than once")
    present = set(ids)
    absent = [i for i in sample_ids if i not in present]
    extra = [p.name for p, i in zip(images, ids) if i not in wanted]
    if absent or extra:
        parts = []
        if absent:
            others = sorted(p.name for p in entries if p.stem == absent[0] and not _is_image(p) and p.is_file())
            hint = (f" (found {others[0]}, not a supported image type)" if others
                    else _near_miss(absent[0], sorted(present), "a test image with id"))
            have = "has" if len(absent) == 1 else "have"
            parts.append(f"{_count(len(absent), 'sample id')} {have} no image in {test_dir}, e.g. {absent[0]!r}{hint}")
        if extra:
            are = "is" if len(extra) == 1 else "are"
            parts.append(f"{_count(len(extra), 'image')} in {test_dir} {are} not in the sample, e.g. {extra[0]!r}")
        raise CompetitionError(f"{sample_path}: test images do not match the sample: " + "; ".join(parts))
    return pd.DataFrame({"id": ids, "path": [str(p) for p in images]})


def class_counts(contest: Contest) -> pd.DataFrame:
    """Training images per class (class, images, share); multi-label: images carrying each label, the share of
    all images (shares then sum to more than 1)."""
    counts = label_counts(contest.train["label"], contest.classes, contest.separator)
    return pd.DataFrame({"class": contest.classes, "images": counts, "share": counts / max(len(contest.train), 1)})


def print_class_counts(contest: Contest, console: Any) -> None:
    """The training images per class as a rich table (imbalance is the first thing to look at)."""
    from rich.table import Table

    table = Table(title="training images per class")
    for column in ("class", "images", "share"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for row in class_counts(contest).itertuples(index=False):
        table.add_row(str(row[0]), str(row[1]), f"{row[2]:.1%}")
    if contest.multilabel:  # label columns: images with none of the labels are a share to know too
        none = int((contest.y().sum(axis=1) == 0).sum())
        if none:
            table.add_row("(no label)", str(none), f"{none / len(contest.train):.1%}")
    console.print(table)



# ---------------------------------------------------------------- loading


OnBad = Literal["error", "skip"]


def load_contest(root: str | Path, size: tuple[int, int], channels: int, *, on_bad: OnBad = "error",
                 cache: bool = True, options: DecodeOptions | None = None, layout: Layout | None = None,
                 ) -> tuple[Contest, np.ndarray, np.ndarray, list[tuple[str, str]]]:
    """Index and check the contest, then decode every train and test image once (the preflight), train and
    test alike with `options` (the recipe's decode options, ``recipe.data.decode_options()``; None: the
    defaults).

    Returns (contest, train images, test images, skipped). With on_bad="error" any unreadable image raises
    one CompetitionError listing them all. With on_bad="skip" unreadable training images are dropped from
    the returned contest and listed in `skipped` as (path, reason); an unreadable test image is still an
    error, since the submission needs a prediction for every test id."""
    if on_bad not in ("error", "skip"):
        raise CompetitionError(f"recipe.data.on_bad_image: expected 'error' or 'skip', got {on_bad!r}")
    contest = index_contest(root, layout)
    # one intensity mapping, crop and standardisation for train and test
    x, bad_rows = decode_images_at(contest.train["path"].tolist(), size, channels, cache=cache, options=options)
    x_test, bad_test_rows = decode_images_at(contest.test["path"].tolist(), size, channels, cache=cache,
                                             options=options)
    bad_train = [(path, reason) for _, path, reason in bad_rows]
    bad_test = [(path, reason) for _, path, reason in bad_test_rows]
    if bad_test:
        also = (f" (and {len(bad_train)} unreadable training images)" if bad_train and on_bad == "error" else "")
        raise CompetitionError(f"{unreadable_message(bad_test, 'test')}{also}; test images cannot be skipped, the "
                               "submission needs a prediction for each: fix or replace them")
    if not bad_train:
        return contest, x, x_test, []
    if on_bad == "error":
        raise CompetitionError(f"{unreadable_message(bad_train, 'training')}; fix or remove them, or set "
                               "data.on_bad_image: skip to train without them")
    keep = np.ones(len(contest.train), dtype=bool)
    keep[[row for row, _, _ in bad_rows]] = False  # by position: row k of x is the k-th readable image
    train = contest.train[keep].reset_index(drop=True)
    counts = label_counts(train["label"], contest.classes, contest.separator)
    emptied = [c for c, n in zip(contest.classes, counts) if n == 0]
    if emptied:
        raise CompetitionError(f"{unreadable_message(bad_train, 'training')}; skipping them leaves class "
                               f"{emptied[0]!r} without images")
    return replace(contest, train=train), x, x_test, bad_train


def write_skipped(path: str | Path, skipped: Sequence[tuple[str, str]]) -> None:
    """skipped_images.csv: one row per skipped image, columns path and reason."""
    write_text(path, pd.DataFrame(list(skipped), columns=["path", "reason"]).to_csv(index=False))


def is_image(path: Path) -> bool:
    """True for an image file the tool reads: by extension, or a DICOM file by its preamble."""
    return _is_image(Path(path))
