"""The annotation web app in a real browser: log in, annotate, adjudicate, and who may see what."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from browser import PASSWORD, STARTER, LiveServer, answer_steps, log_in

from bastion.annotation.workflow import NewTask, TaskState

THREAT = "I know which bus you take home. Tomorrow you won't get off it in one piece."
CATEGORY = "harassment/threatening"


def _project(server: LiveServer, project_id: str = "threats", *members: str) -> None:
    server.workflow.create_project(project_id, STARTER.read_text(), overlap=2, actor="test")
    for name in members or ("ann", "ben", "rita"):
        server.workflow.add_member(project_id, name, "test")


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
    page = log_in(browser, live_server, "ann")
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
    page.wait_for_url("**/ui?done=*")
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


def test_a_second_annotator_who_disagrees_sends_the_task_to_adjudication(
    browser: Any, live_server: LiveServer
) -> None:
    _project(live_server)
    live_server.workflow.add_tasks("threats", [NewTask("t1", THREAT)], "test")
    for name, serious in (("ann", "no"), ("ben", "yes")):
        page = log_in(browser, live_server, name)
        page.get_by_role("button", name="Next task").click()
        page.wait_for_url("**/ui/tasks/1")
        answer_steps(page, "yes", "yes", serious)
        page.get_by_role("button", name="Submit").click()
        page.wait_for_url("**/ui?done=*")
        # Annotators never see the adjudication queue.
        assert page.get_by_role("heading", name="Adjudication").count() == 0
        page.close()
    assert live_server.workflow.task(1).state == TaskState.adjudication

    page = log_in(browser, live_server, "rita")
    queue = page.locator("#adjudication-queue")
    assert "Task 1" in queue.inner_text()
    queue.get_by_role("link", name="Task 1").click()
    page.wait_for_url("**/ui/adjudication/1")
    said = page.locator("ul.others").inner_text()
    assert "ann (annotation): does not violate" in said
    assert "ben (annotation): violates" in said
    answer_steps(page, "yes", "yes", "yes")
    page.get_by_label("Rationale").fill("A concrete threat naming the bus.")
    page.get_by_role("button", name="Save final answer").click()
    page.wait_for_url("**/ui?done=*")
    assert "No disagreements waiting." in page.content()
    assert live_server.workflow.task(1).state == TaskState.done
    [final] = live_server.workflow.finished("threats")
    assert final.final.annotator == "rita" and final.final.violation is True


def test_an_annotator_cannot_open_admin_pages_or_tasks_that_are_not_theirs(
    browser: Any, live_server: LiveServer
) -> None:
    _project(live_server, "threats", "ann", "ben")
    _project(live_server, "other", "ben")
    live_server.workflow.add_tasks("threats", [NewTask("t1", THREAT)], "test")
    live_server.workflow.add_tasks("other", [NewTask("o1", "Another project's item.")], "test")
    ben = live_server.people["ben"]
    theirs = live_server.workflow.next_task(ben, "other")
    held_by_ben = live_server.workflow.next_task(ben, "threats")
    assert theirs is not None and held_by_ben is not None
    page = log_in(browser, live_server, "ann")
    assert page.get_by_role("link", name="Admin").count() == 0
    for path, status in (
        ("/ui/admin", 403),
        (f"/ui/tasks/{theirs.id}", 403),  # another project's task
        (f"/ui/tasks/{held_by_ben.id}", 403),  # her project, but handed to ben, not her
        ("/ui/projects/other/report", 403),
        ("/ui/tasks/999", 404),
    ):
        response = page.goto(live_server.url + path)
        assert response is not None and response.status == status, path
        assert page.get_by_role("alert").count() == 1
    page.goto(live_server.url + "/ui")
    assert "other" not in page.locator("table").inner_text()  # the project list is hers only
    # A forged admin form post is refused too, even with her own form token.
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    response = page.request.post(
        live_server.url + "/ui/admin/people",
        form={"csrf": csrf or "", "name": "mallory", "role": "admin", "password": PASSWORD},
    )
    assert response.status == 403
    assert "mallory" not in [p.name for p in live_server.workflow.people()]


def test_a_refused_answer_shows_the_reasons_keeps_the_answers_and_stores_nothing(
    browser: Any, live_server: LiveServer
) -> None:
    _project(live_server)
    live_server.workflow.add_tasks("threats", [NewTask("t1", THREAT)], "test")
    page = log_in(browser, live_server, "ann")
    page.get_by_role("button", name="Next task").click()
    page.wait_for_url("**/ui/tasks/1")
    answer_steps(page, "yes", "yes")
    # Evidence that is not in the text (as a broken or forged page would send it).
    page.locator("input[name='c0.harm.spans']").evaluate("(el) => { el.value = '[[5, 999]]'; }")
    page.get_by_role("button", name="Submit").click()
    problems = page.locator("#problems")
    assert "answer 'Would a reasonable reader" in problems.inner_text()
    assert "evidence [5, 999) is outside the text" in problems.inner_text()
    assert page.evaluate("document.activeElement.id") == "problems"  # read out first
    # What she answered is still there; she fixes it and submits.
    assert page.locator("#c0-harm input[value=yes]").is_checked()
    page.locator("input[name='c0.harm.spans']").evaluate("(el) => { el.value = '[]'; }")
    answer_steps(page, "yes", "yes", "no")
    assert live_server.workflow.annotations(1) == []
    page.get_by_role("button", name="Submit").click()
    page.wait_for_url("**/ui?done=*")
    assert [s.annotation.violation for s in live_server.workflow.annotations(1)] == [False]
    actions = [e.action for e in live_server.workflow.audit("threats")]
    assert "annotation.submit" in actions


def test_log_in_refuses_a_wrong_password_and_forms_need_the_session_token(
    browser: Any, live_server: LiveServer
) -> None:
    page = browser.new_page()
    page.goto(live_server.url + "/login")
    page.get_by_label("Name").fill("ann")
    page.get_by_label("Password").fill("not the password at all")
    page.get_by_role("button", name="Log in").click()
    assert page.get_by_role("alert").inner_text() == "Wrong name or password."
    assert "login.failed" in [e.action for e in live_server.workflow.audit()]
    _project(live_server)
    page = log_in(browser, live_server, "ann")
    headers = page.request.get(live_server.url + "/ui").headers
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    cookie = next(c for c in page.context.cookies() if c["name"] == "bastion_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    response = page.request.post(live_server.url + "/ui/projects/threats/next", form={})
    assert response.status == 403  # no form token: a cross-site post cannot hand out tasks
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url("**/login")
    assert "/login" in (page.goto(live_server.url + "/ui") or page).url


def _png_pixels(body: bytes) -> Any:
    import io

    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(body)).convert("RGB"))


def _video(path: Path, seconds: int = 3, fps: int = 10) -> Path:
    import av
    import numpy as np

    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for n in range(seconds * fps):
            shade = np.full((48, 64, 3), (n * 8) % 256, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(shade, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def test_images_come_blurred_where_nudenet_finds_regions_until_revealed_and_video_frames_show_times(
    browser: Any, live_server: LiveServer, tmp_path: Path
) -> None:
    import numpy as np
    from PIL import Image
    from skimage import data as sample_images

    from bastion.media.nudenet import NudeNet

    photo = sample_images.astronaut()
    Image.fromarray(photo).save(tmp_path / "photo.png")
    _project(live_server)
    live_server.workflow.add_tasks(
        "threats",
        [
            NewTask(
                "m1",
                "Look at this.",
                media=[str(tmp_path / "photo.png"), str(_video(tmp_path / "clip.mp4"))],
            )
        ],
        "test",
    )
    page = log_in(browser, live_server, "ann")
    page.get_by_role("button", name="Next task").click()
    page.wait_for_url("**/ui/tasks/1")
    image = page.get_by_role(
        "img", name="Image 1 of the item (photo.png); sensitive regions blurred"
    )
    assert image.count() == 1
    blurred = _png_pixels(page.request.get(live_server.url + "/ui/tasks/1/media/0").body())
    revealed = _png_pixels(
        page.request.get(live_server.url + "/ui/tasks/1/media/0?reveal=1").body()
    )
    assert np.array_equal(revealed, photo)  # revealed: the image as it is
    [regions] = NudeNet().detect([photo])
    assert regions  # the detector finds the face, which is blurred
    changed = np.any(blurred != photo, axis=2)
    inside = np.zeros_like(changed)
    for r in regions:
        x, y, w, h = r.box
        inside[max(0, y) : y + h, max(0, x) : x + w] = True
    assert changed[inside].mean() > 0.5 and not changed[~inside].any()
    page.get_by_role("button", name="Reveal image 1").click()
    shown = page.locator("figure.media img").first
    assert "reveal=1" in (shown.get_attribute("src") or "")
    assert shown.get_attribute("alt") == "Image 1 of the item (photo.png) (revealed)"
    frames = page.get_by_role("group", name="Video clip.mp4").locator("figure")
    assert frames.count() >= 2
    times = frames.locator("time").all_inner_texts()
    assert times[0] == "0:00.0" and times == sorted(times)
    # Media of a task that is not hers stays out of reach.
    assert page.request.get(live_server.url + "/ui/tasks/1/media/7").status == 404


def test_every_control_on_the_task_page_has_a_name_and_the_keyboard_reaches_the_answers_first(
    browser: Any, live_server: LiveServer
) -> None:
    _project(live_server)
    live_server.workflow.add_tasks("threats", [NewTask("t1", THREAT)], "test")
    page = log_in(browser, live_server, "ann")
    page.get_by_role("button", name="Next task").click()
    page.wait_for_url("**/ui/tasks/1")
    answer_steps(page, "yes", "yes", "yes")  # every step and the violating-only fields show
    unnamed = page.evaluate(
        """() => Array.from(document.querySelectorAll('input:not([type=hidden]), select, textarea, button'))
            .filter((el) => el.offsetParent !== null)
            .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                            && !(el.textContent || '').trim())
            .map((el) => el.outerHTML.slice(0, 80))"""
    )
    assert unnamed == []
    assert page.locator("html").get_attribute("lang") == "en"
    # Tab order: skip link, header, then the steps' answers before the submit button.
    page.goto(live_server.url + "/ui/tasks/1")
    order = []
    for _ in range(9):
        page.keyboard.press("Tab")
        order.append(
            page.evaluate(
                "(el => el.name || el.id || el.textContent.trim())(document.activeElement)"
            )
        )
    assert order == [
        "Skip to content",
        "Bastion",
        "Queue",
        "Log out",
        "c0.target",  # the first step's answers (one tab stop per radio group)
        "Add selected text as evidence",
        "c0.rationale",  # later steps stay hidden, so out of the order, until reached
        "c0.confidence",
        "submit",
    ]


def test_wrong_passwords_are_audited_and_redirects_stay_on_the_site(
    browser: Any, live_server: LiveServer
) -> None:
    """(The throttle's back-off is tested with a clock of its own in test_login_throttle.py.)"""
    page = browser.new_page()
    form = {"name": "ann", "password": "not the password", "next": "/ui"}
    statuses = [
        page.request.post(live_server.url + "/login", form=form, max_redirects=0).status
        for _ in range(3)
    ]
    assert statuses == [401] * 3
    failures = [e for e in live_server.workflow.audit() if e.action == "login.failed"]
    assert len(failures) == 3
    # Another person logs in as usual, and a foreign "next" sends nobody off the site.
    for target in ("https://evil.example/", "//evil.example/", "/\\\\evil.example/"):
        response = page.request.post(
            live_server.url + "/login",
            form={"name": "ben", "password": PASSWORD, "next": target},
            max_redirects=0,
        )
        assert response.status == 303 and response.headers["location"] == "/ui"
    # A crafted notice link cannot put words of its own on the page.
    page = log_in(browser, live_server, "ben")
    page.goto(live_server.url + "/ui?done=Your+account+is+locked,+call+555")
    assert page.get_by_role("status").count() == 0
    page.goto(live_server.url + "/ui?done=saved:12")
    assert page.get_by_role("status").inner_text() == "Saved task 12. Thank you."


def test_a_reviewer_works_the_triage_queue_worst_first_and_annotators_cannot(
    browser: Any, live_server: LiveServer
) -> None:
    from bastion.triage import ReviewQueue
    from bastion.triage.queue import QueueItem, ReviewLabel

    queue = ReviewQueue(live_server.store, "reported")
    queue.enqueue(
        [
            QueueItem(item_id="low", priority=0.2, text="Nice goal last night."),
            QueueItem(item_id="high", priority=0.9, text=THREAT, channels=["reports"]),
        ]
    )
    page = log_in(browser, live_server, "rita")
    assert "reported (2 pending)" in page.get_by_role("heading", name="reported").inner_text()
    page.get_by_role("button", name="Review the next item in reported").click()
    page.wait_for_url("**/ui/review/reported/high")  # the worst first
    assert "Found by: reports" in page.content()
    page.get_by_role("button", name="Save decision").click()
    assert "choose a verdict" in page.get_by_role("alert").inner_text()
    assert queue.get("high").decision is None
    page.locator("input[name=label][value=violating]").check()
    page.get_by_label("Categories (comma-separated policy ids)").fill("harassment/threatening")
    page.get_by_label("Note").fill("Specific threat.")
    page.get_by_role("button", name="Save decision").click()
    page.wait_for_url("**/ui?done=reviewed:high")
    decision = queue.get("high").decision
    assert decision is not None and decision.label == ReviewLabel.violating
    assert decision.reviewer == "rita" and decision.categories == ["harassment/threatening"]
    assert decision.note == "Specific threat."

    annotator = log_in(browser, live_server, "ann")
    assert "Review queues" not in annotator.content()
    response = annotator.goto(live_server.url + "/ui/review/reported/low")
    assert response is not None and response.status == 403
    missing = page.goto(live_server.url + "/ui/review/reported/nope")
    assert missing is not None and missing.status == 404


def test_without_nudenet_installed_the_whole_image_is_blurred_until_revealed(
    monkeypatch: Any,
) -> None:
    """No detector to find the sensitive regions (`bastion[nudity]` not installed): the page
    blurs the whole picture rather than showing it as if nothing had been found."""
    import io
    import sys

    import numpy as np
    from PIL import Image
    from skimage import data as sample_images

    from bastion.annotation.web import _MediaView
    from bastion.media.decode import DecodedImage
    from bastion.media.limits import MediaLimits

    monkeypatch.setitem(sys.modules, "nudenet", None)  # what `import nudenet` sees uninstalled
    photo = sample_images.astronaut()
    view = _MediaView(MediaLimits())
    monkeypatch.setattr(view, "_decoded", lambda ref: DecodedImage([photo], 512, 512, 1, "PNG"))

    def pixels(png: bytes) -> np.ndarray:
        return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))

    revealed = pixels(view.png("photo.png", 0, reveal=True))
    blurred = pixels(view.png("photo.png", 0, reveal=False))
    assert np.array_equal(revealed, photo)
    changed = np.any(blurred != photo, axis=2)
    assert changed.mean() > 0.9  # everywhere, not only where a detector would have looked
