"""What app.py's st.App is made of, beside the app's script: its extra routes and how it ends.

`streamlit run app.py` sees the st.App in app.py and serves it with uvicorn. Three things come
with that, all here:
- the live view's routes (ui/live_feed.py): a run's progress as JSON, and "the page is drawn";
- the end. Once uvicorn has closed every connection it runs the app's lifespan to its end, and
  would then re-raise the signal that stopped it: SIGTERM would end the process as killed (exit
  code -15). So in a server that has run the app, the lifespan stops Streamlit's runtime, waits
  for it, and ends the process with exit code 0 (mnist_core.shutdown.exit_now); a stop that hangs
  is ended by shutdown's deadline (exit code 1, the threads' stacks on stderr).
- a second Ctrl-C: uvicorn's own ends the process in tracebacks, skipping the end above; the
  lifespan's start has it end the process at once instead (mnist_core.shutdown.second_ctrl_c_ends_at_once).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from mnist_core import shutdown
from ui import live_feed

ROUTES = [*live_feed.ROUTES]  # the app's routes beside Streamlit's own


@asynccontextmanager
async def lifespan(_app: Any) -> AsyncIterator[None]:
    shutdown.second_ctrl_c_ends_at_once()  # uvicorn's own second Ctrl-C ends in a traceback
    yield
    from streamlit import runtime
    from streamlit.runtime import RuntimeState

    # Only in a server that has run the app (the page's first run calls shutdown.watch), never in a
    # process that merely mounts or tests this app: that one ends its own way.
    if not (runtime.exists() and shutdown.watching()):
        return
    server = runtime.get_instance()
    server.stop()  # what Streamlit would do next; it ends its sessions' script runs
    # Streamlit's runtime stops in well under a second. Should it hang, shutdown's deadline (armed
    # when the watcher saw the stop) ends the process, exit code 1, with every thread's stack on
    # stderr; returning instead would let uvicorn re-raise SIGTERM and end it as killed, saying nothing.
    while server.state != RuntimeState.STOPPED:
        await asyncio.sleep(0.05)
    shutdown.exit_now()
