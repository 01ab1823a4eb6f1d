"""digests: a target's daily digest, its Message-ID and the letters it carries"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"


def _cascade(column: str, table: str) -> sa.ForeignKeyConstraint:
    name = op.f(f"fk_digest_letters_{column}_{table}")
    return sa.ForeignKeyConstraint([column], [f"{table}.id"], name=name, ondelete="CASCADE")


def upgrade() -> None:
    big = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    when = sa.DateTime(timezone=True)
    op.create_table(
        "digests",
        sa.Column("id", big, autoincrement=True, nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("action_id", sa.String(length=128), nullable=False),
        sa.Column("target_id", sa.String(length=128), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", when, nullable=False),
        sa.Column("lease_owner", sa.String(length=128), nullable=True),
        sa.Column("lease_until", when, nullable=True),
        sa.Column("created_at", when, nullable=False),
        sa.Column("sent_at", when, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_digests")),
        sa.UniqueConstraint(
            "action_id",
            "target_id",
            "channel",
            "day",
            name=op.f("uq_digests_action_id_target_id_channel_day"),
        ),
    )
    op.create_table(
        "digest_letters",
        sa.Column("digest_id", big, nullable=False),
        sa.Column("delivery_id", big, nullable=False),
        *(
            _cascade(column, table)
            for column, table in (("digest_id", "digests"), ("delivery_id", "deliveries"))
        ),
        sa.PrimaryKeyConstraint("digest_id", "delivery_id", name=op.f("pk_digest_letters")),
    )
    op.create_index(op.f("ix_digest_letters_delivery_id"), "digest_letters", ["delivery_id"], unique=False)


def downgrade() -> None:
    op.drop_table("digest_letters")
    op.drop_table("digests")
