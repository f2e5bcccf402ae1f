from django.apps import AppConfig


class ChatserverConfig(AppConfig):
    name = "chatserver"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from chatserver.chat.invites import invites_on_phone_verified
        from chatserver.chat.selectors import chat_export
        from identity.signals import phone_verified
        from notify.selectors import export_section_register

        # Invites held for a number become rooms when someone verifies it.
        phone_verified.connect(invites_on_phone_verified, dispatch_uid="chat-invites")
        export_section_register("chat", chat_export)
