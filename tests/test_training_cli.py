"""`cxr-fgbg finetune` as a user runs it: two processes under accelerate, and SIGKILL then --resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from test_fgbg_dataset import write_concepts

from cxr_fgbg.training.checkpoints import STATE_FILE, latest_checkpoint, list_checkpoints

ACCELERATE = os.path.join(os.path.dirname(sys.executable), "accelerate")


def child_env():
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    return env


def write_index(folder, n=6):
    """A minimal index folder (studies.csv + index.json) over n random 64x80 PNG 'radiographs'.

    Rows 0..n-2 are train rows (row 2 without text), row n-1 a test row."""
    (folder / "img").mkdir(parents=True)
    rows = []
    for i in range(n):
        pixels = (np.random.default_rng(i).random((80, 64)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / "img" / f"{i}.png")
        text = f"Small {'left' if i % 2 else 'right'} pleural effusion, number {i}." if i != 2 else " "
        rows.append({"subject_id": 10000000 + i, "study_id": 50000000 + i, "dicom_id": f"d{i}",
                     "image_path": f"img/{i}.png", "view_position": "PA", "split": "train" if i < n - 1 else "test",
                     "impression": text, "findings": "", "text": text, "text_source": "impression"})
    (folder / "index").mkdir()
    pd.DataFrame(rows).to_csv(folder / "index" / "studies.csv", index=False)
    (folder / "index" / "index.json").write_text(json.dumps({"mimic_root": str(folder)}))
    return folder / "index"


def read_steps(path):
    return pd.read_csv(path)["step"].tolist()


@pytest.mark.slow
def test_two_processes_under_accelerate_launch(tiny_model_dir, tmp_path):
    """`--multi_gpu` on a machine without GPUs + ACCELERATE_USE_CPU=1 = torchrun with gloo on CPU.

    (`accelerate launch --cpu --num_processes 2` starts ONE process in accelerate 1.x unless mpirun is used.)
    """
    index = write_index(tmp_path)
    out = tmp_path / "out"
    command = [ACCELERATE, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--main_process_port", "29533", "-m", "cxr_fgbg.cli.app", "finetune", "--model", str(tiny_model_dir),
               "--index", str(index), "--out", str(out), "--steps", "3", "--set", "finetune.per_device_batch_size=2",
               "--set", "finetune.checkpoint_every=2", "--set", "finetune.log_every=1"]
    done = subprocess.run(command, env=dict(child_env(), ACCELERATE_USE_CPU="1"), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    run = json.loads((out / "run.json").read_text())
    assert run["num_processes"] == 2
    assert run["samples_per_process_this_session"] == [6, 6]  # 3 steps x 2 images, on each process
    assert run["effective_batch_size"] == 4
    assert run["prompts"] == 4  # the train rows with a text only; the empty one is recorded as skipped
    assert pd.read_csv(out / "skipped.csv")["path"].tolist() == ["img/2.png"]
    assert read_steps(out / "loss.csv") == [1, 2, 3]  # one log, written once (by the main process)
    assert [step for step, _ in list_checkpoints(out / "checkpoints")] == [2, 3]
    assert sorted(p.name for p in (out / "checkpoints" / "checkpoint-3").glob("random_states_*.pkl")) == [
        "random_states_0.pkl", "random_states_1.pkl"]
    assert (out / "model" / "model_index.json").is_file()
    assert [p.name for p in out.iterdir() if p.name.startswith(".tmp")] == []


@pytest.mark.slow
def test_sigkill_loses_at_most_the_steps_since_the_last_checkpoint(tiny_model_dir, tmp_path):
    concepts = write_concepts(tmp_path / "concepts")
    out = tmp_path / "out"
    base = [sys.executable, "-m", "cxr_fgbg.cli.app", "finetune", "--model", str(tiny_model_dir), "--concepts",
            str(concepts), "--out", str(out), "--set", "finetune.objective=fgbg",
            "--set", "finetune.checkpoint_every=2", "--set", "finetune.log_every=1",
            "--set", "finetune.per_device_batch_size=2",
            "--set", "finetune.fgbg.rectangle={min_side: 2, min_area: 16, max_side: 8, max_area: 64}"]
    process = subprocess.Popen([*base, "--steps", "1000"], env=child_env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    try:
        # wait for a first checkpoint, then kill while a later one is being written (if we catch it)
        while latest_checkpoint(out / "checkpoints") is None and time.monotonic() < deadline:
            time.sleep(0.05)
        first = latest_checkpoint(out / "checkpoints")
        assert first is not None, "no checkpoint was written"
        catch_until = time.monotonic() + 20
        while time.monotonic() < catch_until and not list((out / "checkpoints").glob(".tmp-checkpoint-*")):
            time.sleep(0.001)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    logged = read_steps(out / "loss.csv")[-1]
    found = list_checkpoints(out / "checkpoints")
    assert found, "the kill removed every checkpoint"
    for _, folder in found:  # every visible checkpoint is complete
        assert (folder / STATE_FILE).is_file() and (folder / "optimizer.bin").is_file()
        assert (folder / "model.safetensors").is_file() and (folder / "random_states_0.pkl").is_file()
    last = found[-1][0]
    assert 0 <= logged - last <= 2  # at most checkpoint_every steps lost
    # a half-written checkpoint folder (simulated, whatever the kill left) is ignored by resume
    (out / "checkpoints" / f".tmp-checkpoint-{last + 2}").mkdir(exist_ok=True)
    (out / "checkpoints" / f".tmp-checkpoint-{last + 2}" / "optimizer.bin").write_bytes(b"garbage")

    done = subprocess.run([*base, "--steps", str(last + 2), "--resume"], env=child_env(), capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    run = json.loads((out / "run.json").read_text())
    assert run["resumed_from_step"] == last
    assert read_steps(out / "loss.csv") == list(range(1, last + 3))
    assert (out / "model" / "model_index.json").is_file()
    assert not list((out / "checkpoints").glob(".tmp-checkpoint-*"))


def test_cli_help_and_missing_inputs(tiny_model_dir, tmp_path):
    from typer.testing import CliRunner

    from cxr_fgbg.cli.app import app

    runner = CliRunner()
    shown = runner.invoke(app, ["finetune", "--help"])
    assert shown.exit_code == 0 and "--resume" in shown.output and "--concepts" in shown.output
    failed = runner.invoke(app, ["finetune", "--model", str(tiny_model_dir), "--out", str(tmp_path / "o")])
    assert "needs --index" in str(failed.exception)
    failed = runner.invoke(app, ["finetune", "--out", str(tmp_path / "o")])
    assert "--model" in str(failed.exception)
