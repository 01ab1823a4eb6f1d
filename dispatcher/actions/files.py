"""Action files: YAML, one per action; a bad file is reported with its file, field path and
problem, and the others load."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from dispatcher.actions.model import Action


@dataclass(frozen=True)
class ConfigError:
    """One problem in one file, worded for the person who has to fix it."""

    file: str
    field: str
    problem: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.field}" if self.field else self.file
        return f"{where}: {self.problem}"


@dataclass
class ActionSet:
    actions: dict[str, Action] = field(default_factory=dict)
    sources: dict[str, Path] = field(default_factory=dict)
    errors: list[ConfigError] = field(default_factory=list)


def _field_path(loc: tuple[int | str, ...], data: dict[str, Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith(("function-after", "function-before")):
            continue
        else:
            out += f".{part}" if out else str(part)
    if len(loc) > 1 and loc[0] == "targets" and isinstance(loc[1], int):  # name it, not only its place
        targets = data.get("targets")
        target = targets[loc[1]] if isinstance(targets, list) and loc[1] < len(targets) else None
        if isinstance(target, dict) and target.get("id"):
            out += f" (target {target['id']})"
    return out


class _ActionLoader(yaml.SafeLoader):
    """YAML 1.1 reads ``+442079460000`` as an integer and ``010623`` as octal: a number written
    with a sign or a leading zero is a phone number in an action file, so it stays its text."""

    def construct_yaml_int(self, node: yaml.ScalarNode) -> Any:
        text = str(node.value)
        if text.startswith("+") or (text.startswith("0") and len(text) > 1):
            return text
        return super().construct_yaml_int(node)


_ActionLoader.add_constructor("tag:yaml.org,2002:int", _ActionLoader.construct_yaml_int)


def load_action_file(path: Path) -> Action | list[ConfigError]:
    try:
        data: Any = yaml.load(path.read_text(encoding="utf-8"), Loader=_ActionLoader)  # noqa: S506 (a SafeLoader)
    except (OSError, UnicodeDecodeError) as exc:
        return [ConfigError(str(path), "", f"cannot read: {exc}")]
    except yaml.YAMLError as exc:
        return [ConfigError(str(path), "", f"not valid YAML: {exc}")]
    if not isinstance(data, dict):
        return [ConfigError(str(path), "", "must be a YAML mapping of fields")]
    try:
        return Action.model_validate(data)
    except ValidationError as exc:
        return [
            ConfigError(str(path), _field_path(err["loc"], data), err["msg"].removeprefix("Value error, "))
            for err in exc.errors()
        ]


def load_actions(directory: Path) -> ActionSet:
    """Every ``*.yaml``/``*.yml`` in ``directory``; a bad file is reported, the others load."""
    result = ActionSet()
    files = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    for path in files:
        loaded = load_action_file(path)
        if isinstance(loaded, list):
            result.errors.extend(loaded)
            continue
        if loaded.id in result.actions:
            first = result.sources[loaded.id]
            result.errors.append(ConfigError(str(path), "id", f"{loaded.id!r} is already used by {first}"))
            continue
        result.actions[loaded.id] = loaded
        result.sources[loaded.id] = path
    return result
