"""`python app.py` as a user starts it: one line saying where it runs, and no hint to make a public share link."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from srgan_core.paths import REPO_ROOT
from tests.test_app_compare import free_port


def test_the_console_names_the_local_url_and_never_suggests_a_share_link(tmp_path: Path) -> None:
    command = [sys.executable, "app.py", "--port", str(free_port()), "--study-db", str(tmp_path / "study.sqlite")]
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        for line in process.stdout:
            lines.append(line)
            if "running at" in line or len(lines) > 200:
                break
        url = re.search(r"running at (http://127\.0\.0\.1:\d+/?)", "".join(lines))
        assert url, "".join(lines)
        assert httpx.get(url.group(1), timeout=60).status_code == 200
    finally:
        process.terminate()
        rest, _ = process.communicate(timeout=60)
    console = "".join(lines) + rest
    assert "share=True" not in console and "public link" not in console and "Traceback" not in console, console


def test_bad_start_up_settings_get_one_line_and_no_traceback(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import app

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    cases = {
        ("--port", "99999"): "a port is 1-65535",
        ("--data-root", str(tmp_path / "nowhere")): "is not a folder",
        ("--study-db", str(blocker / "study.sqlite"), "--port", str(free_port())): "--study-db",
    }
    for args, expected in cases.items():
        with pytest.raises(SystemExit) as stopped:
            app.main(list(args))
        said = str(stopped.value.code) if isinstance(stopped.value.code, str) else capsys.readouterr().err
        assert expected in said.strip().splitlines()[-1], said  # after argparse's usage, if any
