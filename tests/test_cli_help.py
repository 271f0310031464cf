"""``discbridge [COMMAND] --help``: every option explained in one line, profiles and examples.

The parser is the real one (:func:`app.cli.build_parser`); no Qt is needed.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli import build_parser
from app.core.dicomdir.profiles import PROFILES
from app.core.export.options import DEFAULT_PROFILE

ROOT = Path(__file__).resolve().parents[1]
MAX_HELP = 100  # characters of one option's help text
MAX_RAW = 80  # columns of description and epilog lines (printed as written, never re-wrapped)


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return action


def _commands() -> dict[str, argparse.ArgumentParser]:
    return dict(_subparsers(build_parser()).choices)


NAMES = ["discbridge", "ls", "check", "export", "open", "demo"]  # the top level, then commands


def _parser(name: str) -> argparse.ArgumentParser:
    return build_parser() if name == "discbridge" else _commands()[name]


def _examples(text: str) -> list[str]:
    """The command lines of the help's "examples:" section (continuation lines joined)."""
    lines = text.splitlines()
    assert "examples:" in lines, text
    section = lines[lines.index("examples:") + 1:]
    commands: list[str] = []
    for line in section:
        assert line.startswith("  "), f"examples: must be the last section, got {line!r}"
        if line.startswith("  discbridge "):
            commands.append(line.strip())
        else:  # a continuation of the previous command (after a trailing backslash)
            assert commands and commands[-1].endswith("\\"), line
            commands[-1] = commands[-1][:-1].rstrip() + " " + line.strip()
    return commands


def test_the_commands_are_the_known_ones() -> None:
    assert sorted(_commands()) == sorted(NAMES[1:])


@pytest.mark.parametrize("name", NAMES)
def test_every_option_and_positional_has_a_one_line_help(name: str) -> None:
    parser = _parser(name)
    formatter = parser._get_formatter()
    actions = list(parser._actions)
    for action in parser._actions:  # the commands' own lines in the top-level list
        if isinstance(action, argparse._SubParsersAction):
            actions += action._choices_actions
    assert actions
    for action in actions:
        label = "/".join(action.option_strings) or action.metavar or action.dest
        text = action.help
        assert isinstance(text, str) and text.strip(), f"{name} {label}: no help text"
        assert text != argparse.SUPPRESS, f"{name} {label}: help suppressed"
        expanded = formatter._expand_help(action)  # %(default)s and friends must expand
        assert "\n" not in expanded, f"{name} {label}: help is more than one line"
        assert len(expanded) <= MAX_HELP, f"{name} {label}: help longer than {MAX_HELP}"


@pytest.mark.parametrize("name", NAMES)
def test_help_ends_with_examples_that_parse(name: str) -> None:
    text = _parser(name).format_help()
    commands = _examples(text)
    assert len(commands) >= 2, text
    for command in commands:
        words = shlex.split(command)
        if ">" in words:  # a shell redirection, not an argument
            words = words[:words.index(">")]
        assert words[0] == "discbridge"
        if name != "discbridge":
            assert words[1] == name, f"an example of {name} runs {words[1]}"
        args = build_parser().parse_args(words[1:])  # SystemExit (usage error) fails the test
        profile = getattr(args, "profile", None)
        assert profile is None or profile.upper() in PROFILES, command


@pytest.mark.parametrize("name", NAMES)
def test_description_and_epilog_fit_80_columns(name: str) -> None:
    parser = _parser(name)
    parser.format_help()  # a lazily made epilog is made here
    assert parser.description, f"{name}: no description"
    for text in (parser.description, parser.epilog):
        assert isinstance(text, str)
        for line in text.splitlines():
            assert len(line) <= MAX_RAW, f"{name}: {line!r}"


def test_every_profile_is_listed_wherever_a_profile_can_be_given() -> None:
    with_profile = {name for name, parser in _commands().items()
                    if any("--profile" in a.option_strings for a in parser._actions)}
    assert with_profile == {"check", "export", "open"}
    for name in with_profile:
        text = _commands()[name].format_help()
        assert "profiles" in text
        section = text[text.index("profiles"):text.index("examples:")]
        for profile in PROFILES.values():
            assert f"  {profile.name}  " in section, f"{name} --help lacks {profile.name}"
            line = next(ln for ln in section.splitlines() if f"  {profile.name}  " in ln)
            assert profile.description in line


def test_export_help_gives_the_default_profile_of_every_medium() -> None:
    text = _commands()["export"].format_help()
    section = text[text.index("default profile by --media:"):text.index("examples:")]
    lines = section.splitlines()[1:]
    for media, profile in DEFAULT_PROFILE.items():
        label = "no --media" if media == "folder" else media
        assert any(profile in ln and label in ln.replace(profile, "") for ln in lines), media


def test_media_help_names_every_medium() -> None:
    (media,) = [a for a in _commands()["export"]._actions if "--media" in a.option_strings]
    assert media.choices
    for choice in media.choices:
        assert f"{choice} " in (media.help or ""), choice


def test_export_defaults_are_unchanged() -> None:
    args = build_parser().parse_args(["export", "SRC", "--to", "D"])
    assert args.command == "export" and args.sources == [Path("SRC")] and args.dest == Path("D")
    assert args.on_id_clash == "error"
    for flag in ("icons", "span", "force", "no_verify"):
        assert getattr(args, flag) is False, flag
    for opt in ("media", "profile", "fileset_id", "institution", "contact", "study_date", "iso",
                "burn", "report"):
        assert getattr(args, opt) is None, opt


def test_building_the_parser_does_not_load_the_profile_table() -> None:
    code = ("import sys; from app.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('pydicom', 'app.core.dicomdir.profiles') "
            "if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


@pytest.mark.parametrize("name", NAMES)
def test_help_runs_cleanly_in_80_columns(name: str) -> None:
    command = [] if name == "discbridge" else [name]
    env = {**os.environ, "COLUMNS": "80", "PYTHONIOENCODING": "utf-8"}
    proc = subprocess.run([sys.executable, "-m", "app", *command, "--help"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout.startswith(f"usage: discbridge {' '.join(command)}".rstrip())
    assert "examples:" in proc.stdout
    for line in proc.stdout.splitlines():
        assert len(line) <= 80, line
