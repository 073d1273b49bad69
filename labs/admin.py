from django.contrib import admin

from labs.models import DeadLetter, Delivery, LabRun


@admin.register(LabRun)
class LabRunAdmin(admin.ModelAdmin):
    list_display = ("id", "owner", "created_at", "last_activity_at", "max_attempts")
    search_fields = ("owner__username",)


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ("id", "run", "intent", "channel", "queue", "status", "attempts", "updated_at")
    list_filter = ("status", "channel", "queue")


@admin.register(DeadLetter)
class DeadLetterAdmin(admin.ModelAdmin):
    list_display = ("id", "run", "delivery", "error_group", "resolution", "created_at")
    list_filter = ("error_group", "resolution")
