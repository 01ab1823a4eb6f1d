"""Action files as the dispatcher reads them: the fields every test action shares written once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def action_data(action_id: str, targets: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    """An active action in English, due in 2035, to these targets; ``fields`` add or replace any."""
    return {
        "id": action_id,
        "title": f"Action {action_id}",
        "deadline": "2035-01-01",
        "status": "active",
        "languages": ["en"],
        "targets": targets,
        **fields,
    }


def write_action(folder: Path, data: dict[str, Any]) -> Path:
    """The action's YAML file in ``folder`` (made if missing), in UTF-8 as an editor would save it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{data['id']}.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path
