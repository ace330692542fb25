"""The significance marks' texts and fields (pure), and when the flag list polls."""

from __future__ import annotations

from dash_app.figures import significance as sigfig
from dash_app.views.behaviour_flags import COMPARISON_TAB, polling
from dash_app.views.comparison import TAB_VALUE

REC = {"delta": -0.09, "lo": -0.1081, "hi": -0.0728, "p": 3e-9, "q": 1e-8, "n": 1000, "significant": True,
       "test": "mcnemar exact"}


def test_texts() -> None:
    assert sigfig.header_delta("correct", REC) == "Δ -9.0 [-10.8, -7.3]% ✱"
    assert sigfig.header_delta("correct", REC, relative=True) == "CI [-10.8, -7.3]% ✱"
    assert sigfig.header_delta("kl", {**REC, "delta": 0.5, "lo": 0.4, "hi": 0.6, "significant": False},
                               True) == "CI [+0.4, +0.6]"
    tip = sigfig.tip("correct", REC, 0.05)
    assert tip == ("Δ vs base -9.00% [-10.81%, -7.28%] (95% bootstrap interval) · p < 0.0001 (McNemar exact), "
                   "BH q < 0.0001 · 1,000 pairs · significant at FDR 5%")
    assert "paired bootstrap" in sigfig.tip("kl", {**REC, "test": "bootstrap", "p": 0.2, "q": 0.3,
                                                   "significant": False}, 0.1)
    assert sigfig.tip("kl", {**REC, "p": float("nan")}, 0.05) == "not tested (no paired instances)"


def test_rows_and_columns_get_their_fields() -> None:
    rows = [{"key": "3"}, {"key": "4"}]
    tests = {"3": {1: REC, 2: {**REC, "significant": False}}}
    sigfig.decorate_rows(rows, tests, "correct", 0.05)
    assert rows[0]["s1"] == 1 and "s2" not in rows[0] and "t2" in rows[0] and rows[1] == {"key": "4"}
    columns = [{"colId": "name"}, {"colId": "v0"}, {"colId": "v1", "cellRendererParams": {"kind": "pct"}}]
    sigfig.decorate_columns(columns, [None, REC], "correct", 0.05, tested=True)
    assert "headerComponentParams" not in columns[1] and "sig" not in columns[1].get("cellRendererParams", {})
    assert columns[2]["headerComponentParams"]["deltaSig"] is True
    assert columns[2]["cellRendererParams"] == {"kind": "pct", "sig": "s1", "tip": "t1"}


def test_flag_list_polls_only_on_the_comparisons_behaviours_tab() -> None:
    assert COMPARISON_TAB == TAB_VALUE
    assert polling(TAB_VALUE, "behaviours") and polling(TAB_VALUE, None)
    assert not polling(TAB_VALUE, "layers")
    assert not polling("dash_app.views.overview", "behaviours") and not polling(None, None)


def test_level_from_the_url() -> None:
    from dash_app.comparison.significance_set import parse_level

    assert parse_level("0.01") == 0.01 and parse_level("0.1") == 0.1
    assert parse_level(None) == 0.05 and parse_level("0.3") == 0.05 and parse_level("<b>") == 0.05


def test_status_notes() -> None:
    from dash_app.views.behaviours_significance import status_notes

    assert status_notes(False, "classes", 0, 0.05) == []
    assert status_notes(True, "classes", 2, 0.05) == []
    assert status_notes(True, "subgroups", 0, 0.01) == ["no subgroup differs significantly from the base at 1%"]
    assert status_notes(True, "instances", 100, 0.05) == ["significant only filters class and subgroup rows"]
