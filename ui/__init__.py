"""Streamlit helpers shared by the pages: namespaced session state and cached loaders."""
