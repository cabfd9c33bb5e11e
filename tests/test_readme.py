"""README.md's code runs as written.

- Every ```python block is self-contained: it compiles and uses no undefined name (ruff F821),
  so a reader can copy any one of them alone.
- Every `kfcn ...` command of a ```bash block parses with the real `kfcn` parser, and every
  `--flag` the prose gives a verb (in its *Command line* bullet or an inline `kfcn VERB ...`)
  is an option of that verb.
- The slow tests execute each Python block in a fresh process, in a temporary folder holding
  the files it names (made from the shipped samples), and run the `kfcn predict` commands.
  They change only the cost, as listed in SMALLER (each replaced text must be in the README
  as it stands), and the quick start's backend (TensorFlow, which the block offers). A block
  under `<!-- readme-test: skip (REASON) -->` is only compiled and name-checked;
  `<!-- readme-test: env NAME=VALUE ... -->` sets a block's environment.
"""

import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MARKER = re.compile(r"<!-- readme-test: (.*?) -->")
FENCE = re.compile(r"^(\s*)```(\w*)\s*$")


def fenced_blocks(text):
    """[(language, code (dedented), first line number, the `readme-test` marker just above or None)]."""
    lines, blocks, index = text.split("\n"), [], 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        indent, language = opening.groups()
        end = next(i for i in range(index + 1, len(lines)) if lines[i].strip() == "```")
        above = next((lines[i] for i in range(index - 1, -1, -1) if lines[i].strip()), "")
        marker = MARKER.search(above)
        code = textwrap.dedent("\n".join(lines[index + 1 : end]))
        blocks.append((language, code + "\n", index + 1, marker.group(1) if marker else None))
        index = end + 1
    return blocks


TEXT = README.read_text()
BLOCKS = fenced_blocks(TEXT)
PYTHON = [(line, code, marker) for language, code, line, marker in BLOCKS if language == "python"]
BASH = [(line, code) for language, code, line, _ in BLOCKS if language == "bash"]


def test_the_readme_has_the_blocks_this_test_reads():
    assert len(PYTHON) >= 6 and len(BASH) >= 6
    for _, _, marker in PYTHON:
        assert marker is None or re.fullmatch(r"skip \(.+\)|env( \w+=\S+)+", marker), marker


def test_every_python_block_is_self_contained(tmp_path):
    files = []
    for line, code, _ in PYTHON:
        compile(code, f"README.md:{line}", "exec")
        files.append(tmp_path / f"readme_line_{line}.py")
        files[-1].write_text(code)
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--isolated", "--select", "F821,F811,F823", *files],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, "README.md's Python blocks use undefined names:\n" + done.stdout


# Shell variables of the bash blocks, as the examples would set them.
SHELL_VALUES = {"$i": "0", "$SLURM_PROCID": "0", "$SLURM_NTASKS": "4", "$PWD": "/work"}
VERBS = ("train", "predict", "evaluate", "export", "inspect", "card", "serve-web")


def kfcn_commands(code):
    """The argument lists of every `kfcn VERB ...` in a shell block (comments included, up to `&`, `;`, `|`, `#` or a
    redirection)."""
    commands = []
    for line in code.replace("\\\n", " ").split("\n"):  # a continued line is one command
        for match in re.finditer(rf"(?:^|[\s:])kfcn\s+((?:{'|'.join(VERBS)})\b[^#&;|<>]*)", line):
            text = match.group(1)
            for name, value in SHELL_VALUES.items():
                text = text.replace(name, value)
            commands.append(shlex.split(text))
    return commands


def test_every_kfcn_command_in_the_shell_blocks_parses():
    from kfcn.cli import build_parser

    commands = [command for _, code in BASH for command in kfcn_commands(code)]
    assert {command[0] for command in commands} >= {"train", "predict", "evaluate", "export", "inspect"}
    parser = build_parser()
    for command in commands:
        try:
            parser.parse_args(command)
        except SystemExit:
            pytest.fail(f"README.md: `kfcn {shlex.join(command)}` does not parse (see the usage above)")


def verb_options():
    """{verb: its option strings}, with the options every verb takes (`--verbose`, `--help`)."""
    import argparse

    from kfcn.cli import build_parser

    parser = build_parser()
    common = set(parser._option_string_actions)
    verbs = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    return {verb: set(sub._option_string_actions) | common for verb, sub in verbs.choices.items()}


def prose_flags():
    """[(verb, flag, where)] for each `--flag` that the README's prose gives a kfcn verb."""
    prose = re.sub(r"```.*?```", "", TEXT, flags=re.DOTALL)
    found = []
    for span in re.findall(r"`kfcn ([a-z/]+)\b([^`]*)`", prose):
        for verb in span[0].split("/"):
            found += [(verb, flag, f"`kfcn {span[0]}{span[1]}`") for flag in re.findall(r"--[a-z][\w-]*", span[1])]
    section = prose[prose.index("## Command line") : prose.index("## Using an FCN")]
    for bullet in re.split(r"\n- ", section)[1:]:
        head = re.match(r"\*\*`kfcn (\w+)", bullet)
        if head:
            for span in re.findall(r"`([^`]*)`", bullet):
                if not span.startswith("kfcn "):
                    found += [(head.group(1), flag, f"`{span}`") for flag in re.findall(r"--[a-z][\w-]*", span)]
    return found


def test_every_flag_the_prose_names_is_an_option_of_its_verb():
    options, flags = verb_options(), prose_flags()
    assert len(flags) > 40  # the Command line section's bullets were read
    unknown = [f"kfcn {verb} {flag} (in {where})" for verb, flag, where in flags if flag not in options[verb]]
    assert not unknown, "README.md names options that `kfcn VERB --help` does not have:\n" + "\n".join(unknown)


# --- Slow: the blocks run ---------------------------------------------------------------------------

# README text -> what the test runs instead: only the cost changes (epochs, steps, sizes), and
# the quick start takes the backend its first line offers as an alternative (JAX compiles
# every initializer and step: minutes on 2 CPU cores; the same calls run on TensorFlow here,
# and `make test-jax` tests them on JAX).
SMALLER = {
    'os.environ["KERAS_BACKEND"] = "jax"': 'os.environ["KERAS_BACKEND"] = "tensorflow"',
    "model.fit(batches, epochs=30, steps_per_epoch=50)": "model.fit(batches, epochs=1, steps_per_epoch=1)",
    "shape=(10_000, 10_000)": "shape=(600, 700)",
    "(352, 480), batch_size=2": "(64, 96), batch_size=2",
    "epochs=50, steps_per_epoch=180": "epochs=1, steps_per_epoch=1",
    'glob("*.png"))[:20]': 'glob("*.png"))[:2]',
}
only_tensorflow = pytest.mark.tensorflow_only(reason="runs subprocesses; one backend")


def test_every_smaller_stand_in_replaces_text_the_readme_has():
    for written in SMALLER:
        assert sum(code.count(written) for _, code, _ in PYTHON) == 1, written


def prepare(folder):
    """The files the README's blocks name, made from the shipped samples."""
    from kfcn.samples import isbi2012_dir

    shipped = isbi2012_dir()
    for kind in ("images", "labels"):
        (folder / "my_data" / kind).mkdir(parents=True)
        for index in (0, 1):
            shutil.copy(shipped / kind / f"slice_{index:02d}.png", folder / "my_data" / kind / f"s{index}.png")
    shutil.copy(shipped / "images" / "slice_20.png", folder / "slice.png")
    shutil.copy(shipped / "images" / "slice_21.png", folder / "my_slice.png")
    (folder / "saved_models").mkdir()
    (folder / "saved_models" / "unet_isbi_int8.tflite").symlink_to(ROOT / "saved_models" / "unet_isbi_int8.tflite")
    rng = np.random.default_rng(0)
    for kind in ("images", "labels"):
        (folder / "camvid" / "train" / kind).mkdir(parents=True)
    for index in range(2):  # CamVid-like: RGB, class indices 0-10 and void 11
        Image.fromarray(rng.integers(0, 256, (72, 100, 3), dtype=np.uint8)).save(
            folder / "camvid" / "train" / "images" / f"{index}.png"
        )
        Image.fromarray(rng.integers(0, 12, (72, 100), dtype=np.uint8)).save(
            folder / "camvid" / "train" / "labels" / f"{index}.png"
        )


def run_python(code, folder, environment=()):
    for written, smaller in SMALLER.items():
        code = code.replace(written, smaller)
    script = folder / "block.py"
    script.write_text(code)
    env = {key: value for key, value in os.environ.items() if key != "KERAS_BACKEND"}  # as a reader's shell
    env |= dict(environment) | {"TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(
        [sys.executable, str(script)], cwd=folder, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
@only_tensorflow
@pytest.mark.parametrize("line, code, marker", PYTHON, ids=[f"line{line}" for line, _, _ in PYTHON])
def test_python_block_runs(tmp_path, line, code, marker):
    if marker and marker.startswith("skip"):
        pytest.skip(f"README.md:{line} {marker}; compiled and name-checked by the fast test")
    environment = [item.split("=", 1) for item in marker.split()[1:]] if marker else []
    prepare(tmp_path)
    done = run_python(code, tmp_path, environment)
    assert done.returncode == 0, f"README.md:{line} fails:\n{done.stderr[-3000:]}"


@pytest.mark.slow
@only_tensorflow
def test_the_shell_blocks_kfcn_predict_with_the_shipped_model_runs(tmp_path):
    from kfcn.cli import main

    prepare(tmp_path)
    shipped_model_commands = [
        command
        for _, code in BASH
        for command in kfcn_commands(code)
        if command[0] == "predict" and "--model" not in command and len(command) == 4
    ]
    assert len(shipped_model_commands) >= 2  # the quick start's and the command line section's
    os.chdir(tmp_path)
    try:
        for command in shipped_model_commands:
            assert main(command) == 0, command
            stem = Path(command[1]).stem
            assert (Path(command[3]) / f"{stem}.png").is_file()
            assert (Path(command[3]) / f"{stem}_overlay.png").is_file()
    finally:
        os.chdir(ROOT)
