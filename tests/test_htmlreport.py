"""`tgdfer report --html`: one self-contained page for a run, an evaluation or a sweep.

The pieces are tested as functions (escaping, sort keys, intervals, face boxes); the pages in a real
headless browser (Debian's chromium, driven by Playwright): no console error, no request beyond
the file itself, tables that sort numerically, a screenshot. Without chromium (or Playwright) on
the machine the browser tests skip, saying so; `apt-get install -y chromium` and
`pip install playwright` bring them in (docs/testing.md).
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from facevideos import FixedBox
from tgdfer.augment import AugmentConfig
from tgdfer.cli import app
from tgdfer.evaluation import Strip, evaluate
from tgdfer.extraction import extract
from tgdfer.detectors import register_detector
from tgdfer.facetrack import FacesConfig
from tgdfer.htmlreport import confusion, details, page, sort_key, strip, table, with_interval, write_report
from tgdfer.stats import t975
from tgdfer.sweep import run_sweep
from tgdfer.training import TrainConfig, train

from smallhead import SMALL_HEAD_TOML, small_head

runner = CliRunner()
EVIL = "<script>window.evil = 1</script>"
EPOCHS = 11  # two-digit epochs: a text sort would put 10 and 11 before 2


# -- the pieces --------------------------------------------------------------------------------------


def test_cells_sort_by_their_first_number():
    assert sort_key(3) == 3.0 and sort_key(np.float32(2.5)) == 2.5 and sort_key("+1.20 [-0.40, 2.80]") == 1.2
    assert sort_key("-0.5 *") == -0.5 and sort_key("2/2 done") == 2.0
    for text in ("best", "", float("nan"), None, True, "fold 1"):
        assert sort_key(text) is None


def test_every_value_from_a_file_is_escaped():
    df = pd.DataFrame({EVIL: [1.5, EVIL]}, index=pd.Index([EVIL, "b"], name=EVIL))
    classes = [EVIL, "x"]
    html = page(EVIL, [table(df, EVIL, EVIL), confusion(np.eye(2), classes, EVIL), details(EVIL, {EVIL: EVIL}),
                       details("config", "</pre>" + EVIL)])
    assert html.count("<script>") == 1  # the page's own sorting script, nothing else
    assert "&lt;script&gt;window.evil = 1&lt;/script&gt;" in html and "</pre><script" not in html
    frames = np.zeros((2, 8, 8, 3), np.uint8)
    st = Strip("s", frames, np.array([0.1, 0.9]), np.array([0, 5]), f"clip {EVIL}", None, {})
    assert "<script>" not in strip(st) and "clip &lt;script&gt;" in strip(st)


def test_numeric_cells_carry_their_sort_key_and_missing_values_show_as_dash():
    df = pd.DataFrame({"WAR": [10.5, 9.25, float("nan")], "vs best": ["best", "+1.20 [-0.40, 2.80]", ""]},
                      index=pd.Index(["a", "b", "mean"], name="point"))
    html = table(df, footer=("mean",))
    assert "<tfoot>" not in table(df)  # a sweep point may be called "mean": only the caller names summary rows
    assert '<td data-v="10.5">10.50</td>' in html and '<td data-v="9.25">9.25</td>' in html
    assert '<td data-v="1.2">+1.20 [-0.40, 2.80]</td>' in html and '<td class="text">best</td>' in html
    assert "<tfoot><tr><th class=\"text\">mean</th><td class=\"text\">-</td>" in html  # below the sorted rows


def test_interval_row_is_the_t_interval_of_the_mean_over_folds():
    results = pd.DataFrame({"UAR": [40.0, 50.0, 45.0], "WAR": [60.0, 62.0, 64.0]},
                           index=pd.Index(["fold 1", "fold 2", "fold 3"], name="fold"))
    results = pd.concat([results, results.mean().to_frame("mean").T, results.std().to_frame("std").T])
    got = with_interval(results).loc["95% interval"]
    half = 2.0 * t975(2) / np.sqrt(3)  # WAR: std 2 over 3 folds
    assert got["WAR"] == f"[{62 - half:.2f}, {62 + half:.2f}]"
    assert "95% interval" not in with_interval(results.loc[["fold 1", "mean"]]).index  # one fold: no interval


def _decode(uri: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB"))


def test_strip_draws_the_face_box_on_the_source_frame():
    source = np.zeros((3, 48, 64, 3), np.uint8)  # black frames 64 x 48
    boxes = np.tile(np.array([[16.0, 8.0, 40.0, 32.0]]), (3, 1))
    st = Strip("s", np.zeros((3, 16, 16, 3), np.uint8), np.array([0.0, 0.5, 1.0]), np.array([2, 7, 11]), "t", None,
               {}, source, boxes)
    html = strip(st)
    uris = [part.split('"', 1)[0] for part in html.split('src="')[1:]]
    img = _decode(uris[0])  # shown 96 px high: scale 2
    assert img.shape == (96, 128, 3)
    assert (img[16, 40:72] == [255, 0, 0]).all(axis=-1).mean() > 0.9  # the box's top edge, red
    assert img[40, 56].max() == 0 and img[5, 5].max() == 0  # inside and outside the box: the frame
    assert [">2<", ">7<", ">11<"] == [f">{i}<" for i in (2, 7, 11) if f">{i}<" in html]
    assert "0.50" in html and "face box" in html


def test_strips_keep_small_source_frames_with_their_boxes_scaled():
    from tgdfer.evaluation import STRIP_SOURCE_HEIGHT, _shrink

    frames = np.zeros((2, 2 * STRIP_SOURCE_HEIGHT, 640, 3), np.uint8)
    boxes = np.array([[100.0, 50.0, 300.0, 250.0]] * 2)
    small, scaled = _shrink(frames, boxes)
    assert small.shape == (2, STRIP_SOURCE_HEIGHT, 320, 3) and scaled.tolist() == [[50.0, 25.0, 150.0, 125.0]] * 2
    same, kept = _shrink(frames[:, :100], boxes)  # already small: as they are
    assert same.shape == (2, 100, 640, 3) and kept is boxes


# -- a run, an evaluation and a sweep on the tiny store ----------------------------------------------


@pytest.fixture(scope="module")
def face_store(tmp_path_factory, clip_table, encoder_cfg, extract_config):
    """The session's tiny SynthDFER through a face stage whose detector finds the same box in every frame."""
    register_detector("test-html-fixed", lambda box: FixedBox(box))
    faces = FacesConfig(detector="test-html-fixed", args={"box": [6.0, 4.0, 22.0, 20.0]}, size=32)
    clips = clip_table.copy()
    clips.loc[0, "clip_id"] = f"clip{EVIL}"  # a hostile clip id: shown as text in the page
    path = tmp_path_factory.mktemp("htmlstore") / "faces.zarr"
    result = extract(extract_config(path), AugmentConfig(), encoder_cfg, clips, data_kind="dfew", faces=faces)
    assert result.ok
    return path


@pytest.fixture(scope="module")
def run(face_store, encoder_cfg, tmp_path_factory):
    out = tmp_path_factory.mktemp("htmlrun") / "fold1"
    train(small_head(learnable=False), TrainConfig(store=str(face_store), fold=1, out=str(out), epochs=EPOCHS,
                                                   batch_size=8, device="cpu"), encoder=encoder_cfg)
    return out


def test_run_page_holds_results_epochs_confusion_strips_with_boxes_config_and_fingerprint(run, face_store, tmp_path):
    result = runner.invoke(app, ["report", str(run), "--html", "--out", str(tmp_path / "r.html"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    html = (tmp_path / "r.html").read_text()
    final = json.loads((run / "final.json").read_text())
    assert f"{100 * final['test']['war']:.2f}" in html  # the run's test WAR, re-scored from its checkpoint
    assert html.count("<h3>fold 1 (n = ") == 1 and "Epochs" in html
    assert html.count('class="strip"') == 2 and "face box" in html and "store fingerprint" in html
    assert str(face_store) in html and "test-html-fixed" in html  # the face stage, in the fingerprint
    assert "http://" not in html and "https://" not in html and "<link" not in html
    assert html.count("<script>") == 1


@pytest.mark.parametrize("text, words", [('epoch,loss\n1,"x\n', "metrics.csv:notareadabletable"),
                                         ("a,b\n1,2,3,4\n", "metrics.csv:noepochcolumn")])
def test_a_damaged_epoch_table_fails_in_one_line(run, tmp_path, text, words):
    copy = tmp_path / "fold1"
    shutil.copytree(run, copy)
    (copy / "metrics.csv").write_text(text)
    result = runner.invoke(app, ["report", str(copy), "--html", "--device", "cpu"])
    assert result.exit_code == 2 and words in "".join(result.output.split())
    assert "Traceback" not in result.output and not (copy / "report.html").exists()


def test_html_report_of_a_folder_that_is_none_of_the_three_fails_in_one_line(tmp_path):
    result = runner.invoke(app, ["report", str(tmp_path), "--html"])
    assert result.exit_code == 2 and "not a sweep, evaluation or run folder" in " ".join(result.output.split())
    assert "Traceback" not in result.output
    result = runner.invoke(app, ["report", str(tmp_path), "--out", str(tmp_path / "r.html")])
    assert result.exit_code == 2 and "--out" in result.output and "--html" in result.output


@pytest.fixture(scope="module")
def evaluation(run, face_store, encoder_cfg, tmp_path_factory):
    """Both folds: `run` and fold 2 trained alike (evaluate refuses a table of runs trained otherwise)."""
    root = tmp_path_factory.mktemp("htmleval")
    fold2 = root / "fold2"
    train(small_head(learnable=False), TrainConfig(store=str(face_store), fold=2, out=str(fold2), epochs=EPOCHS,
                                                   batch_size=8, device="cpu"), encoder=encoder_cfg)
    evaluate([run, fold2], out=root / "eval", device="cpu", frames=("highest",), ks=(1,), figures=False)
    return root / "eval"


def test_evaluation_folder_records_its_runs_and_its_page_adds_intervals_and_table6(evaluation, run):
    record = json.loads((evaluation / "evaluation.json").read_text())
    assert record["runs"] == [str(run.resolve()), str((evaluation.parent / "fold2").resolve())]
    assert record["influence"] == "relative"
    html = (write_report(evaluation, device="cpu")).read_text()
    assert (evaluation / "report.html").is_file() and "Table 6" in html and "table6.csv" in html
    results = pd.read_csv(evaluation / "results.csv", index_col=0)
    foot = html.split("<tfoot>")[1].split("</tfoot>")[0]  # mean, std and the interval stay under the folds
    assert [row.split("</th>")[0].rsplit(">", 1)[1] for row in foot.split("<tr>")[1:]] == ["mean", "std",
                                                                                            "95% interval"]
    war = results.loc[["fold 1", "fold 2"], "WAR"]  # percent, 2 decimals, as in the page's table
    half = war.std() * t975(1) / np.sqrt(2)
    assert f'<td class="text">[{war.mean() - half:.2f}, {war.mean() + half:.2f}]</td></tr>' in foot  # WAR: last
    assert "<h3>fold 1 (n = " in html and "<h3>fold 2 (n = " in html and "mean of 2 folds" in html and html.count('class="strip"') == 4


@pytest.fixture(scope="module")
def sweep(face_store, tiny_weights, tmp_path_factory):
    root = tmp_path_factory.mktemp("htmlsweep")
    base = root / "base.toml"
    base.write_text(f'[encoder]\nmodel = "tgdfer-tiny-vit"\npretrained = "{tiny_weights}"\n'
                    f'[head]\n{SMALL_HEAD_TOML}learnable = false\n'
                    f'[train]\nstore = "{face_store}"\nepochs = 2\nbatch_size = 4\nmilestones = [1]\n')
    path = root / "sweep.toml"
    path.write_text(f'[sweep]\nbase = "{base}"\nout = "{root / "out"}"\nfolds = "1-2"\n'
                    f'[grid]\n"head.window" = [2, 4]\n')
    run_sweep(path)
    return root / "out"


def test_sweep_page_holds_the_paper_table_every_run_the_plot_and_confusions(sweep):
    result = runner.invoke(app, ["report", str(sweep), "--html"])
    assert result.exit_code == 0, result.output
    assert "mean over runs" in result.output  # the sweep's table is printed as without --html
    html = (sweep / "report.html").read_text()
    assert "vs best (WAR)" in html and "[" in html.split("vs best (WAR)")[1]  # the paired interval
    assert html.count("(mean of 2 runs)") == 2 and "data:image/png;base64," in html
    assert "points.json" in html and "window=2: point.json" in html and "store fingerprint" in html


# -- in a real browser -------------------------------------------------------------------------------


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if path is None:
        pytest.skip("no chromium on this machine (apt-get install -y chromium): the HTML report is not loaded "
                    "in a browser")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    return path


@pytest.fixture(scope="module")
def browser():
    path = _chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=["--no-sandbox"])
        yield b
        b.close()


def _load(browser, html: Path, screenshot: Path):
    """Open the file; return the page, its console errors and every request beyond the file and its data: URIs."""
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors, requests = [], []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(html.resolve().as_uri())
    page.wait_for_load_state("load")
    page.screenshot(path=str(screenshot), full_page=True)
    if os.environ.get("TGDFER_SCREENSHOTS"):  # a folder to keep the screenshots in, to look at them
        shutil.copy(screenshot, Path(os.environ["TGDFER_SCREENSHOTS"]) / screenshot.name)
    return page, errors, [u for u in requests if u != html.resolve().as_uri() and not u.startswith("data:")]


def _column(page, table_index: int, header: str) -> list[str]:
    return page.evaluate("""([t, h]) => {
        const table = document.querySelectorAll('table.sortable')[t];
        const col = [...table.tHead.rows[0].cells].findIndex(c => c.textContent.replace(/[\\u25B2\\u25BC ]+$/, '') === h);
        return [...table.tBodies[0].rows].map(r => r.cells[col].textContent); }""", [table_index, header])


def _click(page, table_index: int, header: str) -> None:
    page.locator("table.sortable").nth(table_index).locator("thead th", has_text=header).first.click()


def test_run_page_in_chromium_sorts_numbers_as_numbers(browser, run, tmp_path):
    html = write_report(run, tmp_path / "run.html", device="cpu")
    page, errors, requests = _load(browser, html, tmp_path / "run.png")
    assert errors == [] and requests == []
    assert (tmp_path / "run.png").stat().st_size > 10_000
    epochs = 1  # table 0: results, table 1: the epochs of metrics.csv
    assert _column(page, epochs, "epoch") == [str(e) for e in range(1, EPOCHS + 1)]
    _click(page, epochs, "epoch")  # ascending: unchanged
    _click(page, epochs, "epoch")  # descending: 11, 10, 9, ..., 1 (as text: 9, 8, ..., 2, 11, 10, 1)
    assert _column(page, epochs, "epoch") == [str(e) for e in range(EPOCHS, 0, -1)]
    _click(page, epochs, "loss")
    losses = [float(x) for x in _column(page, epochs, "loss")]
    assert losses == sorted(losses) and len(set(losses)) > 1


def test_hostile_names_stay_text_in_chromium(browser, tmp_path):
    df = pd.DataFrame({"WAR": [1.0]}, index=pd.Index([EVIL], name="point"))
    path = tmp_path / "evil.html"
    path.write_text(page(EVIL, [table(df), confusion(np.eye(2), [EVIL, "x"], EVIL)]))
    shown, errors, requests = _load(browser, path, tmp_path / "evil.png")
    assert errors == [] and requests == [] and shown.evaluate("window.evil === undefined")
    assert shown.locator("h1").inner_text() == EVIL and shown.locator("tbody th").first.inner_text() == EVIL


def test_evaluation_and_sweep_pages_in_chromium(browser, evaluation, sweep, tmp_path):
    for folder, name in ((evaluation, "evaluation"), (sweep, "sweep")):
        html = write_report(folder, tmp_path / f"{name}.html", device="cpu")
        page, errors, requests = _load(browser, html, tmp_path / f"{name}.png")
        assert errors == [] and requests == [], name
        assert (tmp_path / f"{name}.png").stat().st_size > 10_000
    _click(page, 0, "UAR")  # the sweep's table: one row per point
    uar = [float(x) for x in _column(page, 0, "UAR")]
    _click(page, 0, "UAR")
    assert [float(x) for x in _column(page, 0, "UAR")] == sorted(uar, reverse=True) and uar == sorted(uar)
