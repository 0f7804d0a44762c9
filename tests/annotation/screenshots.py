"""Screenshots of the web app's main pages for the README: `make screenshots`.

Builds a small demo (the starter policy, four people, tasks with the classifier's suggestions,
an image whose detected regions are blurred, a disagreement waiting for adjudication, a triage
review queue), serves it, and saves what a browser shows at 1280x800 under docs/screenshots/.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from browser import PASSWORD, STARTER, chromium, running
from PIL import Image
from skimage import data as sample_images

from bastion.annotation.preannotate import suggest
from bastion.annotation.schema import Annotation, PathStep, Span
from bastion.annotation.workflow import NewTask, Workflow
from bastion.moderator import Moderator
from bastion.server.app import ServerSettings, create_app
from bastion.store import Store
from bastion.triage import ReviewQueue
from bastion.triage.queue import QueueItem

OUT = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
TEXTS = {
    "c-101": "I know which bus you take home. Tomorrow you won't get off it in one piece.",
    "c-102": "I swear I'll kill my brother if he eats my leftovers again lol",
    "c-103": "Somebody should pay her a visit tonight and make sure she never posts again.",
}


def build(home: Path) -> Store:
    store = Store.open(home)
    w = Workflow(store)
    for name, role in (
        ("root", "admin"),
        ("rita", "reviewer"),
        ("ann", "annotator"),
        ("ben", "annotator"),
    ):
        w.add_person(name, role, PASSWORD, "demo")
    project = w.create_project(
        "threats", STARTER.read_text(), name="Threats in comments", overlap=2, blind_share=0.0,
        actor="demo",
    )  # fmt: skip
    for name in ("rita", "ann", "ben"):
        w.add_member("threats", name, "demo")
    image = home / "street.png"
    Image.fromarray(sample_images.astronaut()).save(image)
    suggestions = suggest(
        list(TEXTS.values()), project.policy, project.categories,
        moderator=Moderator(project.policy, model="zero-shot"),
    )  # fmt: skip
    tasks = [
        NewTask(item_id, text, suggestions=s, media=[str(image)] if item_id == "c-103" else [])
        for (item_id, text), s in zip(TEXTS.items(), suggestions, strict=True)
    ]
    w.add_tasks("threats", tasks, "demo")
    # ann and ben disagree on c-102: it waits for rita.
    people = {p.name: p for p in w.people()}
    for who, serious in (("ann", "no"), ("ben", "yes")):
        for _ in range(2):
            task = w.next_task(people[who], "threats")
            assert task is not None
            if task.item_id == "c-102":
                break
            w.submit(people[who], task.id, [_answer(project.policy.version, task.text, "yes")])
        w.submit(people[who], task.id, [_answer(project.policy.version, task.text, serious)])
    ReviewQueue(store, "reported").enqueue(
        [
            QueueItem(item_id=f"r-{n}", priority=p, text=t)
            for n, (p, t) in enumerate(
                [(0.93, "Drop your address and we'll settle this in person."),
                 (0.71, "You people are a disease on this city."),
                 (0.44, "That ref should be banned for life, what a joke.")]
            )
        ]
    )  # fmt: skip
    return store


def _answer(version: str, text: str, serious: str) -> Annotation:
    quote = "kill my brother" if "brother" in text else text.split(".")[0]
    start = text.find(quote)
    return Annotation(
        category="harassment/threatening",
        path=[
            PathStep(step="target", answer="yes"),
            PathStep(
                step="harm",
                answer="yes",
                spans=[Span(start=start, end=start + len(quote), text=quote)],
            ),
            PathStep(step="serious", answer=serious),
        ],
        violation=serious == "yes",
        severity=4 if serious == "yes" else 0,
        rule_ids=["direct-threat"] if serious == "yes" else [],
        rationale="Hyperbole among siblings." if serious == "no" else "Reads as a real threat.",
        policy_version=version,
    )


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        store = build(home)
        settings = ServerSettings(home=home, preload=False, rate_limit_per_minute=None)
        with running(create_app(settings, store=store)) as url, chromium() as browser:

            def page_as(name: str | None) -> object:
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                page.goto(url + "/login")
                if name:
                    page.get_by_label("Name").fill(name)
                    page.get_by_label("Password").fill(PASSWORD)
                    page.get_by_role("button", name="Log in").click()
                    page.wait_for_url(url + "/ui")
                return page

            page = page_as(None)
            page.screenshot(path=str(OUT / "login.png"))
            page = page_as("ann")
            page.get_by_role("button", name="Next task").click()
            page.wait_for_url("**/ui/tasks/*")
            page.keyboard.press("1")
            page.keyboard.press("1")
            page.wait_for_timeout(300)
            page.screenshot(path=str(OUT / "task.png"))
            page = page_as("rita")
            page.screenshot(path=str(OUT / "queue.png"))
            page.get_by_role("link", name="Task 2").click()
            page.wait_for_url("**/ui/adjudication/*")
            page.screenshot(path=str(OUT / "adjudication.png"))
            page.goto(url + "/ui/projects/threats/report")
            page.screenshot(path=str(OUT / "report.png"))
            page.goto(url + "/ui")
            page.get_by_role("button", name="Review the next item in reported").click()
            page.wait_for_url("**/ui/review/**")
            page.screenshot(path=str(OUT / "review.png"))
            page = page_as("root")
            page.goto(url + "/ui/admin")
            page.screenshot(path=str(OUT / "admin.png"))
        store.close()
    print(f"saved {len(list(OUT.glob('*.png')))} screenshots in {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
