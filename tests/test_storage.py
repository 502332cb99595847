"""A checkpoint write that fails (a full disk) stops the run in one line and keeps the previous checkpoint,
which still loads and resumes; a run directory that cannot be created is refused before training."""

import errno
import os

import pytest
import torch
from test_bad_input import rerun
from test_cli import tiny_args

from grokkit.cli import main

LAST = "runs/tiny/version_0/checkpoints/last.ckpt"


def test_a_full_disk_during_a_checkpoint_write_keeps_the_previous_checkpoint_which_resumes(
    tmp_path, monkeypatch, capsys
):
    save = torch.save

    def disk_full_after_step_10(obj, f, *args, **kwargs):
        """Like a disk that fills up: the write of a later last.ckpt gets half way, then ENOSPC."""
        if ".last.ckpt." in str(getattr(f, "name", "")) and obj["global_step"] > 10:
            f.write(b"half a checkpoint")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", disk_full_after_step_10)
    steps = [
        "--trainer.max_steps=20",
        "--checkpoint.every_n_train_steps=10",
        "--trainer.enable_progress_bar=false",
    ]
    with pytest.raises(SystemExit) as exit_info:
        main(tiny_args(tmp_path, *steps))
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        f"grokkit: error: cannot write checkpoint {tmp_path / LAST} (No space left on device); the checkpoint "
        f"there before, if any, is intact; free disk space or fix the permissions of {(tmp_path / LAST).parent}, "
        "then resume with --ckpt_path last"
    )
    assert sorted(path.name for path in (tmp_path / LAST).parent.iterdir()) == ["last.ckpt"]  # no half file
    assert torch.load(tmp_path / LAST, weights_only=True)["global_step"] == 10

    monkeypatch.setattr(torch, "save", save)  # space freed
    main(rerun(tmp_path, "--ckpt_path=last", *steps))
    assert torch.load(tmp_path / LAST, weights_only=True)["global_step"] == 20


def test_a_run_directory_that_cannot_be_created_is_refused_in_one_line(tmp_path, capsys):
    (tmp_path / "a_file").write_text("not a directory")
    with pytest.raises(SystemExit) as exit_info:
        main(tiny_args(tmp_path, f"--trainer.logger.init_args.save_dir={tmp_path / 'a_file' / 'runs'}"))
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"grokkit: error: trainer.logger.init_args.save_dir={tmp_path / 'a_file' / 'runs'}: cannot create the run "
        f"directory {tmp_path / 'a_file' / 'runs' / 'tiny' / 'version_0'} (Not a directory); choose a writable directory"
    )
