"""Issue 25. Kind 1: an output never lands on or inside what the user gave (the contest folder, a run, the
inputs, a folder of theirs): one guard, competition.files.check_output, refuses it in one line, and folders
get the user's umask. Kind 2: a shared file that is read, changed and written back (the submission log, a
run's decisions, an ensemble folder, a decode-cache entry) is changed by one process or thread at a time
(competition.files.locked)."""

from __future__ import annotations

import shutil
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from faultkit import cli_in_process, tiny_recipe

from competition.errors import OptionError

CLASSES = ["cat", "dog", "fox"]


def _cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, list[str]]:
    return cli_in_process(capsys, *args)


def _refused(capsys: pytest.CaptureFixture[str], *args: object, says: tuple[str, ...]) -> str:
    code, lines = _cli(capsys, *args)
    assert code == 2 and len(lines) == 1, (code, lines)
    for part in says:
        assert part in lines[0], lines[0]
    return lines[0]


def folder_fingerprint(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every entry under `root`: its mode and, for a file, its bytes."""
    return {str(p.relative_to(root)): (p.lstat().st_mode, p.read_bytes() if p.is_file() else b"")
            for p in sorted(root.rglob("*"))} | {".": (root.lstat().st_mode, b"")}


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def trained(tiny_contest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny finished network run, `tiny`, on its own copy of the tiny contest (base/contest)."""
    from competition.recipe import load_recipe
    from competition.training import train_run

    base = tmp_path_factory.mktemp("round5")
    shutil.copytree(tiny_contest, base / "contest")
    (base / "tiny.yaml").write_text(tiny_recipe("tiny"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COMPETITION_CACHE_DIR", str(base / "cache"))
        patch.setenv("KERAS_HOME", str(base / "keras-home"))
        return train_run(load_recipe(base / "tiny.yaml"), base / "runs", data_root=base / "contest")


@pytest.fixture
def contest(tiny_contest: Path, tmp_path: Path) -> Path:
    """A contest of this test's own, which it may find changed."""
    return Path(shutil.copytree(tiny_contest, tmp_path / "contest"))


def _synthetic_run(path: Path, name: str, seed: int = 0) -> Path:
    """A finished run without models (three classes, 30 training rows in 5 folds, 4 test ids w..z)."""
    from competition.runs import save_run

    rng = np.random.default_rng(seed)
    return save_run(path, name=name, kind="model", classes=CLASSES, ids=np.array([f"t{i}" for i in range(30)]),
                    y=np.arange(30) % 3, folds=np.arange(30) % 5, oof=rng.dirichlet(np.ones(3), 30),
                    test=rng.dirichlet(np.ones(3), 4), test_ids=np.array(list("wxyz")), recipe_hash=f"h{seed}")


def _sample(path: Path) -> Path:
    path.write_text("id,label\nw,cat\nx,cat\ny,cat\nz,cat\n")
    return path


# ---------------------------------------------------------------- kind 1: outputs over what the user gave


@pytest.mark.slow
def test_export_into_a_users_folder_is_refused_and_folders_get_the_umask(
        trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue example: `export tiny --out mydocs` deleted mydocs/notes.txt, replaced README.md and set the
    folder's mode to 700 (mkdtemp's). Now refused in one line; an export folder gets the user's umask, and
    exporting again into the tool's own export folder replaces it."""
    from competition.export import export_run
    from competition.files import USER_UMASK

    mydocs = tmp_path / "mydocs"
    mydocs.mkdir()
    (mydocs / "notes.txt").write_text("my notes\n")
    (mydocs / "README.md").write_text("# mine\n")
    mode = stat.S_IMODE(mydocs.stat().st_mode)
    _refused(capsys, "export", "tiny", "--runs", trained.parent, "--out", mydocs,
             says=("--out", str(mydocs), "did not write", "notes.txt"))
    assert _files(mydocs) == {"README.md": b"# mine\n", "notes.txt": b"my notes\n"}
    assert stat.S_IMODE(mydocs.stat().st_mode) == mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mydocs"]  # no staging folder left beside it

    fresh, _ = export_run("tiny", trained.parent, out=tmp_path / "fresh")
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o777 & ~USER_UMASK
    export_run("tiny", trained.parent, out=fresh)  # its own folder: replaced
    assert (fresh / "model.json").is_file()
    with pytest.raises(OptionError, match="contest folder"):
        export_run("tiny", trained.parent, out=trained.parent.parent / "contest" / "export")


@pytest.mark.slow
def test_submit_over_the_contests_sample_is_refused(trained: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Issue example: `submit tiny --out data/sample_submission.csv` overwrote the contest's sample (and put
    log.csv into the contest folder), exit 0."""
    root = trained.parent.parent / "contest"
    before = folder_fingerprint(root)
    _refused(capsys, "submit", "tiny", "--runs", trained.parent, "--out", root / "sample_submission.csv",
             says=("--out", "sample_submission.csv", "contest folder"))
    assert folder_fingerprint(root) == before
    code, _ = _cli(capsys, "submit", "tiny", "--runs", trained.parent, "--out", tmp_path / "subs" / "tiny.csv")
    assert code == 0 and (tmp_path / "subs" / "log.csv").is_file()


@pytest.mark.slow
def test_report_and_augment_preview_never_write_into_the_contest_or_a_users_folder(
        trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Further members: `report --out` into the contest folder or a folder of the user's files, and
    `augment-preview --out` over a contest image or a user's PNG, are refused in one line; nothing changes. A
    report folder of the tool's own is replaced."""
    root = trained.parent.parent / "contest"
    before = folder_fingerprint(root)
    _refused(capsys, "report", "tiny", "--runs", trained.parent, "--out", root / "report",
             says=("--out", "contest folder"))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my notes\n")
    _refused(capsys, "report", "tiny", "--runs", trained.parent, "--out", mine, says=("--out", "notes.txt"))
    assert _files(mine) == {"notes.txt": b"my notes\n"}
    code, _ = _cli(capsys, "report", "tiny", "--runs", trained.parent, "--out", tmp_path / "rep")
    assert code == 0 and (tmp_path / "rep" / "index.html").is_file()
    code, _ = _cli(capsys, "report", "tiny", "--runs", trained.parent, "--out", tmp_path / "rep")  # its own: again
    assert code == 0
    recipe = tmp_path / "aug.yaml"
    recipe.write_text(tiny_recipe("aug") + "augment:\n  - HorizontalFlip: {p: 0.5}\n")
    image = next(p for p in sorted((root / "train").rglob("*")) if p.is_file())
    _refused(capsys, "augment-preview", recipe, "--data", root, "--out", image, says=("--out", "contest folder"))
    theirs = tmp_path / "photo.png"
    theirs.write_bytes(image.read_bytes())  # a PNG of the user's, not a plot this tool drew
    _refused(capsys, "augment-preview", recipe, "--data", root, "--out", theirs, says=("--out", str(theirs)))
    assert theirs.read_bytes() == image.read_bytes()
    assert folder_fingerprint(root) == before


def test_audit_into_the_contests_test_folder_is_refused(contest: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Further member: `audit DATA --out DATA/test` wrote audit.json, relation.png and closest_pairs.png among
    the test images (read as test images by every later command)."""
    before = folder_fingerprint(contest)
    _refused(capsys, "audit", contest, "--out", contest / "test", says=("--out", "inside the contest folder"))
    assert folder_fingerprint(contest) == before


def test_train_never_replaces_a_users_folder_nor_writes_into_the_contest(contest: Path, tmp_path: Path) -> None:
    """Further member: `train --runs DIR --name mydocs --overwrite` removed every file of the user's DIR/mydocs
    (--overwrite replaces a run of another recipe, not anything), and `train --runs DATA` wrote its run among
    the contest's files."""
    from competition.recipe import load_recipe
    from competition.training import train_run

    (tmp_path / "tiny.yaml").write_text(tiny_recipe("tiny"))
    recipe = load_recipe(tmp_path / "tiny.yaml")
    mine = tmp_path / "mydocs"
    mine.mkdir()
    (mine / "thesis.tex").write_text("chapter 1\n")
    with pytest.raises(OptionError, match=r"mydocs: a folder holding files competition did not write \(thesis"):
        train_run(recipe, tmp_path, name="mydocs", overwrite=True, data_root=contest)
    assert _files(mine) == {"thesis.tex": b"chapter 1\n"}
    before = folder_fingerprint(contest)
    with pytest.raises(OptionError, match="lies inside the contest folder"):
        train_run(recipe, contest, name="run", data_root=contest)
    assert folder_fingerprint(contest) == before


def test_submission_log_of_the_users_is_not_rewritten(tmp_path: Path) -> None:
    """Further member: a log.csv of the user's beside --out was read as the submission log and rewritten with a
    row (and eight columns) added; `--out subs/log.csv` wrote the submission over the log."""
    from competition.submission import submit

    runs = tmp_path / "runs"
    _synthetic_run(runs / "r1", "r1")
    sample = _sample(tmp_path / "sample.csv")
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "log.csv").write_text("date,weight\n2024-01-01,71\n")
    with pytest.raises(OptionError, match=r"log\.csv: exists and is not a submission log"):
        submit(["r1"], runs, out=subs / "s.csv", sample=sample)
    assert _files(subs) == {"log.csv": b"date,weight\n2024-01-01,71\n"}
    (subs / "log.csv").unlink()
    with pytest.raises(OptionError, match="is the submission log"):
        submit(["r1"], runs, out=subs / "log.csv", sample=sample)
    with pytest.raises(OptionError, match="is the sample submission"):
        submit(["r1"], runs, out=sample, sample=sample)
    assert sample.read_text().startswith("id,label\nw,cat\n") and not any(subs.iterdir())


def test_predict_and_explain_never_write_over_an_input_or_a_users_file(
        trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Further member: `predict tiny scan.png --out scan.png` replaced the input image by the CSV; `predict
    --out notes.txt` and `explain --out notes.txt` replaced a file of the user's."""
    image = tmp_path / "scan.png"
    shutil.copy(next((trained.parent.parent / "contest" / "test").iterdir()), image)
    pixels = image.read_bytes()
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me\n")
    _refused(capsys, "predict", "tiny", image, "--runs", trained.parent, "--out", image,
             says=("--out", "scan.png", "is an input"))
    _refused(capsys, "predict", "tiny", image, "--runs", trained.parent, "--out", notes,
             says=("notes.txt: exists and is not a predictions CSV",))
    _refused(capsys, "explain", "tiny", image, "--runs", trained.parent, "--out", notes,
             says=("notes.txt: exists and is not a PNG written by competition",))
    assert image.read_bytes() == pixels and notes.read_text() == "keep me\n"


def test_subject_average_and_ensemble_never_land_in_the_contest_or_a_run(trained: Path) -> None:
    """Further member: `aggregate runs/tiny --runs DATA/train --name Extra` wrote the averaged run as a class
    folder of the contest's training images; `ensemble ... --runs runs/tiny` wrote into a member's folder."""
    from competition.ensemble import build_ensemble
    from competition.runs import Run
    from competition.subjects import aggregate

    root = trained.parent.parent / "contest"
    before = folder_fingerprint(root)
    with pytest.raises(OptionError, match="lies inside the contest folder of run tiny"):
        aggregate(str(trained), name="Extra", runs_dir=root / "train")
    assert folder_fingerprint(root) == before
    run = Run.load(trained)
    twin = Run.load(trained)
    twin.name = "twin"
    with pytest.raises(OptionError, match="lies inside the folder of run tiny"):
        build_ensemble([run, twin], "mean", "blend", trained)
    assert not (trained / "blend").exists()


def test_demo_overwrite_replaces_only_a_demo_and_keeps_the_umask(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Further member: `demo DIR --overwrite` replaced any folder, the user's files and all (it is for an earlier
    demo); and the contest folder was always 755, whatever the user's umask (here 002)."""
    import competition.files
    from competition.demo import make_demo

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "photo.txt").write_text("holiday\n")
    with pytest.raises(OptionError, match="did not write"):
        make_demo(mine, scale=0.05, overwrite=True)
    assert _files(mine) == {"photo.txt": b"holiday\n"}
    monkeypatch.setattr(competition.files, "USER_UMASK", 0o002)
    made = make_demo(tmp_path / "demo", scale=0.05)
    assert stat.S_IMODE(made.stat().st_mode) == 0o775
    make_demo(made, scale=0.05, seed=1, overwrite=True)  # an earlier demo: replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo", "mine"]


# ---------------------------------------------------------------- kind 2: read-modify-write without a lock

_WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path

    import competition.submission as submission
    from competition.runs import Run

    run_dir, sample, out, flags, k = sys.argv[1:]
    real = submission.read_string_csv

    def slow(path):  # widens the window between reading the log and writing it back
        frame = real(path)
        time.sleep(0.3)
        return frame

    submission.read_string_csv = slow
    run = Run.load(run_dir)
    (Path(flags) / f"ready-{k}").touch()
    while not (Path(flags) / "go").exists():
        time.sleep(0.01)
    submission.make_submission(run, sample, out, log_path=Path(out).parent / "log.csv", message=f"try {k}")
""")


@pytest.mark.slow
def test_six_parallel_submissions_log_six_rows(tmp_path: Path) -> None:
    """Issue example: six `submit --out subs/same.csv -m "try $i"` at once all said "logged", and log.csv kept
    five rows. Six processes write the same submission and log through the library at the same moment."""
    run_dir = _synthetic_run(tmp_path / "runs" / "r1", "r1")
    sample = _sample(tmp_path / "sample.csv")
    out, flags = tmp_path / "subs" / "same.csv", tmp_path / "flags"
    flags.mkdir()
    writers = [subprocess.Popen([sys.executable, "-c", _WRITER, str(run_dir), str(sample), str(out), str(flags), str(k)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for k in range(6)]
    try:
        deadline = time.monotonic() + 120
        while len(list(flags.glob("ready-*"))) < 6 and time.monotonic() < deadline:
            assert all(w.poll() is None for w in writers), [w.communicate()[0] for w in writers if w.poll()]
            time.sleep(0.05)
        (flags / "go").touch()
        outputs = [w.communicate(timeout=120)[0] for w in writers]
    finally:
        for w in writers:
            if w.poll() is None:
                w.kill()
    assert all(w.returncode == 0 for w in writers), outputs
    log = pd.read_csv(out.parent / "log.csv", dtype=str)
    assert sorted(log["message"]) == [f"try {k}" for k in range(6)]
    assert sorted(p.name for p in out.parent.iterdir()) == ["log.csv", "same.csv"]  # no lock file left


class _Overlap:
    """Wraps a function: how many calls ran at once, at most (each call held `hold` seconds)."""

    def __init__(self, real, hold: float = 0.3) -> None:
        self.real, self.hold, self.now, self.most, self.guard = real, hold, 0, 0, threading.Lock()

    def __call__(self, *args, **kwargs):
        with self.guard:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            time.sleep(self.hold)
            return self.real(*args, **kwargs)
        finally:
            with self.guard:
                self.now -= 1


def _together(target, n: int = 3) -> list[BaseException]:
    """Call target() in n threads at once; the errors they raised."""
    errors: list[BaseException] = []

    def one() -> None:
        try:
            target()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return errors


def test_ensembles_of_one_name_are_built_one_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Further member: an ensemble folder is checked (what it holds), built aside and swapped in; three builds of
    `blend` at once did that all together (a check of one, a swap of another; the last rename failed with
    'Directory not empty')."""
    import competition.ensemble as ensemble
    from competition.runs import Run
    from competition.runs.folder import holds

    runs_dir = tmp_path / "runs"
    members = [Run.load(_synthetic_run(runs_dir / name, name, seed)) for seed, name in enumerate(("a", "b"))]
    overlap = _Overlap(ensemble.write_ensemble_folder)
    monkeypatch.setattr(ensemble, "write_ensemble_folder", overlap)
    errors = _together(lambda: ensemble.build_ensemble(members, "mean", "blend", runs_dir))
    assert not errors, errors
    assert overlap.most == 1
    assert holds(runs_dir / "blend") == "an ensemble"
    assert sorted(p.name for p in runs_dir.iterdir()) == ["a", "b", "blend"]  # no build or lock left


def test_submit_tune_of_one_run_reads_and_writes_its_decisions_one_at_a_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Further member: `submit --tune` reads the run's decisions.json, fits and writes it back (or removes
    it) and logs what it applied; three at once interleaved, so a log row could say 'tuned' of offsets
    another process had just removed."""
    import competition.tuning
    from competition.submission import submit

    runs = tmp_path / "runs"
    _synthetic_run(runs / "r1", "r1")
    sample = _sample(tmp_path / "sample.csv")
    overlap = _Overlap(competition.tuning.nested_cv_gain)
    monkeypatch.setattr(competition.tuning, "nested_cv_gain", overlap)
    errors = _together(lambda: submit(["r1"], runs, out=tmp_path / "subs" / "r1.csv", sample=sample, tune=True))
    assert not errors, errors
    assert overlap.most == 1
    assert len(pd.read_csv(tmp_path / "subs" / "log.csv")) == 3
    assert not list((runs / "r1").glob(".*"))  # no lock file left


def test_a_decode_cache_entry_is_written_by_one_writer_at_a_time(contest: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Further member: a cache entry is three files (unreadable list, mappings, pixels, the last marking it
    complete); three decodes of the same images at once rewrote them interleaved."""
    import competition.data.cache as cache

    paths = sorted((contest / "test").iterdir())[:6]
    overlap = _Overlap(cache.write_text, hold=0.2)
    monkeypatch.setattr(cache, "write_text", overlap)
    errors = _together(lambda: cache.decode_images(paths, (16, 16), 1))
    assert not errors, errors
    assert overlap.most == 1
    images, bad = cache.decode_images(paths, (16, 16), 1)  # read back whole
    assert images.shape == (6, 16, 16, 1) and bad == []
    assert not list((cache.cache_dir() / "decoded").glob(".*"))  # no lock file left
