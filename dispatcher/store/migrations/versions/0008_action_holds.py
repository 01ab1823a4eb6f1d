"""action holds: what a running dispatcher holds, for the dashboard and ``dispatcher actions``;
hold releases: when staff last released each action
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"

When = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "action_holds",
        sa.Column("action_id", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("held_at", When, nullable=False),
        sa.Column("worker", sa.String(length=128), nullable=False),
        sa.Column("templates", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("action_id", "worker", name=op.f("pk_action_holds")),
    )
    op.create_table(
        "hold_releases",
        sa.Column("action_id", sa.String(length=128), nullable=False),
        sa.Column("released_at", When, nullable=False),
        sa.PrimaryKeyConstraint("action_id", name=op.f("pk_hold_releases")),
    )


def downgrade() -> None:
    op.drop_table("hold_releases")
    op.drop_table("action_holds")
