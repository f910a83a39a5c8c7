"""``scalewise init``: write a commented scalewise.yaml from a preset taken from the seeds."""

from __future__ import annotations

from pathlib import Path

import click

from scalewise.cli import _output


@click.command("init")
@click.option(
    "--preset",
    default="mvp",
    show_default=True,
    help="mvp (seed 001), balanced (seed 002) or starter (seed 000).",
)
@click.option(
    "--file",
    "path",
    type=click.Path(dir_okay=False),
    default="scalewise.yaml",
    show_default=True,
    help="Where to write the configuration.",
)
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
def init(preset: str, path: str, force: bool, as_json: bool) -> None:
    """Write scalewise.yaml with a scaling policy preset, ready to edit.

    \b
    Example:
      scalewise init --preset balanced && scalewise check-config
    """
    from scalewise.config import load_config  # noqa: PLC0415
    from scalewise.errors import ScalewiseError  # noqa: PLC0415
    from scalewise.policy.presets import preset_yaml  # noqa: PLC0415

    text = preset_yaml(preset)
    target = Path(path)
    if target.exists() and not force:
        raise ScalewiseError(f"{target} exists; pass --force to overwrite it")
    target.write_text(text)
    rules = len(load_config(target).policy_object().rules)  # written files must load
    if as_json:
        _output.emit_json({"file": str(target), "preset": preset, "rules": rules})
    else:
        _output.out.print(
            f"wrote {target} (preset {preset}, {rules} rules); "
            "next: scalewise check-config, then scalewise watch"
        )
