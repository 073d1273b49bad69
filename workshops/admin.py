from django.contrib import admin

from workshops.models import Seat, Workshop


class SeatInline(admin.TabularInline):
    model = Seat
    extra = 0
    raw_id_fields = ["learner", "run"]


@admin.register(Workshop)
class WorkshopAdmin(admin.ModelAdmin):
    list_display = ["title", "lab", "owner", "join_code", "joining_open", "capacity", "created_at"]
    list_filter = ["lab", "joining_open"]
    search_fields = ["title", "join_code", "owner__username"]
    raw_id_fields = ["owner"]
    inlines = [SeatInline]
