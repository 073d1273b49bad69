from django.apps import AppConfig


class WorkshopsConfig(AppConfig):
    name = "workshops"
    verbose_name = "Workshops"
    # Called by `manage.py check_content` (courseware's command): the scenario files.
    content_checker = "workshops.scenario_files.check_scenarios"

    def ready(self):
        from labs.signals import relay_tick
        from workshops import broadcasts, lifecycle, scenario_player

        # Broadcast faults end on the server, in the relay's loop, whether or not a browser is open.
        relay_tick.connect(broadcasts.end_due_on_tick, dispatch_uid="workshops.end_due_broadcasts")
        # Scenarios play there too, step by step, with no browser open and through a web restart.
        relay_tick.connect(scenario_player.advance_due_on_tick, dispatch_uid="workshops.advance_scenarios")
        # An ended workshop's runs are deleted WORKSHOP_KEEP_DAYS later, by the same loop.
        relay_tick.connect(lifecycle.cleanup_on_tick, dispatch_uid="workshops.delete_expired_runs")
