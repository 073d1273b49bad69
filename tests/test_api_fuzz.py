"""The lab API fuzzed from its own OpenAPI schema (schemathesis), against the live server with a real
worker and relay behind it: no answer is a server error, and every answer matches the schema.

Two passes, bounded by example counts (a few minutes in all on 2 cores):
1. each operation with generated bodies, paths, queries and headers, valid and invalid;
2. stateful sequences that follow the schema's links (send a notification, then read it back).

The one 500 the API means to give is the injected `publish_crash` fault ("the notification is
saved but was never published"), which the fuzzer can switch on through PUT /runs/current/faults:
that answer is accepted, and only that one.
"""

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from labs import runs
from labs.models import Recipient
from labs.pipeline import faults
from labs.runs import create_run

EXAMPLES_PER_OPERATION = 60
SEQUENCES = 15
STATEFUL_STEPS = 12
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES_PER_OPERATION,
    stateful_step_count=STATEFUL_STEPS,
    deadline=None,
    database=None,  # each run starts fresh: no examples replayed from an earlier run's database
    derandomize=True,  # the same examples every run: a failure is reproducible, a pass is not luck
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],
)


from schemathesis import checks  # noqa: E402

# What the fuzz holds the API to. Not positive_data_acceptance: a schema-valid body may still name
# a template or user this run does not have, and 422 saying so is right; ignored_auth neither,
# since the session always sends the key.
CHECKS = [checks.response_schema_conformance, checks.status_code_conformance, checks.content_type_conformance,
          checks.response_headers_conformance, checks.negative_data_rejection, checks.missing_required_header]  # fmt: skip


def no_server_error(ctx, response, case):
    """Like schemathesis' not_a_server_error, except the injected crash the lab teaches with."""
    if response.status_code < 500:
        return True
    body = response.text
    if response.status_code == 500 and "injected fault" in body and case.path.startswith("/api/notifications"):
        return True
    raise AssertionError(f"{response.status_code} from {case.method} {case.path}: {body[:500]}")


@pytest.fixture
def fuzzed(live_server, django_user_model, settings, celery_worker, relay):
    """A run whose key the fuzzer uses, rate-limited only far above what the fuzzer sends."""
    settings.RATELIMIT_API_PER_KEY = "1000000/m"
    run = create_run(django_user_model.objects.create_user("fuzz"))
    Recipient.objects.filter(run=run).update(quiet_start=None, quiet_end=None)
    schema = schemathesis.openapi.from_url(f"{live_server.url}/api/openapi.json")
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {run.api_key}"
    yield schema, session, live_server.url
    faults.clear_faults(run.pk)
    runs.delete_run(run)


def test_every_operation_answers_within_its_schema_and_never_with_a_server_error(fuzzed):
    schema, session, base_url = fuzzed
    failures = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @FUZZ_SETTINGS
        @given(case=st.one_of(*(operation.as_strategy(mode) for mode in GenerationMode)))  # valid and invalid input
        def fuzz(case):
            response = case.call(base_url=base_url, session=session)
            case.validate_response(response, checks=[*CHECKS, no_server_error])

        try:
            fuzz()
        except Exception as exc:  # noqa: BLE001 - collect every operation's failure, then report them all
            failures.append(f"{operation.method.upper()} {operation.path}:\n{exc}")
    assert not failures, "\n\n".join(failures)


def test_sequences_that_follow_the_schemas_links_never_break_the_api(fuzzed):
    schema, session, base_url = fuzzed

    class Sequences(schema.as_state_machine()):
        def get_call_kwargs(self, case):
            return {"base_url": base_url, "session": session}

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            case.validate_response(response, checks=[*CHECKS, no_server_error], transport_kwargs=kwargs)

    Sequences.run(settings=settings(FUZZ_SETTINGS, max_examples=SEQUENCES))
