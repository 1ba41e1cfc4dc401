import flowactors.__main__ as cli


def test_cli_rejects_unknown_command() -> None:
    assert cli.main(["no-such-command"]) == 2
