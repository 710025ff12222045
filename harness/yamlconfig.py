"""Load a YAML file into a frozen pydantic model, with errors that name file, line and field."""

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from harness.errors import UserError

ModelT = TypeVar("ModelT", bound=BaseModel)


def _line_of(root: yaml.Node | None, location: tuple[int | str, ...]) -> int | None:
    """1-based line of the deepest YAML node that ``location`` reaches."""
    node = root
    line = None if node is None else node.start_mark.line + 1
    for part in location:
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if key_node.value == str(part):
                    child = value_node
                    line = key_node.start_mark.line + 1
                    break
        elif (
            isinstance(node, yaml.SequenceNode)
            and isinstance(part, int)
            and 0 <= part < len(node.value)
        ):
            child = node.value[part]
            line = child.start_mark.line + 1
        if child is None:
            break
        node = child
    return line


def load_model(path: Path, model: type[ModelT], context: dict[str, Any] | None = None) -> ModelT:
    """Parse ``path`` and validate it as ``model``; raise UserError on the first problem.

    ``context`` reaches the model's validators (e.g. the broker names a suite may use).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from exc
    try:
        data = yaml.safe_load(text) or {}
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise UserError(f"{where}: invalid YAML ({problem})") from exc
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        first = exc.errors()[0]
        location = tuple(first["loc"])
        line = _line_of(root, location)
        field = ".".join(str(part) for part in location) or "(top level)"
        where = f"{path}:{line}" if line else str(path)
        raise UserError(f"{where}: {field}: {first['msg']}") from exc


def validate_part(
    path: Path, location: tuple[int | str, ...], data: Any, model: type[ModelT]
) -> ModelT:
    """Validate the part of ``path`` found at ``location`` (already parsed as ``data``), with
    errors that name the line in the file."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        full = (*location, *first["loc"])
        line = _line_of(yaml.compose(path.read_text(encoding="utf-8")), full)
        field = ".".join(str(part) for part in full)
        where = f"{path}:{line}" if line else str(path)
        raise UserError(f"{where}: {field}: {first['msg']}") from exc


def where(path: Path, location: tuple[int | str, ...]) -> str:
    """``path:line`` of the node at ``location`` (just ``path`` if it cannot be found)."""
    try:
        line = _line_of(yaml.compose(path.read_text(encoding="utf-8")), location)
    except (OSError, yaml.YAMLError):
        line = None
    return f"{path}:{line}" if line else str(path)
