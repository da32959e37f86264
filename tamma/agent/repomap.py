"""A map of the repository for the analyse and plan steps: its files and their top-level
symbols, the ones most related to the issue first, cut to a budget. The plan a person approves
then names files and functions that exist, not ones guessed from the issue's words.

Symbols: Python through its own parser (`ast`); JavaScript/TypeScript, Go, Rust, Java, C#,
Kotlin, Ruby, PHP and C/C++ through one line pattern per language (declarations at the start of
a line) — what a map needs, without a parser per language (tree-sitter grammars are a
dependency per language; ranked names are what the planner reads). Other files: their path.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
from collections import Counter
from pathlib import Path

from tamma.agent.safefs import read_text_beneath
from tamma.errors import TOO_DEEP
from tamma.gitcmd import safe_git_env_sync

MAX_FILES = 5000
MAX_BYTES = 300_000  # larger files are mapped by path only

_DECLARATIONS: dict[str, re.Pattern[str]] = {
    lang: re.compile(pattern, re.M)
    for lang, pattern in {
        "js": r"^\s*(?:export\s+)?(?:default\s+)?(?:async\s+)?(?:function\*?|class)\s+([A-Za-z_$][\w$]*)"
        r"|^\s*(?:export\s+)?(?:const|let|var)\s+([A-Za-z_$][\w$]*)\s*=\s*(?:async\s*)?(?:\(|function|[A-Za-z_$][\w$]*\s*=>)"
        r"|^\s*(?:export\s+)?(?:interface|type|enum)\s+([A-Za-z_$][\w$]*)",
        "go": r"^func\s+(?:\([^)]*\)\s*)?([A-Za-z_]\w*)|^type\s+([A-Za-z_]\w*)",
        "rs": r"^\s*(?:pub(?:\([^)]*\))?\s+)?(?:async\s+)?(?:fn|struct|enum|trait|mod|type)\s+([A-Za-z_]\w*)",
        "java": r"^\s*(?:public|private|protected|static|final|abstract|\s)*(?:class|interface|enum|record)\s+(\w+)"
        r"|^\s+(?:public|private|protected)[\w<>\[\],\s]*\s(\w+)\s*\(",
        "rb": r"^\s*(?:def|class|module)\s+(?:self\.)?([A-Za-z_]\w*[?!]?)",
        "php": r"^\s*(?:abstract\s+|final\s+)?(?:class|interface|trait|function)\s+([A-Za-z_]\w*)"
        r"|^\s*(?:public|private|protected)\s+(?:static\s+)?function\s+([A-Za-z_]\w*)",
        "c": r"^(?!\s)(?:[\w*]+\s+)+\**([A-Za-z_]\w*)\s*\([^;]*$|^(?:typedef\s+)?struct\s+([A-Za-z_]\w*)",
    }.items()
}
_LANG = {
    ".js": "js", ".jsx": "js", ".mjs": "js", ".cjs": "js", ".ts": "js", ".tsx": "js",
    ".go": "go", ".rs": "rs", ".java": "java", ".kt": "java", ".cs": "java", ".scala": "java",
    ".rb": "rb", ".php": "php", ".c": "c", ".h": "c", ".cc": "c", ".cpp": "c", ".hpp": "c", ".cxx": "c",
}  # fmt: skip
_SKIP_DIRS = {"node_modules", "vendor", "dist", "build", "target", ".venv", "venv", "__pycache__", ".git"}


def words(text: str) -> list[str]:
    """Identifier parts, lower case: `paginateItems` and `paginate_items` give paginate, items."""
    parts = re.findall(r"[A-Za-z][a-z]+|[A-Z]+(?![a-z])|\d+", text)
    return [p.lower() for p in parts if len(p) > 2]


def files_of(root: Path) -> list[str]:
    """The repository's tracked files (what the map is of); a walk when git cannot say."""
    try:
        # The hardened environment: the clone's own config (fsmonitor, hooks...) runs nothing here.
        out = subprocess.run(
            ["git", "-c", "core.quotePath=off", "ls-files", "-z"],
            cwd=root, capture_output=True, timeout=30, stdin=subprocess.DEVNULL, env=safe_git_env_sync(root),
        )  # fmt: skip
        if out.returncode == 0:
            return sorted(p for p in out.stdout.decode(errors="replace").split("\0") if p)[:MAX_FILES]
    except (OSError, subprocess.SubprocessError):
        pass
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("."))
        found += [str((Path(dirpath) / f).relative_to(root)) for f in sorted(filenames)]
        if len(found) >= MAX_FILES:
            break
    return found[:MAX_FILES]


def symbols(path: str, text: str) -> list[str]:
    suffix = Path(path).suffix.lower()
    if suffix == ".py":
        try:
            tree = ast.parse(text)
        except (SyntaxError, ValueError, *TOO_DEEP):
            return []
        out: list[str] = []
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                out.append(f"{node.name}()")
            elif isinstance(node, ast.ClassDef):
                methods = [n.name for n in node.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
                out.append(f"class {node.name}" + (f"({', '.join(methods[:12])})" if methods else ""))
        return out
    lang = _LANG.get(suffix)
    if lang is None:
        return []
    names = [next(g for g in m.groups() if g) for m in _DECLARATIONS[lang].finditer(text) if any(m.groups())]
    keywords = {"if", "for", "while", "switch", "return", "sizeof", "else", "main"}
    return list(dict.fromkeys(n for n in names if n not in keywords))[:40]


def repo_map(root: Path, query: str, budget_chars: int = 12_000) -> str:
    """Files and their symbols, ranked by how much they share with `query` (the issue), cut at
    `budget_chars`; the rest of the files by path while the budget lasts."""
    wanted = Counter(words(query))
    mentioned = {m.lower() for m in re.findall(r"[\w./-]+\.\w+", query)}
    entries: list[tuple[float, str, list[str]]] = []
    for path in files_of(root):
        text = read_text_beneath(root, path, MAX_BYTES) if Path(path).suffix.lower() in {".py", *_LANG} else None
        syms = symbols(path, text) if text else []
        vocabulary = set(words(path)) | {w for s in syms for w in words(s)}
        score = sum(wanted[w] for w in vocabulary) + (
            5.0 if path.lower() in mentioned or Path(path).name.lower() in mentioned else 0.0
        )
        entries.append((score, path, syms))
    entries.sort(key=lambda e: (-e[0], e[1]))
    lines: list[str] = []
    used = 0
    for score, path, syms in entries:
        line = f"{path}: {', '.join(syms)}" if syms and (score > 0 or used < budget_chars // 2) else path
        if used + len(line) + 1 > budget_chars:
            lines.append(f"… {len(entries) - len(lines)} more files")
            break
        lines.append(line)
        used += len(line) + 1
    return "\n".join(lines)


def missing_files(root: Path, files: list[str]) -> list[str]:
    """Files a plan names that neither exist nor would be new files in an existing folder."""
    bad: list[str] = []
    real_root = root.resolve()
    for name in files:
        path = (root / name.strip().lstrip("/")).resolve()
        outside = not path.is_relative_to(real_root) or ".git" in path.relative_to(real_root).parts
        if outside or (not path.exists() and not path.parent.is_dir()):
            bad.append(name)
    return bad
