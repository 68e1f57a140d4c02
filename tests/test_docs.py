"""Documentation that must match the code: every config key is in the README's reference."""

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def schema_keys(schema: dict, prefix: str = "") -> list[str]:
    keys = []
    for name, sub in schema.get("properties", {}).items():
        path = f"{prefix}{name}"
        keys.append(path)
        if sub.get("type") == "object" and "properties" in sub:
            keys += schema_keys(sub, path + ".")
    return keys


def test_readme_documents_every_config_key():
    schema = yaml.safe_load((REPO / "src" / "scalinglab" / "core" / "schema.yaml").read_text())
    readme = (REPO / "README.md").read_text()
    documented = set(re.findall(r"^\| `([\w.]+)` \|", readme, flags=re.M))
    missing = [
        k for k in schema_keys(schema) if k not in documented and "." in k or k in ("device",) and k not in documented
    ]
    assert missing == []


def test_readme_starts_with_the_two_commands():
    readme = (REPO / "README.md").read_text()
    block = readme.split("```bash", 1)[1].split("```", 1)[0]
    assert [line.split()[0:2] for line in block.strip().splitlines()] == [["make", "run"], ["make", "test"]]
