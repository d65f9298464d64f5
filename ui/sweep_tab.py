"""The Train page's Sweep tab: build a hyperparameter sweep, start it on Ray, watch its trials.

The form only gathers a `SweepSpec`; `mnist_core.sweep` parses and checks it and says how many
runs it makes, and the job runner's policy says whether it may start, so the page explains a
problem before anyone presses Start. The sweeps themselves are shown by `ui.sweep_live`.
"""

from __future__ import annotations

import streamlit as st

from mnist_core.config import OPTIMIZERS, PRESETS, ConfigError, preset_label
from mnist_core.data import DATASET_NAMES, DatasetMissing, is_present
from mnist_core.job import SWEEP
from mnist_core.jobs import RayMissing
from mnist_core.models import MODELS
from mnist_core.policy import QuotaExceeded
from mnist_core.storage import plain_error
from mnist_core.sweep import (
    RAY_INSTALL,
    SWEEPABLE,
    Range,
    SweepSpec,
    parse_value,
    ray_problem,
)
from ui.hosted import visitor
from ui.state import runner
from ui.sweep_live import LABELS, SWEEP_CHOSEN, live_sweep

CHOICES = {"optimizer": OPTIMIZERS, "model": tuple(MODELS)}  # picked from the allowed values, never typed
DEFAULT_VALUES = {
    "lr": "0.01, 0.003, 0.001",
    "batch_size": "64, 128, 256",
    "epochs": "1, 2",
    "label_smoothing": "0, 0.1, 0.2",
    "weight_decay": "0, 0.0001, 0.001",
    "seed": "0, 1, 2",
}
# (low, high, log scale, step) of each number's range; learning rates are tried on a log scale.
DEFAULT_RANGES = {
    "lr": (0.001, 0.03, True, 0.001),
    "batch_size": (32, 512, False, 16),
    "epochs": (1, 3, False, 1),
    "label_smoothing": (0.0, 0.2, False, 0.05),
    "weight_decay": (0.0, 0.001, False, 0.0001),
    "seed": (0, 1000, False, 1),
}
ASHA_HELP = (
    "ASHA (asynchronous successive halving) compares trials after each epoch and stops those in the "
    "bottom half on validation accuracy, so the time goes to the promising ones. It needs trials of "
    "several epochs: a one-epoch trial is never stopped early."
)


def sweep_tab() -> None:
    form, live = st.columns([1, 2.2], gap="large")
    with form:
        count = _sweep_form()
    with live:
        live_sweep(count)


def _field(name: str, slot_of: dict) -> tuple[tuple | None, Range | None]:
    """One varied setting's widgets; its values (a list) or its range, and a slot for its problems."""
    with st.container(border=True):
        if name in CHOICES:
            picked = st.pills(
                LABELS[name],
                CHOICES[name],
                selection_mode="multi",
                key=f"sweep_values_{name}",
                default=list(CHOICES[name]),
            )
            slot_of[name] = st.empty()
            return tuple(picked), None
        mode = st.segmented_control(
            LABELS[name],
            ["List", "Range"],
            default="List",
            required=True,
            key=f"sweep_mode_{name}",
            help="List: train each value. Range: each trial draws a value from it.",
        )
        if mode == "List":
            text = st.text_input("Values, separated by commas", DEFAULT_VALUES[name], key=f"sweep_values_{name}")
            slot_of[name] = st.empty()
            values = tuple(parse_value(name, part) for part in text.split(",") if part.strip())  # raises ConfigError
            return values, None
        low, high, log, step = DEFAULT_RANGES[name]
        left, right = st.columns(2)
        number = "%g" if SWEEPABLE[name] is float else "%d"
        low = left.number_input("From", value=low, step=step, format=number, key=f"sweep_low_{name}")
        high = right.number_input("To", value=high, step=step, format=number, key=f"sweep_high_{name}")
        log = st.checkbox(
            "Log scale",
            value=log,
            key=f"sweep_log_{name}",
            help="Draw evenly in the logarithm: as many tries between 0.001 and 0.01 as between "
            "0.01 and 0.1. Right for learning rates.",
        )
        slot_of[name] = st.empty()
        return None, Range(float(low), float(high), log=log)


def _sweep_form() -> int | None:
    """Draw the form and its Start button; return how many runs the sweep makes (None while it is not valid)."""
    policy = runner().policy
    presets = list(PRESETS)
    preset = st.selectbox(
        "Base settings",
        presets,
        index=presets.index("fast"),
        key="sweep_preset",
        format_func=preset_label,
        help="Every trial starts from this preset and changes only the settings below.",
    )
    st.caption(PRESETS[preset].description)
    names = st.multiselect(
        "Settings to vary", list(SWEEPABLE), default=["lr"], key="sweep_fields", format_func=LABELS.get
    )
    slot_of: dict[str, st.delta_generator.DeltaGenerator] = {}
    grid, sample, problems = {}, {}, {}
    for name in names:
        try:
            values, span = _field(name, slot_of)
        except ConfigError as error:
            problems[name] = error.message
            continue
        if span is None:
            grid[name] = values
        else:
            sample[name] = span
    left, right = st.columns(2)
    trials = left.number_input(
        "Trials per grid point",
        min_value=1,
        value=1,
        step=1,
        key="sweep_trials",
        help="How often each combination of the listed values is trained; a range draws "
        "a fresh value for every trial (Ray Tune's num_samples).",
    )
    slot_of["trials"] = left.empty()
    concurrent = right.number_input(
        "Trials at once",
        min_value=1,
        value=1,
        step=1,
        key="sweep_concurrent",
        help="How many trials train at the same time, sharing the machine's cores (or the Ray cluster's).",
    )
    slot_of["max_concurrent"] = right.empty()
    seed = 0
    if sample:
        seed = st.number_input(
            "Sampling seed",
            min_value=0,
            value=0,
            step=1,
            key="sweep_seed",
            help="The same seed draws the same values from the ranges again.",
        )
    asha = st.checkbox("Stop poor trials early (ASHA)", key="sweep_asha", help=ASHA_HELP)

    spec = SweepSpec.from_preset(
        preset, grid=grid, sample=sample, trials=int(trials), max_concurrent=int(concurrent), asha=asha, seed=int(seed)
    )
    general = st.empty()
    count = None
    if not names:
        problems["fields"] = "Choose at least one setting to vary."
    if not problems:
        try:
            spec.validate()
        except ConfigError as error:
            problems[error.field] = error.message
        else:
            count = spec.count()
    for field, message in problems.items():
        where = slot_of.get(field)
        if where is not None:
            where.error(message, icon=":material/error:")
        else:  # a setting of the base preset, or the form as a whole
            general.error(
                f"{LABELS.get(field, field)}: {message}" if field != "fields" else message, icon=":material/error:"
            )

    policy_problem = policy.sweep_problem(spec) if count is not None else None
    if count is not None:
        longest = max(config.epochs for config in spec.configs())
        st.markdown(
            f"**This sweep makes {count} run{'s' if count != 1 else ''}**, "
            f"{'one' if spec.max_concurrent == 1 else f'up to {spec.max_concurrent}'} at a time, "
            f"each of up to {longest} epoch{'s' if longest != 1 else ''}."
        )
        if sample and spec.trials == 1:  # a range alone draws a single value, which surprises
            st.caption("A range draws one value per trial: raise *Trials per grid point* to try more of it.")
        if asha and longest == 1:
            st.caption("Every trial is one epoch long, so ASHA has nothing to stop early.")
    if policy_problem:
        st.error(policy_problem, icon=":material/block:")
    if policy.max_sweep_trials is not None:
        epochs = f", each of up to {policy.max_epochs} epochs" if policy.max_epochs else ""
        st.caption(
            f"On this shared demo a sweep makes at most {policy.max_sweep_trials} runs, "
            f"{policy.max_sweep_concurrent or 1} at a time{epochs}."
        )
    missing_ray = ray_problem()
    if missing_ray:
        st.info(
            missing_ray.partition(" Install it with")[0] + " Install it, then restart the app:",
            icon=":material/extension:",
        )
        st.code(RAY_INSTALL, language="bash")
    busy = runner().start_problem(visitor().id, SWEEP)
    if busy:
        st.info(busy, icon=":material/hourglass_top:")
    dataset_missing = not is_present(spec.base.dataset)
    if dataset_missing:  # the Single run tab offers the download; one button for it on the page is enough
        st.warning(
            f"{DATASET_NAMES[spec.base.dataset]} has not been downloaded yet: "
            "download it in the Single run tab first.",
            icon=":material/cloud_off:",
        )
    blocked = count is None or bool(policy_problem or missing_ray or busy or dataset_missing)
    if st.button(
        "Start sweep",
        type="primary",
        icon=":material/play_arrow:",
        width="stretch",
        disabled=blocked,
        key="sweep_start",
        help="Fix the problems marked in red first." if problems else None,
    ):
        try:
            sweep = runner().submit_sweep(spec, owner=visitor().id)
        except (ConfigError, QuotaExceeded, RayMissing, DatasetMissing, OSError) as error:
            st.error(f"Could not start the sweep: {plain_error(error)}", icon=":material/error:")
        else:
            st.session_state[SWEEP_CHOSEN] = sweep.id  # the list of sweeps, drawn after this form, shows it
            st.toast(f"Started sweep {sweep.id}")
            st.rerun()
    return count
