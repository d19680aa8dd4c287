"""Darknet ``.cfg`` files: parse into sections, write back out.

Hand-written because the format is tiny and no maintained library parses it with line numbers,
which every error message here must carry (``file:line: key 'x': ...``).

Only the syntax and the vocabulary (section names, key names) are checked here; values are
checked where they are used, by the model builder, which reports the key's own line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from slimyolo_ros.errors import CfgError

# Keys each layer section may carry. [net] holds Darknet's training hyper-parameters, which vary a lot
# between cfgs and never change the network, so any key is accepted there.
KNOWN_KEYS: dict[str, frozenset[str] | None] = {
    "net": None,
    "convolutional": frozenset(
        {"batch_normalize", "filters", "size", "stride", "pad", "padding", "activation"}),
    "shortcut": frozenset({"from", "activation"}),
    "route": frozenset({"layers"}),
    "upsample": frozenset({"stride"}),
    "maxpool": frozenset({"size", "stride", "padding"}),
    "yolo": frozenset(
        {"mask", "anchors", "classes", "num", "jitter", "ignore_thresh", "truth_thresh", "random"}),
}


@dataclass
class Section:
    """One ``[type]`` block. ``line`` is the header's line; ``key_lines`` the line of each key."""

    type: str
    options: dict[str, str]
    line: int
    key_lines: dict[str, int] = field(default_factory=dict)
    # Full-line comments written just above the header; kept so a cfg can explain itself.
    comment: str = ""

    def key_line(self, key: str) -> int:
        return self.key_lines.get(key, self.line)

    def copy(self) -> Section:
        return Section(self.type, dict(self.options), self.line, dict(self.key_lines), self.comment)


def _strip_comment(line: str) -> str:
    for mark in ("#", ";"):
        pos = line.find(mark)
        if pos >= 0:
            line = line[:pos]
    return line.strip()


def parse_cfg(text: str, source: str = "<cfg>") -> list[Section]:
    """Parse cfg text into sections; ``sections[0]`` is ``[net]``."""
    sections: list[Section] = []
    pending_comment: list[str] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped:
            continue
        if stripped[0] in "#;":
            pending_comment.append(stripped[1:].strip())
            continue
        line = _strip_comment(stripped)
        if line.startswith("["):
            if not line.endswith("]"):
                raise CfgError(f"{source}:{lineno}: section header {line!r} has no closing ']'")
            kind = line[1:-1].strip().lower()
            if kind not in KNOWN_KEYS:
                known = ", ".join(f"[{k}]" for k in KNOWN_KEYS)
                raise CfgError(f"{source}:{lineno}: unknown section [{kind}] (supported: {known})")
            if not sections and kind != "net":
                raise CfgError(f"{source}:{lineno}: the first section must be [net], found [{kind}]")
            if sections and kind == "net":
                raise CfgError(f"{source}:{lineno}: a second [net] section (the first is on line "
                               f"{sections[0].line})")
            sections.append(Section(kind, {}, lineno, comment="\n".join(pending_comment)))
            pending_comment = []
            continue
        pending_comment = []
        if "=" not in line:
            raise CfgError(f"{source}:{lineno}: expected 'key=value' or '[section]', found {line!r}")
        if not sections:
            raise CfgError(f"{source}:{lineno}: 'key=value' before the first section header")
        key, value = (part.strip() for part in line.split("=", 1))
        section = sections[-1]
        if not key:
            raise CfgError(f"{source}:{lineno}: empty key in {line!r}")
        allowed = KNOWN_KEYS[section.type]
        if allowed is not None and key not in allowed:
            raise CfgError(f"{source}:{lineno}: key {key!r}: unknown in [{section.type}] "
                           f"(supported: {', '.join(sorted(allowed))})")
        if key in section.options:
            raise CfgError(f"{source}:{lineno}: key {key!r}: given twice in [{section.type}] "
                           f"(first on line {section.key_lines[key]})")
        if value == "":
            raise CfgError(f"{source}:{lineno}: key {key!r}: empty value")
        section.options[key] = value
        section.key_lines[key] = lineno
    if not sections:
        raise CfgError(f"{source}:1: no sections (a cfg starts with [net])")
    return sections


def load_cfg(path: str | os.PathLike) -> list[Section]:
    """Read and parse a cfg file; a missing or unreadable file is a CfgError naming it."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise CfgError(f"{path}: cfg file not found") from None
    except IsADirectoryError:
        raise CfgError(f"{path}: is a directory, expected a cfg file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CfgError(f"{path}: cannot read cfg: {exc}") from None
    return parse_cfg(text, source=str(path))


def write_cfg(sections: list[Section], comments: bool = True) -> str:
    """Render sections as cfg text that :func:`parse_cfg` reads back to the same sections."""
    blocks = []
    for section in sections:
        lines = []
        if comments and section.comment:
            lines += [f"# {c}".rstrip() for c in section.comment.splitlines()]
        lines.append(f"[{section.type}]")
        lines += [f"{key}={value}" for key, value in section.options.items()]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"
