"""Snapshot of every dashboard screen at 100x30 on the fixed fixture report (tests/fixtures/tui_report).

After an intended visual change: `pytest tests/test_tui_snapshots.py --snapshot-update`, then look at the SVGs in
tests/__snapshots__/test_tui_snapshots/ before committing them.
"""

from pathlib import Path

import pytest

from dpo_doctor.views.tui.app import DoctorApp
from dpo_doctor.views.tui.data import open_report

FIXTURE = Path(__file__).parent / "fixtures" / "tui_report"
SIZE = (100, 30)

SCREENS = {
    "overview": [],
    "diagnosis": ["enter"],
    "checkpoints": ["c", "down"],
    "pairs_sorted_by_length": ["p", "l", "l"],
    "pairs_search": ["p", "slash", *"bold", "enter"],
    "pair": ["p", "slash", *"sky", "enter", "enter"],
    "samples": ["s", "down", "right_square_bracket"],
}


@pytest.mark.parametrize("name", list(SCREENS))
def test_screen_snapshot(name, snap_compare):
    assert snap_compare(DoctorApp(open_report(FIXTURE)), press=SCREENS[name], terminal_size=SIZE)


def test_picker_snapshot(snap_compare, monkeypatch):
    monkeypatch.chdir(FIXTURE.parent)  # relative folder names, so the snapshot does not depend on the checkout path
    assert snap_compare(DoctorApp(choices=[Path("tui_report"), Path("tui_report")]), terminal_size=SIZE)
