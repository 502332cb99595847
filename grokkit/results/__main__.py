"""``python -m grokkit.results RUN_OR_SWEEP_DIR OUT.csv``: a run's scalars or a sweep's table as CSV."""

import sys
from pathlib import Path

from grokkit.results.runs import SWEEP_PLAN, load_run, load_sweep

source, out = Path(sys.argv[1]), Path(sys.argv[2])
table = load_sweep(source) if (source / SWEEP_PLAN).is_file() else load_run(source).scalars
table.to_csv(out, index=False)
print(f"{len(table)} rows -> {out}")
