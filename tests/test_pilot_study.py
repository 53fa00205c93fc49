"""`python -m tools.pilot_study` end to end at a test's size: every method on Set5 (the whole dataset, so
each of the 3 simulated raters sees all 8 methods of all 5 photos), through the rate server's page in
headless Chromium, then `study.analyze`. Every pair of methods and the Friedman test must have every rater's
(rater, image) blocks; with 3 raters the tests, which take the rater as the unit, must say they need 10.
The scores are simulated: nothing here is a MOS result."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from srgan_core.method_specs import METHODS
from study import serve
from study.schema import ORIGINAL
from tools import pilot_study

METHODS_AND_HR = [*METHODS, ORIGINAL]

ARGS = ["--datasets", "Set5", "--calibration", "1", "--gold", "2", "--repeats", "2", "--pause-every", "20", "--timeout", "300"]
PLAN = 2 + 40 + 2 + 2  # calibration pair, Set5 x 8 methods, repeats, gold items


def test_pilot_every_method_three_raters_through_the_page_gives_every_test_every_rater(
    data_root: Path, tmp_path: Path
) -> None:
    if not pilot_study.CHROMIUM.exists():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium")
    pytest.importorskip("playwright.sync_api")
    out = tmp_path / "pilot"
    assert pilot_study.main(["--out", str(out), "--data-root", str(data_root), *ARGS]) == 0
    result = json.loads((out / "pilot.json").read_text())
    assert result["answers_given"] == result["answers_stored"] == 3 * PLAN
    assert result["completion_codes"] == 3 and result["admin_view"]["finished"] == 3
    assert result["photos_not_whole"] == result["photos_not_1_to_1"] == 0
    assert result["refusals"] == [] and result["keys_pressed_again"] == 0
    assert result["analysis"]["raters_excluded"] == 0
    set5 = result["analysis"]["datasets"]["Set5"]
    assert set5["methods"] == 8 and set5["pairs_of_methods"] == 28 and set5["pairs_tested"] == 0
    assert set5["raters_per_pair_min"] == set5["raters_per_pair_max"] == 3
    assert set5["blocks_per_pair_min"] == set5["blocks_per_pair_max"] == 15  # 3 raters x 5 photos, all real blocks
    assert set5["untested"] == {"not computable: 3 raters; need >= 10": [f"{a} vs {b}" for a, b in itertools.combinations(METHODS_AND_HR, 2)]}
    assert not set5["friedman_computed"] and set5["friedman_raters"] == 3
    report = (out / "analysis" / "report.md").read_text()
    assert "Friedman test of 8 methods: not computable: 3 raters who rated every method of an image; need >= 10." in report
    assert "- Set5, 28 of 28 pairs not tested (all): not computable: 3 raters; need >= 10" in (out / "pilot.md").read_text()
    summary = (out / "pilot.md").read_text()
    assert "simulated raters: nothing here is a MOS result" in summary and summary.count("MOS") == 1


def test_the_serve_command_keeps_a_token_that_begins_with_a_dash(tmp_path: Path) -> None:
    """secrets.token_urlsafe begins with '-' once in 64 draws; argparse must still read it as the token."""
    token = "-" + "x" * 31
    cmd = pilot_study.serve_command(tmp_path / "study.sqlite", 8123, token)
    assert cmd[1:3] == ["-m", "study.serve"]
    args = serve.parse_args(cmd[3:])
    assert args.admin_token == token and args.port == 8123 and args.db == tmp_path / "study.sqlite"
