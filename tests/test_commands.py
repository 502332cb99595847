"""`grokkit --help` lists every subcommand, and each of them answers `--help`; `--version`; no broken one."""

from importlib.metadata import version

import pytest

from grokkit.cli import TOOLS, TRAINER_COMMANDS, main


def test_help_lists_every_subcommand(capsys):
    main(["--help"])
    listed = [
        line.split()[0]
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("  ") and line[2] != "-"
    ]
    assert listed == [*TRAINER_COMMANDS, *TOOLS]
    for name in listed:
        with pytest.raises(SystemExit) as exit_info:
            main([name, "--help"])
        assert exit_info.value.code == 0
        usage = capsys.readouterr().out.splitlines()[0]  # that subcommand's own usage line
        assert usage.startswith("usage: grokkit ") and f" {name} " in f"{usage} "


def test_version(capsys):
    main(["--version"])
    assert capsys.readouterr().out == f"grokkit {version('grokkit')}\n"


@pytest.mark.parametrize("argv", [["predict"], []])
def test_no_or_an_unknown_subcommand_is_one_line(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("grokkit: error: ") and len(error.splitlines()) == 1
    assert f"choose one of {', '.join([*TRAINER_COMMANDS, *TOOLS])}" in error
