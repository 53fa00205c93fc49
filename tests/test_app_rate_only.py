"""`python app.py --rate-only`: the page a rater gets names no method anywhere, not even in its config."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

import app
from tests.test_rate_app import METHOD_NAME


def test_rate_only_page_and_config_name_no_method(tmp_path: Path) -> None:
    blocks = app.create_app(None, tmp_path / "study.sqlite", None, tmp_path / "results", rate_only=True)
    blocks.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, run_history=False)
    try:
        base = blocks.local_url
        page, config = httpx.get(base, timeout=30).text, httpx.get(base + "config", timeout=30).text
        assert "Rate" in config or "rate" in config  # it is the rating app
        assert not METHOD_NAME.search(page), METHOD_NAME.search(page)
        assert not METHOD_NAME.search(config), METHOD_NAME.search(config)
        full = app.create_app(None, tmp_path / "study.sqlite", None, tmp_path / "results")
        assert METHOD_NAME.search(str(full.get_config_file()))  # the check can fail: the full app does name them
    finally:
        blocks.close()


def test_start_without_a_study_is_one_clear_message_and_no_traceback(tmp_path: Path, capfd, caplog) -> None:
    from tests.test_rate_app import Api, Refused

    blocks = app.create_app(None, tmp_path / "study.sqlite", None, tmp_path / "results", rate_only=True)
    blocks.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, run_history=False)
    try:
        with Api(blocks.local_url) as api, pytest.raises(Refused, match="no study has been prepared yet.*study.prepare"):
            api.raw("rate_start", None)
    finally:
        blocks.close()
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err
    assert [r.getMessage().count("\n") for r in caplog.records if "has no study" in r.getMessage()] == [0]  # one line for the server
