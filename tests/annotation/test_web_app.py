"""The annotation web app in a real browser: log in, annotate, adjudicate, and who may see what."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from browser import PASSWORD, STARTER, LiveServer

from bastion.annotation.workflow import NewTask, TaskState

THREAT = "I know which bus you take home. Tomorrow you won't get off it in one piece."
CATEGORY = "harassment/threatening"


def _project(server: LiveServer, project_id: str = "threats", *members: str) -> None:
    server.workflow.create_project(project_id, STARTER.read_text(), overlap=2, actor="test")
    for name in members or ("ann", "ben", "rita"):
        server.workflow.add_member(project_id, name, "test")


def _log_in(browser: Any, server: LiveServer, name: str) -> Any:
    page = browser.new_page(viewport={"width": 1366, "height": 860})
    page.goto(server.url + "/ui")
    assert "/login" in page.url  # not logged in: sent to the login page
    page.get_by_label("Name").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(server.url + "/ui")
    return page


def _select(page: Any, needle: str) -> None:
    """Select `needle` inside the item's text with the mouse's result (a DOM range)."""
    page.evaluate(
        """(needle) => {
            const el = document.getElementById('item-text');
            const node = el.firstChild;
            const start = node.textContent.indexOf(needle);
            const range = document.createRange();
            range.setStart(node, start);
            range.setEnd(node, start + needle.length);
            const sel = window.getSelection();
            sel.removeAllRanges();
            sel.addRange(range);
        }""",
        needle,
    )


def test_an_annotator_answers_the_steps_cites_a_span_and_the_annotation_is_stored(
    browser: Any, live_server: LiveServer, tmp_path: Path
) -> None:
    _project(live_server)
    live_server.workflow.add_tasks("threats", [NewTask("t1", THREAT)], "test")
    page = _log_in(browser, live_server, "ann")
    page.get_by_role("button", name="Next task").click()
    page.wait_for_url("**/ui/tasks/*")
    # Only the first step shows; each answer brings the next one.
    assert page.locator("fieldset.step:visible").count() == 1
    page.keyboard.press("1")  # "yes" to the first step, from the keyboard
    assert page.locator("fieldset.step:visible").count() == 2
    _select(page, "you won't get off it in one piece")
    page.keyboard.press("e")  # cite the selection for the current step (2: intent to harm)
    assert "get off it in one piece" in page.locator("#c0-harm ul.spans").inner_text()
    page.get_by_role("group", name="2. Does it express intent").get_by_label("yes").check()
    page.get_by_role("group", name="3. Would a reasonable reader").get_by_label("yes").check()
    assert "Outcome: violates (rule direct-threat)" in page.locator("#outcome-0").inner_text()
    page.get_by_label("Rationale").fill("A specific threat to a person's safety.")
    page.get_by_role("button", name="Submit").click()
    page.wait_for_url("**/ui?message=*")
    [stored] = live_server.workflow.annotations(1)
    a = stored.annotation
    assert stored.person == "ann" and a.category == CATEGORY and a.violation is True
    assert [(s.step, s.answer) for s in a.path] == [
        ("target", "yes"),
        ("harm", "yes"),
        ("serious", "yes"),
    ]
    [span] = a.path[1].spans  # cited while step 2 was the current one
    assert THREAT[span.start : span.end] == "you won't get off it in one piece"
    assert a.rule_ids == ["direct-threat"] and a.severity == 4
    assert a.rationale == "A specific threat to a person's safety."
    assert live_server.workflow.task(1).state == TaskState.open  # one of two annotations in
