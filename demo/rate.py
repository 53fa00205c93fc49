"""The Rate tab: blind MOS rating sessions (the paper's protocol, section 3.3), and the study admin view
for a tab of its own (the rating tab has no admin element).

A rater's token lives in the browser (`gr.BrowserState`), so a reload, a lost connection or a server
restart resumes at the next unanswered image. A new rater starts by agreeing to the study's consent text (the
rate server's), and a finished one gets the completion code and the link back to the study platform, if any.
Nothing the rater's page receives names a method: an image arrives inside the page (a data URL, no file URL),
uncompressed like the rate server's, so every method's version of one original image has one length, with neutral alt text,
and every other text is about the rater's own progress. Each answer is committed before the next image is sent.
For `sessions.UNDO_SECONDS` after an answer an undo button (or Backspace) takes it back, once, as on the rate server
(`study.serve`), which also checks the window's size; this tab scrolls a photo larger than the window instead.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import tempfile
from datetime import datetime, timezone
from html import escape
from pathlib import Path

import gradio as gr

from srgan_core.markdown import markdown_table
from study import sessions, store
from study.schema import SCORE_LABELS, SCORES
from study.server import AdminRefused, authorize_admin, completion, consent_text
from study.sessions import InvalidToken, JoinRefused, NoStudy, RatingRefused
from study.stimulus_png import stimulus_png

log = logging.getLogger(__name__)
STORAGE_KEY = "mos-rater-token"
START_LABEL = "I agree: start"  # the button a new rater presses, below the study's consent text
UNDO_CHECK_SECONDS = 2  # how often a shown undo button asks whether its answer can still be taken back

LOWEST, HIGHEST = SCORES[0], SCORES[-1]
INSTRUCTIONS = f"""
## Rate the quality of photos

You will see photos one at a time. Give each a score for how good it looks:

{markdown_table(list(SCORE_LABELS), [list(SCORE_LABELS.values())])}

Click a score or press the keys **{LOWEST}** to **{HIGHEST}**. Photos are shown at their true size (one image
pixel on one screen pixel): please keep the page zoom at 100 %. First come a few **calibration**
photos that show what *{SCORE_LABELS[LOWEST]}* ({LOWEST}) and *{SCORE_LABELS[HIGHEST]}* ({HIGHEST}) look like. Every answer is saved at once: you
can close the page and come back later in this browser to go on where you stopped.
"""

# Scoped to the image component: no browser rescaling, a frame that scrolls instead of shrinking.
IMAGE_CSS = """
.stimulus-frame { overflow: auto; max-width: 100%; }
.stimulus-frame img.stimulus { display: block; max-width: none; max-height: none; }
"""

# Keys 1-5 press the score buttons while they are on screen, Backspace or u the undo button; the image is sized in
# CSS pixels so that one image pixel lands on one device pixel whatever the devicePixelRatio.
IMAGE_JS = """
const fit = () => {
  const img = element.querySelector('img.stimulus');
  if (!img) return;
  const ratio = window.devicePixelRatio || 1;
  img.style.width = (Number(img.getAttribute('width')) / ratio) + 'px';
  img.style.height = (Number(img.getAttribute('height')) / ratio) + 'px';
};
fit();
watch('value', fit);
window.addEventListener('resize', fit);
if (!window.__srganRateKeys) {
  window.__srganRateKeys = true;
  document.addEventListener('keydown', (event) => {
    const undo = event.key === 'Backspace' || event.key === 'u';
    if (event.repeat || event.ctrlKey || event.metaKey || event.altKey || !(undo || /^[1-5]$/.test(event.key))) return;
    const target = event.target;
    if (target && (target.isContentEditable || ['INPUT', 'TEXTAREA', 'SELECT'].includes(target.tagName))) return;
    const button = document.getElementById(undo ? 'rate-undo' : 'rate-score-' + event.key);
    if (button && button.offsetParent !== null && !button.disabled) {
      event.preventDefault();
      button.click();
    }
  });
}
"""


def _refuse(message: str) -> gr.Error:
    """The error a user sees, without a traceback in the server's console (it is not a server fault)."""
    return gr.Error(message, print_exception=False)


def _browser_secret(db_path: Path) -> str:
    """A fixed key for the browser-side encryption of the token, so it survives server restarts.
    It is sent to the browser, so it is derived one-way from the database's secret."""
    with store.connect(db_path) as con:
        return hmac.new(store.token_secret(con), b"browser-state", hashlib.sha256).hexdigest()[:32]


def build_tab(study_db: Path) -> None:
    """The Rate tab's content, for raters only; call inside `with gr.Tab(...)` of a `gr.Blocks`."""
    db = Path(study_db)
    root = gr.context.Context.root_block
    if root is None:
        raise RuntimeError("demo.rate.build_tab must be called inside a gr.Blocks")
    token = gr.BrowserState(None, storage_key=STORAGE_KEY, secret=_browser_secret(db))
    ticket = gr.Textbox(visible=False)
    undo_ticket = gr.Textbox(visible=False)  # the answer the undo button takes back
    score = gr.Number(visible=False)  # no rounding: a non-integral score is refused, not rounded

    with gr.Column(elem_id="rate-tab"):
        with gr.Column(visible=True) as intro:
            gr.Markdown(INSTRUCTIONS)
            consent = gr.Markdown(visible=False, elem_id="rate-consent")
            intro_status = gr.Markdown()
            start = gr.Button("Start", variant="primary", visible=False, elem_id="rate-start")
        with gr.Column(visible=False, elem_id="rate-trial") as trial:
            header = gr.Markdown(elem_id="rate-header")
            progress = gr.HTML(elem_id="rate-progress")
            with gr.Row():
                buttons = [gr.Button(f"{k} · {label}", elem_id=f"rate-score-{k}", min_width=80) for k, label in SCORE_LABELS.items()]
            image = gr.HTML(
                elem_id="rate-image",
                css_template=IMAGE_CSS,
                js_on_load=IMAGE_JS,
                apply_default_css=False,
            )
        with gr.Column(visible=False) as interlude:
            interlude_text = gr.Markdown()
            go_on = gr.Button("Continue", variant="primary", elem_id="rate-continue")
        with gr.Column(visible=False, elem_id="rate-end") as end:
            end_text = gr.Markdown()
        undo = gr.Button("Undo last answer (Backspace)", visible=False, elem_id="rate-undo", size="sm")
    undo_window = gr.Timer(UNDO_CHECK_SECONDS, active=False)  # while the undo button shows: is its answer still undoable?

    screens = {"intro": intro, "trial": trial, "interlude": interlude, "end": end}
    texts = {"header": header, "progress": progress, "image": image, "interlude_text": interlude_text, "end_text": end_text}
    outputs = [token, ticket, *screens.values(), *texts.values()]

    def show(screen: str, **updates) -> dict:
        """The update that shows one screen (and no ticket), plus `updates` of components by name."""
        view = {block: gr.Column(visible=name == screen) for name, block in screens.items()}
        return view | {ticket: ""} | {texts[name]: value for name, value in updates.items()}

    def next_image(tok: str) -> dict:
        item = sessions.present(db, tok)
        if item is None:
            return finished(tok, sessions.status(db, tok))
        with store.connect(db) as con:
            try:
                png = stimulus_png(db.parent, store.get_stimulus(con, item.stimulus))
            except OSError:
                raise _refuse("This photo's file is missing on the server; please tell the study's organiser.") from None
            except ValueError:
                raise _refuse("This photo's file on the server is damaged; please tell the study's organiser.") from None
        url = "data:image/png;base64," + base64.b64encode(png).decode("ascii")  # no URL, file name or length to tell a method by
        if item.expected is None:
            head = "**How good is this photo?**"
        else:
            head = (
                f"**Calibration {item.step} / {item.steps}.** This photo is an example of "
                f"**{item.expected} · {SCORE_LABELS[item.expected]}**: give it {item.expected} to learn the scale."
            )
        bar = f'<progress value="{item.step - 1}" max="{item.steps}"></progress> <span class="rate-count">{item.step} / {item.steps}</span>'
        img = f'<div class="stimulus-frame"><img class="stimulus" src="{escape(url)}" width="{item.width}" height="{item.height}" alt="photo to rate" draggable="false"></div>'
        return show("trial", header=head, progress=bar, image=img) | {ticket: item.ticket}

    def finished(tok: str, st: sessions.Status) -> dict:
        return show("end", end_text=f"## Thank you!\nYou have rated all {st.total} photos. {completion_note(tok, st)}")

    def completion_note(tok: str, st: sessions.Status) -> str:
        """The rater id, the completion code, and the link back to the study platform when the study has one."""
        with store.connect(db) as con:
            done = completion(con, tok)
        back = f" [Return to the study platform]({done['url']}) to finish." if done["url"] else " You can close this page."
        return f"Your rater id: `{st.rater}`. Your completion code: **`{done['code']}`**.{back}"

    def on_status(tok: str | None) -> tuple[str, gr.Button, gr.Markdown]:
        """The intro's line, button and consent text for whoever holds `tok` (nobody yet, a returning rater, a
        finished one); only someone new is asked to consent."""
        no_consent = gr.Markdown(visible=False)
        try:
            st = sessions.status(db, tok)
        except InvalidToken:
            with store.connect(db) as con:
                study = store.latest_study(con)
                text = consent_text(con, study) if study is not None else ""
            if study is None:
                return "*No study is open yet.*", gr.Button(visible=False), no_consent
            if sessions.closed_to_new_raters(db):
                return "*This study is closed to new participants.*", gr.Button(visible=False), no_consent
            return (f"Press **{START_LABEL}** when you are ready.", gr.Button(START_LABEL, visible=True),
                    gr.Markdown(f"### Consent\n{text}", visible=True))
        if st.finished:
            return f"You have rated all {st.total} photos. Thank you! {completion_note(tok, st)}", gr.Button(visible=False), no_consent
        note = f"Welcome back (rater id `{st.rater}`): {st.answered} of {st.total} answers given. Press **Continue** to go on where you stopped."
        return note, gr.Button("Continue", visible=True), no_consent

    def on_start(tok: str | None) -> dict:
        try:
            sessions.status(db, tok)
        except InvalidToken:
            try:
                tok = sessions.join(db, consent=True)  # the button a new rater presses is START_LABEL, under the consent text
            except NoStudy as err:
                log.warning("Rate: Start pressed but %s has no study: %s", db, err)
                raise _refuse(str(err)) from None
            except JoinRefused:
                raise _refuse("This study is closed to new participants.") from None
        return {token: tok} | next_image(tok)

    def on_rate(tok: str | None, tkt: str | None, value: float | None) -> dict:
        try:
            st = sessions.answer(db, tok, tkt, value, replay_ok=True)  # a double click: the first is stored, the second acknowledged
        except (InvalidToken, RatingRefused) as err:
            raise _refuse(f"Answer not saved: {err}") from None
        kind = st.interlude()
        if kind == "calibrated":
            text = "## Calibration done\nNow the real photos. Rate each one on its own; there are no right answers."
            return show("interlude", interlude_text=text)
        if kind == "pause":
            text = f"## Time for a short break\n{st.rated} of {st.to_rate} photos rated. Rest your eyes, then continue when ready."
            return show("interlude", interlude_text=text)
        if st.finished:
            return finished(tok, st)
        return next_image(tok)

    def on_continue(tok: str | None) -> dict:
        try:
            return next_image(tok)
        except InvalidToken as err:
            raise _refuse(str(err)) from None

    def on_undo(tok: str | None, answered: str | None) -> dict:
        """Take back the last answer (`sessions.undo`) and show its photo again."""
        try:
            sessions.undo(db, tok, answered)
        except (InvalidToken, RatingRefused) as err:
            raise _refuse(f"Not undone: {err}") from None
        return next_image(tok)

    def offer_undo(tok: str | None) -> tuple[gr.Button, str, gr.Timer]:
        """The undo button and the answer it takes back while the rater's last answer can be undone (within
        `sessions.UNDO_SECONDS`, once), and the timer that asks again until it cannot."""
        try:
            answered = sessions.undoable(db, tok)
        except InvalidToken:
            answered = None
        return gr.Button(visible=answered is not None), answered or "", gr.Timer(active=answered is not None)

    # The stored token reaches the server when the token component mounts, which is when the tab is first
    # opened: after the page's load event, whose answer (no token yet: "Start") could otherwise arrive after the
    # mount's ("Continue") and stay. One listener for both, run one call at a time, the last with the latest token.
    gr.on(
        [root.load, token.change], on_status, inputs=[token], outputs=[intro_status, start, consent], api_name="rate_status",
        show_progress="hidden", trigger_mode="always_last", concurrency_limit=1,
    )
    quiet = {"outputs": outputs, "show_progress": "hidden"}  # no spinner flashing over the photo at every answer
    undo_state = {"fn": offer_undo, "inputs": [token], "outputs": [undo, undo_ticket, undo_window], "show_progress": "hidden",
                  "api_visibility": "private"}
    no_undo = {"fn": lambda: (gr.Button(visible=False), "", gr.Timer(active=False)), "outputs": undo_state["outputs"],
               "show_progress": "hidden", "api_visibility": "private"}
    start.click(on_start, inputs=[token], api_name="rate_start", **quiet).then(**no_undo)  # as on the rate server: undo only
    go_on.click(on_continue, inputs=[token], api_name="rate_continue", **quiet).then(**no_undo)  # right after an answer
    undo.click(on_undo, inputs=[token, undo_ticket], api_name="rate_undo", **quiet).then(**undo_state)
    undo_window.tick(**undo_state)
    for k, button in zip(SCORE_LABELS, buttons):
        button.click(
            on_rate,
            inputs=[token, ticket, score],
            js=f"(tok, tkt, value) => [tok, tkt, {k}]",
            api_name="rate" if k == 1 else f"rate_{k}",
            api_visibility="public" if k == 1 else "undocumented",
            **quiet,
        ).then(**undo_state)


def build_admin(study_db: Path, admin_token: str) -> None:
    """Progress per rater and per stimulus of the open study (or an earlier one chosen), and its ratings as CSV, for
    whoever holds the admin token; call inside a tab of its own (`app.py` adds it only when started with an admin
    token)."""
    db = Path(study_db)
    with gr.Column(elem_id="study-admin"):
        with gr.Row():
            entered = gr.Textbox(label="Admin token", type="password", scale=3)
            chosen = gr.Dropdown(label="Study", choices=[], value=None, scale=2, info="the open study until you choose")
        show = gr.Button("Show progress and export ratings")
        summary = gr.Markdown()
        raters = gr.Dataframe(label="Progress per rater", interactive=False)
        stimuli = gr.Dataframe(label="Ratings per stimulus", interactive=False)
        export = gr.File(label="The study's ratings (CSV, long format)")

    def on_admin(value: str | None, choice: str | None, request: gr.Request):
        client = request.client.host if request.client else "unknown"
        with store.connect(db) as con:
            try:
                authorize_admin(con, client, value if isinstance(value, str) else None, admin_token)
            except AdminRefused as err:
                raise _refuse("Wrong admin token." if err.status == 401 else f"Admin view: {err}.") from None
        with store.connect(db) as con:
            names = store.study_names(con)  # the open one first
        if not names:
            return "No study has been prepared yet: `python -m study.prepare --name NAME ...`.", None, None, None, gr.skip()
        study = choice if choice in names else (names[0] if names else None)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        out = Path(tempfile.mkdtemp(prefix="srgan-ratings-")) / f"ratings-{study}-{stamp}.csv"  # handed to the browser only
        out.write_text(store.ratings_csv(db, study))
        per_rater, per_stimulus = store.rater_progress(db, study), store.stimulus_progress(db, study)
        done = int((per_rater["answered"] == per_rater["planned"]).sum())
        which = "the open study" if study == names[0] else f"an earlier study; new raters join {names[0]}"
        text = (
            f"Study {study} ({which}): {len(per_rater)} raters ({done} finished), {int(per_rater['answered'].sum())} answers "
            "stored. The CSV below holds this study's answers but those of raters the admin excluded, and no plans: "
            "`python -m study.analyze --db` tells finished raters from unfinished ones."
        )
        studies = gr.Dropdown(choices=[(f"{n} (open)" if k == 0 else n, n) for k, n in enumerate(names)], value=study)
        return text, per_rater, per_stimulus, str(out), studies

    show.click(on_admin, inputs=[entered, chosen], outputs=[summary, raters, stimuli, export, chosen], api_name="rate_admin")
