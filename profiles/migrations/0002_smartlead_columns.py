"""The one change to the hosted schema: profiles.smartlead_api_key and smartlead_email_account_id.

Postgres runs migrations/DATABASE_MIGRATION.sql itself (ADD COLUMN IF NOT EXISTS), so it is a
no-op where someone already ran that file in the Supabase SQL editor.
"""

from __future__ import annotations

from pathlib import Path

from django.db import migrations

MIGRATION_SQL = Path(__file__).resolve().parents[2] / "migrations" / "DATABASE_MIGRATION.sql"
COLUMNS = ("smartlead_api_key", "smartlead_email_account_id")


def add_columns(apps, schema_editor) -> None:  # noqa: ANN001 - Django's signature
    connection = schema_editor.connection
    if connection.vendor == "postgresql":
        schema_editor.execute(MIGRATION_SQL.read_text())
        return
    with connection.cursor() as cursor:
        present = {
            c.name for c in connection.introspection.get_table_description(cursor, "profiles")
        }
    for column in COLUMNS:
        if column not in present:
            schema_editor.execute(f"ALTER TABLE profiles ADD COLUMN {column} TEXT")


class Migration(migrations.Migration):
    dependencies = [("profiles", "0001_hosted_schema")]
    operations = [migrations.RunPython(add_columns, migrations.RunPython.noop)]
