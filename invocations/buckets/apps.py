from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class BucketsConfig(AppConfig):
    name = "invocations.buckets"
    label = "buckets"

    def ready(self):
        from functions.models import Trigger
        from invocations import sources
        from invocations.buckets import notifications
        from invocations.buckets.forms import BucketNotificationForm

        sources.trigger_kinds[Trigger.Kind.BUCKET] = sources.TriggerKind(BucketNotificationForm, notifications.fire)
        # However a notification changes (its form, the function page's Enable/Disable/Delete, an alias or
        # bucket deleted with it), the function's mounts follow, in the same transaction.
        post_save.connect(_notification_changed, sender=Trigger, dispatch_uid="buckets-mounts-save")
        post_delete.connect(_notification_changed, sender=Trigger, dispatch_uid="buckets-mounts-delete")


def _notification_changed(sender, instance, **kwargs):
    from functions.models import Trigger
    from invocations.buckets.models import refresh_mounts

    if instance.kind == Trigger.Kind.BUCKET:
        refresh_mounts(instance.function_id)
