"""fax submissions: provider job per delivery, fax details per attempt, early provider events"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("provider", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("provider_job", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_deliveries_provider_job", "deliveries", ["provider", "provider_job"])
    in_flight = sa.text("status IN ('sending', 'submitted')")
    op.create_index(
        "ix_deliveries_in_flight",
        "deliveries",
        ["channel", "action_id", "target_id"],
        sqlite_where=in_flight,
        postgresql_where=in_flight,
    )
    with op.batch_alter_table("attempts") as batch:
        batch.add_column(sa.Column("provider", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("job_id", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("destination", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("pages", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("duration", sa.Float(), nullable=True))
    op.create_index("ix_attempts_provider_job", "attempts", ["provider", "job_id"])
    op.create_table(
        "early_events",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("job_id", sa.String(length=128), nullable=False),
        sa.Column("delivered", sa.Boolean(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), server_default="", nullable=False),
        sa.Column("failure", sa.String(length=32), nullable=True),
        sa.Column("retry_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("pages", sa.Integer(), nullable=True),
        sa.Column("duration", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_early_events")),
    )
    op.create_index(op.f("ix_early_events_provider_job_id"), "early_events", ["provider", "job_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_early_events_provider_job_id"), table_name="early_events")
    op.drop_table("early_events")
    op.drop_index("ix_attempts_provider_job", table_name="attempts")
    with op.batch_alter_table("attempts") as batch:
        for column in ("duration", "pages", "destination", "job_id", "provider"):
            batch.drop_column(column)
    op.drop_index("ix_deliveries_in_flight", table_name="deliveries")
    op.drop_index("ix_deliveries_provider_job", table_name="deliveries")
    with op.batch_alter_table("deliveries") as batch:
        for column in ("submitted_at", "provider_job", "provider"):
            batch.drop_column(column)
