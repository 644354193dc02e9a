"""The README's settings table, rendered from :class:`core.settings.Settings`.

``python -m newsstream.ops.settings_doc`` prints it; a unit test checks that the README holds
exactly this table (between the ``settings-table`` markers), so docs and code cannot drift.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from core.settings import Settings

BEGIN = "<!-- settings-table:begin -->"
END = "<!-- settings-table:end -->"


def _default(name: str) -> str:
    field = Settings.model_fields[name]
    if field.default_factory is not None:
        value: object = field.default_factory()  # type: ignore[call-arg]
    else:
        value = field.default
    if value is None:
        return "unset"
    if isinstance(value, SecretStr):
        return "(secret)"
    if isinstance(value, Path):
        return f"`{value}`"
    if isinstance(value, str):
        return f"`{value}`" if value else '`""`'
    return f"`{value}`"


def render_table() -> str:
    """Markdown table: variable, default, meaning."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        meaning = (field.description or "").replace("|", "\\|")
        lines.append(f"| `NEWSSTREAM_{name.upper()}` | {_default(name)} | {meaning} |")
    return "\n".join(lines)


def main() -> None:
    print(BEGIN)
    print(render_table())
    print(END)


if __name__ == "__main__":
    main()
