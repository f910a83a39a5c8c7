"""The ``scalewise`` command: one root group, one module per subcommand.

Exit codes: 0 ok, 1 a check failed, 2 bad configuration or usage.
"""

from __future__ import annotations

import click

from scalewise.errors import ConfigError, ScalewiseError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="scalewise")
def cli() -> None:
    """Measure a Python web service, decide when to scale, know what it will cost.

    \b
    Examples:
      scalewise demo                      # run the bundled example end to end
      scalewise status http://127.0.0.1:8000 --json
      scalewise config --file scalewise.yaml
    """


def main() -> None:
    """Console entry point: map scalewise errors to exit codes, never a traceback."""
    from scalewise.cli import config, demo, status  # noqa: PLC0415 - lazy subcommands

    cli.add_command(demo.demo)
    cli.add_command(status.status)
    cli.add_command(config.config)
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        raise SystemExit(130) from None
    except click.ClickException as exc:
        exc.show()
        raise SystemExit(exc.exit_code) from None
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None
    except ScalewiseError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from None
