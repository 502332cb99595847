"""Reading what runs wrote, and drawing it: tables of runs and sweeps, plots, comparisons, exports."""

from grokkit.results.runs import load_run, load_sweep

__all__ = ["load_run", "load_sweep"]
