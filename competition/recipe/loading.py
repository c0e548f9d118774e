"""Reading a recipe: its YAML read strictly (a key given twice, aliases that expand past MAX_YAML_VALUES values,
or a file above MAX_RECIPE_BYTES are errors), `--set KEY=VALUE` overrides applied, and every pydantic error
turned into one line naming the key and echoing the value as written."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from competition.errors import CompetitionError
from competition.recipe.schema import (MAX_ECHO, MAX_LINE, MAX_RECIPE_BYTES, MAX_YAML_DEPTH, MAX_YAML_VALUES, Recipe,
                                       shown)



class _YAMLProblem(Exception):
    """A YAML document the recipe loader refuses; the message names the problem and its line."""


class _RecipeLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader, strict: a key given twice in one mapping is an error (the first would be dropped
    silently), and so is a document whose aliases would expand past MAX_YAML_VALUES values (an "alias bomb")
    or whose collections nest deeper than MAX_YAML_DEPTH."""

    def compose_document(self) -> Any:
        node = super().compose_document()
        _expanded_size(node, {}, 0)
        return node

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                    continue
                key = self.construct_object(key_node)
                try:
                    first = seen.get(key)
                except TypeError:
                    continue
                line = key_node.start_mark.line + 1
                if first is not None:
                    raise _YAMLProblem(f"key {shown(key)} appears twice (line {line}; first on line {first})")
                seen[key] = line
        return super().construct_mapping(node, deep)


def _expanded_size(node: Any, sizes: dict[int, int], depth: int) -> int:
    """How many values `node` stands for once aliases are expanded (shared nodes counted once per use,
    computed once each); raises _YAMLProblem past MAX_YAML_VALUES, MAX_YAML_DEPTH or an alias inside itself."""
    key = id(node)
    if key in sizes:
        if sizes[key] < 0:
            raise _YAMLProblem(f"an alias refers to the collection that holds it (line {node.start_mark.line + 1})")
        return sizes[key]
    if depth > MAX_YAML_DEPTH:
        raise _YAMLProblem(f"collections nested more than {MAX_YAML_DEPTH} deep (line {node.start_mark.line + 1})")
    size = 1
    if isinstance(node, (yaml.SequenceNode, yaml.MappingNode)):
        sizes[key] = -1
        children = node.value if isinstance(node, yaml.SequenceNode) else [n for pair in node.value for n in pair]
        for child in children:
            size += _expanded_size(child, sizes, depth + 1)
            if size > MAX_YAML_VALUES:
                raise _YAMLProblem(f"aliases expand to more than {MAX_YAML_VALUES:,} values "
                                   f"(line {node.start_mark.line + 1}); a recipe needs far fewer")
    sizes[key] = size
    return size


def _yaml_load(text: str) -> Any:
    """`text` read by the strict loader; raises _YAMLProblem or yaml.YAMLError."""
    loader = _RecipeLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _one_line(message: str) -> str:
    """A message as one line of at most MAX_LINE characters."""
    text = " ".join(message.split())
    return text if len(text) <= MAX_LINE else text[: MAX_LINE - 3] + "..."


_UNION_TAGS = frozenset({"bool", "int", "float", "str"})  # how pydantic names a union's members in a location


def _is_tag(part: Any) -> bool:
    """A part of a pydantic error location that names a validator or a union member, not a recipe key."""
    return isinstance(part, str) and (part in _UNION_TAGS or part.startswith(("function-", "literal[")))


def _location(loc: tuple[Any, ...]) -> str:
    out = "recipe"
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _is_tag(part):
            continue
        else:
            out += f".{part}"
    return out


def _fields_at(loc: tuple[Any, ...]) -> list[str]:
    """Field names valid at the parent of `loc`, for 'did you mean' suggestions."""
    model: Any = Recipe
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        annotation = field.annotation
        for candidate in (annotation, *getattr(annotation, "__args__", ())):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                model = candidate
                break
        else:
            return []
    return list(getattr(model, "model_fields", {}))


_EXPECTED = {
    "int_parsing": "expected an integer",
    "int_type": "expected an integer",
    "int_from_float": "expected an integer",
    "float_parsing": "expected a number",
    "float_type": "expected a number",
    "bool_parsing": "expected true or false",
    "bool_type": "expected true or false",
    "int_from_bool": "expected an integer",
    "float_from_bool": "expected a number",
    "string_type": "expected a string",
    "list_type": "expected a list",
    "dict_type": "expected a mapping",
    "model_type": "expected a mapping",
    "tuple_type": "expected a list",
}


def format_error(error: ValidationError, source: str = "", written: Any = None) -> str:
    """The first validation problem as one line: `recipe.key: what was expected, got value`. `written`, given
    the problem's location, returns the value's text as the user wrote it (None when unknown): echoed after
    the value when it reads otherwise (`got True ('yes')`)."""
    first = error.errors()[0]
    where = _location(first["loc"])
    prefix = f"{source}: " if source else ""
    kind = first["type"]
    if kind == "extra_forbidden":
        key = str(first["loc"][-1])[:MAX_ECHO]
        close = difflib.get_close_matches(key, _fields_at(first["loc"]), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return _one_line(f"{prefix}{where}: unknown key{hint}")
    got = shown(first.get("input"))
    text = written(first["loc"]) if written is not None and isinstance(first.get("input"), bool) else None
    if isinstance(text, str) and text.strip().lower() != str(first.get("input")).lower():
        got += f" ({shown(text)})"
    if kind in _EXPECTED:
        return _one_line(f"{prefix}{where}: {_EXPECTED[kind]}, got {got}")
    message = first["msg"].removeprefix("Value error, ")
    if kind == "value_error":
        return _one_line(f"{prefix}{where}: {message}")
    return _one_line(f"{prefix}{where}: {message[:1].lower() + message[1:]}, got {got}")


def parse_value(text: str) -> Any:
    """A --set value is YAML: `3` is an int, `1e-3` a float, `[1, 2]` a list, `none` stays a string.
    Raises CompetitionError for YAML the recipe loader refuses (a key twice, an alias bomb)."""
    try:
        return _yaml_load(text)
    except _YAMLProblem as exc:
        raise CompetitionError(f"--set value {shown(text)}: {exc}") from None
    except (yaml.YAMLError, RecursionError):
        return text


def apply_override(raw: dict[str, Any], assignment: str) -> None:
    """Apply `key.sub=value` (list items by index: `train.phases.0.epochs=3`) to the raw recipe dict."""
    key, sep, value = assignment.partition("=")
    if not sep or not key.strip():
        raise CompetitionError(f"--set {shown(assignment)}: expected KEY=VALUE, e.g. train.batch_size=64")
    if len(key) > 200:
        raise CompetitionError(f"--set {shown(key)}: not a recipe key")
    parts = key.strip().split(".")
    node: Any = raw
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise CompetitionError(f"--set {key}: {shown(part)} is not an index of a list of {len(node)}")
            if last:
                node[int(part)] = parse_value(value)
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = parse_value(value)
            else:
                if node.get(part) is None:
                    node[part] = _default_container(parts[: i + 1])
                node = node[part]
        else:
            raise CompetitionError(f"--set {key}: '{'.'.join(parts[:i])}' is not a section")


def _default_container(path: list[str]) -> Any:
    """The default value of a section, so `--set train.phases.0.epochs=2` works on a recipe without phases."""
    value: Any = Recipe().resolved()
    for part in path:
        try:
            value = value[int(part)] if isinstance(value, list) else value[part]
        except (KeyError, IndexError, ValueError):
            return {}
    return value


def _unshared(value: Any) -> Any:
    """The loaded YAML with every mapping and list copied where it is used: an alias (`*phase`) gives the
    same Python object at each use, so a `--set` on one use would change the others too."""
    if isinstance(value, dict):
        return {key: _unshared(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_unshared(item) for item in value]
    return value


def _scalar_text(node: Any, parts: list[Any]) -> str | None:
    """The text of the YAML scalar at `parts` (keys and list indexes; pydantic's validator and union tags
    skipped) below a composed node; None when there is none (an alias merge, a value built by a default)."""
    for part in parts:
        if _is_tag(part) and not (isinstance(node, yaml.MappingNode)
                                  and any(getattr(k, "value", None) == part for k, _ in node.value)):
            continue
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == str(part)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
        else:
            return None
        if node is None:
            return None
    return node.value if isinstance(node, yaml.ScalarNode) else None


def _written(loc: tuple[Any, ...], text: str | None, overrides: list[str]) -> str | None:
    """How the value at a validation error's location was written: in the last `--set` that reaches it, else
    in the recipe file's text; None when unknown."""
    try:
        for assignment in reversed(overrides):
            key, _, value = assignment.partition("=")
            keys = key.strip().split(".")
            parts = [p for p in loc if not _is_tag(p)]
            if [str(p) for p in parts[: len(keys)]] == keys:
                return _scalar_text(yaml.compose(value, Loader=yaml.SafeLoader), parts[len(keys):])
        return _scalar_text(yaml.compose(text, Loader=yaml.SafeLoader), list(loc)) if text else None
    except (yaml.YAMLError, RecursionError, ValueError):
        return None


def load_recipe(path: str | Path | None, overrides: list[str] | None = None) -> Recipe:
    """Read, override and validate a recipe; every problem becomes a one-line CompetitionError."""
    raw: dict[str, Any] = {}
    source = str(path) if path is not None else "recipe"
    text: str | None = None
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise CompetitionError(f"{path}: recipe file not found")
        if path.stat().st_size > MAX_RECIPE_BYTES:
            raise CompetitionError(f"{path}: {path.stat().st_size:,} bytes, not a recipe "
                                   f"(at most {MAX_RECIPE_BYTES:,} bytes)")
        try:
            text = path.read_text(encoding="utf-8")
            loaded = _yaml_load(text)
        except _YAMLProblem as exc:
            raise CompetitionError(f"{path}: {exc}") from None
        except RecursionError:
            raise CompetitionError(f"{path}: collections nested too deeply") from None
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark is not None else ""
            raise CompetitionError(f"{path}: not valid YAML{where}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise CompetitionError(f"{path}: a recipe is a mapping of sections, got {type(loaded).__name__}")
        raw = _unshared(loaded)
        raw.setdefault("name", path.stem)
    for assignment in overrides or []:
        apply_override(raw, assignment)
    try:
        return Recipe.model_validate(raw)
    except ValidationError as exc:
        raise CompetitionError(format_error(exc, source, lambda loc: _written(loc, text, overrides or []))) from None
    except CompetitionError as exc:  # raised by checks that validate against other libraries
        raise CompetitionError(_one_line(f"{source}: {exc}")) from None
