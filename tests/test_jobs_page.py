"""A student runs jobs from the Jobs page in real Chromium, through a real hub.

The hub runs the jobs service as the shipped config does (hub-managed, tunnelled to each user's
server, the home page's link to the page) with the local provider: each user's server and jobs
run as their own Unix account when the tests run as root. The student logs in at the hub's login
page, starts their server, opens the Jobs page from the hub's home page, and works only with the
page: pick an app, fill its form, submit, watch, cancel, read logs, plot. Waits are Playwright's retrying expectations on page
content, never sleeps: the machine has two cores that other test runs may share.
"""
from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
import requests

from tests.browser import chromium_page, hub_login, start_with_profile
from tests.hubproc import PROJECT, HubProcess
from tests.jobs_support import servers_with_jobs_config, wait_for_service


def in_the_browser(test):
    """A test through the hub in real Chromium."""
    return pytest.mark.integration(pytest.mark.browser(test))

XSS = "<img src=x onerror=alert(1)>"
PAGE = "/user/student/nebulahub-jobs/"


@pytest.fixture(scope="module")
def hub(tmp_path_factory, shared_tmp, local_accounts):
    """A real hub + proxy with the jobs service as the shipped config sets it up (hub-managed,
    tunnelled to each server, the home page template), the local provider running each user's
    server and jobs as their own Unix account (as root) in a home under ``shared_tmp``."""
    d = tmp_path_factory.mktemp("jobs-page")
    homes = Path(shared_tmp) / "jobs-page-homes"
    homes.mkdir(exist_ok=True)
    h = HubProcess(d / "hub", textwrap.dedent(f"""
        c.OpenNebulaSpawner.profiles = [
            {{"slug": "notebook", "name": "Notebook", "default_url": "/lab"}},
            {{"slug": "student", "name": "Student", "default_url": "/nebulahub-plot/"}}]
        c.JupyterHub.template_paths = ["{PROJECT}/templates"]
    """) + servers_with_jobs_config(homes, homes, local_accounts, f"sqlite:///{d}/jobs.sqlite"))
    h.start()
    try:
        wait_for_service(h)
        # the service's own address redirects to the page
        assert requests.get(f"{h.url}/services/nebulahub-jobs/", allow_redirects=False,
                            timeout=5).status_code == 302
        yield {"url": h.url, "home": homes / "student", "hub": h}
    finally:
        h.stop()


@pytest.fixture(scope="module")
def student(hub):
    """The student's browser: logged in at the hub, their server started from the spawn form."""
    from playwright.sync_api import expect

    expect.set_options(timeout=30_000)
    with chromium_page(viewport=(1400, 1000)) as page:
        page.set_default_timeout(60_000)
        hub_login(page, hub["url"], "student", "test-password")
        start_with_profile(page, "student")
        page.wait_for_url("**/user/student/nebulahub-plot/**", timeout=180_000)
        yield page.context


@pytest.fixture
def page(student, hub):
    """A new tab of the student's browser; any dialog a page opens is recorded (and dismissed)."""
    tab = student.new_page()
    tab.set_default_timeout(60_000)
    tab.dialogs = []
    tab.on("dialog", lambda d: (tab.dialogs.append(d.message), d.dismiss()))
    yield tab
    tab.close()


def open_jobs_page(page, hub) -> None:
    page.goto(f"{hub['url']}{PAGE}")
    from playwright.sync_api import expect
    expect(page.get_by_role("button", name="Hello test")).to_be_visible(timeout=90_000)


def field(page, name: str):
    return page.locator(f".nh-field-{name}")


def set_text(page, name: str, value: str) -> None:
    box = field(page, name).locator("input")
    box.fill(value)
    box.press("Tab")


def submit(page) -> str:
    """Press Submit; the new job's id (the form says it)."""
    from playwright.sync_api import expect
    before = page.locator(".nh-submitted").all_inner_texts()
    page.get_by_role("button", name="Submit").click()
    submitted = page.locator(".nh-submitted")
    expect(submitted).to_have_text(re.compile(r"^[0-9a-f]+$"))
    if before:
        expect(submitted).not_to_have_text(before[0])
    return submitted.inner_text()


@in_the_browser
def test_student_runs_the_josephson_app_from_the_hub_and_plots_its_result(page, hub):
    from playwright.sync_api import expect

    # the hub's home page leads to the Jobs page, and so does the jobs service's own address
    page.goto(f"{hub['url']}/hub/home")
    page.click("#nebulahub-jobs")
    page.wait_for_url(f"**{PAGE}", timeout=90_000)
    page.goto(f"{hub['url']}/services/nebulahub-jobs/")  # the Services menu's link
    page.wait_for_url(f"**{PAGE}", timeout=90_000)
    expect(page.get_by_role("button", name="Long Josephson junctions simulation")).to_be_visible(
        timeout=90_000)
    expect(page.locator(".nh-app-ljj img")).to_be_visible()  # its icon file, as an image

    page.get_by_role("button", name="Long Josephson junctions simulation").click()
    # a rule: the external field only exists for an inline (open) junction
    expect(field(page, "length").locator("input")).to_have_value("20")
    expect(field(page, "field")).to_be_hidden()
    page.get_by_role("combobox", name="Geometry").select_option(label="Inline (open ends, external field)")
    expect(field(page, "field")).to_be_visible()
    page.get_by_role("combobox", name="Geometry").select_option(label="Annular (a ring: fluxons stay trapped)")
    expect(field(page, "field")).to_be_hidden()
    # a bad value: its error beside the field, from the same rules as the service's
    set_text(page, "time_step", "0.5")
    expect(field(page, "time_step").locator(".nh-field-error")).to_contain_text(
        "The time step must be at most 0.9 × the grid spacing")
    expect(page.locator(".nh-field-error:visible")).to_have_count(1)
    set_text(page, "time_step", "0.02")
    set_text(page, "steps", "4000")
    expect(field(page, "time_step").locator(".nh-field-error")).to_be_hidden()
    expect(page.locator(".nh-quota")).to_contain_text("Jobs at once: 0 used")

    page.evaluate("window.__same_page = true")  # gone if anything reloads the page
    job_id = submit(page)
    card = page.locator(f".nh-job-{job_id}")
    expect(card.locator(".nh-badge")).to_have_text("done", timeout=120_000)
    assert page.evaluate("window.__same_page === true"), "the page was reloaded"
    expect(page.locator(".notyf__toast").filter(has_text=job_id)).to_contain_text("is done")
    expect(card.locator(".nh-reason")).to_have_text("Done.")
    expect(card.locator(".nh-params")).to_contain_text("steps = 4000")

    # the result, downloaded through the jobs service as the logged-in student
    href = card.locator("a.nh-result").get_attribute("href")
    assert href.startswith("/services/nebulahub-jobs/api/jobs/"), href
    result = page.request.get(hub["url"] + href)
    assert result.ok, result.status
    rows = [line.split() for line in result.text().splitlines() if not line.startswith("#")]
    assert len(rows) > 10 and {len(r) for r in rows} == {12}, rows[:3]

    # "Plot results" opens the plotting app on it, and a plot appears
    with page.context.expect_page() as opened:
        card.locator("a.nh-plot-results").click()
    plot = opened.value
    expect(plot.locator(".nh-status p")).to_contain_text("data files in", timeout=90_000)
    plot.get_by_role("combobox", name="File").select_option(f"jobs/ljj-{job_id}/ljj.dat")
    plot.get_by_role("button", name="Preview").click()
    expect(plot.locator(".nh-preview table")).to_be_visible()
    plot.get_by_role("button", name="Load and plot").click()
    expect(plot.locator(".nh-status p")).to_contain_text("Plotted", timeout=60_000)
    expect(plot.locator(".nh-plot canvas").first).to_be_visible()
    plot.close()
    assert page.dialogs == []


@in_the_browser
def test_markup_in_a_value_shows_as_text_and_a_running_job_is_cancelled_from_the_page(page, hub):
    from playwright.sync_api import expect

    open_jobs_page(page, hub)
    page.get_by_role("button", name="Hello test").click()
    set_text(page, "who", XSS)
    set_text(page, "repeat", "10")
    set_text(page, "pause", "3")
    job_id = submit(page)
    card = page.locator(f".nh-job-{job_id}")
    expect(card.locator(".nh-badge")).to_have_text("executing", timeout=60_000)
    expect(card.locator(".nh-params")).to_contain_text(f"who = {XSS}")
    # the log tail, read while the job runs: the value printed by the program, as text
    card.get_by_role("button", name="Log").click()
    expect(card.locator(".nh-log")).to_contain_text(f"Hello, {XSS}!")

    card.get_by_role("button", name="Cancel").click()
    expect(card.locator(".nh-badge")).to_have_text("cancelled", timeout=60_000)
    expect(card.locator(".nh-reason")).to_have_text("Cancelled by you.")
    expect(card.get_by_role("button", name="Cancel")).to_be_hidden()

    # run it again: the form is filled, and says what differs from the defaults, as text
    card.get_by_role("button", name="Run again").click()
    expect(page.locator(".nh-form-note p")).to_contain_text(f"Whom to greet: world → {XSS}")
    expect(field(page, "who").locator("input")).to_have_value(XSS)

    assert page.dialogs == [], page.dialogs
    assert page.locator("img[src=x]").count() == 0  # no element was made from the value


@in_the_browser
def test_a_failed_job_stays_with_its_reason_and_stderr(page, hub):
    from playwright.sync_api import expect

    secret = hub["home"] / "secret.txt"  # the job's account cannot read it
    secret.write_text("not for the job\n")
    secret.chmod(0)
    open_jobs_page(page, hub)
    page.get_by_role("button", name="Hello test").click()
    set_text(page, "greeting", "Good morning")
    page.get_by_role("textbox", name="Save these values as").fill("polite")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".nh-form-note p")).to_contain_text("Saved as 'polite'.")
    expect(field(page, "input")).to_be_hidden()
    field(page, "use_file").locator("input").check()  # another rule: the file field appears
    set_text(page, "input", "secret.txt")
    job_id = submit(page)
    card = page.locator(f".nh-job-{job_id}")
    expect(card.locator(".nh-badge")).to_have_text("failed", timeout=60_000)
    expect(page.locator(".notyf__toast").filter(has_text=job_id)).to_contain_text("failed")
    card.get_by_role("button", name="Log").click()  # a failed job's log opens on stderr
    expect(card.locator(".nh-log")).to_contain_text("cannot read")
    expect(card.locator(".nh-log")).to_contain_text("Permission denied")
    # still there after a reload, with its reason
    page.reload()
    expect(page.locator(f".nh-job-{job_id} .nh-badge")).to_have_text("failed", timeout=90_000)
    expect(page.locator(f".nh-job-{job_id} .nh-reason")).not_to_be_empty()
    # the form remembers the last values; a named set comes back with Load
    page.get_by_role("button", name="Hello test").click()
    expect(page.locator(".nh-form-note p")).to_contain_text("Your last values for Hello test")
    expect(field(page, "input").locator("input")).to_have_value("secret.txt")
    page.get_by_role("combobox", name="Saved values").select_option("polite")
    page.get_by_role("button", name="Load").click()
    expect(page.locator(".nh-form-note p")).to_contain_text("The values saved as 'polite'")
    expect(field(page, "greeting").locator("input")).to_have_value("Good morning")
    expect(field(page, "input")).to_be_hidden()


def test_without_the_service_the_page_says_so_in_a_sentence(monkeypatch):
    import panel as pn

    from jobforms.page import app

    monkeypatch.delenv("NEBULAHUB_SERVICES", raising=False)
    monkeypatch.setattr(app, "_shared", {})
    shown = " ".join(p.object for p in app.create_page().select(pn.pane.HTML))
    assert "The jobs service is not set up for this hub" in shown


def test_when_the_service_does_not_answer_the_page_says_so_and_keeps_trying():
    import asyncio
    import socket
    from concurrent.futures import ThreadPoolExecutor

    from jobforms.page.app import JobsPage
    from jobforms.page.client import JobsClient
    from jobforms.page.feed import JobFeed
    from jobforms.page.jobs import Links

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def open_the_page():
        client = JobsClient(f"http://127.0.0.1:{port}/services/nebulahub-jobs/", "a-token")
        page = JobsPage(client, JobFeed(client), Links("/", "/user/someone/", "/nonexistent"))
        started = asyncio.ensure_future(page.start())
        try:
            for _ in range(100):
                if page.problem:
                    break
                await asyncio.sleep(0.05)
            return page.problem, started.done()
        finally:
            started.cancel()
            page.close()
            await client.close()

    # a loop of its own: the browser tests' Playwright holds this thread's
    with ThreadPoolExecutor(1) as pool:
        problem, gave_up = pool.submit(asyncio.run, open_the_page()).result(timeout=60)
    assert "The jobs service does not answer" in problem, problem
    assert not gave_up  # it keeps trying
