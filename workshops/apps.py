from django.apps import AppConfig


class WorkshopsConfig(AppConfig):
    name = "workshops"
    verbose_name = "Workshops"

    def ready(self):
        from labs.signals import relay_tick
        from workshops import broadcasts, lifecycle

        # Broadcast faults end on the server, in the relay's loop, whether or not a browser is open.
        relay_tick.connect(broadcasts.end_due_on_tick, dispatch_uid="workshops.end_due_broadcasts")
        # An ended workshop's runs are deleted WORKSHOP_KEEP_DAYS later, by the same loop.
        relay_tick.connect(lifecycle.cleanup_on_tick, dispatch_uid="workshops.delete_expired_runs")
