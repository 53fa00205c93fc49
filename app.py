"""`python app.py`: the srgan-lab Gradio app (Compare, Rate and Results tabs) on localhost; never a share link."""

from __future__ import annotations

import argparse
import sqlite3
import threading
from pathlib import Path

import gradio as gr

from demo import compare, rate, results
from srgan_core.paths import REPO_ROOT, default_data_root
from study import store
from study.server import (
    ADMIN_TOKEN_ENV,
    MIN_ADMIN_TOKEN,
    AdminTokenError,
    check_admin_token,
    default_admin_token,
)

DEFAULT_RESULTS_DIR = REPO_ROOT / "results"
# Light events (rating clicks, tables) run four at a time; the compute-heavy upscaling events
# share one worker through their own concurrency group (see demo.compare.UPSCALE_QUEUE).
DEFAULT_CONCURRENCY = 4
QUEUE_MAX_SIZE = 64
MAX_UPLOAD = "50mb"
CACHE_CLEANUP = (3600, 3600)  # every hour, delete generated files older than an hour
FOOTER_LINKS = ["gradio", "settings"]  # not "api": a rater's page offers no "Use via API" link


def create_app(
    data_root: Path | None, study_db: Path, admin_token: str | None, results_dir: Path, rate_only: bool = False
) -> gr.Blocks:
    """The whole app as one queued `gr.Blocks`; each tab is built by its own module.

    `rate_only` serves just the Rate tab, for real rating sessions: then nothing on the page (not even
    the Compare tab's configuration) names a method, and there is no admin view (a real study's is the
    rate server's, `python -m study.serve --admin-token`). Otherwise the study admin view is a tab of its
    own, there only when `admin_token` is given."""
    title = "Image quality study" if rate_only else "srgan-lab: SRGAN 4x super-resolution"
    with gr.Blocks(title=title, delete_cache=CACHE_CLEANUP, analytics_enabled=False) as app:
        if rate_only:
            rate.build_tab(study_db)
        else:
            gr.Markdown(
                "# srgan-lab\nA reproduction of SRGAN (Ledig et al., CVPR 2017): 4x photo-realistic super-resolution."
            )
            with gr.Tab("Compare"):
                compare.build_tab(data_root)
            with gr.Tab("Rate"):
                rate.build_tab(study_db)
            with gr.Tab("Results"):
                results.build_tab(results_dir, study_db)
            if admin_token:
                with gr.Tab("Study admin"):
                    rate.build_admin(study_db, admin_token)
            gr.Markdown(footer(data_root), elem_id="app-footer")
    return app.queue(max_size=QUEUE_MAX_SIZE, default_concurrency_limit=DEFAULT_CONCURRENCY)


def footer(data_root: Path | None) -> str:
    """Where the app's weights and example data come from."""
    benchmarks = data_root / "benchmarks" if data_root else None
    if benchmarks and benchmarks.is_dir():
        data = f"the Set5/Set14/BSD100 examples are read from `{benchmarks}`"
    else:
        data = "the Set5/Set14/BSD100 examples need the data folder: `python -m srgan_core.data download` fetches it into `data/`"
    return (
        "---\nWeights: `results/models/*.safetensors` in this repository, each with a model card (`.json`) saying how "
        "it was trained (a damaged one is restored with `git checkout -- results/models/NAME.safetensors`). Examples: "
        f"scikit-image's bundled sample photos; {data}."
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python app.py", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: localhost only)")
    parser.add_argument("--port", type=port_number, default=7860, help="port to listen on (default 7860)")
    parser.add_argument(
        "--data-root",
        type=Path,
        default=default_data_root(),
        help="folder holding benchmarks/{Set5,Set14,BSD100} for the examples (env SRGAN_DATA)",
    )
    parser.add_argument(
        "--study-db",
        type=Path,
        default=store.default_db(),
        help=f"SQLite file of the MOS study (env {store.DB_ENV}; default {store.DEFAULT_DB})",
    )
    parser.add_argument(
        "--admin-token",
        default=default_admin_token(),
        help=f"token of the study admin tab, at least {MIN_ADMIN_TOKEN} characters (env {ADMIN_TOKEN_ENV}; none: no admin "
        "tab; never with --rate-only)",
    )
    parser.add_argument(
        "--results-dir", type=Path, default=DEFAULT_RESULTS_DIR, help="folder of the reports the Results tab shows"
    )
    parser.add_argument(
        "--rate-only", action="store_true", help="serve only the Rate tab (for real rating sessions use `python -m study.serve`)"
    )
    return parser.parse_args(argv)


def port_number(text: str) -> int:
    """An argparse type: a TCP port, 1-65535."""
    port = int(text)
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text}: a port is 1-65535")
    return port


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        check_admin_token(args.admin_token)
    except AdminTokenError as err:
        raise SystemExit(f"app.py: {err}") from None
    if args.data_root is not None and not args.data_root.is_dir():
        raise SystemExit(f"app.py: --data-root {args.data_root} is not a folder")
    try:
        app = create_app(args.data_root, args.study_db, args.admin_token, args.results_dir, args.rate_only)
    except (OSError, sqlite3.Error, store.StoreError) as err:  # the study database: its folder missing or not writable
        raise SystemExit(f"app.py: --study-db {args.study_db}: {err}") from None
    # run_history off: Gradio would otherwise keep every event's inputs (the admin token too) in localStorage.
    # quiet: Gradio's banner suggests share=True, and this app never makes a share link; it says where it runs itself.
    try:
        app.launch(
            server_name=args.host, server_port=args.port, share=False, max_file_size=MAX_UPLOAD, run_history=False,
            quiet=True, prevent_thread_lock=True, footer_links=FOOTER_LINKS,
        )
    except OSError as err:  # Gradio's message names its environment variable, not this command's flags
        raise SystemExit(f"app.py: cannot listen on {args.host}:{args.port} ({str(err).split('. ')[0]}): choose "
                         "another --port, or --host") from None
    if not args.rate_only:
        threading.Thread(target=compare.warm_up, name="warm-up", daemon=True).start()
    if args.rate_only and args.admin_token:
        print("No admin view with --rate-only: a real study's is `python -m study.serve --admin-token ...`", flush=True)
    print(f"srgan-lab is running at {app.local_url} (press Ctrl+C to stop)", flush=True)
    app.block_thread()


if __name__ == "__main__":
    main()
