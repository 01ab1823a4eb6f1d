"""consent term ``replies``: whether a target's reply may reach the supporter directly"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    # Nobody was asked before: every consent held becomes "organisation" (no Reply-To), the
    # choice that does not hand a supporter's address to the government they write to.
    op.add_column(
        "consents",
        sa.Column("replies", sa.String(length=16), server_default="organisation", nullable=False),
    )


def downgrade() -> None:
    with op.batch_alter_table("consents") as batch:
        batch.drop_column("replies")
