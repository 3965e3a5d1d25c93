"""FreezeLab's entry point (`streamlit run streamlit_app.py`): the one page config, the navigation, the setup a
shared link carries, and on every page the sidebar's summary of the setup and the training device."""

import streamlit as st

from ui import navigation, resources, session

st.set_page_config(page_icon="🧊", layout="wide")  # each page's title (st.Page) names its browser tab
page = st.navigation(navigation.pages())
resources.training()  # opens and checks the run store on every page: a damaged one is said here, first
if problem := resources.operator_models()[1]:  # the operator's own networks (freezelab app --model-file)
    st.error(f"Your own network is not offered: {problem}")
session.keep_widget_values()  # the Train form's choices survive a visit to another page
session.open_shared_link()  # a session's first run: the setup in the URL, if any
with st.sidebar:
    summary = st.empty()
    with summary.container():
        navigation.setup_summary()
    navigation.run_filter()
page.run()
# Reached when the page ran to its end (st.stop and st.switch_page end the script run here, and Streamlit drops
# what is written after a stop): the summary again, now with what the page's widgets just set, and the URL.
with summary.container():
    navigation.setup_summary()
session.share_setup()  # the URL follows the setup, ready to be copied for a class
