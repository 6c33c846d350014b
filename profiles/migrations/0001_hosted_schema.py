"""Create the hosted Supabase tables, but only on a database that doesn't have them.

Against Supabase (tables present) this does nothing. On an empty Postgres it runs the faithful
SQL copy in migrations/supabase_schema.sql; on the embedded SQLite default it builds the same
tables from the unmanaged models.
"""

from __future__ import annotations

from pathlib import Path

from django.apps import apps as global_apps
from django.db import migrations

SCHEMA_SQL = Path(__file__).resolve().parents[2] / "migrations" / "supabase_schema.sql"
HOSTED_MODELS = [
    ("profiles", "Profile"),
    ("sequences", "Contact"),
    ("sequences", "Sequence"),
    ("sequences", "SequenceStep"),
    ("sequences", "Enrollment"),
    ("sequences", "Engagement"),
    ("sequences", "CallTask"),
]


def create_hosted_tables(apps, schema_editor) -> None:  # noqa: ANN001 - Django's signature
    connection = schema_editor.connection
    if "profiles" in connection.introspection.table_names():
        return
    if connection.vendor == "postgresql":
        schema_editor.execute(SCHEMA_SQL.read_text())
        return
    # The real (not historical) models: their shape is the hosted one, columns included.
    for app_label, model_name in HOSTED_MODELS:
        schema_editor.create_model(global_apps.get_model(app_label, model_name))


class Migration(migrations.Migration):
    initial = True
    dependencies: list = []
    operations = [migrations.RunPython(create_hosted_tables, migrations.RunPython.noop)]
