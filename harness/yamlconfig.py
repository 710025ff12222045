"""Load a YAML file into a frozen pydantic model, with errors that name file, line and field.

Stricter than plain ``yaml.safe_load``: the file must be UTF-8, and a key given twice in one
mapping is refused (YAML would silently keep the last one)."""

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from harness.errors import UserError

ModelT = TypeVar("ModelT", bound=BaseModel)

_PLAIN_FIELD = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-[]")


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


def field_name(location: tuple[int | str, ...]) -> str:
    """``workloads.0.params.rate``; a part with spaces or control characters is quoted, so an
    error about a strange key still fits on one line."""
    parts = [
        str(part) if str(part) and set(str(part)) <= _PLAIN_FIELD else repr(str(part))
        for part in location
        if part != "[key]"  # pydantic's marker of an error in a mapping's key
    ]
    return ".".join(parts) or "(top level)"


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise UserError(
            f"{path}:{line}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x}): "
            "save the file as UTF-8"
        ) from exc


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0] if lines else "unreadable"


def _yaml_error(path: Path, text: str, exc: yaml.YAMLError) -> UserError:
    if isinstance(exc, yaml.reader.ReaderError):
        line = text[: exc.position].count("\n") + 1
        return UserError(
            f"{path}:{line}: invalid YAML ({exc.reason}, character #x{exc.character:04x})"
        )
    mark = getattr(exc, "problem_mark", None)
    where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
    problem = getattr(exc, "problem", None) or str(exc)
    return UserError(f"{where}: invalid YAML ({_first_line(problem)})")


def _refuse_duplicate_keys(path: Path, root: yaml.Node | None) -> None:
    """UserError at the second occurrence of a key in any mapping of the document."""
    pending = [] if root is None else [root]
    seen_nodes: set[int] = set()
    while pending:
        node = pending.pop()
        if id(node) in seen_nodes:  # an alias: the anchored node was checked already
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first_lines: dict[tuple[str, str], int] = {}
            for key_node, value_node in node.value:
                pending.extend((key_node, value_node))
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                    continue
                key = (key_node.tag, key_node.value)
                line = key_node.start_mark.line + 1
                if key in first_lines:
                    raise UserError(
                        f"{path}:{line}: key {key_node.value!r} is given twice in one mapping "
                        f"(first at line {first_lines[key]}): keep one"
                    )
                first_lines[key] = line
        elif isinstance(node, yaml.SequenceNode):
            pending.extend(node.value)


def _parse(path: Path) -> tuple[Any, yaml.Node | None]:
    """The document's data and its node tree (for line numbers)."""
    text = _read_text(path)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        _refuse_duplicate_keys(path, root)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _yaml_error(path, text, exc) from exc
    except RecursionError as exc:
        raise UserError(f"{path}: invalid YAML (nested too deeply)") from exc
    return data, root


def load_model(path: Path, model: type[ModelT], context: dict[str, Any] | None = None) -> ModelT:
    """Parse ``path`` and validate it as ``model``; raise UserError on the first problem.

    ``context`` reaches the model's validators (e.g. the broker names a suite may use).
    """
    data, root = _parse(path)
    try:
        return model.model_validate(data or {}, context=context)
    except ValidationError as exc:
        first = exc.errors()[0]
        location = tuple(first["loc"])
        line = _line_of(root, location)
        where = f"{path}:{line}" if line else str(path)
        raise UserError(f"{where}: {field_name(location)}: {_first_line(first['msg'])}") from exc


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
        where = f"{path}:{line}" if line else str(path)
        raise UserError(f"{where}: {field_name(full)}: {_first_line(first['msg'])}") from exc


def line_in(path: Path, location: tuple[int | str, ...]) -> int | None:
    """The 1-based line of the node at ``location`` in ``path`` (None if it cannot be found)."""
    try:
        return _line_of(yaml.compose(path.read_text(encoding="utf-8")), location)
    except (OSError, ValueError, yaml.YAMLError):
        return None


def where(path: Path, location: tuple[int | str, ...]) -> str:
    """``path:line`` of the node at ``location`` (just ``path`` if it cannot be found)."""
    line = line_in(path, location)
    return f"{path}:{line}" if line else str(path)
