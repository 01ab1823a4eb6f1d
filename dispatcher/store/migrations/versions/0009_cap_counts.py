"""cap counts: letters each recipient address and email domain received per hour and per day"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"


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
