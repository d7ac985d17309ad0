"""Metrics on hand-made predictions whose WAR / UAR / per-class recall are worked out by hand, and
the paper-layout tables (Table 1: DFEW folds, Table 2: single split) with their markdown and CSV."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from tgdfer.labels import CLASSES
from tgdfer.metrics import (
    REFERENCE_PROTOCOL, Scores, class_recall, confusion, fold_table, save_table, score, split_table,
    to_markdown, uar, war,
)

# 8 clips. Class 4 (Surprise) is predicted once but has no true sample; Neutral (2) has a true
# sample but is never predicted; Disgust (5) and Fear (6) appear nowhere.
Y_TRUE = [0, 0, 1, 1, 2, 3, 3, 3]
Y_PRED = [0, 1, 1, 1, 0, 3, 3, 4]
# By hand: recall H 1/2, S 2/2, N 0/1, A 2/3; Surprise, Disgust, Fear have no sample (NaN).
RECALL = [0.5, 1.0, 0.0, 2 / 3, math.nan, math.nan, math.nan]
WAR = 5 / 8  # 1 + 2 + 0 + 2 correct out of 8
UAR = (0.5 + 1.0 + 0.0 + 2 / 3) / 4  # mean over the 4 classes present in y_true = 0.541666...


def expected_confusion() -> np.ndarray:
    conf = np.zeros((7, 7), dtype=np.int64)
    for t, p in zip(Y_TRUE, Y_PRED):
        conf[t, p] += 1
    return conf


def test_confusion_rows_are_true_classes():
    conf = confusion(Y_TRUE, Y_PRED)
    assert conf.shape == (7, 7) and conf.dtype == np.int64
    assert conf[0].tolist() == [1, 1, 0, 0, 0, 0, 0]  # Happiness: once right, once called Sadness
    assert conf[2].tolist() == [1, 0, 0, 0, 0, 0, 0]  # Neutral called Happiness
    assert conf[3].tolist() == [0, 0, 0, 2, 1, 0, 0]
    assert conf[4].sum() == 0 and conf[:, 4].sum() == 1  # Surprise: predicted, never true
    np.testing.assert_array_equal(conf, expected_confusion())


def test_hand_computed_recall_war_uar():
    conf = confusion(Y_TRUE, Y_PRED)
    np.testing.assert_allclose(class_recall(conf), RECALL, equal_nan=True)
    assert war(conf) == pytest.approx(WAR)
    # Mean over present classes only; the absent ones are neither 0 (would give 2.1667/7) nor NaN.
    assert uar(conf) == pytest.approx(UAR)
    assert uar(conf) == pytest.approx(0.5416666666666666)


def test_score_fills_every_field():
    s = score(Y_TRUE, Y_PRED)
    assert s.n == 8 and s.war == pytest.approx(WAR) and s.uar == pytest.approx(UAR)
    assert list(s.per_class) == list(CLASSES)
    np.testing.assert_allclose(list(s.per_class.values()), RECALL, equal_nan=True)
    assert s.confusion == expected_confusion().tolist()


def test_perfect_and_all_wrong():
    y = np.arange(14) % 7  # every class twice
    perfect = score(y, y)
    assert perfect.war == 1.0 and perfect.uar == 1.0 and set(perfect.per_class.values()) == {1.0}
    wrong = score(y, (y + 1) % 7)
    assert wrong.war == 0.0 and wrong.uar == 0.0 and set(wrong.per_class.values()) == {0.0}
    assert np.trace(np.array(wrong.confusion)) == 0 and np.array(wrong.confusion).sum() == 14


def test_imbalanced_uar_differs_from_war():
    # 9 Happiness all right, 1 Fear wrong: WAR 0.9, UAR (1 + 0) / 2 = 0.5.
    s = score([0] * 9 + [6], [0] * 10)
    assert s.war == pytest.approx(0.9) and s.uar == pytest.approx(0.5)


@pytest.mark.parametrize("convert", [
    lambda a: torch.tensor(a),
    lambda a: torch.tensor(a, dtype=torch.int32),
    lambda a: np.array(a, dtype=np.uint8),
    lambda a: np.array(a, dtype=np.int64),
])
def test_numpy_and_torch_inputs_agree(convert):
    np.testing.assert_array_equal(confusion(convert(Y_TRUE), convert(Y_PRED)), expected_confusion())


def test_mixed_inputs_and_logits():
    logits = torch.full((8, 7), -1.0)
    logits[torch.arange(8), torch.tensor(Y_PRED)] = 3.0  # [N, C]: argmax is Y_PRED
    np.testing.assert_array_equal(confusion(np.array(Y_TRUE), logits), expected_confusion())
    np.testing.assert_array_equal(confusion(torch.tensor(Y_TRUE), Y_PRED), expected_confusion())
    np.testing.assert_array_equal(confusion(Y_TRUE, logits.numpy()), expected_confusion())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tensors():
    t, p = torch.tensor(Y_TRUE, device="cuda"), torch.tensor(Y_PRED, device="cuda")
    np.testing.assert_array_equal(confusion(t, p), expected_confusion())
    np.testing.assert_array_equal(confusion(np.array(Y_TRUE), p), expected_confusion())


def test_custom_class_list():
    s = score([0, 1, 1], [0, 1, 0], classes=("pos", "neg"))
    assert s.per_class == {"pos": 1.0, "neg": 0.5} and s.uar == pytest.approx(0.75)
    assert s.war == pytest.approx(2 / 3)


@pytest.mark.parametrize("y_true, y_pred, match", [
    ([0, 7], [0, 1], r"0\.\.6 .*found 0\.\.7"),
    ([0, 1], [-1, 1], r"0\.\.6 .*found -1\.\.1"),
    ([0, 1, 2], [0, 1], "differ in length: 3 vs 2"),
    ([0.0, 1.0], [0, 1], "y_true must hold integer class labels, got dtype float64"),
    ([0, 1], torch.tensor([0.0, 1.0]), "y_pred must hold integer class labels"),
    ([True, False], [0, 1], "y_true must hold integer class labels, got dtype bool"),
    (np.zeros((2, 2, 2), dtype=int), [0, 1], r"y_true must be labels \[N\] or scores \[N, C\]"),
])
def test_bad_labels_raise_clear_errors(y_true, y_pred, match):
    with pytest.raises(ValueError, match=match):
        confusion(y_true, y_pred)


def test_torch_out_of_range_is_caught():
    with pytest.raises(ValueError, match=r"found 0\.\.9"):
        confusion(torch.tensor([0, 1]), torch.tensor([9, 1]))


def test_empty_predictions():
    assert confusion([], []).sum() == 0
    assert math.isnan(war(np.zeros((7, 7)))) and math.isnan(uar(np.zeros((7, 7))))
    with pytest.raises(ValueError, match="empty"):
        score([], [])


def test_scores_dict_is_json_safe_and_round_trips():
    s = score(Y_TRUE, Y_PRED)
    d = s.to_dict()
    assert d["per_class"]["Surprise"] is None and d["per_class"]["Anger"] == pytest.approx(2 / 3)
    back = Scores.from_dict(json.loads(json.dumps(d, allow_nan=False)))
    assert back.to_dict() == d and math.isnan(back.per_class["Fear"])
    with pytest.raises(ValueError, match=r"must be \[7, 7\]"):
        Scores.from_confusion(np.zeros((3, 3)))


# ---------------------------------------------------------------------------------------------
# Tables

# Three folds with hand-known scores.
FOLD1 = (Y_TRUE, Y_PRED)  # WAR 62.50, UAR 54.17; H 50, S 100, N 0, A 66.67
FOLD2 = ([0, 0, 0, 0, 4, 4], [0, 0, 0, 1, 4, 0])  # WAR 4/6 = 66.67; H 75, Su 50; UAR 62.50
FOLD3 = (list(range(7)), list(range(7)))  # perfect: all 100


def three_folds() -> dict:
    # Keys in mixed styles and out of order: the table sorts by fold number.
    return {"fold 3": score(*FOLD3), 2: score(*FOLD2), "set_1": score(*FOLD1)}


def test_fold_table_layout_and_hand_computed_mean():
    t = fold_table(three_folds())
    assert list(t.index) == ["fold 1", "fold 2", "fold 3", "mean"] and t.index.name == "fold"
    assert list(t.columns) == [*CLASSES, "UAR", "WAR"]
    assert t.loc["fold 1"].tolist()[:4] == [50.0, 100.0, 0.0, 66.67]
    assert t.loc["fold 2", "UAR"] == 62.5 and t.loc["fold 2", "WAR"] == 66.67
    # Means of the unrounded per-fold values, by hand:
    assert t.loc["mean", "WAR"] == round((5 / 8 + 4 / 6 + 1) / 3 * 100, 2) == 76.39
    assert t.loc["mean", "UAR"] == round((UAR + 0.625 + 1) / 3 * 100, 2) == 72.22
    assert t.loc["mean", "Happiness"] == 75.0  # (50 + 75 + 100) / 3
    assert t.loc["mean", "Anger"] == 83.33  # present in folds 1 and 3 only: (66.67 + 100) / 2
    assert t.loc["mean", "Disgust"] == 100.0  # only fold 3 has Disgust
    assert math.isnan(t.loc["fold 1", "Surprise"])


def test_fold_table_mean_and_std_match_numpy_on_five_folds():
    rng = np.random.default_rng(0)
    folds = {}
    for k in range(1, 6):
        y = rng.integers(0, 7, 200)
        folds[k] = score(y, np.where(rng.random(200) < 0.6, y, rng.integers(0, 7, 200)))
    t = fold_table(folds, std=True)
    assert list(t.index) == ["fold 1", "fold 2", "fold 3", "fold 4", "fold 5", "mean", "std"]
    wars = np.array([s.war for s in folds.values()]) * 100
    fear = np.array([s.per_class["Fear"] for s in folds.values()]) * 100
    assert t.loc["mean", "WAR"] == round(wars.mean(), 2)
    assert t.loc["std", "WAR"] == round(wars.std(ddof=1), 2)
    assert t.loc["mean", "Fear"] == round(fear.mean(), 2)
    assert t.loc["fold 4", "UAR"] == round(folds[4].uar * 100, 2)


def test_fold_table_from_tidy_frames_matches_mapping():
    folds = three_folds()
    expected = fold_table(folds)
    # Wide: lower-case metric names and an extra column (ignored); long: fold, metric, value.
    wide = pd.DataFrame([{"fold": k, "epoch": 50, "uar": s.uar, "war": s.war,
                          **{c.lower(): v for c, v in s.per_class.items()}} for k, s in folds.items()])
    pd.testing.assert_frame_equal(fold_table(wide), expected)
    long = wide.drop(columns="epoch").melt(id_vars="fold", var_name="metric", value_name="value")
    pd.testing.assert_frame_equal(fold_table(long), expected)


@pytest.mark.parametrize("results, match", [
    ({1: score(*FOLD1), "fold 1": score(*FOLD2)}, "fold numbers repeat"),
    ({"best": score(*FOLD1)}, "'best' holds no fold number"),
    ({}, "at least one fold"),
    ({1: score(*FOLD1), 2: score([0], [0], classes=("a", "b"))}, "one class list"),
    (pd.DataFrame({"fold": [1], "war": [0.5]}), "no UAR values"),
    (pd.DataFrame({"split": [1], "war": [0.5]}), "needs a 'fold' column"),
    (pd.DataFrame({"fold": [1, 1], "metric": ["war", "WAR"], "value": [0.5, 0.6]}), "more than one value for fold 1"),
])
def test_fold_table_bad_input(results, match):
    with pytest.raises(ValueError, match=match):
        fold_table(results)


def test_protocol_column_marks_every_row():
    t = fold_table(three_folds(), protocol=REFERENCE_PROTOCOL)
    assert list(t.columns)[-1] == "protocol"
    assert (t["protocol"] == REFERENCE_PROTOCOL).all()
    assert "best epoch chosen on the test fold" in to_markdown(t)
    assert "protocol" not in fold_table(three_folds()).columns


def test_split_table_layout():
    s = score(*FOLD1)
    t = split_table(s)
    assert list(t.index) == ["test"] and t.index.name == "split"
    assert list(t.columns) == ["UAR", "WAR", *CLASSES]
    assert t.loc["test", "UAR"] == 54.17 and t.loc["test", "WAR"] == 62.5 and t.loc["test", "Anger"] == 66.67
    assert list(split_table(s, per_class=False).columns) == ["UAR", "WAR"]  # exactly Table 2
    both = split_table({"val": s, "test": score(*FOLD3)}, protocol="final epoch")
    assert list(both.index) == ["val", "test"] and both.loc["test", "WAR"] == 100.0
    assert both["protocol"].tolist() == ["final epoch", "final epoch"]


def test_markdown_exact():
    df = pd.DataFrame({"UAR": [54.17, math.nan], "WAR": [62.5, 100.0], "protocol": ["a|b", "final"]},
                      index=pd.Index(["fold 1", "mean"], name="fold"))
    expected = (
        "**DFEW**\n"
        "\n"
        "| fold   |   UAR |    WAR | protocol |\n"
        "|--------|------:|-------:|----------|\n"
        "| fold 1 | 54.17 |  62.50 | a\\|b     |\n"
        "| mean   |     - | 100.00 | final    |\n"
        "\n"
        "5-fold mean\n"
    )
    assert to_markdown(df, title="DFEW", note="5-fold mean") == expected
    assert to_markdown(df.iloc[:, :2]).splitlines()[0] == "| fold   |   UAR |    WAR |"


def test_save_table_csv_round_trip(tmp_path):
    t = fold_table(three_folds(), std=True, protocol=REFERENCE_PROTOCOL)
    csv, md = save_table(t, tmp_path / "results" / "dfew", title="DFEW 3 folds")
    assert csv == tmp_path / "results" / "dfew.csv" and md == tmp_path / "results" / "dfew.md"
    pd.testing.assert_frame_equal(pd.read_csv(csv, index_col=0), t)
    assert md.read_text() == to_markdown(t, title="DFEW 3 folds")
    assert [line.split("|")[1].strip() for line in md.read_text().splitlines()[4:]] == [
        "fold 1", "fold 2", "fold 3", "mean", "std"]
