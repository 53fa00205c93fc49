"""The rate server: a small ASGI app (starlette) for real rating sessions.

It serves the blind rating page (``study/web/rate.html``), the JSON calls that page makes, each shown
image under a per-presentation opaque URL, and, only when started with an admin token, the admin view
under ``/admin``. It loads no network and nothing of the Gradio app. Every piece of state is in the
study database (SQLite, WAL), so several worker processes can serve one study and any of them can
take any request; an answer is acknowledged only after its transaction committed.

Nothing a rater's page receives names a method: the JSON calls carry tickets, opaque image URLs,
sizes and the rater's own progress, and every method of one original image arrives as a file of the
same length; the admin view (its own page and endpoints, behind the token) is the only place that
names methods.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import sqlite3
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from study import sessions, store
from study.schema import SCORE_RANGE
from study.sessions import InvalidToken, JoinRefused, NoStudy, RatingRefused
from study.stimulus_png import stimulus_png

WEB = Path(__file__).parent / "web"
# rate.html's layout: the photo at the top left, the controls in a column beside it.
SIDE_PX = 320  # page padding + gap + control column, beside the photo
MARGIN_PX = 16  # page padding above and below the photo
MAX_BODY = 16 * 1024  # bytes of a JSON call's body; the page's largest is well under 1 KB
ADMIN_TOKEN_ENV = "SRGAN_ADMIN_TOKEN"
MIN_ADMIN_TOKEN = 16
FREE_ATTEMPTS = 3  # wrong admin tokens a client may send before being slowed down
BACKOFF_S = 30  # then it must wait 30 s, 60 s, 120 s ... after each wrong token
LOCKOUT_ATTEMPTS = 10  # and after this many it is locked out
LOCKOUT_S = 3600
IDENTITY_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:@")
DEFAULT_CONSENT = (
    "This is a study of how people judge the quality of photos. You will be shown photos one at a "
    f"time and give each a score from {SCORE_RANGE}. It takes about {{minutes}} minutes. We "
    "store your scores, your response times, your browser window's size and the participant id you "
    "give us, and nothing else about you. Taking part is voluntary and you may stop at any time."
)
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; img-src 'self' blob:",
}


class AdminTokenError(ValueError):
    """An admin token the server refuses to start with."""


def default_admin_token() -> str | None:
    """The admin token when none is given: `SRGAN_ADMIN_TOKEN` (None, no admin view, when unset or empty)."""
    return os.environ.get(ADMIN_TOKEN_ENV) or None


def check_admin_token(token: str | None) -> str | None:
    """The admin token if it is long enough to resist guessing (None: no admin view)."""
    if token is not None and len(token) < MIN_ADMIN_TOKEN:
        raise AdminTokenError(
            f"the admin token has {len(token)} characters; use at least {MIN_ADMIN_TOKEN} "
            "(e.g. from `python -c 'import secrets; print(secrets.token_hex(24))'`)"
        )
    return token


class AdminRefused(Exception):
    """A wrong admin token (`status` 401), or a client that must wait `retry_after` seconds first (429)."""

    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status, self.retry_after = status, retry_after


def authorize_admin(con: sqlite3.Connection, client: str, presented: str | None, admin_token: str) -> None:
    """Check an admin token in constant time; after `FREE_ATTEMPTS` wrong ones `client` must wait
    `BACKOFF_S`, doubling, and after `LOCKOUT_ATTEMPTS` it is locked out for `LOCKOUT_S` (the attempts are
    kept in the database, so every worker and restart sees them). AdminRefused when refused."""
    with store.transaction(con):
        failures, last = store.admin_failures(con, client)
        since = (datetime.fromisoformat(store.utc_now()) - datetime.fromisoformat(last)).total_seconds() if last else 0.0
        if failures >= LOCKOUT_ATTEMPTS:
            wait = LOCKOUT_S - since
        elif failures >= FREE_ATTEMPTS:
            wait = BACKOFF_S * 2 ** (failures - FREE_ATTEMPTS) - since
        else:
            wait = 0
        if wait > 0:
            locked = failures >= LOCKOUT_ATTEMPTS
            message = f"{'locked out' if locked else 'too many wrong admin tokens'}: try again in {math.ceil(wait)} s"
            raise AdminRefused(429, message, math.ceil(wait))
        digest = hashlib.sha256((presented or "").encode()).digest()
        ok = presented is not None and hmac.compare_digest(digest, hashlib.sha256(admin_token.encode()).digest())
        store.record_admin_attempt(con, client, ok)
    if not ok:
        raise AdminRefused(401, "wrong admin token")


class Database:
    """One connection per thread (the request threads of this worker process), kept open, and one
    lock for this process's writes: SQLite lets one writer in at a time anyway, and threads queueing
    on a Python lock wait far less than threads polling SQLite's lock with its sleeping busy handler."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.local = threading.local()
        self.write_lock = threading.Lock()

    def con(self):
        con = getattr(self.local, "con", None)
        if con is None:
            con = self.local.con = store.open_connection(self.path, create=False)
        return con


def _image_sig(secret: bytes, rater: str, position: int) -> str:
    return hmac.new(secret, f"image:{rater}:{position}".encode(), hashlib.sha256).hexdigest()[:24]


def _fits(viewing: dict, largest: tuple[int, int]) -> bool:
    dpr = viewing["dpr"]
    return (
        largest[0] / dpr + SIDE_PX <= viewing["viewport_w"] + 0.5
        and largest[1] / dpr + MARGIN_PX <= viewing["viewport_h"] + 0.5
    )


def _viewing(payload: Any) -> dict:
    """The viewing conditions the page reports, validated (HTTP 400 otherwise)."""
    if not isinstance(payload, dict):
        raise HTTPException(400, "viewing conditions missing")
    try:
        viewing = {
            "viewport_w": int(payload["viewport_w"]),
            "viewport_h": int(payload["viewport_h"]),
            "dpr": float(payload["dpr"]),
            "zoom": float(payload["zoom"]) if payload.get("zoom") is not None else None,
            "screen_w": int(payload["screen_w"]) if payload.get("screen_w") is not None else None,
            "screen_h": int(payload["screen_h"]) if payload.get("screen_h") is not None else None,
        }
    except (KeyError, TypeError, ValueError, OverflowError):  # OverflowError: int(Infinity)
        raise HTTPException(400, "viewing conditions malformed") from None
    sizes = [viewing[k] for k in ("viewport_w", "viewport_h", "screen_w", "screen_h") if viewing[k] is not None]
    zoom = viewing["zoom"]
    if not (all(0 < v < 100_000 for v in sizes) and 0 < viewing["dpr"] < 16 and (zoom is None or 0 < zoom < 100)):
        raise HTTPException(400, "viewing conditions out of range")
    return viewing


def _identity(payload: dict) -> tuple[str | None, dict | None]:
    """(identity, platform ids) from the page's intake: Prolific's ids, else `?rater=` or the typed id."""
    platform = payload.get("platform") if isinstance(payload.get("platform"), dict) else None
    platform = {k: str(platform[k]) for k in ("PROLIFIC_PID", "STUDY_ID", "SESSION_ID") if platform.get(k)} if platform else {}
    if any(len(value) > 128 for value in platform.values()):
        raise HTTPException(400, "a platform id is at most 128 characters")
    identity = f"prolific:{platform['PROLIFIC_PID']}" if "PROLIFIC_PID" in platform else payload.get("identity") or None
    if identity is not None:
        identity = str(identity).strip()
        if not 1 <= len(identity) <= 128 or not set(identity) <= IDENTITY_CHARS:
            raise HTTPException(400, "a participant id is 1-128 letters, digits or - _ . : @")
    return identity, platform or None


def consent_text(con: sqlite3.Connection, study: str) -> str:
    """What a new rater of `study` agrees to: `serve --consent-file`'s text, else `prepare`'s, else the default with
    the study's length in minutes (about 6 s a photo, rounded up to 5 minutes)."""
    settings, config = store.study_settings(con, study), store.study_config(con, study)
    counts = dict(con.execute("SELECT kind, count(*) FROM stimuli WHERE study = ? GROUP BY kind", (study,)).fetchall())
    length = counts.get("calibration", 0) + (config.get("per_rater") or counts.get("trial", 0)) + config.get("repeats", 0) + counts.get("gold", 0)
    minutes = max(5, math.ceil(length * 6 / 60 / 5) * 5)
    return settings.get("consent") or config.get("consent") or DEFAULT_CONSENT.format(minutes=minutes)


def completion(con: sqlite3.Connection, token: str) -> dict:
    """A finished rater's completion code, and the URL that takes them back to the study platform (None if not set)."""
    url = store.study_settings(con, store.rater_study(con, sessions.rater_of(con, token))).get("completion_url")
    code = sessions.completion_code(con, token)
    return {"code": code, "url": url.replace("{code}", code) if url else None}


def _needs(con: sqlite3.Connection, study: str) -> dict:
    """What the page needs to show one study's largest photo whole at 1:1: its size and the layout around it."""
    width, height = store.largest_stimulus(con, study)
    return {"width": width, "height": height, "side": SIDE_PX, "margin": MARGIN_PX}


class RateApp:
    """The request handlers, bound to one database (and the admin token, if any)."""

    def __init__(self, db_path: Path, admin_token: str | None) -> None:
        self.db = Database(db_path)
        self.admin_token = check_admin_token(admin_token)
        self.page = (WEB / "rate.html").read_bytes()
        self.admin_page = (WEB / "admin.html").read_bytes()

    # --- the rater's page -------------------------------------------------------------------
    def study_info(self) -> dict:
        con = self.db.con()
        study = store.latest_study(con)
        if study is None:
            return {"open": False, "message": "No study is open yet."}
        settings = store.study_settings(con, study)
        counts = dict(con.execute("SELECT kind, count(*) FROM stimuli WHERE study = ? GROUP BY kind", (study,)).fetchall())
        return {
            "open": settings.get("closed") != "1",
            "message": "This study is closed to new participants." if settings.get("closed") == "1" else "",
            "consent": consent_text(con, study),
            "needs": _needs(con, study),
            "calibration": counts.get("calibration", 0),
            "undo_seconds": sessions.UNDO_SECONDS,
        }

    def start(self, payload: dict) -> dict:
        """Resume the session of a known token (unless another participant id is given) or identity, else join as a
        new rater; record the viewing."""
        con = self.db.con()
        viewing = _viewing(payload.get("viewing"))
        identity, platform = _identity(payload)
        token = payload.get("token")
        try:
            rater = sessions.rater_of(con, token)
        except InvalidToken:
            rater = None
        # a browser's token resumes only its own participant: someone naming another id on it joins as themselves
        resuming = rater is not None and (identity is None or identity == store.identity_of(con, rater))
        study = store.rater_study(con, rater) if resuming else store.latest_study(con)  # a returning rater's own study
        if study is None:
            raise NoStudy("No study is open yet.")
        largest = store.largest_stimulus(con, study)
        viewing |= {"fits": int(_fits(viewing, largest)), "one_to_one": int(float(viewing["dpr"]).is_integer())}
        if not viewing["fits"]:
            need_w, need_h = (math.ceil(largest[0] / viewing["dpr"] + SIDE_PX), math.ceil(largest[1] / viewing["dpr"] + MARGIN_PX))
            raise JoinRefused(
                f"your browser window shows {viewing['viewport_w']} x {viewing['viewport_h']} pixels; this study "
                f"needs at least {need_w} x {need_h} to show each photo whole at its true size. Please maximise "
                "the window, set the zoom to 100 % (Ctrl+0), or use a larger screen, then reload."
            )
        if not resuming:
            token = sessions.join(con, identity, platform, consent=payload.get("consent") is True)
        with store.transaction(con):
            sessions.record_viewing(con, token, viewing)
            return {"token": token} | self._state(con, token, sessions.status(con, token))

    def status(self, payload: dict) -> dict:
        con = self.db.con()
        st = sessions.status(con, payload.get("token"))
        return {"progress": self._progress(st), "needs": _needs(con, st.study)} | self._completion(con, payload["token"], st)

    def next(self, payload: dict) -> dict:
        con = self.db.con()
        with store.transaction(con):
            token = payload.get("token")
            return self._state(con, token, sessions.status(con, token), after_answer=False)

    def answer(self, payload: dict) -> dict:
        con = self.db.con()
        token, ticket = payload.get("token"), payload.get("ticket")
        with store.transaction(con):
            st = sessions.answer(con, token, ticket, payload.get("score"), replay_ok=True)
            state = self._state(con, token, st)
            if sessions.undoable(con, token) == ticket:
                state["undo"] = {"ticket": ticket, "seconds": sessions.UNDO_SECONDS}
            return state

    def undo(self, payload: dict) -> dict:
        con = self.db.con()
        token = payload.get("token")
        with store.transaction(con):
            sessions.undo(con, token, payload.get("ticket"))
            return self._state(con, token, sessions.status(con, token), after_answer=False)

    def _state(self, con, token: str, st: sessions.Status, after_answer: bool = True) -> dict:
        """What the page shows next: an interlude, the end, or the next image (marked shown)."""
        kind = st.interlude() if after_answer else None
        if kind:
            return {"screen": "interlude", "interlude": kind, "progress": self._progress(st)}
        item = sessions.present(con, token)
        if item is None:
            return {"screen": "end", "progress": self._progress(st)} | self._completion(con, token, st)
        position = int(item.ticket.split(":")[0])
        url = f"image/{st.rater}/{position}/{_image_sig(store.token_secret(con), st.rater, position)}"
        return {
            "screen": "trial",
            "item": {
                "ticket": item.ticket,
                "image": url,
                "width": item.width,
                "height": item.height,
                "calibration": item.phase == "calibration",
                "expected": item.expected,
                "step": item.step,
                "steps": item.steps,
            },
            "progress": self._progress(sessions.status(con, token)),
        }

    @staticmethod
    def _progress(st: sessions.Status) -> dict:
        return {"answered": st.answered, "total": st.total, "calibration": st.calibration, "rated": st.rated, "to_rate": st.to_rate}

    @staticmethod
    def _completion(con, token: str, st: sessions.Status) -> dict:
        if not st.finished:
            return {}
        return {"completion": completion(con, token)}

    def image(self, rater: str, position: int, sig: str) -> bytes:
        """The PNG shown at `position` of the rater's plan, uncompressed (`stimulus_png`) so that every method of one
        original image (and its repeats) arrives alike."""
        con = self.db.con()
        if not hmac.compare_digest(sig, _image_sig(store.token_secret(con), rater, position)):
            raise HTTPException(404)
        stimulus = store.planned_stimulus(con, rater, position)
        if stimulus is None:
            raise HTTPException(404, "no such photo on this server")
        try:
            return stimulus_png(self.db.path.parent, stimulus)
        except OSError:
            raise HTTPException(404, "no such photo on this server") from None
        except ValueError:
            raise HTTPException(404, "this photo's file on the server is damaged") from None

    # --- the admin view ---------------------------------------------------------------------
    def authorize(self, client: str, presented: str | None) -> None:
        """Raise 401 for a wrong token, 429 while the client must wait (slowed down, then locked out)."""
        con = self.db.con()
        try:
            authorize_admin(con, client, presented, self.admin_token)
        except AdminRefused as err:
            headers = {"Retry-After": str(err.retry_after)} if err.retry_after else None
            raise HTTPException(err.status, str(err), headers=headers) from None

    @staticmethod
    def _chosen_study(con: sqlite3.Connection, query: dict) -> str | None:
        """The study an admin call names (`?study=`), else the open one; HTTP 404 for a study not in the database."""
        study = query.get("study") or store.latest_study(con)
        if study is not None and not store.has_study(con, study):
            raise HTTPException(404, f"no study {study!r} in this database")
        return study

    def overview(self, query: dict) -> dict:
        """Progress of the open study, or of the one `?study=` names (its raters may still be finishing)."""
        con = self.db.con()
        study = self._chosen_study(con, query)
        raters = store.rater_overview(con, study)
        raters["completion_code"] = [
            store.study_settings(con, s).get("completion_code") or sessions.rater_code(con, r) for s, r in zip(raters["study"], raters["rater"])
        ]
        stimuli = store.stimulus_progress(self.db.path, study)
        return {
            "study": study,
            "studies": store.study_names(con),  # the open one first
            "closed": bool(study) and store.is_closed(con, study),
            "raters": _records(raters),
            "stimuli": _records(stimuli),
        }

    def export(self, query: dict) -> bytes:
        """The ratings as CSV: of every study, or of the one `?study=` names."""
        study = self._chosen_study(self.db.con(), query) if query.get("study") else None
        return store.ratings_csv(self.db.path, study).encode()

    def exclude(self, payload: dict) -> dict:
        con = self.db.con()
        rater, excluded, reason = payload.get("rater"), payload.get("excluded", True), payload.get("reason")
        if not isinstance(excluded, bool) or not (reason is None or isinstance(reason, str) and len(reason) <= 500):
            raise HTTPException(400, "excluded is true or false, and a reason at most 500 characters of text")
        with store.transaction(con):
            if not isinstance(rater, str) or store.rater_study(con, rater) is None:
                raise HTTPException(404, "no such rater")
            store.set_excluded(con, rater, ((reason or "").strip() or "excluded by the admin") if excluded else None)
        return {"rater": rater, "excluded": bool(excluded)}

    def close(self, payload: dict) -> dict:
        con = self.db.con()
        with store.transaction(con):
            study = store.latest_study(con)
            if study is None:
                raise HTTPException(404, "no study")
            closed = payload.get("closed", True)
            if not isinstance(closed, bool):
                raise HTTPException(400, '"closed" must be true or false')
            store.set_setting(con, study, "closed", "1" if closed else None)
        return {"study": study, "closed": closed}


def _records(table) -> list[dict]:
    """A DataFrame as JSON-ready rows (NaN as null)."""
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()} for row in table.astype(object).to_dict("records")]


def _json_error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers={"Cache-Control": "no-store"})


async def _json_object(request: Request) -> dict | JSONResponse:
    """The request's JSON object, or the error response: 413 past `MAX_BODY` bytes (read no further), 400 otherwise."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            return _json_error(413, f"the request body is larger than {MAX_BODY} bytes")
    try:
        payload = json.loads(body)
    except ValueError:
        return _json_error(400, "the request body is not JSON")
    return payload if isinstance(payload, dict) else _json_error(400, "the request body is not a JSON object")


def create_app(db_path: Path, admin_token: str | None = None) -> Starlette:
    """The rate server for one study database; the admin routes exist only with an admin token."""
    handlers = RateApp(db_path, admin_token)

    def locked(method):
        """`method` holding this process's write lock."""

        def call(*args):
            with handlers.db.write_lock:
                return method(*args)

        return call

    def rater_call(method):
        async def endpoint(request: Request) -> Response:
            payload = await _json_object(request)
            if isinstance(payload, JSONResponse):
                return payload
            try:
                result = await run_in_threadpool(method, payload)
            except (InvalidToken, NoStudy) as err:
                return _json_error(403 if isinstance(err, InvalidToken) else 503, str(err))
            except (RatingRefused, JoinRefused) as err:
                return _json_error(409, str(err))
            return JSONResponse(result, headers={"Cache-Control": "no-store"})

        return endpoint

    async def page(request: Request) -> Response:
        return HTMLResponse(handlers.page, headers=PAGE_HEADERS)

    async def study(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(handlers.study_info), headers={"Cache-Control": "no-store"})

    async def image(request: Request) -> Response:
        params = request.path_params
        data = await run_in_threadpool(handlers.image, params["rater"], params["position"], params["sig"])
        return Response(data, media_type="image/png", headers={"Cache-Control": "private, max-age=86400, immutable"})

    routes = [
        Route("/", page),
        Route("/api/study", study),
        Route("/api/start", rater_call(locked(handlers.start)), methods=["POST"]),
        Route("/api/status", rater_call(handlers.status), methods=["POST"]),
        Route("/api/next", rater_call(locked(handlers.next)), methods=["POST"]),
        Route("/api/answer", rater_call(locked(handlers.answer)), methods=["POST"]),
        Route("/api/undo", rater_call(locked(handlers.undo)), methods=["POST"]),
        Route("/image/{rater:str}/{position:int}/{sig:str}", image),
    ]

    if handlers.admin_token:

        def admin_call(method, needs_body: bool = False):
            async def endpoint(request: Request) -> Response:
                auth = request.headers.get("authorization", "")
                presented = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None
                client = request.client.host if request.client else "unknown"
                await run_in_threadpool(locked(handlers.authorize), client, presented)
                if needs_body:
                    payload = await _json_object(request)
                    if isinstance(payload, JSONResponse):
                        return payload
                    result = await run_in_threadpool(method, payload)
                else:
                    result = await run_in_threadpool(method, dict(request.query_params))
                if isinstance(result, bytes):
                    return Response(
                        result,
                        media_type="text/csv",
                        headers={"Content-Disposition": 'attachment; filename="ratings.csv"', "Cache-Control": "no-store"},
                    )
                return JSONResponse(result, headers={"Cache-Control": "no-store"})

            return endpoint

        async def admin_page(request: Request) -> Response:
            return HTMLResponse(handlers.admin_page, headers=PAGE_HEADERS)

        routes += [
            Route("/admin", admin_page),
            Route("/admin/api/overview", admin_call(handlers.overview)),
            Route("/admin/api/export", admin_call(handlers.export)),
            Route("/admin/api/exclude", admin_call(locked(handlers.exclude), needs_body=True), methods=["POST"]),
            Route("/admin/api/close", admin_call(locked(handlers.close), needs_body=True), methods=["POST"]),
        ]

    async def http_error(request: Request, exc: HTTPException) -> Response:
        return _json_error(exc.status_code, exc.detail) if not exc.headers else JSONResponse(
            {"error": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )

    return Starlette(routes=routes, exception_handlers={HTTPException: http_error})


def app_from_environment() -> Starlette:
    """The app for `uvicorn --factory` workers: database and admin token from the environment
    (set by `python -m study.serve`)."""
    return create_app(store.default_db(), default_admin_token())
