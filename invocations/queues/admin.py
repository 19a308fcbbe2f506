from django.contrib import admin

from invocations.queues.models import Message, Queue


@admin.register(Queue)
class QueueAdmin(admin.ModelAdmin):
    list_display = ["name", "owner", "visibility_timeout", "message_retention", "dead_letter_queue",
                    "max_receive_count", "created_at"]
    list_filter = ["owner"]
    search_fields = ["name"]


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["id", "queue", "sent_at", "visible_at", "receive_count", "invocation"]
    list_filter = ["queue"]
    raw_id_fields = ["queue", "invocation"]
    search_fields = ["id"]
