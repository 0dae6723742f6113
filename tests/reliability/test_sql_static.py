"""No SQL formats values into strings: every query is a literal or composed with ``psycopg.sql``.

Walks the production code with ``ast`` and fails on an ``execute``-like call whose query is an
f-string, ``%``-formatted, ``str.format``-ed or concatenated with something that is not a literal,
directly or through a name bound to one. ``sql.SQL(...)``, ``.format(sql.Identifier(...))`` and
names bound to those pass.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("pipeline", "flows", "infra", "ragtune")
QUERY_METHODS = {"execute", "executemany", "copy", "stream", "executescript"}
NOT_A_DRIVER = {"shutil", "copy", "os"}  # shutil.copy(src, dst) and friends take paths, not SQL


def violations(source: str, filename: str = "<snippet>") -> list[str]:
    """Every query argument in ``source`` built by formatting values into a string, as 'file:line: why'."""
    tree = ast.parse(source, filename)
    module_bindings = _bindings(tree.body)
    found = []
    for scope in [tree, *(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef))]:
        local = _bindings(scope.body) if scope is not tree else {}
        for call in _own_calls(scope):
            query = _query_argument(call)
            if query is None:
                continue
            why = _unsafe(query, [local, module_bindings], depth=0)
            if why:
                found.append(f"{filename}:{call.lineno}: {why}")
    return found


def _own_calls(scope: ast.AST) -> list[ast.Call]:
    """Calls in this scope, not in the functions nested in it (those are scopes of their own)."""
    calls, stack = [], list(ast.iter_child_nodes(scope))
    while stack:
        node = stack.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        if isinstance(node, ast.Call):
            calls.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return sorted(calls, key=lambda c: (c.lineno, c.col_offset))


def _bindings(body: list[ast.stmt]) -> dict[str, list[ast.expr]]:
    """Every value each plain name is assigned in these statements (nested functions aside)."""
    bound: dict[str, list[ast.expr]] = {}
    stack: list[ast.AST] = list(body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    bound.setdefault(target.id, []).append(node.value)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            bound.setdefault(node.target.id, []).append(node.value)
        elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
            bound.setdefault(node.target.id, []).append(ast.BinOp(node.target, node.op, node.value))
        elif isinstance(node, ast.NamedExpr):
            bound.setdefault(node.target.id, []).append(node.value)
        stack.extend(ast.iter_child_nodes(node))
    return bound


def _query_argument(call: ast.Call) -> ast.expr | None:
    func = call.func
    if not isinstance(func, ast.Attribute) or func.attr not in QUERY_METHODS:
        return None
    if isinstance(func.value, ast.Name) and func.value.id in NOT_A_DRIVER:
        return None
    if call.args:
        return call.args[0]
    return next((k.value for k in call.keywords if k.arg in ("query", "statement", "sql")), None)


def _is_str(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str | bytes)


def _is_sql_composable(node: ast.expr) -> bool:
    """``sql.SQL(...)``, ``sql.Identifier(...)``, ``sql.Composed(...)`` and the like (any ``sql.X(...)``)."""
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "sql"
    )


def _literal_like(node: ast.expr, scopes: list[dict[str, list[ast.expr]]], depth: int) -> bool:
    """A string literal, a ``psycopg.sql`` object, or a name bound only to those."""
    if _is_str(node) or _is_sql_composable(node):
        return True
    if isinstance(node, ast.Name) and depth < 8:
        values = _resolve(node.id, scopes)
        return bool(values) and all(_literal_like(v, scopes, depth + 1) for v in values)
    return False


def _resolve(name: str, scopes: list[dict[str, list[ast.expr]]]) -> list[ast.expr]:
    return next((scope[name] for scope in scopes if name in scope), [])


def _unsafe(node: ast.expr, scopes: list[dict[str, list[ast.expr]]], depth: int) -> str | None:
    """Why this query expression formats values into a string, or None if it does not."""
    if depth > 8:
        return None
    if isinstance(node, ast.JoinedStr) and any(isinstance(v, ast.FormattedValue) for v in node.values):
        return "f-string query"
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
        if _is_str(node.left) or _names_a_str(node.left, scopes):
            return "%-formatted query"
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        for side in (node.left, node.right):
            if not _literal_like(side, scopes, depth) and not isinstance(side, ast.BinOp):
                return "query concatenated with a non-literal"
            why = _unsafe(side, scopes, depth + 1)
            if why:
                return why
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        receiver = node.func.value
        if node.func.attr in ("format", "join", "replace") and not _is_sql_composable(receiver):
            if _is_str(receiver) or _names_a_str(receiver, scopes):
                return f"str.{node.func.attr} query"
        if _is_sql_composable(node) and node.func.attr == "SQL" and node.args:
            return _unsafe(node.args[0], scopes, depth + 1)  # sql.SQL(f"... {value}") is no better
        if node.func.attr == "format" and _is_sql_composable(receiver):
            return _unsafe(receiver, scopes, depth + 1)
        if isinstance(receiver, ast.Name | ast.Call):
            return _unsafe(receiver, scopes, depth + 1) if node.func.attr == "format" else None
    if isinstance(node, ast.Name):
        for value in _resolve(node.id, scopes):
            why = _unsafe(value, scopes, depth + 1)
            if why:
                return f"{why} (through {node.id!r})"
    return None


def _names_a_str(node: ast.expr, scopes: list[dict[str, list[ast.expr]]]) -> bool:
    """A name bound only to string literals (a query constant, say)."""
    values = _resolve(node.id, scopes) if isinstance(node, ast.Name) else []
    return bool(values) and all(_is_str(v) for v in values)


def production_files() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def test_no_query_in_production_code_formats_values_into_a_string():
    files = production_files()
    assert len(files) > 20 and any(p.name == "store.py" for p in files)  # the walk found the code
    found = [v for p in files for v in violations(p.read_text(encoding="utf-8"), str(p.relative_to(ROOT)))]
    assert found == []


def test_the_check_catches_formatted_queries_and_passes_composed_ones():
    bad = textwrap.dedent(
        """
        SELECT_ONE = "SELECT * FROM t WHERE id = '{}'"

        def f(conn, cur, name, table):
            conn.execute(f"SELECT * FROM t WHERE name = '{name}'")
            cur.execute("SELECT * FROM t WHERE name = '%s'" % name)
            conn.execute("DELETE FROM t WHERE name = '{}'".format(name))
            conn.cursor().execute("SELECT * FROM " + table)
            q = "SELECT 1 WHERE x = " + name
            conn.execute(q)
            conn.execute(SELECT_ONE.format(name))
            cur.executemany(sql.SQL(f"INSERT INTO {table} VALUES (%s)"), [])
            with cur.copy(f"COPY {table} FROM STDIN") as copy:
                pass
            query = "SELECT 1"
            query += name
            conn.execute(query)
        """
    )
    assert [v.split(": ", 1)[1] for v in violations(bad)] == [
        "f-string query",
        "%-formatted query",
        "str.format query",
        "query concatenated with a non-literal",
        "query concatenated with a non-literal (through 'q')",
        "str.format query",
        "f-string query",
        "f-string query",
        "query concatenated with a non-literal (through 'query')",
    ]

    good = textwrap.dedent(
        """
        QUERY = "SELECT * FROM t WHERE name = %s"
        TEMPLATE = "SELECT * FROM {table} WHERE id = %(id)s"

        def f(conn, cur, name, table):
            conn.execute(QUERY, (name,))
            conn.execute("SELECT 1 " + "FROM t")
            conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(table)))
            conn.execute(sql.SQL(TEMPLATE).format(table=sql.Identifier(table)), {"id": name})
            rename = sql.SQL("ALTER TABLE {} RENAME TO {}")
            conn.execute(rename.format(sql.Identifier(table), sql.Identifier(name)))
            copy_sql = sql.SQL("COPY {} FROM STDIN").format(sql.Identifier(table))
            with cur.copy(copy_sql) as copy:
                pass
            shutil.copy(f"{name}.txt", table)
            settings.model_copy(update={})
            conn.execute(migration.sql.encode())
        """
    )
    assert violations(good) == []
