"""Hosted demo mode: the limits a public link needs, switched on by one setting.

Set the environment variable `MNIST_HOSTED=1`, or `MNIST_HOSTED = true` in Streamlit's
secrets (`.streamlit/secrets.toml`, or the secrets box of Streamlit Community Cloud). Then:
epochs are capped, each browser session may have one queued or running job, all visitors
share `MNIST_MAX_JOBS` training slots (default 1) and a queue of limited length, and nobody
can delete runs that another session started.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

import streamlit as st

from mnist_core.runs import ACTIVE_STATES, Run


@dataclass(frozen=True)
class Limits:
    hosted: bool
    max_epochs: int | None  # None: no cap beyond TrainConfig's own
    max_queued: int | None  # jobs waiting for a slot, across all visitors
    jobs_per_session: int | None


def _secret_flag() -> bool:
    try:
        return str(st.secrets.get("MNIST_HOSTED", "")).lower() in ("1", "true", "yes")
    except (FileNotFoundError, OSError, ValueError):  # no secrets file: not hosted
        return False
    except Exception:  # noqa: BLE001 - a malformed secrets file must not break the page
        return False


def limits() -> Limits:
    hosted = os.environ.get("MNIST_HOSTED", "").lower() in ("1", "true", "yes") or _secret_flag()
    if not hosted:
        return Limits(False, None, None, None)
    return Limits(True, max_epochs=int(os.environ.get("MNIST_HOSTED_MAX_EPOCHS") or 5), max_queued=8,
                  jobs_per_session=1)


def session_id() -> str:
    """A random id for this browser session; runs record it as their owner."""
    return st.session_state.setdefault("session_id", uuid.uuid4().hex)


def start_problem(active_runs: list[Run], queued: int) -> str | None:
    """Why this session may not start another job now, or None."""
    rules = limits()
    mine = [run for run in active_runs if run.status().get("owner") == session_id()
            and run.status().get("state") in ACTIVE_STATES]
    if rules.jobs_per_session is not None and len(mine) >= rules.jobs_per_session:
        return "This shared demo runs one job per visitor at a time: stop yours, or wait for it to finish."
    if rules.max_queued is not None and queued >= rules.max_queued:
        return f"The demo is busy: {queued} jobs are waiting already. Please try again in a few minutes."
    return None


def may_delete(run: Run) -> bool:
    return not limits().hosted or run.status().get("owner") == session_id()
