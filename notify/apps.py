from django.apps import AppConfig


class NotifyConfig(AppConfig):
    name = "notify"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from identity.signals import account_closed, phone_released
        from notify.delivery import deliveries_on_account_closed, deliveries_on_phone_released

        # What still waits for a number that left its owner, or for a closed account, is
        # never sent (identity does not know notify; it says what happened).
        phone_released.connect(deliveries_on_phone_released, dispatch_uid="notify-number")
        account_closed.connect(deliveries_on_account_closed, dispatch_uid="notify-account")
