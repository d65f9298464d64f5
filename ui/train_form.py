"""The hyperparameters form: presets, every TrainConfig field, and problems shown next to their field.

"Leave out marked images" turns the verdicts of Mistakes → Suspected label errors (mnist_core.marks)
into the config's `exclude`, the exact indices, so the run records what it left out.
"""

from __future__ import annotations

import streamlit as st

from mnist_core.config import (
    DATASETS,
    DEVICES,
    OPTIMIZERS,
    PRESETS,
    SCHEDULES,
    TRAIN_IMAGES,
    TrainConfig,
    matching_preset,
    preset_label,
)
from mnist_core.marks import VERDICT_LABELS, MarksDamaged, leave_out
from mnist_core.models import MODELS
from mnist_core.policy import JobPolicy
from mnist_core.storage import plain_error
from mnist_core.visitors import NotYours
from ui.glossary import explain
from ui.hosted import visitor
from ui.state import runner

CUSTOM = "custom"
LEARNING_RATES = sorted({m * 10.0**e for e in range(-5, 1) for m in (1, 2, 3, 4, 5, 6, 8)} - {2.0, 3.0, 4.0, 5.0, 6.0, 8.0})
DEVICE_LABELS = {"auto": "Auto", "cpu": "CPU", "cuda": "CUDA GPU", "mps": "Apple GPU"}
DATASET_LABELS = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}
FIELDS = ("dataset", "model", "epochs", "batch_size", "lr", "optimizer", "schedule", "seed", "device",
          "weight_decay", "label_smoothing", "augment", "train_subset", "compile_model")


@st.cache_data(show_spinner=False)
def _parameter_count(model: str) -> int:
    return MODELS[model].parameters


def load_into_form(config: TrainConfig, preset: str = CUSTOM) -> None:
    """Put a config's values into the form's widgets (for presets and 'Reuse settings')."""
    for name in FIELDS:
        st.session_state[f"form_{name}"] = getattr(config, name)
    # Settings the form has no widget for (e.g. Adam's betas) are kept as they were. The images left
    # out come from the marks as they are now, not from the old list: reusing a run that left out
    # marked images ticks the box again.
    other = {k: v for k, v in config.to_dict().items() if k not in FIELDS and k != "exclude"}
    st.session_state["form_other"] = other
    st.session_state["form_preset"] = preset
    if preset == CUSTOM:  # a preset leaves the box as it was
        st.session_state["form_exclude_marked"] = bool(config.exclude)


def reuse_settings(config: TrainConfig) -> str:
    """'Reuse settings': a run's config into the form, under its preset's name when it was made
    from one (else Custom), the 'leave out marked images' box as that run had it. Returns the
    preset's name."""
    preset = matching_preset(config) or CUSTOM
    load_into_form(config, preset)
    st.session_state["form_exclude_marked"] = bool(config.exclude)
    return preset


def _on_preset_change() -> None:
    name = st.session_state["form_preset"]
    if name != CUSTOM:
        load_into_form(PRESETS[name].config, name)


def _problem_slot() -> st.delta_generator.DeltaGenerator:
    return st.empty()


def _leave_out_marked_ui(dataset: str) -> tuple[tuple[int, ...], str | None]:
    """The checkboxes; the training images they leave out (sorted) and, if the marks cannot be read, why."""
    wrong, ambiguous = VERDICT_LABELS["wrong"], VERDICT_LABELS["ambiguous"]
    if not st.checkbox(f"Leave out training images marked '{wrong}'", key="form_exclude_marked",
                       help="Mark them in Mistakes → Suspected label errors. The run records exactly which "
                            "images it left out."):
        return (), None
    also_ambiguous = st.checkbox(f"…and those marked '{ambiguous}'", key="form_exclude_ambiguous")
    try:
        marked = leave_out(dataset, TRAIN_IMAGES, runner().runs_dir, ambiguous=also_ambiguous, by=visitor())
    except (MarksDamaged, NotYours) as error:
        st.error(plain_error(error), icon=":material/error:")
        return (), plain_error(error)
    # Marks written before indices were checked may name no training image. Passed on, they would
    # make the config's `exclude` invalid and grey out Start with no message; they are left out
    # of the list instead, and said so.
    note = marked.note(dataset, TRAIN_IMAGES, runner().runs_dir, by=visitor())
    if note:
        st.warning(note, icon=":material/warning:")
    exclude = marked.indices
    if exclude:
        st.caption(f"Leaves out {len(exclude):,} of the {TRAIN_IMAGES:,} training images.")
    else:
        st.caption("No training images are marked that way yet: mark them in Mistakes → Suspected label errors.")
    return exclude, None


def hyperparameters_ui(policy: JobPolicy | None = None) -> tuple[TrainConfig, dict[str, str]]:
    """Draw the form; return the config it describes and its problems by field.

    `policy` is the job runner's (the hosted demo's epoch cap is stricter than TrainConfig's own)."""
    if "form_model" not in st.session_state:
        load_into_form(TrainConfig(), "case-study")
    preset = st.selectbox("Preset", [CUSTOM, *PRESETS], key="form_preset", on_change=_on_preset_change,
                          format_func=preset_label,
                          help="Fills in the form. Change any value afterwards.")
    st.caption(PRESETS[preset].description if preset in PRESETS else "Your own settings.")
    slots: dict[str, st.delta_generator.DeltaGenerator] = {}
    st.segmented_control("Dataset", DATASETS, key="form_dataset", format_func=DATASET_LABELS.get, required=True,
                         help="Fashion-MNIST has the same shape as MNIST (28×28, 10 classes) with clothes instead "
                              "of digits: a harder test for the same models.")
    model = st.selectbox("Model", list(MODELS), key="form_model",
                         format_func=lambda name: f"{name} ({_parameter_count(name):,} parameters)")
    st.caption(MODELS[model].description if model in MODELS else "")
    slots["model"] = _problem_slot()
    left, right = st.columns(2)
    with left:
        st.number_input("Epochs", step=1, key="form_epochs", help=explain("Epoch"))
        slots["epochs"] = _problem_slot()
    with right:
        st.number_input("Batch size", step=16, key="form_batch_size", help=explain("Batch size"))
        slots["batch_size"] = _problem_slot()
    lr_options = sorted(set(LEARNING_RATES) | {st.session_state["form_lr"]})
    st.select_slider("Learning rate (log scale)", lr_options, key="form_lr", format_func=lambda v: f"{v:g}",
                     help=explain("Learning rate"))
    slots["lr"] = _problem_slot()
    left, right = st.columns(2)
    with left:
        st.selectbox("Optimizer", OPTIMIZERS, key="form_optimizer",
                     format_func=lambda name: {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD + momentum"}[name],
                     help=explain("Optimizer", sentences=2))
        st.number_input("Random seed", step=1, key="form_seed", help=explain("Random seed"))
        slots["seed"] = _problem_slot()
    with right:
        st.selectbox("Schedule", SCHEDULES, key="form_schedule",
                     help=explain("Schedule", sentences=2))
        st.selectbox("Device", DEVICES, key="form_device", format_func=DEVICE_LABELS.get,
                     help="Auto: a CUDA GPU if there is one, else an Apple GPU, else the CPU.")
        slots["device"] = _problem_slot()
    with st.expander("More settings"):
        st.checkbox("Augment (small random shifts, rotations, zoom)", key="form_augment",
                    help=explain("Augmentation"))
        st.number_input("Weight decay", step=0.0001, format="%.4f", key="form_weight_decay",
                        help=explain("Weight decay"))
        slots["weight_decay"] = _problem_slot()
        st.number_input("Label smoothing", step=0.05, format="%.2f", key="form_label_smoothing",
                        help=explain("Label smoothing"))
        slots["label_smoothing"] = _problem_slot()
        st.number_input("Train on the first N images only (0 = all 60,000)", step=1000, key="form_train_subset")
        slots["train_subset"] = _problem_slot()
        st.checkbox("Compile the model first (torch.compile)", key="form_compile_model",
                    help="Compiles the model before training, in a minute or so, shown apart from the training "
                         "time. On a CPU it rarely pays off. On a GPU the app already replays each step as a CUDA "
                         "graph, which is quicker: compiling replaces that.")
        exclude, exclude_problem = _leave_out_marked_ui(st.session_state["form_dataset"])
        if not exclude_problem:  # (a damaged marks file is already shown above)
            slots["exclude"] = _problem_slot()  # any other problem with `exclude` is shown, never just a grey Start

    values = {name: st.session_state[f"form_{name}"] for name in FIELDS}
    other = {k: v for k, v in st.session_state.get("form_other", {}).items() if k != "exclude"}
    config = TrainConfig(**other, **values, exclude=exclude)
    problems = config.problems()
    if exclude_problem:  # training on every image when asked to leave some out would be wrong
        problems["exclude"] = exclude_problem
    epochs_problem = policy.epochs_problem(config) if policy and "epochs" not in problems else None
    if epochs_problem:
        problems["epochs"] = epochs_problem
    for field, message in problems.items():
        if field in slots:
            slots[field].error(message, icon=":material/error:")
    return config, problems
