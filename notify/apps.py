from django.apps import AppConfig


class NotifyConfig(AppConfig):
    name = "notify"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from identity.signals import (
            account_closed,
            login_new,
            phone_released,
            sms_code_requested,
        )
        from notify.delivery import deliveries_on_account_closed, deliveries_on_phone_released
        from notify.identity_events import (
            notice_on_login_new,
            notice_on_phone_released,
            sms_code_on_request,
        )

        # Identity does not know notify; it says what happened, and notify decides what to
        # send. What still waits for a number that left its owner, or for a closed account,
        # is never sent; then the old owner is told (a notice planned after the cancel).
        phone_released.connect(deliveries_on_phone_released, dispatch_uid="notify-number")
        phone_released.connect(notice_on_phone_released, dispatch_uid="notify-number-notice")
        account_closed.connect(deliveries_on_account_closed, dispatch_uid="notify-account")
        login_new.connect(notice_on_login_new, dispatch_uid="notify-login")
        sms_code_requested.connect(sms_code_on_request, dispatch_uid="notify-sms-code")
