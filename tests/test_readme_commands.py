"""The README's command table names every `giftwire` command and every option it takes, so a
user need not find them in `--help` (issue 16: `token --ttl/--name` were only there), and every
load-test scenario."""

import re
from pathlib import Path

import pytest

from loadtest.scenarios import SCENARIOS
from server.cli import build_parser

README = Path(__file__).resolve().parents[1] / "README.md"


def _help(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit):
        build_parser().parse_args(args)
    return capsys.readouterr().out


def test_readme_lists_every_command_and_option(capsys: pytest.CaptureFixture[str]) -> None:
    (commands,) = re.findall(r"\{([a-z,-]+)\}", _help(["--help"], capsys))[:1]
    rows = {
        m[1]: m[0]
        for m in re.finditer(r"^\| `giftwire ([a-z-]+)[^`]*`.*$", README.read_text(), re.M)
    }
    for command in commands.split(","):
        assert command in rows, f"README lacks `giftwire {command}`"
        options = set(re.findall(r"(--[a-z][a-z-]*)", _help([command, "--help"], capsys)))
        for option in options - {"--help"}:
            assert option in rows[command], f"README lacks `giftwire {command} {option}`"


def test_readme_names_every_load_test_scenario() -> None:
    (row,) = re.findall(r"^\| `python -m loadtest run --scenario ([a-z|\\-]+)`", README.read_text(),
                        re.M)
    assert set(row.replace("\\", "").split("|")) == set(SCENARIOS)
