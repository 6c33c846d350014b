"""Room in each page of the ledger, so `pending` → `pushed` is a HOT update (no index writes).

Postgres only; every enrollment the executor pushes is updated once here, so this halves the
ledger's index work. SQLite has no such setting.
"""

from __future__ import annotations

from django.db import migrations


def set_fillfactor(apps, schema_editor) -> None:  # noqa: ANN001 - Django's signature
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE outboundhq_push SET (fillfactor = 60)")


class Migration(migrations.Migration):
    dependencies = [("sequences", "0002_executor_bookkeeping")]
    operations = [migrations.RunPython(set_fillfactor, migrations.RunPython.noop)]
