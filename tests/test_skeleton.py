import flowactors.__main__ as cli


def test_cli_rejects_unknown_command() -> None:
    assert cli.main(["no-such-command"]) == 2


def test_cli_demo_rejects_bad_arguments() -> None:
    assert cli.main(["demo", "--workers", "0"]) == 2
    assert cli.main(["demo", "--orders", "many"]) == 2
