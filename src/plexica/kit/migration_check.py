"""Refuse backward-incompatible schema migrations unless they are a declared contract step.

During a rolling upgrade the pods of release N run against the schema migrated for N+1, so an
upgrade may only *expand* the schema. This check reads each revision's ``upgrade()`` (without
importing it) and reports, with file and line:

- dropping or renaming a table or a column (``op.drop_table``, ``op.drop_column``,
  ``op.rename_table``, ``op.alter_column(new_column_name=...)``, or the same in ``op.execute`` SQL);
- a NOT NULL column added without a server default, or ``alter_column(nullable=False)``;
- an index or unique constraint built on an existing table without ``CONCURRENTLY``
  (it locks writes for the whole build).

The second half of an expand/contract pair (run once no deployed code uses the old shape) declares
itself with two module constants, and is then allowed all of the above::

    CONTRACT_STEP = "why it is safe now (e.g. nothing reads orders.legacy_total since 1.4)"
    EXPANDS = "o0007"   # the revision that added the replacement
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

DEFAULT_GLOBS = (
    "src/plexica/migrations/**/versions/*.py",
    "plugins/*/src/**/migrations/**/versions/*.py",
)
MIN_REASON = 15

_SQL_RULES = (
    (re.compile(r"\bDROP\s+TABLE\b", re.I), "drop-table", "drops a table"),
    (re.compile(r"\bDROP\s+COLUMN\b", re.I), "drop-column", "drops a column"),
    (re.compile(r"\bRENAME\s+(COLUMN\b|TO\b)", re.I), "rename", "renames a table or column"),
    (re.compile(r"\bSET\s+NOT\s+NULL\b", re.I), "not-null", "makes a column NOT NULL"),
)
_SQL_INDEX = re.compile(
    r"\bCREATE\s+(UNIQUE\s+)?INDEX\s+(?!CONCURRENTLY)(?:IF\s+NOT\s+EXISTS\s+)?\S+\s+ON\s+(?:ONLY\s+)?"
    r"(?:\"?\w+\"?\.)?\"?(\w+)\"?",
    re.I,
)


@dataclass(frozen=True)
class Finding:
    path: Path
    line: int
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.code}: {self.message}"


def _const(node: ast.expr | None) -> object:
    return node.value if isinstance(node, ast.Constant) else None


def _kw(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _arg(call: ast.Call, index: int, name: str) -> object:
    if len(call.args) > index:
        return _const(call.args[index])
    return _const(_kw(call, name))


def _module_constants(tree: ast.Module) -> dict[str, object]:
    out: dict[str, object] = {}
    for node in tree.body:
        targets: list[ast.expr] = []
        value: ast.expr | None = None
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign):
            targets, value = [node.target], node.value
        for t in targets:
            if isinstance(t, ast.Name):
                out[t.id] = _const(value)
    return out


def _upgrade(tree: ast.Module) -> ast.FunctionDef | None:
    return next(
        (n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "upgrade"), None
    )


def _calls(fn: ast.FunctionDef) -> Iterator[tuple[str, ast.Call]]:
    for node in ast.walk(fn):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            yield node.func.attr, node


def _column_not_null_without_default(call: ast.Call) -> bool:
    column = call.args[1] if len(call.args) > 1 else _kw(call, "column")
    if not (isinstance(column, ast.Call) and isinstance(column.func, ast.Attribute | ast.Name)):
        return False
    nullable = _const(_kw(column, "nullable"))
    primary = _const(_kw(column, "primary_key"))
    has_default = _kw(column, "server_default") is not None
    return (nullable is False or primary is True) and not has_default


def check_source(path: Path, source: str, known_revisions: set[str]) -> list[Finding]:
    """Findings for one revision file; empty when it is backward compatible or a contract step."""
    tree = ast.parse(source, filename=str(path))
    consts = _module_constants(tree)
    marker = consts.get("CONTRACT_STEP")
    if marker is not None:
        if not (isinstance(marker, str) and len(marker.strip()) >= MIN_REASON):
            return [Finding(path, 1, "contract-marker", "CONTRACT_STEP must be the reason (text)")]
        expands = consts.get("EXPANDS")
        if not isinstance(expands, str) or expands not in known_revisions:
            return [
                Finding(
                    path, 1, "contract-marker", f"EXPANDS must name an existing revision: {expands}"
                )
            ]
        return []
    fn = _upgrade(tree)
    if fn is None:
        return []
    created = {
        str(_arg(call, 0, "table_name")) for name, call in _calls(fn) if name == "create_table"
    }
    findings: list[Finding] = []

    def add(call: ast.AST, code: str, message: str) -> None:
        findings.append(Finding(path, getattr(call, "lineno", 1), code, message))

    for name, call in _calls(fn):
        if name == "drop_table":
            add(call, "drop-table", f"drops table {_arg(call, 0, 'table_name')}")
        elif name == "drop_column":
            add(call, "drop-column", f"drops column {_arg(call, 1, 'column_name')}")
        elif name == "rename_table":
            add(call, "rename", f"renames table {_arg(call, 0, 'old_table_name')}")
        elif name == "alter_column":
            if _kw(call, "new_column_name") is not None:
                add(call, "rename", f"renames column {_arg(call, 1, 'column_name')}")
            if _const(_kw(call, "nullable")) is False:
                add(call, "not-null", f"makes column {_arg(call, 1, 'column_name')} NOT NULL")
        elif name == "add_column" and _column_not_null_without_default(call):
            add(call, "not-null", "adds a NOT NULL column without a server_default")
        elif name in ("create_index", "create_unique_constraint"):
            table = _arg(call, 1, "table_name")
            concurrent = _const(_kw(call, "postgresql_concurrently")) is True
            if table not in created and not concurrent:
                add(
                    call,
                    "index-lock",
                    f"{name} on existing table {table} without postgresql_concurrently=True",
                )
        elif name == "execute":
            sql = _arg(call, 0, "sqltext")
            if isinstance(sql, str):
                for pattern, code, message in _SQL_RULES:
                    if pattern.search(sql):
                        add(call, code, f"SQL {message}")
                for m in _SQL_INDEX.finditer(sql):
                    if m.group(2) not in created:
                        add(call, "index-lock", f"SQL index on {m.group(2)} without CONCURRENTLY")
    return findings


def revision_files(root: Path, globs: Iterable[str] = DEFAULT_GLOBS) -> list[Path]:
    return sorted({p for g in globs for p in root.glob(g) if p.name != "__init__.py"})


def check(files: Iterable[Path]) -> list[Finding]:
    files = list(files)
    sources = {p: p.read_text() for p in files}
    known = set()
    for source in sources.values():
        rev = _module_constants(ast.parse(source)).get("revision")
        if isinstance(rev, str):
            known.add(rev)
    return [f for p, src in sources.items() for f in check_source(p, src, known)]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    root = Path.cwd()
    files = [Path(a) for a in args] if args else revision_files(root)
    findings = check(files)
    for finding in findings:
        print(finding)
    status = "refused" if findings else "backward compatible"
    print(f"check-migrations: {len(files)} revisions, {len(findings)} findings: {status}")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
