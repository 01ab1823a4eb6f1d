"""supporters' mandates: consent terms and events, opt-ins, personal words, monthly caps,
receipts, and deliveries that outlive their supporter's details (retention)
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
When = sa.DateTime(timezone=True)
LIVE_CONSENT = "revoked_at IS NULL AND ended_at IS NULL"
# SQLite rebuilds a table to change a column or a constraint, and the rebuild does not carry
# partial indexes over: they are dropped first and made again afterwards.
PARTIAL = (
    ("ix_deliveries_in_flight", ["channel", "action_id", "target_id"], "status IN ('sending', 'submitted')"),
    ("ix_deliveries_leased", ["lease_until"], "status = 'sending'"),
)


def _partial(name: str, table: str, columns: list[str], where: str, unique: bool = False) -> None:
    clause = sa.text(where)
    op.create_index(name, table, columns, unique=unique, sqlite_where=clause, postgresql_where=clause)


def upgrade() -> None:
    for name, _, _ in PARTIAL:
        op.drop_index(name, table_name="deliveries")
    with op.batch_alter_table("deliveries") as batch:
        batch.alter_column("supporter_id", existing_type=BigId, nullable=True)
        batch.add_column(sa.Column("charged", sa.String(length=7)))
    for name, columns, where in PARTIAL:
        _partial(name, "deliveries", columns, where)
    for column in ("supporter_id", "consent_id"):
        op.create_index(op.f(f"ix_deliveries_{column}"), "deliveries", [column])
    with op.batch_alter_table("plan_marks") as batch:
        batch.add_column(sa.Column("basis", sa.String(length=64), server_default="", nullable=False))
    with op.batch_alter_table("supporters") as batch:
        batch.add_column(sa.Column("receipts", sa.String(length=16), server_default="off", nullable=False))
        batch.add_column(sa.Column("receipts_through", When))
    # Rebuilt on SQLite with AUTOINCREMENT: consent ids are never reused (see schema.py).
    with op.batch_alter_table(
        "consents", recreate="auto", table_kwargs={"sqlite_autoincrement": True}
    ) as batch:
        batch.drop_constraint("uq_consents_supporter_id_scope", type_="unique")
        batch.add_column(sa.Column("languages", sa.String(length=200), server_default="*", nullable=False))
        batch.add_column(
            sa.Column("name_display", sa.String(length=16), server_default="full", nullable=False)
        )
        batch.add_column(sa.Column("monthly_cap", sa.Integer()))
        batch.add_column(sa.Column("expires_at", When))
        batch.add_column(sa.Column("text_version", sa.String(length=64), server_default="", nullable=False))
        batch.add_column(sa.Column("confirmed_at", When))
        batch.add_column(sa.Column("ended_at", When))
    # Consents so far came from CRM imports, which vouch that the supporter confirmed.
    op.execute("UPDATE consents SET confirmed_at = opted_in_at")
    _partial("uq_consents_live_scope", "consents", ["supporter_id", "scope"], LIVE_CONSENT, unique=True)
    op.create_index(op.f("ix_consents_expires_at"), "consents", ["expires_at"])
    op.create_index(op.f("ix_consents_supporter_id"), "consents", ["supporter_id"])
    _create_tables()


def _create_tables() -> None:
    op.create_table(
        "consent_events",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("supporter_id", BigId, nullable=False),
        sa.Column("consent_id", BigId),
        sa.Column("at", When, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.Text(), server_default="", nullable=False),
        _owned_by_supporter("consent_events"),
        sa.ForeignKeyConstraint(
            ["consent_id"],
            ["consents.id"],
            name=op.f("fk_consent_events_consent_id_consents"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent_events")),
    )
    op.create_index(op.f("ix_consent_events_supporter_id"), "consent_events", ["supporter_id"])
    op.create_table(
        "opt_ins",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", When, nullable=False),
        sa.Column("confirmed_at", When),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_opt_ins")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_opt_ins_email_created_at"), "opt_ins", ["email", "created_at"])
    op.create_index(op.f("ix_opt_ins_created_at"), "opt_ins", ["created_at"])
    op.create_table(
        "personal_words",
        sa.Column("supporter_id", BigId, nullable=False),
        sa.Column("action_id", sa.String(length=128), nullable=False),
        sa.Column("words", sa.Text(), nullable=False),
        sa.Column("updated_at", When, nullable=False),
        _owned_by_supporter("personal_words"),
        sa.PrimaryKeyConstraint("supporter_id", "action_id", name=op.f("pk_personal_words")),
    )
    op.create_table(
        "letter_quota",
        sa.Column("supporter_id", BigId, nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("used", sa.Integer(), nullable=False),
        _owned_by_supporter("letter_quota"),
        sa.PrimaryKeyConstraint("supporter_id", "month", name=op.f("pk_letter_quota")),
    )


def _owned_by_supporter(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["supporter_id"],
        ["supporters.id"],
        name=op.f(f"fk_{table}_supporter_id_supporters"),
        ondelete="CASCADE",
    )


def downgrade() -> None:
    for table in ("letter_quota", "personal_words", "opt_ins", "consent_events"):
        op.drop_table(table)
    op.drop_index(op.f("ix_consents_supporter_id"), table_name="consents")
    op.drop_index(op.f("ix_consents_expires_at"), table_name="consents")
    op.drop_index("uq_consents_live_scope", table_name="consents")
    with op.batch_alter_table("consents") as batch:
        for column in (
            "ended_at",
            "confirmed_at",
            "text_version",
            "expires_at",
            "monthly_cap",
            "name_display",
        ):
            batch.drop_column(column)
        batch.drop_column("languages")
        batch.create_unique_constraint("uq_consents_supporter_id_scope", ["supporter_id", "scope"])
    with op.batch_alter_table("plan_marks") as batch:
        batch.drop_column("basis")
    with op.batch_alter_table("supporters") as batch:
        batch.drop_column("receipts_through")
        batch.drop_column("receipts")
    for name in ("ix_deliveries_supporter_id", "ix_deliveries_consent_id", *(p[0] for p in PARTIAL)):
        op.drop_index(name, table_name="deliveries")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("charged")
        batch.alter_column("supporter_id", existing_type=BigId, nullable=False)
    for name, columns, where in PARTIAL:
        _partial(name, "deliveries", columns, where)
