"""scripts/check-migrations on good and bad sample revisions, and on the repository's own."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest

from plexica.kit.migration_check import check, main, revision_files
from tests.deploy.conftest import ROOT

HEAD = """
import sqlalchemy as sa
from alembic import op

revision = "{rev}"
down_revision = "x0001"
"""

GOOD = {
    "new table with its index": """
def upgrade() -> None:
    op.create_table("orders", sa.Column("id", sa.Integer(), primary_key=True), schema="crm")
    op.create_index("orders_id", "orders", ["id"], schema="crm")
""",
    "nullable column": """
def upgrade() -> None:
    op.add_column("orders", sa.Column("note", sa.Text(), nullable=True))
""",
    "not null with a server default": """
def upgrade() -> None:
    op.add_column("orders", sa.Column("n", sa.Integer(), nullable=False, server_default="0"))
""",
    "concurrent index": """
def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index("orders_n", "orders", ["n"], postgresql_concurrently=True)
""",
    "concurrent index in SQL": """
def upgrade() -> None:
    op.execute("CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_n ON crm.orders (n)")
""",
    "drops only in downgrade": """
def upgrade() -> None:
    op.add_column("orders", sa.Column("note", sa.Text()))

def downgrade() -> None:
    op.drop_column("orders", "note")
""",
}

BAD = {
    "drop table": ("op.drop_table('orders')", "drop-table"),
    "drop column": ("op.drop_column('orders', 'total')", "drop-column"),
    "rename table": ("op.rename_table('orders', 'purchases')", "rename"),
    "rename column": ("op.alter_column('orders', 'total', new_column_name='amount')", "rename"),
    "not null without default": (
        "op.add_column('orders', sa.Column('n', sa.Integer(), nullable=False))",
        "not-null",
    ),
    "set not null": ("op.alter_column('orders', 'note', nullable=False)", "not-null"),
    "blocking index": ("op.create_index('orders_n', 'orders', ['n'])", "index-lock"),
    "blocking unique": ("op.create_unique_constraint('u', 'orders', ['n'])", "index-lock"),
    "batch drop": (
        "with op.batch_alter_table('orders') as b:\n        b.drop_column('total')",
        "drop-column",
    ),
    "SQL drop column": ("op.execute('ALTER TABLE orders DROP COLUMN total')", "drop-column"),
    "SQL rename": ("op.execute('ALTER TABLE orders RENAME COLUMN a TO b')", "rename"),
    "SQL not null": ("op.execute('ALTER TABLE orders ALTER COLUMN a SET NOT NULL')", "not-null"),
    "SQL blocking index": ("op.execute('CREATE INDEX orders_a ON crm.orders (a)')", "index-lock"),
}


def write(tmp_path: Path, name: str, body: str, rev: str = "x0002", extra: str = "") -> Path:
    path = tmp_path / "versions" / f"{name.replace(' ', '_')}.py"
    path.parent.mkdir(exist_ok=True)
    path.write_text(HEAD.format(rev=rev) + extra + textwrap.dedent(body))
    return path


def expand_revision(tmp_path: Path) -> Path:
    return write(tmp_path, "expand", "def upgrade() -> None:\n    pass\n", rev="x0001")


@pytest.mark.parametrize("name", GOOD)
def test_backward_compatible_revisions_pass(tmp_path: Path, name: str) -> None:
    assert check([write(tmp_path, name, GOOD[name])]) == []


@pytest.mark.parametrize("name", BAD)
def test_breaking_revisions_are_refused_with_their_line(tmp_path: Path, name: str) -> None:
    statement, code = BAD[name]
    path = write(tmp_path, name, f"def upgrade() -> None:\n    {statement}\n")
    findings = check([path])
    assert [f.code for f in findings] == [code]
    assert findings[0].path == path
    reported = path.read_text().splitlines()[findings[0].line - 1]
    assert reported.strip().startswith(("op.", "b."))


def test_a_declared_contract_step_may_drop(tmp_path: Path) -> None:
    marker = (
        'CONTRACT_STEP = "orders.total unread since release 1.4 (expand x0001 added amount)"\n'
        'EXPANDS = "x0001"\n'
    )
    path = write(
        tmp_path,
        "contract",
        "def upgrade() -> None:\n    op.drop_column('orders', 'total')\n",
        extra=marker,
    )
    assert check([expand_revision(tmp_path), path]) == []


@pytest.mark.parametrize(
    ("marker", "why"),
    [
        ("CONTRACT_STEP = True\nEXPANDS = 'x0001'\n", "reason"),
        (
            "CONTRACT_STEP = 'no longer read by any release'\nEXPANDS = 'nope'\n",
            "existing revision",
        ),
        ("CONTRACT_STEP = 'no longer read by any release'\n", "existing revision"),
    ],
)
def test_a_contract_marker_needs_a_reason_and_its_expand_revision(
    tmp_path: Path, marker: str, why: str
) -> None:
    path = write(
        tmp_path, "contract", "def upgrade() -> None:\n    op.drop_table('orders')\n", extra=marker
    )
    findings = check([expand_revision(tmp_path), path])
    assert [f.code for f in findings] == ["contract-marker"]
    assert why in findings[0].message


def test_repository_revisions_pass_and_the_script_exits_non_zero_on_a_bad_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = revision_files(ROOT)
    assert any(p.name == "p0001_platform_schema.py" for p in files)
    assert check(files) == []
    proc = subprocess.run(
        [str(ROOT / "scripts" / "check-migrations")], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 findings" in proc.stdout
    bad = write(tmp_path, "bad", "def upgrade() -> None:\n    op.drop_table('orders')\n")
    assert main([str(bad)]) == 1
    out = capsys.readouterr().out
    assert f"{bad}:8: drop-table: drops table orders" in out
