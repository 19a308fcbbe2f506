from django.contrib import admin

from invocations.topics.models import QueueSubscription, Topic


@admin.register(Topic)
class TopicAdmin(admin.ModelAdmin):
    list_display = ["name", "owner", "created_at"]
    list_filter = ["owner"]
    search_fields = ["name"]


@admin.register(QueueSubscription)
class QueueSubscriptionAdmin(admin.ModelAdmin):
    list_display = ["id", "topic", "queue", "raw_message_delivery", "created_at"]
    raw_id_fields = ["topic", "queue"]
