"""The ``scalewise`` command: one root group, one module per subcommand.

Exit codes: 0 ok, 1 a check or threshold failed, 2 bad configuration or usage, or a load test
that could not start (target unreachable).
"""

from __future__ import annotations

import click

from scalewise.errors import ConfigError, LoadTestError, ScalewiseError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="scalewise")
def cli() -> None:
    """Measure a Python web service, decide when to scale, know what it will cost.

    \b
    Examples:
      scalewise demo                      # run the bundled example end to end
      scalewise status http://127.0.0.1:8000 --json
      scalewise init --preset mvp && scalewise check-config
      scalewise watch                     # evaluate the policy, notify, act
      scalewise replay --since 7d         # what would this policy have done last week?
      scalewise cost --daily-requests 50000
      scalewise loadtest http://127.0.0.1:8000/ --preset stress
      scalewise plan http://127.0.0.1:8000/ --slo 'p95<300ms' --daily-users 10000
      scalewise fit measurements.csv --json
    """


def main() -> None:
    """Console entry point: map scalewise errors to exit codes, never a traceback."""
    from scalewise.cli import (  # noqa: PLC0415 - subcommands import their own heavy parts
        check_config,
        cost,
        demo,
        export_rules,
        fit,
        init,
        loadtest,
        plan,
        replay,
        status,
        watch,
    )

    for command in (
        demo.demo,
        status.status,
        check_config.check_config,
        init.init,
        watch.watch,
        replay.replay,
        export_rules.export_rules,
        cost.cost,
        loadtest.loadtest,
        fit.fit,
        plan.plan,
    ):
        cli.add_command(command)
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        raise SystemExit(130) from None
    except click.ClickException as exc:
        exc.show()
        raise SystemExit(exc.exit_code) from None
    except (ConfigError, LoadTestError) as exc:
        # A bad file or flag, or a load test that could not start: nothing was measured.
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None
    except ScalewiseError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from None
