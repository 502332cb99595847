"""``python -m grokkit.results RUN_OR_SWEEP_DIR OUT.csv``: a run's scalars or a sweep's table as CSV."""

from pathlib import Path

from grokkit.atomic import atomic_write
from grokkit.cli import errors_in_one_line
from grokkit.cli.parser import ToolParser
from grokkit.outputs import check_file
from grokkit.results.runs import SWEEP_PLAN, check_run_dir, load_run, load_sweep

parser = ToolParser(
    prog="python -m grokkit.results", description="Write a run's scalars or a sweep's table as CSV."
)
parser.add_argument("source", type=Path, help="a run directory or a sweep directory")
parser.add_argument("out", type=Path, help="the CSV file to write")
args = parser.parse_args()
with errors_in_one_line():
    check_file(args.out, "OUT")
    if (args.source / SWEEP_PLAN).is_file():
        table = load_sweep(args.source)
    else:
        table = load_run(check_run_dir(args.source)).scalars
    atomic_write(args.out, lambda f: table.to_csv(f, index=False))
print(f"{len(table)} rows -> {args.out}")
