"""`python -m study.loadtest --raters 200 --pace 3 --seconds 60`: load-test the rate server on localhost.

Prepares a throwaway study (Set5 x nearest/bicubic/hr) in a temporary folder, starts
`python -m study.serve --workers W` on it, and runs N simulated raters, each with its own identity,
through the same HTTP calls the rating page makes (start, fetch each image, answer, continue, undo
now and then), one answer every `--pace` seconds each (0: as fast as the server answers). A rater
who finishes starts again under a new identity, so N stay active until `--seconds` have passed; then
every answer the server acknowledged is checked one by one against the database. With
`--kill-worker-at S`, one worker process is killed with SIGKILL S seconds in; the raters retry what
was cut off and go on. `--server gradio` runs the same raters against the Gradio app's Rate tab
(`python app.py --rate-only`, through its HTTP API), the rating path before the rate server, for
comparison (without undo: its raters only answer).

The raters are simulated: their scores are random and are never a MOS result. Bounded: it listens
on 127.0.0.1 only, stops by itself, and deletes its folder afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import html
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import psutil

from srgan_core.paths import REPO_ROOT, default_data_root
from study import prepare, sessions
from study.schema import ORIGINAL

VIEWING = {"viewport_w": 1366, "viewport_h": 768, "dpr": 1, "zoom": 1, "screen_w": 1366, "screen_h": 768}
STUDY = dict(datasets=["Set5"], methods=["nearest", "bicubic", ORIGINAL], per_rater=None, repeats=2, seed=0, calibration=1, gold=2, pause_every=10)
RETRIES = 50  # attempts per call when the connection fails or a worker dies under it


@dataclass
class Tally:
    """What the simulated raters saw."""

    acked: dict[tuple[str, int], tuple[str, int]] = field(default_factory=dict)  # (rater, position) -> (ticket, score)
    latencies: list[float] = field(default_factory=list)  # seconds per answer call
    image_latencies: list[float] = field(default_factory=list)
    undos: int = 0
    late_undos: int = 0
    gave_up: int = 0
    retries: int = 0
    refused: list[str] = field(default_factory=list)
    sessions: int = 0
    finished: int = 0


class LoadTestError(RuntimeError):
    """The load test could not run (no data, the server did not start)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prepare_study(folder: Path, data_root: Path | None) -> Path:
    root = data_root or default_data_root()
    if root is None or not (root / "benchmarks" / "Set5").is_dir():
        raise LoadTestError("needs the benchmark data (Set5 and BSDS500_train; ../shared/data, SRGAN_DATA or --data-root)")
    db = folder / "study.sqlite"
    prepare.prepare(prepare.Request(name="loadtest", **STUDY), root, db)
    return db


class Server:
    """`python -m study.serve` (or, with `gradio`, `python app.py --rate-only`) in a subprocess, with
    the CPU time of its processes tracked."""

    def __init__(self, db: Path, workers: int, log: Path, gradio: bool = False) -> None:
        self.port, self.log, self.gradio = free_port(), log, gradio
        self.url = f"http://127.0.0.1:{self.port}/"
        cmd = [sys.executable, "-m", "study.serve", "--db", str(db), "--port", str(self.port), "--workers", str(workers)]
        if gradio:
            cmd = [sys.executable, "app.py", "--rate-only", "--study-db", str(db), "--port", str(self.port)]
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT)
        self.cpu: dict[int, float] = {}

    def wait_ready(self, timeout: float = 120) -> None:
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            if self.proc.poll() is not None:
                raise LoadTestError(f"the server exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                ready = self.url if self.gradio else self.url + "api/study"
                if httpx.get(ready, timeout=2).status_code == 200 and len(self.workers()) >= self.expected:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise LoadTestError(f"the server did not answer within {timeout} s")

    expected = 1

    def processes(self) -> list[psutil.Process]:
        try:
            parent = psutil.Process(self.proc.pid)
            return [parent, *parent.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def workers(self) -> list[psutil.Process]:
        """The worker processes (the server process itself with one worker)."""
        children = [p for p in self.processes()[1:] if _is_worker(p)]
        return children or self.processes()[:1]

    def sample_cpu(self) -> None:
        """Remember the CPU seconds of every server process (a killed one keeps its last sample)."""
        for p in self.processes():
            try:
                times = p.cpu_times()
                self.cpu[p.pid] = times.user + times.system
            except psutil.NoSuchProcess:
                pass

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _is_worker(p: psutil.Process) -> bool:
    try:
        return "spawn_main" in " ".join(p.cmdline())  # not multiprocessing's resource tracker
    except psutil.Error:
        return False


async def _call(client: httpx.AsyncClient, tally: Tally, method: str, path: str, body: dict | None = None) -> httpx.Response:
    """One HTTP call, retried while the connection fails or a worker is gone (502/503)."""
    for attempt in range(RETRIES):
        try:
            response = await client.request(method, path, json=body)
            if response.status_code not in (502, 503, 504):
                return response
        except httpx.TransportError:
            pass
        tally.retries += 1
        await asyncio.sleep(0.1 * min(attempt + 1, 10))
    raise LoadTestError(f"{path}: no answer after {RETRIES} attempts")


async def rater(
    index: int, client: httpx.AsyncClient, tally: Tally, pace: float, deadline: float, undo_rate: float, seed: int
) -> None:
    """One simulated rater (a new identity after each finished session) until the deadline, or until
    the server stops answering them (counted as a rater who gave up)."""
    try:
        await _rate(index, client, tally, pace, deadline, undo_rate, seed)
    except LoadTestError as err:
        tally.gave_up += 1
        tally.refused.append(f"rater {index} gave up: {err}")


async def _rate(
    index: int, client: httpx.AsyncClient, tally: Tally, pace: float, deadline: float, undo_rate: float, seed: int
) -> None:
    rng = np.random.default_rng([seed, index])
    await asyncio.sleep(float(rng.uniform(0, max(pace, 0.05))))  # not all at the same instant
    session = 0
    while time.monotonic() < deadline:
        session += 1
        tally.sessions += 1
        identity = f"loadtest-{index}-{session}"
        response = await _call(client, tally, "POST", "api/start", {"identity": identity, "consent": True, "viewing": VIEWING})
        if response.status_code != 200:
            tally.refused.append(f"start: {response.text}")
            return
        state = response.json()
        token = state["token"]
        rater_id = token.split(".")[0]
        while time.monotonic() < deadline:
            if state["screen"] == "end":
                tally.finished += 1
                break
            if state["screen"] == "interlude":
                response = await _call(client, tally, "POST", "api/next", {"token": token})
                state = response.json()
                continue
            item = state["item"]
            began = time.perf_counter()
            image = await _call(client, tally, "GET", item["image"])
            tally.image_latencies.append(time.perf_counter() - began)
            if image.status_code != 200 or not image.content.startswith(b"\x89PNG"):
                tally.refused.append(f"image {item['image']}: {image.status_code}")
            if pace:
                await asyncio.sleep(float(rng.uniform(0.5, 1.5)) * pace)
            if time.monotonic() >= deadline:
                break
            state = await _answer(client, tally, token, rater_id, item["ticket"], int(rng.integers(1, 6)))
            if state is None:
                break
            if state.get("undo") and rng.random() < undo_rate:
                response = await _call(client, tally, "POST", "api/undo", {"token": token, "ticket": state["undo"]["ticket"]})
                if response.status_code == 200:
                    tally.undos += 1
                    state = await _answer(client, tally, token, rater_id, response.json()["item"]["ticket"], int(rng.integers(1, 6)))
                    if state is None:
                        break
                else:
                    tally.late_undos += 1  # past the undo window (a slow reply): the first answer stands


async def _answer(client: httpx.AsyncClient, tally: Tally, token: str, rater_id: str, ticket: str, score: int) -> dict | None:
    began = time.perf_counter()
    response = await _call(client, tally, "POST", "api/answer", {"token": token, "ticket": ticket, "score": score})
    if response.status_code != 200:
        tally.refused.append(f"answer: {response.status_code} {response.text}")
        return None
    tally.latencies.append(time.perf_counter() - began)
    tally.acked[(rater_id, int(ticket.split(":")[0]))] = (ticket, score)
    return response.json()


@dataclass
class Reply:
    """The little of an HTTP response `rater` reads."""

    status_code: int
    body: object = None
    content: bytes = b""

    def json(self) -> object:
        return self.body

    @property
    def text(self) -> str:
        return json.dumps(self.body)


DATA_PNG = "data:image/png;base64,"


class GradioRateTab:
    """The rate server's calls, made as the Gradio Rate tab's events (POST /gradio_api/call/<event>,
    then its result stream), with the tab's outputs turned into the rate server's states."""

    OUTPUTS = ("token", "ticket", "intro", "trial", "interlude", "end", "header", "progress", "image", "interlude_text", "end_text")
    EVENTS = {"api/start": "rate_start", "api/next": "rate_continue", "api/answer": "rate"}

    def __init__(self, base_url: str, timeout: float) -> None:
        self.http = httpx.AsyncClient(base_url=base_url, timeout=timeout)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def request(self, method: str, path: str, **kwargs) -> Reply | httpx.Response:
        """`httpx.AsyncClient.request(method, path, json=body)` for the rate server's paths."""
        if method == "GET" and path.startswith(DATA_PNG):  # the tab's images arrive inside its HTML
            return Reply(200, content=base64.b64decode(path.removeprefix(DATA_PNG)))
        if method == "GET":
            return await self.http.get(path)
        if path not in self.EVENTS:
            return Reply(409, {"error": "not in the Gradio Rate tab"})
        body = kwargs.get("json") or {}
        data = [body.get("token")] + ([body["ticket"], body["score"]] if path == "api/answer" else [])
        event = self.EVENTS[path]
        posted = await self.http.post(f"gradio_api/call/{event}", json={"data": data})
        if posted.status_code != 200:  # 503 when Gradio's queue is full: `_call` retries
            return Reply(posted.status_code, {"error": posted.text})
        async with self.http.stream("GET", f"gradio_api/call/{event}/{posted.json()['event_id']}") as stream:
            kind = None
            async for line in stream.aiter_lines():
                if line.startswith("event:"):
                    kind = line.removeprefix("event:").strip()
                elif line.startswith("data:") and kind in ("complete", "error"):
                    payload = json.loads(line.removeprefix("data:"))
                    if kind == "error":
                        return Reply(409, {"error": payload})
                    return Reply(200, self._state(dict(zip(self.OUTPUTS, payload)), body.get("token")))
        raise httpx.ReadError(f"{event}: the result stream ended without a result")

    @staticmethod
    def _state(out: dict, token: str | None) -> dict:
        shown = lambda v: isinstance(v, str) and bool(v)  # noqa: E731  (an unchanged output is an update dict)
        token = out["token"] if shown(out["token"]) else token
        if shown(out["ticket"]):
            src = re.search(r'src="([^"]+)"', out["image"]).group(1)
            return {"token": token, "screen": "trial", "item": {"ticket": out["ticket"], "image": html.unescape(src)}}
        return {"token": token, "screen": "end" if shown(out["end_text"]) else "interlude"}


def check(db: Path, tally: Tally) -> dict:
    """Every acknowledged answer against the database: lost, wrong score/stimulus, duplicated."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        rows = con.execute(
            """SELECT r.rater, r.position, r.stimulus, r.phase, coalesce(v.score, r.score)
               FROM ratings r LEFT JOIN revisions v ON v.rater = r.rater AND v.position = r.position"""
        ).fetchall()
        stored = {(rater, position): (sessions.ticket_of(con, rater, position, stimulus), score) for rater, position, stimulus, _, score in rows}
    per_item = {}
    for rater, _, stimulus, phase, _ in rows:
        per_item[(rater, stimulus, phase)] = per_item.get((rater, stimulus, phase), 0) + 1
    lost = [key for key in tally.acked if key not in stored]
    wrong = [key for key, value in tally.acked.items() if key in stored and stored[key] != value]
    return {
        "acknowledged": len(tally.acked),
        "stored": len(stored),
        "lost": len(lost),
        "wrong": len(wrong),
        "duplicated": sum(n - 1 for n in per_item.values() if n > 1),
        "stored_not_acknowledged": len(set(stored) - set(tally.acked)),
    }


async def drive(
    server: Server, raters: int, pace: float, seconds: float, undo_rate: float, kill_at: float | None, seed: int, kill_after: int | None = None
) -> tuple[Tally, dict]:
    tally = Tally()
    kill: dict = {}
    # One client (one connection) per rater, like separate browsers; one shared pool of hundreds of
    # connections costs the load generator more CPU per request than the server spends.
    make = GradioRateTab if server.gradio else httpx.AsyncClient
    clients = [make(base_url=server.url, timeout=60) for _ in range(raters)]
    try:
        began = time.monotonic()
        deadline = began + seconds
        tasks = [asyncio.create_task(rater(i, clients[i], tally, pace, deadline, undo_rate, seed)) for i in range(raters)]
        while not all(t.done() for t in tasks):
            await asyncio.sleep(0.5)
            server.sample_cpu()
            due = kill_at is not None and time.monotonic() - began >= kill_at
            if not kill and (due or kill_after is not None and len(tally.acked) >= kill_after):
                victim = server.workers()[-1]
                kill = {"pid": victim.pid, "at_s": round(time.monotonic() - began, 1), "acknowledged_before": len(tally.acked)}
                os.kill(victim.pid, signal.SIGKILL)
        for t in tasks:
            t.result()  # re-raise a rater's error
        wall = time.monotonic() - began
    finally:
        for c in clients:
            await c.aclose()
    return tally, {"wall_s": wall, "kill": kill}


def run(
    raters: int,
    pace: float,
    seconds: float,
    workers: int,
    undo_rate: float,
    kill_at: float | None,
    data_root: Path | None,
    seed: int = 0,
    gradio: bool = False,
    kill_after: int | None = None,
) -> dict:
    """The whole load test; returns the figures (see `report`). `kill_after`: SIGKILL one worker once
    this many answers are acknowledged (rather than `kill_at` seconds in)."""
    with tempfile.TemporaryDirectory(prefix="srgan-loadtest-") as tmp:
        folder = Path(tmp)
        db = prepare_study(folder, data_root)
        server = Server(db, workers, folder / "server.log", gradio)
        server.expected = workers if workers > 1 and not gradio else 1
        try:
            server.wait_ready()
            server.sample_cpu()
            cpu_before = sum(server.cpu.values())
            client_before = sum(psutil.Process().cpu_times()[:2])
            tally, run_info = asyncio.run(drive(server, raters, pace, seconds, undo_rate, kill_at, seed, kill_after))
            server.sample_cpu()
            server_cpu = sum(server.cpu.values()) - cpu_before
            client_cpu = sum(psutil.Process().cpu_times()[:2]) - client_before
            alive = len(server.workers())
        finally:
            server.stop()
        figures = check(db, tally)
    latencies = np.array(tally.latencies) * 1000
    answers = len(tally.latencies)
    return {
        "server": "gradio" if gradio else "rate server",
        "raters": raters,
        "pace_s": pace,
        "seconds": seconds,
        "workers": 1 if gradio else workers,
        "answers": answers,
        "throughput_per_s": answers / run_info["wall_s"],
        "latency_ms": {q: float(np.percentile(latencies, int(q[1:]))) if answers else None for q in ("p50", "p95", "p99")},
        "image_p95_ms": float(np.percentile(np.array(tally.image_latencies) * 1000, 95)) if tally.image_latencies else None,
        "server_cpu_ms_per_answer": 1000 * server_cpu / answers if answers else None,
        "client_cpu_ms_per_answer": 1000 * client_cpu / answers if answers else None,
        "undos": tally.undos,
        "late_undos": tally.late_undos,
        "gave_up": tally.gave_up,
        "retries": tally.retries,
        "refused": tally.refused[:10],
        "sessions": tally.sessions,
        "finished_sessions": tally.finished,
        "workers_alive_at_end": alive,
        "kill": run_info["kill"],
        "wall_s": run_info["wall_s"],
    } | figures


def report(f: dict) -> str:
    lat = f["latency_ms"]
    fmt = lambda v: "-" if v is None else f"{v:.0f}"  # noqa: E731
    lines = [
        f"{f['server']}: {f['raters']} simulated raters, pace {f['pace_s']} s, {f['seconds']} s, {f['workers']} worker(s): "
        f"{f['answers']} answers in {f['wall_s']:.1f} s = {f['throughput_per_s']:.1f} answers/s",
        f"answer latency p50 / p95 / p99: {fmt(lat['p50'])} / {fmt(lat['p95'])} / {fmt(lat['p99'])} ms; image p95 {fmt(f['image_p95_ms'])} ms",
        f"server CPU per answer: {fmt(f['server_cpu_ms_per_answer'])} ms (load generator: {fmt(f['client_cpu_ms_per_answer'])} ms)",
        f"acknowledged {f['acknowledged']}, stored {f['stored']}: lost {f['lost']}, duplicated {f['duplicated']}, wrong {f['wrong']}; "
        f"stored but reply cut off {f['stored_not_acknowledged']}; undone and re-answered {f['undos']}; retried calls {f['retries']}",
        f"rater sessions {f['sessions']} (finished {f['finished_sessions']}); raters who gave up after {RETRIES} failed tries: {f['gave_up']}",
    ]
    if f["kill"]:
        lines.append(
            f"SIGKILL of worker {f['kill']['pid']} at {f['kill']['at_s']} s (after {f['kill']['acknowledged_before']} acknowledged answers); "
            f"workers alive at the end: {f['workers_alive_at_end']}"
        )
    if f["refused"]:
        lines.append("refused (first 10): " + "; ".join(f["refused"]))
    lines.append("(simulated raters: nothing here is a MOS result)")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m study.loadtest", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--raters", type=int, default=20, help="simulated raters at once (1-1000; default 20)")
    parser.add_argument("--pace", type=float, default=3.0, help="seconds between a rater's answers (0: as fast as possible; default 3)")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to run (at most 600; default 30)")
    parser.add_argument("--workers", type=int, default=2, help="server worker processes (default 2)")
    parser.add_argument("--undo-rate", type=float, default=0.02, help="share of answers undone and given again (0-1; default 0.02)")
    parser.add_argument("--kill-worker-at", type=float, help="SIGKILL one worker this many seconds in")
    parser.add_argument("--data-root", type=Path, help="data folder with benchmarks/Set5 and train/BSDS500_train")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument(
        "--server", choices=("rate", "gradio"), default="rate", help="rate: python -m study.serve (default); gradio: python app.py --rate-only"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that `finally` stops the server
    if not 1 <= args.raters <= 1000 or not 0 < args.seconds <= 600 or args.pace < 0 or not 1 <= args.workers <= 32 or not 0 <= args.undo_rate <= 1:
        print("study.loadtest: --raters 1-1000, --seconds up to 600, --pace >= 0, --workers 1-32, --undo-rate 0-1", file=sys.stderr)
        return 1
    try:
        gradio = args.server == "gradio"
        undo_rate = 0.0 if gradio else args.undo_rate
        figures = run(args.raters, args.pace, args.seconds, args.workers, undo_rate, args.kill_worker_at, args.data_root, gradio=gradio)
    except (LoadTestError, prepare.PrepareError) as err:
        print(f"study.loadtest: {err}", file=sys.stderr)
        return 1
    print(report(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if figures["lost"] == figures["duplicated"] == figures["wrong"] == 0 else 2


if __name__ == "__main__":
    sys.exit(main())
