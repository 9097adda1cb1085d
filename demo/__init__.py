"""Demo wiring: what `make demo` runs beside Gantry (the sandbox server, the demo users).

The only Gantry-side code that may import `sandbox/`; Gantry's own apps never do."""
