"""FreezeLab's engine. Never imports streamlit.

Its tiers, each importing only from those before it (tests/test_layout.py holds them to it, and to this list):
runtime → data → models → freezing → training → links → store → execution → experiments → insight → lesson →
cli → __main__

freezing is the subject; links is the codec of shareable links; cli (with __main__, which starts it) is the
command line, beside the engine: nothing below it imports it.
"""
