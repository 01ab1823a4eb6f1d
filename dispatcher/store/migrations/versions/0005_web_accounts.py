"""web app: users, sessions, the audit log, worker heartbeats"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
When = sa.DateTime(timezone=True)
DASHBOARD_INDEXES = (
    ("ix_deliveries_action_id_status_attempts", "deliveries", ["action_id", "status", "attempts"]),
    ("ix_attempts_outcome_finished_at_action_id", "attempts", ["outcome", "finished_at", "action_id"]),
    (
        "ix_attempts_outcome_action_id_provider_pages",
        "attempts",
        ["outcome", "action_id", "provider", "pages"],
    ),
    ("ix_attempts_action_id_channel_outcome", "attempts", ["action_id", "channel", "outcome"]),
)


def upgrade() -> None:
    # The dashboard's and /metrics' counts, read from indexes alone (bench/dashboard_scale.py).
    for name, table, columns in DASHBOARD_INDEXES:
        op.create_index(name, table, columns)
    # Who withdrew consent lately, asked each second by every running dispatcher.
    op.create_index("ix_consents_revoked_at", "consents", ["revoked_at"])
    op.create_table(
        "users",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("created_at", When, nullable=False),
        sa.Column("updated_at", When, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("name", name=op.f("uq_users_name")),
    )
    op.create_table(
        "web_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("user_id", BigId, nullable=False),
        sa.Column("created_at", When, nullable=False),
        sa.Column("expires_at", When, nullable=False),
        sa.Column("address", sa.String(length=64), server_default="", nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_web_sessions_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_sessions")),
    )
    op.create_index(op.f("ix_web_sessions_user_id"), "web_sessions", ["user_id"])
    op.create_table(
        "audit_log",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("at", When, nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("address", sa.String(length=64), server_default="", nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=200), server_default="", nullable=False),
        sa.Column("detail", sa.Text(), server_default="", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index(op.f("ix_audit_log_at"), "audit_log", ["at"])
    op.create_table(
        "workers",
        sa.Column("worker_id", sa.String(length=128), nullable=False),
        sa.Column("started_at", When, nullable=False),
        sa.Column("last_seen", When, nullable=False),
        sa.Column("holding", sa.Integer(), server_default="0", nullable=False),
        sa.Column("sent", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("stopped_at", When, nullable=True),
        sa.PrimaryKeyConstraint("worker_id", name=op.f("pk_workers")),
    )


def downgrade() -> None:
    op.drop_table("workers")
    op.drop_index(op.f("ix_audit_log_at"), table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_index(op.f("ix_web_sessions_user_id"), table_name="web_sessions")
    op.drop_table("web_sessions")
    op.drop_table("users")
    op.drop_index("ix_consents_revoked_at", table_name="consents")
    for name, table, _ in DASHBOARD_INDEXES:
        op.drop_index(name, table_name=table)
