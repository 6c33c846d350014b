from django.db import migrations


class Migration(migrations.Migration):
    """Round trips are counted by bench/executor.py now, not by the executor itself."""

    dependencies = [
        ("sequences", "0003_push_fillfactor"),
    ]

    operations = [
        migrations.RemoveField(model_name="executorrun", name="sql_round_trips"),
    ]
