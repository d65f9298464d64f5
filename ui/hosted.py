"""Hosted demo mode: the limits a public link needs, switched on by one setting.

Set the environment variable `MNIST_HOSTED=1`, or `MNIST_HOSTED = true` in Streamlit's
secrets (`.streamlit/secrets.toml`, or the secrets box of Streamlit Community Cloud). The
limits themselves are `mnist_core.policy.JobPolicy.hosted`, enforced by the job runner:
epochs are capped (`MNIST_HOSTED_MAX_EPOCHS`, default 5), each visitor may have one queued or
running job, the whole server a few, and the heavy kinds run one at a time.

Each visitor is anonymous: a random id in a signed cookie (`visitor`, and mnist_core.visitors
for how it is made and how long it lasts). Every action on someone's work names the visitor, and
the core refuses it unless they started that work; the pages only hide what would be refused.

Sweeps are off on a hosted demo unless `MNIST_HOSTED_SWEEPS=1` (or the secret) turns them on,
capped at 4 trials, one at a time: a sweep on a local Ray peaks at about 2.1 GB (PSS) besides
the server's 0.9 GB, more than Community Cloud's 2.7 GB.
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
import time

import streamlit as st

from mnist_core.policy import HOSTED_MAX_EPOCHS, JobPolicy
from mnist_core.runs import default_runs_dir
from mnist_core.visitors import RENEW_AFTER_SECONDS, TOKEN_DAYS, Visitor, new_id, server_secret, sign, verify


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
    if _flag("MNIST_HOSTED"):
        # Said in the environment too, for the core (`storage.hosted`: no server paths in messages)
        # and every job this server starts, when only Streamlit's secrets said so.
        os.environ["MNIST_HOSTED"] = "1"
        return True
    return False


def job_policy() -> JobPolicy:
    if not hosted():
        return JobPolicy()
    try:
        max_epochs = int(os.environ.get("MNIST_HOSTED_MAX_EPOCHS") or HOSTED_MAX_EPOCHS)
    except ValueError:
        max_epochs = HOSTED_MAX_EPOCHS
    return JobPolicy.hosted(max_epochs=max_epochs, sweeps=_flag("MNIST_HOSTED_SWEEPS"))


log = logging.getLogger(__name__)

COOKIE = "mnist_visitor"
_VISITOR = "visitor_id"  # session_state: this browser session's visitor id, once known
_TOKEN_TO_SET = "visitor_token_to_set"  # session_state: a token the browser still has to store


def visitor() -> Visitor:
    """Who is acting in this browser session: on a hosted demo, an anonymous visitor that every
    action names, so the core lets them change only their own work (mnist_core.visitors)."""
    return Visitor(visitor_id(), hosted=hosted())


def visitor_id() -> str:
    """This browser's visitor id: the one its signed cookie carries, or a new one.

    The cookie comes with the request that opened this session, so a reload or a new tab in the
    same browser is the same visitor. A new id (or a renewed token for an old one) is given to the
    browser by `keep_visitor_cookie`, which app.py calls on every run."""
    known = st.session_state.get(_VISITOR)
    if known:
        return known
    if not hosted():  # a private install has no owners: an id per session, only to label its jobs
        return st.session_state.setdefault(_VISITOR, new_id())
    secret = _secret()
    try:
        token = st.context.cookies.get(COOKIE)
    except Exception:  # noqa: BLE001 - no request behind this session (AppTest): no cookie
        token = None
    verified = verify(token, secret)
    if verified is None:
        visitor_id = new_id()
        st.session_state[_TOKEN_TO_SET] = sign(visitor_id, secret)
    else:
        visitor_id, issued = verified
        if time.time() - issued > RENEW_AFTER_SECONDS:  # the same id, a month more from today
            st.session_state[_TOKEN_TO_SET] = sign(visitor_id, secret)
    st.session_state[_VISITOR] = visitor_id
    return visitor_id


_fallback_secret = secrets.token_bytes(32)


def _secret() -> bytes:
    try:
        return server_secret(default_runs_dir())
    except OSError as error:  # a full or read-only runs folder: identities last until the server restarts
        log.warning("visitor identities will not survive a restart: %s", error)
        return _fallback_secret


# Runs in the page itself (components v2 mount into the app's document, not an iframe), so
# `document.cookie` is the app's own. SameSite=Lax: sent when the app's link is opened from
# elsewhere, never with another site's requests. Secure where the page is served over https.
_SET_COOKIE_JS = """
export default function (component) {
  const { token, name, maxAge } = component.data;
  if (!token || document.cookie.split("; ").includes(`${name}=${token}`)) return;
  const secure = window.location.protocol === "https:" ? "; Secure" : "";
  document.cookie = `${name}=${token}; Max-Age=${maxAge}; Path=/; SameSite=Lax${secure}`;
}
"""


def keep_visitor_cookie() -> None:
    """On a hosted demo, hand the browser its visitor token when it needs one (first visit, or a
    token over a day old). Invisible; app.py calls it on every run, in the sidebar's end."""
    if not hosted():
        return
    visitor_id()
    token = st.session_state.get(_TOKEN_TO_SET)
    if token:
        _cookie_setter()(data={"token": token, "name": COOKIE, "maxAge": TOKEN_DAYS * 24 * 3600},
                         key="visitor_cookie", height=0)


@functools.cache
def _cookie_setter():
    return st.components.v2.component("mnist_visitor_cookie", js=_SET_COOKIE_JS)


def may_change(owner: str) -> bool:
    """Whether this visitor may stop, delete or reuse work started by `owner` (for hiding buttons;
    the core refuses what is not allowed anyway)."""
    return visitor().owns(owner)


NOT_YOURS_HELP = "On this shared demo only the visitor who started a run can reuse or delete it."
