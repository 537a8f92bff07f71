"""The README's "Receiving webhooks" recipes, run as written: each ```python block of the section
is executed and the one that defines a name hands it out."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parents[2] / "README.md"
_BLOCK = re.compile(r"```python\n(.*?)```\n", re.DOTALL)


def readme_recipe(name: str) -> Any:
    """The object `name` defined by a Python block of the README's "Receiving webhooks"."""
    text = README.read_text()
    start = text.index("## Receiving webhooks")
    end = text.find("\n## ", start + 1)
    section = text[start : end if end != -1 else len(text)]
    for code in _BLOCK.findall(section):
        namespace: dict[str, Any] = {}
        exec(compile(code, "README.md", "exec"), namespace)
        if name in namespace:
            return namespace[name]
    raise AssertionError(f"no README recipe defines {name}")
