"""Mistakes → Suspected label errors: the images whose given label is probably wrong, and a verdict on each.

`mnist_core.audit` ranks a split's images by confident learning; training its K fold models is
a background job like a training run, and a finished audit is stored, so the same settings show
it again at once. A verdict is written (`mnist_core.marks`) the moment it is chosen: it survives
reloads and restarts, and the Train form can leave the images marked wrong out of the next run.

The whole view is a fragment, so choosing a verdict or a page redraws this tab only, not the
Mistakes tab beside it (which evaluates a model and computes a saliency map on every run).
"""

from __future__ import annotations

import base64
import html
import io
import json
import zipfile
from datetime import datetime
from pathlib import Path

import numpy as np
import streamlit as st
from PIL import Image

from mnist_core.audit import (
    DEFAULT_FOLDS,
    FOLD_EPOCHS,
    MAX_FOLDS,
    RANKED_BY,
    RESULT_FILE,
    AuditResult,
    AuditSpec,
    find_cached,
    fold_config,
    preset_of,
    result_for,
    why_suspected,
)
from mnist_core.config import PRESETS, ConfigError, preset_label
from mnist_core.data import CLASS_NAMES, DatasetCorrupt, DatasetMissing, is_present, load_split, missing_message
from mnist_core.job import AUDIT_JOB
from mnist_core.listing import run_jobs
from mnist_core.marks import VERDICT_LABELS, VERDICTS, MarksDamaged, load_marks, marks_csv, set_mark
from mnist_core.policy import QuotaExceeded
from mnist_core.runs import ACTIVE_STATES, Run
from mnist_core.storage import CacheDamaged, plain_error
from mnist_core.visitors import NotYours
from ui.hosted import may_change, visitor
from ui.mistakes_charts import INDIGO, MUTED, RED, page_bounds, thumbnail
from ui.state import DEFAULT, model_label, runner, selected_model

SPLIT, PRESET, FOLDS, JUDGE = "audit_split", "audit_preset", "audit_folds", "audit_judge"
JOB, ONLY_UNMARKED, FLAGGED_ONLY, ERROR = "audit_job", "audit_only_unmarked", "audit_flagged_only", "audit_error"
PER_PAGE, COLUMNS, POLL_SECONDS = 8, 2, 1.0  # two cards a row: each has room for its verdicts
SPLIT_LABELS = {"train": "Training images", "test": "Test images"}
FOLD_AVERAGE, CHOSEN_MODEL = "folds", "chosen"
JUDGE_LABELS = {FOLD_AVERAGE: "the fold models' average", CHOSEN_MODEL: "the model chosen for Mistakes"}
BADGE = "background:#fde8e8;color:#b91c1c;border-radius:4px;padding:0 5px;font-size:11px"
UNREADABLE = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)  # what a damaged audit.npz raises


@st.fragment
def label_audit_view() -> None:
    st.caption(
        "Images whose given label is probably wrong. Models that never trained on an image judge it "
        "(*out of sample*), and the images whose given label they find least likely come first. Mark "
        "each one; the Train form can then leave out those marked wrong."
    )
    spec = _settings()
    if spec is None:
        return
    job = _job(spec)
    if job is not None and job.current_status().get("state") in ACTIVE_STATES:
        st.fragment(_progress, run_every=POLL_SECONDS)(job)  # poll only while it runs
        return
    cached = find_cached(spec, runner().runs_dir)
    _start_row(spec, cached, job)
    if cached is not None:
        _results(spec, cached)


def _settings() -> AuditSpec | None:
    """The audit the widgets describe; None when it cannot be made (no model to judge the test split with).

    The settings keep their values for the session, also while hidden or on another page."""
    split_col, judge_col = st.columns([1, 1.6])
    split = split_col.segmented_control(
        "Images to audit",
        list(SPLIT_LABELS),
        key=SPLIT,
        default="train",
        required=True,
        format_func=SPLIT_LABELS.get,
        persist_state="session",
    )
    if split == "test":
        judge = judge_col.radio(
            "Judge them with",
            list(JUDGE_LABELS),
            key=JUDGE,
            horizontal=True,
            format_func=JUDGE_LABELS.get,
            persist_state="session",
            help="The fold models come from an audit of the training images (run for you "
            "if there is none yet); a model trained on all of them is a single judge.",
        )
        if judge == CHOSEN_MODEL:  # a single model's judgement: no fold models, no folds
            choice = selected_model()
            if choice is None:
                st.info(
                    "No model to judge with yet: train one, or judge with the fold models.", icon=":material/school:"
                )
                return None
            judge_col.caption(f"Judging with: {model_label(choice)} (choose another on the Mistakes tab)")
            return AuditSpec(split="test", checkpoint=DEFAULT if choice == DEFAULT else str(runner().runs_dir / choice))
    preset_col, folds_col, _ = st.columns([1.6, 0.8, 1.2], vertical_alignment="bottom")
    preset = preset_col.segmented_control(
        "Fold models train like",
        list(PRESETS),
        key=PRESET,
        default="fast",
        required=True,
        format_func=preset_label,
        persist_state="session",
    )
    folds = folds_col.number_input(
        "Folds (K)",
        min_value=2,
        max_value=MAX_FOLDS,
        value=DEFAULT_FOLDS,
        step=1,
        key=FOLDS,
        persist_state="session",
        help="K models, each trained on all images but one K-th and judging that K-th.",
    )
    spec = AuditSpec(split=split, config=fold_config(preset), folds=int(folds))
    epochs = f", for {spec.config.epochs} epochs" if preset in FOLD_EPOCHS else ""
    st.caption(
        f"The {preset.replace('-', ' ')} preset's model and settings{epochs}. The audit trains {spec.models} such "
        "models, one after the other: "
        f"{spec.rounds} rounds of {spec.folds} folds, each round with folds of its own, their judgements averaged."
    )
    return spec


def _settings_of(spec: AuditSpec) -> dict:
    return json.loads(json.dumps(spec.to_dict()))  # as status.json holds it: lists, not tuples


def _job(spec: AuditSpec) -> Run | None:
    """The audit to show: this session's while it runs, else one running with these settings (started before
    a reload, or elsewhere), else this session's last one (to say why it ended)."""
    chosen = st.session_state.get(JOB)
    mine = Run(runner().runs_dir / chosen) if chosen and (runner().runs_dir / chosen).is_dir() else None
    if mine is not None and mine.current_status().get("state") in ACTIVE_STATES:
        return mine
    wanted = _settings_of(spec)
    for entry in run_jobs(runner().runs_dir, kinds=(AUDIT_JOB,)):
        if entry.status.get("audit") == wanted and entry.status.get("state") in ACTIVE_STATES:
            return entry.job
    return mine


def _progress(run: Run) -> None:
    status = run.current_status()
    if status.get("state") not in ACTIVE_STATES:
        st.rerun()  # it just ended: draw the results (or why it stopped) once, and stop polling
    audited = status.get("audit", {})
    if audited.get("checkpoint"):
        st.markdown("**Judging the test images** with one model…")
    else:
        preset = preset_of(audited.get("config", {})) or "custom"
        models = audited.get("folds", 0) * audited.get("rounds", 1)
        st.markdown(
            f"**Auditing the {SPLIT_LABELS.get(audited.get('split'), 'images').lower()}** with "
            f"{models or '?'} {preset.replace('-', ' ')} fold models…"
        )
    position = runner().queue_position(run)
    text = status.get("message") or (
        f"Waiting for a free training slot (number {position} in the queue)…" if position else "Starting…"
    )
    st.progress(min(max(float(status.get("progress") or 0.0), 0.0), 1.0), text=text)
    if may_change(status.get("owner", "")):  # on a shared demo only the visitor who started it may stop it
        st.button("Stop", icon=":material/stop_circle:", key="audit_stop", on_click=_stop, args=(run,))
    if st.session_state.get(ERROR):
        st.error(st.session_state.pop(ERROR), icon=":material/error:")


def _stop(run: Run) -> None:
    try:
        runner().cancel(run, by=visitor())
    except (OSError, NotYours) as error:
        st.session_state[ERROR] = f"Could not stop the audit: {plain_error(error)}"


def _start_row(spec: AuditSpec, cached: Run | None, job: Run | None) -> None:
    """What is stored, why the last try ended, and the button that starts an audit."""
    if job is not None and job != cached and job.status().get("audit") == _settings_of(spec):
        status = job.current_status()
        if status.get("state") == "failed":
            st.error(f"The audit failed. {status.get('message', '')}", icon=":material/error:")
        elif status.get("state") in ("cancelled", "interrupted"):
            st.info(status.get("message") or "The audit was stopped.", icon=":material/stop_circle:")
    busy = runner().start_problem(visitor().id, AUDIT_JOB)
    missing = not is_present(spec.config.dataset, runner().data_dir)
    text_col, button_col = st.columns([3, 1], vertical_alignment="center")
    if cached is None:
        text_col.markdown(
            "No audit with these settings yet. It runs in the background; this tab shows its "
            "progress, and its results as soon as it is done."
        )
        label, kind = "Start audit", "primary"
    else:
        text_col.markdown(_stored_line(spec, cached))
        label, kind = "Run again", "secondary"
    clicked = button_col.button(
        label,
        type=kind,
        icon=":material/play_arrow:",
        key="audit_start",
        width="stretch",
        disabled=bool(busy or missing),
    )
    if missing:
        st.warning(missing_message(spec.config.dataset, runner().data_dir), icon=":material/cloud_off:")
    if busy:
        st.info(busy, icon=":material/hourglass_top:")
    if clicked:
        try:
            run = runner().submit_audit(spec, owner=visitor().id)
        except (ConfigError, QuotaExceeded, DatasetMissing, OSError) as error:
            st.error(f"Could not start the audit: {plain_error(error)}", icon=":material/error:")
        else:
            st.session_state[JOB] = run.id
            st.rerun()  # show its progress (and the Train page's run history lists it)


def _stored_line(spec: AuditSpec, run: Run) -> str:
    status = run.status()
    when = datetime.fromtimestamp(status.get("ended_at") or status.get("updated_at") or 0).strftime("%Y-%m-%d %H:%M")
    source = " (the fold models of the training-image audit)" if spec.split == "test" and not spec.checkpoint else ""
    seconds = status.get("seconds")
    took = f", {seconds:,.0f} s" if isinstance(seconds, (int, float)) else ""
    return f"Stored audit from {when}{took}{source}."


@st.cache_resource(show_spinner=False, max_entries=4)
def _load(path: str, stamp: int, split: str, _spec: AuditSpec) -> tuple[AuditResult, dict[str, np.ndarray]]:
    """An audit's result and ranking, read once per stored version (`stamp`); the arrays are only read."""
    result = result_for(_spec, Run(Path(path)))
    if result.probabilities is None:  # a training-image audit saved without its fold models' test judgement
        raise ValueError("it holds no judgement of the test images")
    return result, result.ranking


def _results(spec: AuditSpec, run: Run) -> None:
    dataset, split, runs_dir = spec.config.dataset, spec.split, runner().runs_dir
    try:
        result, ranking = _load(str(run.path), (run.path / RESULT_FILE).stat().st_mtime_ns, split, spec)
        images, _ = load_split(dataset, split == "train", runner().data_dir, download_missing=False)
    except (DatasetMissing, DatasetCorrupt) as error:
        st.error(plain_error(error), icon=":material/cloud_off:")
        return
    except CacheDamaged as error:  # e.g. cut off by a full disk or a copy; nothing to rebuild it from here
        st.error(f"The stored {plain_error(error)}. Press **Run again** above to audit these images again.", icon=":material/error:")
        return
    except UNREADABLE as error:
        st.error(
            f"This stored audit cannot be read ({error if isinstance(error, ValueError) else type(error).__name__})."
            " Run it again.",
            icon=":material/error:",
        )
        return
    if len(images) != len(result.labels):
        st.error(
            f"This audit judged {len(result.labels):,} images, but the {split} split here has "
            f"{len(images):,}. Run it again.",
            icon=":material/error:",
        )
        return
    try:
        marks = load_marks(dataset, split, runs_dir, by=visitor())
    except (MarksDamaged, NotYours) as error:
        st.error(plain_error(error), icon=":material/error:")
        marks = None  # the verdicts cannot be shown or changed, but the ranking still can
    if st.session_state.get(ERROR):
        st.error(st.session_state.pop(ERROR), icon=":material/error:")
    names = CLASS_NAMES[dataset]
    estimated = int(ranking["estimated"])
    st.markdown(
        f"**{result.out_of_sample_accuracy:.2f} %** out-of-sample accuracy · about **{estimated:,}** of "
        f"{len(result.labels):,} labels likely wrong · **{len(marks or {}):,}** marked so far",
        help="*Out-of-sample accuracy:* how often a model that never trained on an image gets it right. "
        "*Likely wrong:* confident learning's estimate. For each digit, it counts the images that the "
        "models confidently put in another class, and scales that share up to the whole class. That many "
        f"images, from the top of the ranking, are flagged. The ranking goes by {RANKED_BY.replace('_', '-')}: "
        "the lower the models' probability of the given label, the more suspicious.",
    )
    page_key = f"audit_page_{split}"
    flagged_col, unmarked_col, download_col = st.columns([2, 2, 2], vertical_alignment="center")
    flagged_only = flagged_col.toggle(
        "Flagged only", value=True, key=FLAGGED_ONLY, on_change=st.session_state.update, args=({page_key: 0},),
        help=f"Only the {estimated:,} most suspicious images, as many as the estimate of wrong labels. "
        "Off: every image of the split, most suspicious first.",
    )
    only_unmarked = unmarked_col.toggle(
        "Only unmarked", key=ONLY_UNMARKED, on_change=st.session_state.update, args=({page_key: 0},)
    )
    order = ranking["order"][:estimated] if flagged_only else ranking["order"]
    if only_unmarked and marks:
        order = order[~np.isin(order, list(marks))]
    if marks is not None:
        rows = {
            index: {
                "given": names[result.labels[index]],
                "suggested": names[ranking["suggested"][index]],
                "given_probability": round(float(ranking["given_probability"][index]), 4),
            }
            for index in marks
            if 0 <= index < len(result.labels)
        }
        download_col.download_button(
            "Download marks as CSV",
            marks_csv(dataset, split, rows, runs_dir, by=visitor()),
            file_name=f"label-marks-{dataset}-{split}.csv",
            mime="text/csv",
            icon=":material/download:",
            key="audit_download",
            on_click="ignore",
            disabled=not marks,
            width="stretch",
        )
    start, stop, pages = page_bounds(len(order), st.session_state.get(page_key, 0), PER_PAGE)
    if not len(order):
        if flagged_only and not estimated:
            st.info("The models find no label they are confident is wrong. Turn off **Flagged only** to see "
                    "every image, most suspicious first.", icon=":material/check:")
        else:
            st.info("Every image here is marked.", icon=":material/check:")
        return
    what = "Suspects" if flagged_only else "Images"
    st.caption(f"{what} {start + 1:,}–{stop:,} of {len(order):,}, most suspicious first.")
    shown = order[start:stop]
    for row in range(0, len(shown), COLUMNS):  # a row at a time, so a phone's single column keeps the order
        for column, index in zip(st.columns(COLUMNS), shown[row : row + COLUMNS]):
            with column:
                _card(int(index), images[index].numpy(), result, ranking, names, marks, (dataset, split, runs_dir))
    page = start // PER_PAGE
    back, where, forward = st.columns([1, 2, 1], vertical_alignment="center")
    back.button(
        "Previous",
        icon=":material/chevron_left:",
        key="audit_previous",
        disabled=page == 0,
        on_click=st.session_state.update,
        args=({page_key: page - 1},),
        width="stretch",
    )
    where.markdown(f"<div style='text-align:center'>page {page + 1:,} of {pages:,}</div>", unsafe_allow_html=True)
    forward.button(
        "Next",
        icon=":material/chevron_right:",
        key="audit_next",
        disabled=page == pages - 1,
        on_click=st.session_state.update,
        args=({page_key: page + 1},),
        width="stretch",
    )


def _card(
    index: int,
    image: np.ndarray,
    result: AuditResult,
    ranking: dict,
    names: tuple[str, ...],
    marks: dict[int, str] | None,
    where: tuple,
) -> None:
    given, suggested = int(result.labels[index]), int(ranking["suggested"][index])
    probabilities = result.probabilities[index]
    with st.container(border=True):
        st.markdown(
            _card_html(index, image, given, suggested, probabilities, names, bool(ranking["flagged"][index])),
            unsafe_allow_html=True,
        )
        dataset, split, runs_dir = where
        key = f"audit_mark_{dataset}_{split}_{index}"
        if marks is not None and st.session_state.get(key) != marks.get(index):
            st.session_state[key] = marks.get(index)  # the file is the truth (another tab may have marked it)
        st.segmented_control(
            "Verdict",
            VERDICTS,
            key=key,
            format_func=VERDICT_LABELS.get,
            label_visibility="collapsed",
            disabled=marks is None,
            on_change=_on_mark,
            args=(key, index, where, len(result.labels)),
        )


def _on_mark(key: str, index: int, where: tuple, count: int) -> None:
    dataset, split, runs_dir = where
    try:
        set_mark(dataset, split, index, st.session_state.get(key), runs_dir, count=count, by=visitor())
    except (ValueError, OSError, NotYours) as error:  # MarksDamaged and an index outside the split are ValueErrors
        st.session_state[ERROR] = f"The verdict on image {index} was not saved: {plain_error(error)}"


def _card_html(
    index: int,
    image: np.ndarray,
    given: int,
    suggested: int,
    probabilities: np.ndarray,
    names: tuple[str, ...],
    flagged: bool,
) -> str:
    """The image (enlarged with sharp pixels), the labels and ten tiny bars: one light HTML block per card."""
    buffer = io.BytesIO()
    Image.fromarray(thumbnail(image, scale=4)).save(buffer, format="PNG")  # 112 px, nearest neighbour
    picture = base64.b64encode(buffer.getvalue()).decode()
    colour = {given: RED, suggested: INDIGO}
    bars = "".join(
        f"<div title='{html.escape(names[c])}: {p * 100:.1f} %' style='display:flex;flex-direction:column;"
        f"justify-content:flex-end;align-items:center;width:14px;height:50px'>"
        f"<div style='width:11px;height:{max(1, round(p * 36))}px;background:{colour.get(c, MUTED)}'></div>"
        f"<div style='font-size:10px;line-height:14px;color:#6b7280'>{c}</div></div>"
        for c, p in enumerate(np.asarray(probabilities, dtype=float))
    )
    given_name, suggested_name = html.escape(names[given]), html.escape(names[suggested])
    badge = f" <span style='{BADGE}'>flagged</span>" if flagged else ""
    change = f"labelled <b style='color:{RED}'>{given_name}</b> · maybe <b style='color:{INDIGO}'>{suggested_name}</b>"
    reason = html.escape(why_suspected(given, suggested, float(probabilities[given]), float(probabilities[suggested]),
                                     names))
    return (
        "<div style='display:flex;gap:12px;align-items:flex-start'>"
        f"<img src='data:image/png;base64,{picture}' width='112' height='112' alt='image {index}' "
        "style='image-rendering:pixelated;border:1px solid #e5e7eb;border-radius:4px;flex:none'>"
        "<div style='font-size:14px;line-height:1.5;min-width:0'>"
        f"<div style='color:#6b7280;font-size:13px'>Image {index}{badge}</div><div>{change}</div>"
        f"<div style='color:#4b5563;font-size:13px'>{reason}</div>"
        f"<div style='display:flex;gap:1px;margin-top:4px' aria-label='probabilities of the classes 0 to 9'>{bars}</div>"
        "</div></div>"
    )

