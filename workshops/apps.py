from django.apps import AppConfig


class WorkshopsConfig(AppConfig):
    name = "workshops"
    verbose_name = "Workshops"

    def ready(self):
        from labs.signals import relay_tick
        from workshops import broadcasts

        # Broadcast faults end on the server, in the relay's loop, whether or not a browser is open.
        relay_tick.connect(broadcasts.end_due_on_tick, dispatch_uid="workshops.end_due_broadcasts")
