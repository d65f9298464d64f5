"""Hosted demo mode: the limits a public link needs, switched on by one setting.

Set the environment variable `MNIST_HOSTED=1`, or `MNIST_HOSTED = true` in Streamlit's
secrets (`.streamlit/secrets.toml`, or the secrets box of Streamlit Community Cloud). The
limits themselves are `mnist_core.policy.JobPolicy.hosted`, enforced by the job runner:
epochs are capped (`MNIST_HOSTED_MAX_EPOCHS`, default 5), each browser session may have one
queued or running job, the queue is short, and nobody can delete runs another session started.

Sweeps are off on a hosted demo unless `MNIST_HOSTED_SWEEPS=1` (or the secret) turns them on,
capped at 4 trials, one at a time: a sweep on a local Ray peaks at about 2.1 GB (PSS) besides
the server's 0.9 GB, more than Community Cloud's 2.7 GB.
"""

from __future__ import annotations

import os
import uuid

import streamlit as st

from mnist_core.policy import HOSTED_MAX_EPOCHS, JobPolicy
from mnist_core.runs import Run


def _flag(name: str) -> bool:
    """A yes/no setting from the environment or Streamlit's secrets."""
    return os.environ.get(name, "").lower() in ("1", "true", "yes") or _secret_flag(name)


def _secret_flag(name: str) -> bool:
    try:
        return str(st.secrets.get(name, "")).lower() in ("1", "true", "yes")
    except (FileNotFoundError, OSError, ValueError):  # no secrets file: not hosted
        return False
    except Exception:  # noqa: BLE001 - a malformed secrets file must not break the page
        return False


def hosted() -> bool:
    return _flag("MNIST_HOSTED")


def job_policy() -> JobPolicy:
    if not hosted():
        return JobPolicy()
    try:
        max_epochs = int(os.environ.get("MNIST_HOSTED_MAX_EPOCHS") or HOSTED_MAX_EPOCHS)
    except ValueError:
        max_epochs = HOSTED_MAX_EPOCHS
    return JobPolicy.hosted(max_epochs=max_epochs, sweeps=_flag("MNIST_HOSTED_SWEEPS"))


def session_id() -> str:
    """A random id for this browser session; runs record it as their owner."""
    return st.session_state.setdefault("session_id", uuid.uuid4().hex)


def may_delete(run: Run) -> bool:
    return not hosted() or run.status().get("owner") == session_id()
