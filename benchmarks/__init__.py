"""Benchmarks of the app as a user meets it (`freezelab bench`): outside the engine, beside it."""
