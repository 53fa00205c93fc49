"""`python app.py` as a user starts it: one line saying where it runs, and no hint to make a public share link."""

from __future__ import annotations

import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import httpx
import pytest

from srgan_core.paths import REPO_ROOT
from tests.test_app_compare import free_port


def read_lines(stream: IO[str], output: queue.Queue) -> None:
    """Every line of `stream` into `output`, then None at its end."""
    for line in stream:
        output.put(line)
    output.put(None)


def read_until(output: queue.Queue, lines: list[str], until: str | None, seconds: float) -> None:
    """Append the lines from `output` to `lines` until one contains `until` or the output ends (`until` None:
    until it ends); fails with the lines so far when that takes more than `seconds`."""
    deadline = time.monotonic() + seconds
    while not (until and lines and until in lines[-1]):
        try:
            line = output.get(timeout=max(deadline - time.monotonic(), 0))
        except queue.Empty:
            pytest.fail(f"no {until or 'end'!r} from app.py within {seconds} s; its console:\n" + "".join(lines))
        if line is None:
            return
        lines.append(line)


def test_the_console_names_the_local_url_and_never_suggests_a_share_link(tmp_path: Path) -> None:
    command = [sys.executable, "app.py", "--port", str(free_port()), "--study-db", str(tmp_path / "study.sqlite")]
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output: queue.Queue = queue.Queue()
    threading.Thread(target=read_lines, args=(process.stdout, output), daemon=True).start()
    lines: list[str] = []
    try:
        read_until(output, lines, "running at", 120)
        url = re.search(r"running at (http://127\.0\.0\.1:\d+/?)", "".join(lines))
        assert url, "".join(lines)
        assert httpx.get(url.group(1), timeout=60).status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=60)
    read_until(output, lines, None, 60)
    console = "".join(lines)
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
