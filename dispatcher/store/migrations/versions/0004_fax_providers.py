"""fax providers: applied webhook messages, fax media served to providers, email fallback"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("fallback", sa.String(length=16), nullable=True))
    op.create_table(
        "webhook_messages",
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("message", sa.String(length=200), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("provider", "message", name=op.f("pk_webhook_messages")),
    )
    op.create_index(op.f("ix_webhook_messages_received_at"), "webhook_messages", ["received_at"])
    op.create_table(
        "fax_media",
        sa.Column("reference", sa.String(length=64), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("reference", name=op.f("pk_fax_media")),
    )
    op.create_index(op.f("ix_fax_media_created_at"), "fax_media", ["created_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_fax_media_created_at"), table_name="fax_media")
    op.drop_table("fax_media")
    op.drop_index(op.f("ix_webhook_messages_received_at"), table_name="webhook_messages")
    op.drop_table("webhook_messages")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("fallback")
