"""Lines that break test_source_rules.py's rules, and lines that must pass them: that test reads this file
(its source, never running it) to check that each rule finds exactly the lines it is for."""
# ruff: noqa

from slimyolo_ros.data.synth import _Scene, generate  # a private name from another module
from slimyolo_ros.data import __name__ as data_name  # dunder names are not private
from os import _exit  # not this project's

import pytest

cupy = pytest.importorskip("cupy")  # skips in CI too


def breaks_the_rules(track_color, r, x):
    assert track_color("7") == track_color("7")  # cannot fail
    assert x.a == x.a and r  # cannot fail, inside a longer assertion
    assert 0.0 <= r["map50"] <= 1.0  # holds for any score
    assert r and 0 <= r["f1"] <= 1  # the same, inside a longer assertion


def keeps_the_rules(track_color, r, x):
    assert track_color("7") != track_color("8")
    assert x.a == x.b
    assert 0 < r["speed"] < 2  # a band that says something
    assert 0 <= r["count"]
    assert r["map50"] <= 1.0
    assert 0.0 < r["score"] <= 1.0  # at least not zero
    assert repr(x if not 0 <= x <= 1 else r) in r["message"]  # a condition, not the claim
    assert all(a == a for a in r)  # not what the assert states (NaN checks look like this)


@pytest.mark.skip
def skipped_by_marker():
    pass


@pytest.mark.skipif(True, reason="never")
def skipped_by_condition():
    pass


def skips_always(tool):
    if tool is None:
        pytest.skip("no tool")


def skips_outside_ci(tool, in_ci):
    if tool is None:
        if in_ci():
            pytest.fail("no tool; CI=true requires it")
        pytest.skip("no tool")
