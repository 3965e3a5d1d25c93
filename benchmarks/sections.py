"""The benchmark's sections, in the order `freezelab bench` runs them (what each measures: benchmarks/bench.py).
Apart from bench.py so that the command line lists them without importing torch."""

SECTIONS = ("loop", "recording", "attribution", "app", "redraw", "scale")
