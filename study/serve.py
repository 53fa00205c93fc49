"""`python -m study.serve [--workers 3] [--admin-token T]`: serve the latest prepared study to raters.

The rate server (`study.server`) runs as `--workers` processes sharing the study database; raters
open http://HOST:PORT/ (with `?rater=ID`, or the `PROLIFIC_PID`, `STUDY_ID` and `SESSION_ID` a
crowdsourcing platform appends); the admin view is http://HOST:PORT/admin when an admin token
(at least 16 characters) is given, and does not exist otherwise.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from pathlib import Path

import uvicorn

from study import store
from study.server import ADMIN_TOKEN_ENV, MIN_ADMIN_TOKEN, AdminTokenError, check_admin_token, default_admin_token


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m study.serve", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: localhost only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1; about one per CPU core)")
    parser.add_argument(
        "--db",
        type=Path,
        default=store.default_db(),
        help=f"the study database (env {store.DB_ENV}; default {store.DEFAULT_DB})",
    )
    parser.add_argument(
        "--admin-token",
        default=default_admin_token(),
        help=f"secret of the admin view, at least {MIN_ADMIN_TOKEN} characters (env {ADMIN_TOKEN_ENV}; none: no admin view)",
    )
    parser.add_argument(
        "--consent-file", type=Path,
        help="text file with the consent text raters agree to before starting; kept for the study until another is "
        "given (an empty file: back to the default text)",
    )
    parser.add_argument(
        "--completion-code",
        help="the code finished raters are given; kept for the study until another is given ('': back to one per rater, "
        "the default)",
    )
    parser.add_argument(
        "--completion-url",
        help="where finished raters are sent back to, e.g. the platform's URL; '{code}' is replaced by the code; kept for "
        "the study until another is given ('': none)",
    )
    return parser.parse_args(argv)


def configure(db: Path, consent_file: Path | None, completion_code: str | None, completion_url: str | None) -> str:
    """Check the database holds a study and store the given settings on the latest one (an empty value clears
    one); its name. Settings not given stay as an earlier `serve` of the study set them."""
    if not db.is_file():
        raise FileNotFoundError(f"{db}: no study database; prepare a study first: python -m study.prepare --name NAME ...")
    with store.connect(db, create=False) as con, store.transaction(con):
        study = store.latest_study(con)
        if study is None:
            raise LookupError(f"{db}: no study has been prepared yet: run `python -m study.prepare --name NAME ...`")
        if not store.stimuli_dir(db, study).is_dir():
            raise FileNotFoundError(f"the photos of study {study!r} are missing: no folder {store.stimuli_dir(db, study)}")
        if consent_file is not None:
            try:
                consent = consent_file.read_text(encoding="utf-8").strip()
            except UnicodeDecodeError:
                raise ValueError(f"--consent-file {consent_file}: not UTF-8 text; save it as UTF-8") from None
            except OSError as err:
                raise OSError(f"--consent-file {consent_file}: {err.strerror or err}") from None
            store.set_setting(con, study, "consent", consent or None)
        if completion_code is not None:
            store.set_setting(con, study, "completion_code", completion_code.strip() or None)
        if completion_url is not None:
            store.set_setting(con, study, "completion_url", completion_url.strip() or None)
    return study


def settings_line(db: Path, study: str) -> str:
    """What raters of `study` get, as the banner says it: the consent text, the completion code and URL in force."""
    with store.connect(db, create=False) as con:
        settings = store.study_settings(con, study)
    consent = "the study's own consent text" if settings.get("consent") else "the default consent text"
    code = f"completion code {settings['completion_code']!r}" if settings.get("completion_code") else "a completion code per rater"
    url = f"sent back to {settings['completion_url']}" if settings.get("completion_url") else "no completion URL"
    return f"raters get {consent}, {code}, {url} (change with --consent-file / --completion-code / --completion-url)"


def check_port(host: str, port: int) -> None:
    """OSError unless `host:port` can be listened on now (so the banner is not followed by uvicorn's bind error)."""
    if not 1 <= port <= 65535:
        raise ValueError(f"--port {port}: a port is 1-65535")
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as err:
            raise OSError(f"cannot listen on {host}:{port} ({err.strerror}): choose another --port, or --host") from None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.workers < 1:
            raise ValueError("--workers must be at least 1")
        check_admin_token(args.admin_token)
        check_port(args.host, args.port)
        study = configure(args.db, args.consent_file, args.completion_code, args.completion_url)
    except (AdminTokenError, ValueError, LookupError, OSError, store.StoreError) as err:
        print(f"study.serve: {err}", file=sys.stderr)
        return 1
    os.environ[store.DB_ENV] = str(args.db.resolve())
    os.environ.pop(ADMIN_TOKEN_ENV, None)
    if args.admin_token:
        os.environ[ADMIN_TOKEN_ENV] = args.admin_token
    base = f"http://{args.host}:{args.port}/"
    admin = f"admin view: {base}admin" if args.admin_token else "no admin view (no --admin-token)"
    print(f"Serving study {study!r} to raters at {base} with {args.workers} worker(s); {admin}", flush=True)
    print(settings_line(args.db, study), flush=True)
    uvicorn.run(
        "study.server:app_from_environment",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level="warning",
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=5,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
