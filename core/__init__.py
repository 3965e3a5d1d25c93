"""FreezeLab's engine. Never imports streamlit.

Its tiers, each importing only from those before it (tests/test_layout.py holds them to it):
runtime → data → models → freezing (the subject) → setups → training → store → execution → experiments,
insight → __main__ (the command line).
"""
