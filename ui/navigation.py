"""The app's pages in the order the sidebar lists them, and the sidebar's summary of the current setup.

The one list of pages: `streamlit_app.py` hands it to `st.navigation`; pages link to each other by their
file path (`st.switch_page("app_pages/train.py")`).
"""

from __future__ import annotations

import streamlit as st

from core import links
from core.runtime.device import describe_device_if_loaded
from ui import resources, session


def pages() -> dict[str, list[st.Page]]:
    """Sections of pages, in sidebar order."""
    return {
        "": [st.Page("app_pages/start.py", title="Start", icon="🧊", default=True),
             st.Page("app_pages/lesson.py", title="Lesson", icon="🎓")],
        "Set up": [st.Page("app_pages/data.py", title="Data", icon="🗂️"),
                   st.Page("app_pages/layers.py", title="Layers", icon="🧱")],
        "Training": [st.Page("app_pages/train.py", title="Train", icon="🏋️"),
                     st.Page("app_pages/experiments.py", title="Experiments", icon="🧪")],
        "Look closer": [st.Page("app_pages/inside.py", title="Inside", icon="🔬"),
                        st.Page("app_pages/compare.py", title="Compare", icon="📊"),
                        st.Page("app_pages/explain.py", title="Explain", icon="🔍")],
    }


def setup_summary() -> None:
    """The current setup in five short lines and the device runs train on, once this server has loaded torch
    (a cold server's first page does not wait for it: `training.warm_up` loads it soon after)."""
    lines = links.describe(session.current_setup())
    st.markdown("**Setup**  \n" + "  \n".join(f"{k}: {v}" for k, v in lines.items()))
    if device := describe_device_if_loaded(resources.training_threads()):
        st.caption(f"Trains on {device}")


def run_filter() -> None:
    """Whose runs the pages list: this browser's (and the command line's), or everyone's on this server."""
    st.toggle("Show everyone's runs", key=session.SHOW_ALL_KEY,
              help="Off: the pages list the runs made in this browser, and those made on the command line. "
                   "On: every run on this server, for a class sharing one FreezeLab.")
