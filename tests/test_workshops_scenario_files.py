"""Scenario files: the three shipped ones are valid and accurate about the engine; a broken one is
reported with its file and line, by the loader and by `manage.py check_content`.

Pure: no database, no Redis. The player is tested in test_workshops_scenarios.py.
"""

import textwrap
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from labs.catalogue import CATALOGUE
from workshops import scenario_files
from workshops.scenario_files import ScenarioFileError, read_scenarios, scenarios

GOOD = """\
slug: drill
title: A drill
summary: One line.
brief: |
  What to watch, what to ask.
steps:
  - announce: Hello
  - fault: {target: email-primary, down: true}
    for: 60
  - wait: 10
  - next: Ask them
  - clear: faults
"""


def write(folder: Path, text: str, name: str = "drill.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def problems(folder: Path) -> list[str]:
    return read_scenarios(folder)[1]


def test_the_shipped_scenarios_are_valid_and_each_suits_real_labs():
    found = scenarios()
    assert set(found) == {"black-friday", "flapping-sms-provider", "poison-after-a-bad-deploy"}
    for scenario in found.values():
        assert scenario.labs and set(scenario.labs) <= set(CATALOGUE)
        assert "Ask in the debrief" in scenario.brief and "What learners should notice" in scenario.brief
        kinds = [step.kind for step in scenario.steps]
        assert "next" in kinds and "announce" in kinds  # the instructor leads the debrief, learners are told
        assert kinds[-1] == "clear"  # nothing it put up outlives it
    outage = found["black-friday"].steps[2]
    assert (outage.kind, outage.target, outage.fault, outage.seconds) == ("fault", "email-primary", {"down": True}, 180)
    assert outage.describe() == "Inject email-primary down for 3 min"
    assert [s.fault for s in found["flapping-sms-provider"].steps if s.kind == "fault"] == [{"down": True}, {"down": True}, {"error_rate": 0.5}]


def test_check_content_reports_the_scenarios(capsys):
    call_command("check_content")
    assert "workshops: 3 scenarios" in capsys.readouterr().out


def test_a_file_that_is_not_yaml_is_reported_with_its_line(tmp_path):
    write(tmp_path, "slug: drill\ntitle: [unclosed\nsummary: x\n")
    [problem] = problems(tmp_path)
    assert problem.startswith(f"{tmp_path / 'drill.yaml'}:3: this is not valid YAML"), problem


def test_a_good_file_reads(tmp_path):
    write(tmp_path, GOOD)
    found, errors = read_scenarios(tmp_path)
    assert errors == []
    assert [step.kind for step in found["drill"].steps] == ["announce", "fault", "wait", "next", "clear"]
    assert found["drill"].steps[1].line == 8 and found["drill"].suits("outbox-and-relay")  # no labs: every lab


FAULT = "  - fault: {target: email-primary, down: true}\n    for: 60"


@pytest.mark.parametrize(
    "old, new, line, message",
    [
        ("  - announce: Hello", "  - shout: Hello", 7,
         "step 1 must have exactly one of announce, fault, clear, burst, poison, send, wait, next (found none)"),
        ("  - announce: Hello", "  - announce: Hello\n    wait: 5", 7, "step 1 must have exactly one of"),
        ("  - announce: Hello", "  - announce: Hello\n    for: 5", 8, "step 1 (announce) has an unknown key 'for' ('for' belongs to a fault step)"),
        (FAULT, "  - fault: {target: email-primary, down: true}", 8, "step 2 needs 'for': how many seconds the fault lasts"),
        (FAULT, "  - fault: {target: email-primary, downn: true}\n    for: 60", 8, "step 2's fault has an unknown key 'downn'"),
        (FAULT, "  - fault: {target: mail-primary, down: true}\n    for: 60", 8, "step 2: 'mail-primary' is not a fault target"),
        (FAULT, "  - fault: {target: email-primary, error_rate: 1.5}\n    for: 60", 8,
         "step 2: email-primary.error_rate is a share of calls: between 0 and 1"),
        (FAULT, "  - fault: {target: email-primary}\n    for: 60", 8, "step 2: say what goes wrong with email-primary"),
        (FAULT, "  - fault: {target: email-primary, down: true}\n    for: 999999", 9,
         "step 2's 'for' (seconds) must be a whole number from 5 to 14,400, not 999999"),
        ("  - wait: 10", "  - wait: 0", 10, "step 3's wait (seconds) must be a whole number from 1 to 3,600, not 0"),
        ("  - clear: faults", "  - clear: everything", 12, "step 5 clears 'everything'; choose a fault target, 'faults' or 'announcement'"),
        ("  - clear: faults", "  - burst: {count: 5000}", 12, "step 5's count must be a whole number from 1 to 500, not 5000"),
        ("  - clear: faults", "  - burst: {count: 5, template: newsletter}", 12, "step 5: no seeded template 'newsletter'"),
        ("  - clear: faults", "  - send: {template: security_alert, count: 3, channels: [pigeon]}", 12,
         "step 5's channels must be a list of email, sms, push, inapp"),
        ("  - clear: faults", "  - poison: 3", 12, "step 5's poison must be a mapping with count"),
        ("slug: drill", "slug: other-drill", 1, "slug 'other-drill' must be lowercase words joined by hyphens, and the file's name (drill)"),
        ("summary: One line.", "summary: One line.\nlabs: [no-such-lab]", 4, "unknown lab 'no-such-lab'; choose from outbox-and-relay"),
        ("summary: One line.\n", "", 1, "a scenario file is missing 'summary'"),
    ],
)
def test_a_wrong_file_is_reported_with_the_line_of_the_wrong_step_or_key(tmp_path, old, new, line, message):
    assert old in GOOD
    write(tmp_path, GOOD.replace(old, new))
    found = problems(tmp_path)
    assert len(found) == 1 and found[0].startswith(f"{tmp_path / 'drill.yaml'}:{line}: ") and message in found[0], found
    assert read_scenarios(tmp_path)[0] == {}  # a broken file plays nothing


def test_every_problem_of_a_file_is_listed_not_only_the_first(tmp_path):
    write(tmp_path, GOOD.replace("  - wait: 10", "  - wait: -1").replace("  - clear: faults", "  - clear: nothing"))
    assert [p.split(":")[1] for p in problems(tmp_path)] == ["10", "12"]


def test_the_player_refuses_a_broken_folder_and_check_content_fails_naming_the_file_and_line(tmp_path, monkeypatch, capsys):
    write(tmp_path, GOOD.replace("  - wait: 10", "  - wait: ten"))
    monkeypatch.setattr(scenario_files, "SCENARIOS_DIR", tmp_path)
    scenarios.cache_clear()
    try:
        with pytest.raises(ScenarioFileError, match=r"drill.yaml:10: step 3's wait \(seconds\) must be a whole number"):
            scenarios()
        with pytest.raises(CommandError, match="1 content error"):
            call_command("check_content")
        assert "workshops: error: " in capsys.readouterr().err
    finally:
        scenarios.cache_clear()
