from django.db import migrations, models

import notify.models


class Migration(migrations.Migration):
    dependencies = [("notify", "0005_chat_push")]

    operations = [
        migrations.AddField(
            model_name="agency",
            name="categories",
            field=models.JSONField(default=notify.models.agency_default_categories),
        ),
        migrations.AddField(
            model_name="agency",
            name="broadcast_all",
            field=models.BooleanField(default=False),
        ),
        migrations.AddField(
            model_name="notifysettings",
            name="email_token_expires_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
