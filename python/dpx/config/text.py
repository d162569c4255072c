"""An input file's text -> plain data (JSON, or YAML by the suffix), every error one line
that names the file and, where the parser knows it, the line and column.

A key given twice in one object is refused with both places: Python's JSON and YAML readers
keep the last silently, so a value the user sees in the file may not be the one used.
DeePMD-kit's loader keeps the last (README: differences).
"""
from __future__ import annotations

import json
import re
from collections.abc import Hashable
from pathlib import Path

from dpx.config.schema import ConfigError

# in valid JSON: a string (a key when a colon follows) or a bracket
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"(\s*:)?|[{}\[\]]')


def read_input(path: Path):
    """The data of the input file at path (json.loads/yaml.safe_load's result)."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the input file ({e.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        before = raw[:e.start].decode("utf-8")  # line and column count characters
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{raw[e.start]:02x} at "
                          f"{_place(before, len(before))}); save the input as UTF-8") from None
    if path.suffix in (".yaml", ".yml"):
        return _yaml(path, text)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON at line {e.lineno}, column {e.colno}: "
                          f"{e.msg}") from None
    _refuse_duplicate_keys(path, text)
    return data


def _place(text: str, pos: int) -> str:
    line_start = text.rfind("\n", 0, pos) + 1
    return f"line {text.count(chr(10), 0, pos) + 1}, column {pos - line_start + 1}"


def _refuse_duplicate_keys(path: Path, text: str) -> None:
    """A key twice in one object of (valid) JSON text: a ConfigError naming both places."""
    objects: list[dict | None] = []  # per open bracket: {key: offset} for an object
    for m in _TOKEN.finditer(text):
        tok = m.group(0)
        if tok in "{[":
            objects.append({} if tok == "{" else None)
        elif tok in "}]":
            objects.pop()
        elif m.group(1) and objects and objects[-1] is not None:
            key = json.loads(tok[:len(tok) - len(m.group(1))])
            if key in objects[-1]:
                raise ConfigError(f"{path}: key '{key}' given twice in one object, at "
                                  f"{_place(text, objects[-1][key])} and "
                                  f"{_place(text, m.start())}; keep one")
            objects[-1][key] = m.start()


def _yaml(path: Path, text: str):
    import yaml

    class UniqueKeys(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            # before the base class merges '<<' keys in, whose overrides are no repeats
            seen = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key, mark = self.construct_object(key_node, deep=True), key_node.start_mark
                where = f"line {mark.line + 1}, column {mark.column + 1}"
                if not isinstance(key, Hashable):
                    continue  # the base class reports it
                if key in seen:
                    raise ConfigError(f"{path}: key '{key}' given twice in one mapping, at "
                                      f"{seen[key]} and {where}; keep one")
                seen[key] = where
            return super().construct_mapping(node, deep=deep)

    try:
        return yaml.load(text, Loader=UniqueKeys)  # noqa: S506 (a SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
