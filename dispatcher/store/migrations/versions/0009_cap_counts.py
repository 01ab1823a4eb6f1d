"""cap counts: letters each recipient address and email domain received per hour and per day

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cap_counts",
        sa.Column("counter", sa.String(length=500), nullable=False),
        sa.Column("used", sa.Integer(), nullable=False),
        sa.Column("ends", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("counter", name=op.f("pk_cap_counts")),
    )


def downgrade() -> None:
    op.drop_table("cap_counts")
