"""Reading a user's own atomic facts: JSONL (``{"head", "relation", "tail"}`` per line) or TSV (3 columns)."""

from __future__ import annotations

import json
from pathlib import Path

from grokkit.errors import ConfigError

RESERVED = ("<pad>", "</a>")  # the names of the special tokens PAD and EOS


def read_triples(path: Path) -> list[tuple[str, str, str]]:
    """Every line one fact (a ``.jsonl`` file's as JSON, any other's as TSV); blank lines are skipped. A
    malformed line is an error that names it."""
    key, give = "data.facts_file", "give a .jsonl or .tsv file"
    if not path.exists():
        raise ConfigError(f"{key} {path} does not exist; {give}", key)
    parse = _parse_jsonl if path.suffix == ".jsonl" else _parse_tsv
    triples = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{key} {path} is not UTF-8 text; {give}", key) from None
    except OSError as error:  # a directory, no permission
        raise ConfigError(f"{key} {path} cannot be read ({error.strerror}); {give}", key) from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        triple = parse(line)
        if triple is None or not all(isinstance(x, str) and x.strip() for x in triple):
            expected = (
                '{"head": ..., "relation": ..., "tail": ...}'
                if path.suffix == ".jsonl"
                else "head<TAB>relation<TAB>tail"
            )
            raise ConfigError(f"{path}:{number}: malformed fact {line.strip()[:60]!r}; expected {expected}")
        triple = tuple(x.strip() for x in triple)
        for name in triple:
            if name in RESERVED:
                raise ConfigError(
                    f"{path}:{number}: name {name!r} is one of grokkit's special tokens ({', '.join(RESERVED)}); "
                    "rename it"
                )
        triples.append(triple)
    if not triples:
        raise ConfigError(f"{key} {path} holds no facts", key)
    return triples


def _parse_jsonl(line: str) -> tuple[str, str, str] | None:
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(record, dict) or set(record) != {"head", "relation", "tail"}:
        return None
    return record["head"], record["relation"], record["tail"]


def _parse_tsv(line: str) -> tuple[str, str, str] | None:
    fields = line.split("\t")
    return (fields[0], fields[1], fields[2]) if len(fields) == 3 else None
