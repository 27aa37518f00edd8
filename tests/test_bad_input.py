"""Every bad input is refused before any compute: one line naming the problem and the allowed
values, exit code 2, nothing written. Each row runs the real command line (bench.cli.main) in
process; one end-to-end subprocess check at the bottom."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import main
from tasks import TASKS
from variants import VARIANTS

REPO = Path(__file__).resolve().parent.parent
# Task choices that are a registered task with some options set (conf/task/<name>.yaml, e.g. copy_variable)
TASK_PRESETS = [path.stem for path in (REPO / "bench" / "conf" / "task").glob("*.yaml")]

BAD_INPUTS = [
    # names: unknown groups, keys and additions
    (["variant=nosuch"], f"unknown variant 'nosuch'; allowed: {', '.join(sorted(VARIANTS))}$"),
    (["task=nosuch"], f"unknown task 'nosuch'; allowed: {', '.join(sorted({*TASKS, *TASK_PRESETS}))}$"),
    (["train.step=5"], "unknown config key 'train.step'; allowed keys in 'train': steps, lr,"),
    (["trian.steps=5"], "unknown config key 'trian.steps'; allowed keys: variant, task, seed"),
    (["variant.rope_bse=2"], "unknown config key 'variant.rope_bse'; allowed keys in 'variant': name, rope_base"),
    (["analysis.head_scores.probes=3"], "unknown config key 'analysis.head_scores.probes'; allowed keys in 'analysis.head_scores': probe_sequences"),
    (["+train.extra=1"], "'\\+train.extra=1' adds or deletes a config key, which is not allowed"),
    (["~train.lr"], "'~train.lr' adds or deletes a config key"),
    (["+experiment=nope"], r"'\+experiment=nope': choose one with \+experiment=<name>; allowed: "),
    (["+debug=huge"], r"'\+debug=huge': choose one with \+debug=<name>; allowed: tiny"),
    (["variant=nope", "model.learned_positions=true"], "variant nope is defined without a positional signal, and "
     "model.learned_positions=true would give it one; allowed: model.learned_positions=false$"),
    (["plugins=[no_such_lab.attention]"], "plug-in 'no_such_lab.attention' could not be imported: ModuleNotFoundError: No module named 'no_such_lab'$"),
    (["plugins=./nowhere.py"], "plug-in '/.*/nowhere.py' could not be imported: FileNotFoundError: no file at /.*/nowhere.py$"),
    # types
    (["train.steps=abc"], "could not be converted to Integer"),
    (["train.lr=fast"], "could not be converted to Float"),
    (["model.mlp=maybe"], "invalid value in model.mlp=maybe: Value 'maybe' is not a valid bool"),
    (["seed=[1,2]"], "invalid value in seed=\\[1,2\\]"),
    # ranges and finiteness, of the schema and of the plug-ins' own options
    (["train.steps=0"], r"train.steps=0 is out of range; allowed: \[1, 1000000000\]$"),
    (["train.steps=-3"], "train.steps=-3 is out of range"),
    (["train.lr=0"], r"train.lr=0.0 is out of range; allowed: \(0, 10\]$"),
    (["train.lr=inf"], r"train.lr=inf is not a finite number; allowed: \(0, 10\]$"),
    (["train.lr=nan"], r"train.lr=nan is not a finite number; allowed: \(0, 10\]$"),
    (["train.lr=-1e-3"], "train.lr=-0.001 is out of range"),
    (["train.weight_decay=inf"], r"train.weight_decay=inf is not a finite number; allowed: \[0, 100\]$"),
    (["train.weight_decay=nan"], r"train.weight_decay=nan is not a finite number; allowed: \[0, 100\]$"),
    (["train.weight_decay=-0.1"], r"train.weight_decay=-0.1 is out of range; allowed: \[0, 100\]$"),
    (["train.grad_clip=nan"], r"train.grad_clip=nan is not a finite number; allowed: \[0, 1000000\]$"),
    (["train.grad_clip=-1"], "train.grad_clip=-1.0 is out of range"),
    (["train.beta1=1.0"], r"train.beta1=1.0 is out of range; allowed: \[0, 1\)$"),
    (["train.beta2=-0.5"], "train.beta2=-0.5 is out of range"),
    (["train.batch_size=0"], r"train.batch_size=0 is out of range; allowed: \[1, 1048576\]$"),
    (["train.eval_every=0"], "train.eval_every=0 is out of range"),
    (["train.eval_batches=0"], "train.eval_batches=0 is out of range"),
    (["train.warmup_steps=-1"], "train.warmup_steps=-1 is out of range"),
    (["train.min_lr_ratio=1.5"], r"train.min_lr_ratio=1.5 is out of range; allowed: \[0, 1\]$"),
    (["train.target_accuracy=1.5"], r"train.target_accuracy=1.5 is out of range; allowed: \(0, 1\]$"),
    (["train.target_accuracy=0"], "train.target_accuracy=0.0 is out of range"),
    (["train.target_hold=0"], "train.target_hold=0 is out of range"),
    (["train.schedule=linear"], "train.schedule='linear' is unknown; allowed: cosine, wsd$"),
    (["train.max_extension=0"], r"train.max_extension=0 is out of range; allowed: \[1, 1000\]$"),
    (["train.schedule=cosine"], "train.max_extension=4 extends a budget, which only train.schedule=wsd can .*; allowed: train.max_extension=1, or train.schedule=wsd$"),
    (["train.plateau_drop=0"], "train.plateau_drop=0.0 is out of range"),
    (["train.num_threads=-1"], "train.num_threads=-1 is out of range"),
    (["train.grokfast_alpha=1"], r"train.grokfast_alpha=1.0 is out of range; allowed: \[0, 1\)$"),
    (["seed=-1"], "seed=-1 is out of range"),
    (["seed=9223372036854775808"], r"seed=9223372036854775808 is out of range; allowed: \[0, 9223372036854775807\] \(torch's generators take 64-bit seeds\)$"),
    (["model.n_layers=0"], "model.n_layers=0 is out of range"),
    (["model.d_model=0"], "model.d_model=0 is out of range"),
    (["model.n_heads=0"], "model.n_heads=0 is out of range"),
    (["model.max_seq_len=1000000000"], r"model.max_seq_len=1000000000 is out of range; allowed: \[2, 65536\] \(attention weights"),
    (["model.mlp_width=-4"], "model.mlp_width=-4 is out of range"),
    (["model.mlp_activation=swish"], "model.mlp_activation='swish' is unknown; allowed: gelu, relu$"),
    (["variant.rope_base=0"], r"variant.rope_base=0.0 is out of range; allowed: > 1$"),
    (["variant.rope_base=-5"], "variant.rope_base=-5.0 is out of range"),
    (["variant.rope_base=nan"], r"variant.rope_base=nan is not a finite number; allowed: > 1$"),
    (["variant=triple", "variant.rope_base=inf"], r"variant.rope_base=inf is not a finite number; allowed: > 1$"),
    (["variant=handcoded_induction", "variant.alpha=0"], r"variant.alpha=0.0 is out of range; allowed: > 0$"),
    (["analysis.length_generalisation.factors=[0,2]"], r"analysis.length_generalisation.factors=\[0, 2\] is out of range; allowed: \[1, 64\]$"),
    (["analysis.length_generalisation.factors=[]"], "must name at least one factor"),
    (["analysis.head_scores.probe_sequences=0"], "analysis.head_scores.probe_sequences=0 is out of range"),
    (["protocol.score=best"], "protocol.score='best' is unknown; allowed: none, mad$"),
    (["protocol.select_on=[train.nope]"], "protocol.select_on names 'train.nope', which is not a train, model, task or variant key"),
    (["device=tpu"], "device='tpu' is not a device; allowed: cpu, cuda, cuda:<index>$"),
    (["device=meta"], "device='meta' is not supported; allowed: cpu, cuda, cuda:<index>$"),
    # combinations that cannot run
    (["model.d_model=65"], "model.d_model=65 is not divisible by model.n_heads=4; allowed n_heads: 1, 5, 13, 65$"),
    (["task.seq_len=1024"], "task.seq_len=1024 exceeds the model's context model.max_seq_len=512"),
    (["task.seq_len=200"], r"task.seq_len=200 × 4 \(the longest of analysis.length_generalisation.factors\) exceeds model.max_seq_len=512"),
    (["task.vocab_size=1"], "task.vocab_size=1 is too small for task 'copy'"),
    (["task=induction", "task.vocab_size=2"], "needs at least 3"),
    (["task=copy", "task.variable_length=true", "task.min_len=9", "task.max_len=4"], "1 <= min_len <= max_len"),
    (["variant=handcoded_induction", "variant.beta=5"], "variant.beta=5.0 is too small for the induction match"),
    # command-line forms
    (["task=copy,induction"], "'task=copy,induction' is a sweep; add -m"),
    (["hydra.mode=MULTIRUN", "variant=standard,nosuch"], "job 'variant=nosuch.*': unknown variant 'nosuch'"),
    (["-m", "hydra.sweeper.tune={train.lr:[1e-3,1e-2]}"], r"hydra.sweeper.tune.train.lr=\[0.001, 0.01\] cannot bracket an optimum; allowed: at least 4"),
    (["-m", "hydra.sweeper.max_extensions=-1"], "hydra.sweeper.max_extensions=-1 is not a count; allowed: an integer >= 0$"),
    (["-m", "variant=glob(nosuch*)"], "the sweep 'variant=glob\\(nosuch\\*\\)' expands to no job"),
    # values of the right type but the wrong kind (issue 26, class 3)
    (["model.mlp=2"], "'model.mlp=2': model.mlp is a flag; allowed: true, false$"),
    (["task.variable_length=yes"], "task.variable_length is a flag; allowed: true, false$"),
    (["variant.name=triple"], "'variant.name=triple': a variant's name is its choice; choose it with variant=<name>, allowed: alibi,"),
    (["task.name=foo"], "'task.name=foo': a task's name is its choice; choose it with task=<name>"),
    (["protocol.select_on=[train]"], "protocol.select_on names 'train', which is not .* \\(a key with one value, e.g. train.lr\\)"),
    (["analysis=head_scores"], "'analysis=head_scores': analysis is a section of keys, not a value; set one of its keys"),
    (["train=5"], "'train=5': train is a section of keys, not a value; set one of its keys, e.g. train.steps=...; allowed keys: steps,"),
    (["analysis.head_scores=3"], "analysis.head_scores is a section of keys, not a value; .*allowed keys: probe_sequences$"),
    (["variant=alibi", "variant.max_slope=1e300"], "variant.max_slope=1e\\+300 is beyond float32, which the model computes in"),
    (["train.lr=1e-60"], "train.lr=1e-60 is beyond float32, which the model computes in; allowed: 0 or a magnitude in"),
    # messages that name the right problem (issue 26, class 8)
    (["+experiment=grokking", "task=copy"], "'\\+experiment=grokking task=copy' do not go together: .*Key 'p' not in 'CopyConfig'"),
    (["train.lr=1\n2"], "cannot read 'train.lr=1\\\\n2'"),
    (["analysis.loud_mismatch.x=1"], "unknown config key 'analysis.loud_mismatch.x'; 'analysis.loud_mismatch' has no options$"),
    (["-m", "variant=standard", "task=copy", f"analysis.length_generalisation.factors=[{','.join(['1'] * 130)}]"],
     "a job's directory name, made of its overrides, would be 350 bytes, over the 255 a file system takes; name jobs by number"),
    (["hydra.mode=MULTIRUN", "task=glob(zzz*)"], r"the sweep 'task=glob\(zzz\*\)' expands to no job"),
    (["train.lr=${oc.env:HOME}"], "cannot resolve the config of 'train.lr=\\$\\{oc.env:HOME\\}': .*could not be converted to Float"),
    (["train.lr=é"], "cannot read 'train.lr=é': the value of key 'train.lr' has characters"),
    (["variant.rope_base=10000;rm"], "cannot read 'variant.rope_base=10000;rm': the value of key 'variant.rope_base'"),
    (["task.seq_len=[1,2"], "cannot read 'task.seq_len=\\[1,2': the value of key 'task.seq_len'"),
]


@pytest.mark.parametrize("arguments, message", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_is_refused_in_one_line_with_exit_code_2_and_nothing_written(arguments, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["bench", *arguments, f"hydra.run.dir={tmp_path}/run", f"hydra.sweep.dir={tmp_path}/sweep"])
    with pytest.raises(SystemExit) as exited:
        main()
    error = capsys.readouterr().err
    assert exited.value.code == 2
    assert error.count("\n") == 1 and error.startswith("bench: error: ")
    assert re.search(message, error.removeprefix("bench: error: ").rstrip("\n")), error
    assert not any(tmp_path.rglob("*")), "nothing written"


def test_the_table_covers_at_least_fifty_bad_inputs():
    assert len(BAD_INPUTS) >= 50


@pytest.mark.slow
@pytest.mark.parametrize("arguments", [["train.stpes=5"], ["-m", "variant=standard,nosuch", "seed=0,1"]])
def test_the_real_command_exits_2_with_one_line_and_writes_nothing(tmp_path, arguments):
    completed = subprocess.run(
        [sys.executable, "-m", "bench", *arguments, f"hydra.run.dir={tmp_path}/run", f"hydra.sweep.dir={tmp_path}/sweep"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert completed.returncode == 2
    assert completed.stderr.strip().count("\n") == 0 and completed.stderr.startswith("bench: error: ")
    assert not list(tmp_path.rglob("*"))
