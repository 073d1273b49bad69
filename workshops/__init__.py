"""Workshops: an instructor runs one lab for a whole cohort at once.

An app of its own rather than more of `labs`: a workshop is about people (an instructor,
seats, a join code, raised hands, announcements) and about acting on many runs at once,
while `labs` is about one learner's run and its pipeline. Keeping them apart lets `labs`
stay ignorant of classrooms (it only sends `labs.signals.relay_tick` and shows the
`classroom_bar` a learner's page includes) and keeps labs/views.py from growing another
domain; this app depends on labs, never the other way round.
"""
