"""Bad arguments are refused with a clear message and exit status 2, before anything starts."""

from __future__ import annotations

import pytest

from loadtest.cli import EXIT_USAGE, main


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--scenario", "nope"], "invalid choice"),
        (["run"], "--scenario"),
        (["run", "--scenario", "smoke", "--rooms", "0"], "--rooms must be at least 1"),
        (["run", "--scenario", "smoke", "--duration", "-1"], "--duration must be in"),
        (["run", "--scenario", "smoke", "--duration", "nan"], "not a finite number"),
        (["run", "--scenario", "smoke", "--duration", "abc"], "not a number"),
        (["run", "--scenario", "smoke", "--connections", "100000"], "--connections must be in"),
        (["run", "--scenario", "smoke", "--connections", "3", "--rooms", "2"],
         "fewer than one viewer per room"),
        (["run", "--scenario", "smoke", "--senders", "1000"], "--senders must be in"),
        (["run", "--scenario", "smoke", "--senders", "0", "--rate", "10"],
         "needs at least one sender"),
        (["run", "--scenario", "smoke", "--rate", "-5"], "--rate must be in"),
        (["run", "--scenario", "smoke", "--slow-fraction", "1.5"], "--slow-fraction"),
        (["run", "--scenario", "smoke", "--workers", "0"], "--workers must be in"),
        (["run", "--scenario", "smoke", "--spawn", "9"], "--spawn must be in"),
        (["run", "--scenario", "chaos", "--spawn", "1"], "needs --spawn 2"),
        (["run", "--scenario", "smoke", "--url", "http://example.com"], "127.0.0.1"),
        (["run", "--scenario", "smoke", "--spawn", "1", "--url", "http://127.0.0.1:1"],
         "not allowed with"),
        (["run", "--scenario", "smoke", "--json", "/no/such/dir/out.json"], "not a directory"),
        (["run", "--scenario", "smoke", "--no-pin"], "--no-pin is for the hostile scenario"),
        (["run", "--scenario", "smoke", "--kill-master", "1"],
         "--kill-master needs --redis-cluster"),
        (["run", "--scenario", "smoke", "--redis-cluster", "--kill-master", "9"],
         "--kill-master must be within"),
        (["run", "--scenario", "smoke", "--redis-cluster", "--kill-master", "1", "--rooms", "1"],
         "--kill-master needs at least 2 rooms"),
    ],
)
def test_bad_arguments_are_refused(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("GIFTWIRE_JWT_SECRET", raising=False)
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own refusals
        code = int(exc.code or 0)
    assert code == EXIT_USAGE
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_url_mode_needs_the_token_secret(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GIFTWIRE_JWT_SECRET", raising=False)
    assert main(["run", "--scenario", "smoke", "--url", "http://127.0.0.1:9"]) == EXIT_USAGE
    assert "GIFTWIRE_JWT_SECRET" in capsys.readouterr().err
