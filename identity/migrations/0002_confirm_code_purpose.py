from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("identity", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="phoneverification",
            name="purpose",
            field=models.CharField(
                choices=[("phone", "Phone"), ("account_close", "Account Close")],
                default="phone", max_length=16),
        ),
    ]
