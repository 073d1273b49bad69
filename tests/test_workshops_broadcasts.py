"""A broadcast fault ends on the server: the relay process ends it after its duration, with no browser open.

A real relay process (tests/conftest.py) on the test database and Redis; nothing else is running.
"""

from labs.pipeline import events, faults
from tests.harness import wait_for
from tests.workshop_roles import LAB, make_instructor
from workshops import broadcasts, joining
from workshops.models import Broadcast, Workshop


def test_the_relay_ends_a_broadcast_when_its_time_is_up_and_tells_each_learners_page(relay, django_user_model):
    teacher = make_instructor(django_user_model, "grace")
    workshop = Workshop.objects.create(owner=teacher, title="Game day", lab=LAB)
    seats = [joining.join(workshop, django_user_model.objects.create_user(name)) for name in ("ada", "alan")]

    started = broadcasts.start(workshop, teacher, "email-primary", {"down": True}, duration_s=2)
    for seat in seats:
        assert faults.all_faults(seat.run_id) == {"email-primary": {"down": True}}

    ended_line = "Your instructor's fault ended (its time ran out): email-primary down"

    def told(seat):
        said = [e["text"] for e in events.recent(seat.run_id) if e["kind"] == "classroom"]
        return said and said[-1] == ended_line

    # The relay clears the fault, then tells each page: wait for the line, not only the cleared fault.
    wait_for(lambda: all(told(seat) for seat in seats), 15, "the relay to end the broadcast and say so")
    for seat in seats:
        assert faults.all_faults(seat.run_id) == {}
    ended = Broadcast.objects.get(pk=started.pk)
    assert ended.ending == Broadcast.Ending.EXPIRED
    # Never before its time. (How soon after is a matter of load, measured by bench/workshop.py, not asserted here.)
    assert (ended.ended_at - ended.started_at).total_seconds() >= 2
