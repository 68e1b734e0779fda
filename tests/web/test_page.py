"""The web page in Debian's Chromium, headless, driven by Playwright, against the API over real HTTP and a real
worker process. Screenshots go to ``var/test-artifacts/`` (look at them: they are the page as a user sees it)."""

from __future__ import annotations

import contextlib
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

from tests.workers import start_worker, stop_worker

ARTIFACTS = Path("var/test-artifacts")
JOB_URL = re.compile(r"/v1/jobs/[0-9a-f]{32}$")  # one job's (a card's poll), not a list's, a cancel's or a result's


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    raise FileNotFoundError("Chromium is not installed (Debian: apt-get install chromium); scripts/test installs it")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser, api_server):
    url, _app = api_server
    context = browser.new_context(viewport={"width": 1200, "height": 1000}, accept_downloads=True)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    opened.goto(url + "/")
    yield opened
    context.close()
    assert errors == [], errors  # no script error on the page, ever


def photo(tmp_path: Path, name: str, size=(96, 72), seed=0) -> Path:
    import numpy as np

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size[1], 0:size[0]]
    pixels = np.stack([xx * 2.5, yy * 3, (xx + yy) * 1.3], -1) + rng.normal(0, 10, (size[1], size[0], 3))
    path = tmp_path / name
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)
    return path


def new_key(api_server, name: str) -> str:
    """An API key for tenant ``name``, made as ``upscaler keys create`` makes one; from then on the API needs keys."""
    from shared.tenants import create_key

    _url, app = api_server
    with app.extensions["upscaler"].sessions() as session:
        _row, key = create_key(session, name)
        session.commit()
    return key


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"{name}.png", full_page=True)


def test_a_fresh_page_shows_no_broken_image_and_is_keyboard_ready(page):
    assert page.locator("#viewer").is_hidden() and page.locator("#cards li").count() == 0
    broken = page.evaluate("[...document.images].filter(i => !i.hidden && i.offsetParent && !i.naturalWidth).length")
    assert broken == 0
    for _ in range(3):  # the two header links, then the first option
        page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "size"
    page.focus("#files")  # the drop zone's file input is reachable and visibly focused
    assert page.evaluate("getComputedStyle(document.getElementById('drop')).outlineStyle") != "none"
    # the models are listed from the API, fetched after load: wait (fails on timeout) for a third option
    page.locator("#model option").nth(2).wait_for(state="attached")
    # each model says what it is: auto's description begins "Per input: ...", and the default read just that
    labels = page.evaluate("[...document.getElementById('model').options].map(option => option.text)")
    assert "auto (default) — Fidelity or robust network, chosen per input" in labels, labels
    assert "residual_sr — Fidelity network" in labels, labels
    shot(page, "01-fresh")


def test_many_files_progress_compare_download_history_and_a_bad_file(page, settings, tmp_path):
    worker = start_worker(settings, tmp_path / "worker.log")
    try:
        page.select_option("#size", "2")
        page.select_option("#model", "residual_sr")
        bad = tmp_path / "notes.png"
        bad.write_text("this is not an image")
        page.set_input_files("#files", [str(photo(tmp_path, "harbour.png")), str(photo(tmp_path, "bridge.png", seed=1)),
                                        str(bad)])
        cards = page.locator("#cards li")
        assert cards.count() == 3
        failed = cards.filter(has_text="notes.png")
        failed.locator(".state.error").wait_for()
        assert "image" in failed.locator(".state").inner_text().lower()  # plain words next to its file
        assert failed.locator(".thumb").is_hidden()  # and no broken-image icon
        shot(page, "02-progress")
        for name in ("harbour.png", "bridge.png"):
            cards.filter(has_text=name).locator(".download").wait_for(timeout=120_000)
        card = cards.filter(has_text="harbour.png")
        assert "done in" in card.locator(".state").inner_text()
        assert card.locator(".cancel").is_hidden()
        with page.expect_download() as download:
            card.locator(".download").click()
        assert download.value.suggested_filename == "harbour_x2.png"
        saved = tmp_path / "downloaded.png"
        download.value.save_as(saved)
        assert Image.open(saved).size == (192, 144)

        card.locator(".compare").click()
        page.locator("#viewer").wait_for()
        page.locator("#zoom-level", has_text="100 %").wait_for()  # drawn (the page's CSP forbids eval'd waits)
        drawn = page.evaluate("""() => ['before-canvas', 'after-canvas'].map(id => {
            const c = document.getElementById(id);
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let lit = 0; for (let i = 0; i < d.length; i += 4) lit += d[i] + d[i + 1] + d[i + 2] > 0;
            return lit; })""")
        assert all(192 * 144 * 0.9 < count <= 192 * 144 for count in drawn), drawn  # the whole image at 1:1
        corner = page.evaluate("[...document.getElementById('after-canvas').getContext('2d')"
                               ".getImageData(0, 0, 1, 1).data]")
        assert corner[3] == 0  # outside the image the stage stays empty (no stretched edges)
        page.fill("#split", "80")
        page.dispatch_event("#split", "input")
        assert "80%" in page.evaluate("document.getElementById('after-canvas').style.clipPath")
        page.click("#zoom-in")
        assert page.inner_text("#zoom-level") == "200 %"
        page.focus("#stage")
        page.keyboard.press("ArrowRight")
        shot(page, "03-compare")
        # another key is another customer: the picture open in Compare goes with the previous key's cards
        page.fill("#key", "upk_someone-else")
        page.dispatch_event("#key", "change")
        assert page.locator("#viewer").is_hidden() and page.inner_text("#viewer-caption") == ""
        assert page.evaluate("document.getElementById('before-canvas').width") == 0
        page.fill("#key", "")
        page.dispatch_event("#key", "change")

        page.reload()
        page.locator("#history tbody tr").first.wait_for()
        rows = page.locator("#history tbody tr")
        assert rows.count() == 2  # the bad file never became a job
        assert rows.filter(has_text="harbour.png").locator("a").inner_text() == "harbour_x2.png"
        assert page.locator("#cards li").count() == 0  # no stale state after a reload
        shot(page, "04-history")
    finally:
        stop_worker(worker)


def test_phone_and_web_formats_upscale_and_compare_where_the_browser_can_draw_them(page, settings, tmp_path):
    """An iPhone HEIC and an AVIF go through like any photo, here into AVIF results; Chromium draws AVIF but not
    HEIC, so the HEIC's Compare says why it cannot open instead of failing silently, and its result still
    downloads."""
    from worker.evaluation import register_heif_writer

    register_heif_writer()  # pillow-heif (the dev extra) writes HEIC files
    files = []
    for name, fmt in (("iphone.heic", "HEIF"), ("web.avif", "AVIF")):
        path = tmp_path / name
        Image.open(photo(tmp_path, f"{name}.png")).save(path, fmt, quality=80)
        files.append(str(path))
    worker = start_worker(settings, tmp_path / "worker.log")
    try:
        page.select_option("#size", "2")
        page.select_option("#format", "avif")
        assert page.locator("#quality").is_enabled()  # AVIF is lossy: its quality may be asked
        page.set_input_files("#files", files)
        cards = page.locator("#cards li")
        for name in ("iphone.heic", "web.avif"):
            cards.filter(has_text=name).locator(".download").wait_for(timeout=120_000)
            assert cards.filter(has_text=name).locator(".download").get_attribute("download").endswith("_x2.avif")
        heic = cards.filter(has_text="iphone.heic")
        assert heic.locator(".thumb").is_hidden()  # no broken-image icon where the browser cannot draw it
        heic.locator(".compare").click()
        heic.locator(".state", has_text="cannot draw the original").wait_for()
        assert heic.locator(".compare").is_disabled() and page.locator("#viewer").is_hidden()
        assert "done in" in heic.locator(".state").inner_text()  # the result is there all the same
        cards.filter(has_text="web.avif").locator(".compare").click()
        page.locator("#viewer").wait_for()
        page.locator("#zoom-level", has_text="100 %").wait_for()
        shot(page, "05-heic-avif")
    finally:
        stop_worker(worker)


def test_same_size_cleans_a_jpeg_up_without_enlarging_it(page, settings, tmp_path, db_session):
    """The page offered only enlargements; a shop with a blocky JPEG product photo wants it clean at its size."""
    from shared.models import Job

    source = tmp_path / "blocky.jpg"
    Image.open(photo(tmp_path, "blocky.png")).save(source, "JPEG", quality=40)
    worker = start_worker(settings, tmp_path / "worker.log")
    try:
        page.select_option("#size", "1")
        page.set_input_files("#files", str(source))
        card = page.locator("#cards li", has_text="blocky.jpg")
        card.locator(".download").wait_for(timeout=120_000)
        db_session.expire_all()
        [job] = db_session.query(Job).all()
        assert (job.output_width, job.output_height) == (job.input_width, job.input_height) == (96, 72)
        assert job.ran["network_scales"] == [2] and "restored at its own size" in job.ran["reason"]
    finally:
        stop_worker(worker)


def test_a_queued_job_shows_its_position_and_can_be_canceled(page, tmp_path):
    page.set_input_files("#files", str(photo(tmp_path, "queued.png")))  # no worker runs: it stays queued
    card = page.locator("#cards li")
    card.locator(".state", has_text="position 1").wait_for()
    card.locator(".cancel").focus()
    page.keyboard.press("Enter")
    card.locator(".state", has_text="canceled").wait_for()
    assert page.evaluate("document.activeElement.className") == "state"  # not lost to the page with its button
    assert card.locator(".cancel").is_hidden() and card.locator(".download").is_hidden()
    page.reload()
    page.locator("#history tbody tr", has_text="canceled").wait_for()
    shot(page, "05-canceled")


def test_an_api_that_needs_a_key_says_so_and_works_once_it_is_given(page, api_server, tmp_path):
    key = new_key(api_server, "studio")
    page.reload()
    page.locator("#notice", has_text="API key").wait_for()
    page.set_input_files("#files", str(photo(tmp_path, "locked.png")))
    page.locator("#cards .state.error", has_text="needs an API key").wait_for()
    page.fill("#key", key[:-2])  # pasted with two characters missing: the photo is sent with it, and refused
    page.dispatch_event("#key", "change")
    page.locator("#cards .state.error", has_text="not accepted").wait_for()
    page.fill("#key", key)
    page.dispatch_event("#key", "change")
    page.locator("#notice").wait_for(state="hidden")
    # the photo refused for want of a key, then for a mistyped one, is sent with the right one (a refused key owns
    # no job: it was taken off the page, to be picked again)
    page.locator("#cards li", has_text="locked.png").locator(".state", has_text="position").wait_for()
    page.set_input_files("#files", str(photo(tmp_path, "open.png")))
    page.locator("#cards li", has_text="open.png").locator(".state", has_text="position").wait_for()
    shot(page, "06-key")


def test_changing_the_key_takes_the_previous_keys_jobs_off_the_page(page, api_server, tmp_path):
    """Another key is another customer: its cards and history (with their signed links) must not stay on
    screen, even when the new key is refused (the history once kept the old rows then)."""
    key = new_key(api_server, "first-customer")
    page.fill("#key", key)
    page.dispatch_event("#key", "change")
    page.set_input_files("#files", str(photo(tmp_path, "mine.png")))  # no worker runs: it stays queued
    page.locator("#cards li", has_text="mine.png").locator(".state", has_text="position").wait_for()
    page.locator("#history tbody tr", has_text="mine.png").wait_for()
    refused = tmp_path / "private-scan.png"  # a card that made no job: its thumbnail must go with the customer
    refused.write_bytes(b"not an image")
    page.set_input_files("#files", str(refused))
    page.locator("#cards li", has_text="private-scan.png").locator(".state.error").wait_for()
    page.fill("#key", "upk_not-a-key")
    page.dispatch_event("#key", "change")
    page.locator("#notice", has_text="API key was not accepted").wait_for()  # refused, and said which way
    assert page.locator("#cards li").count() == 0
    assert page.locator("#history tbody tr").count() == 0 and page.locator("#history").is_hidden()
    shot(page, "07-key-changed")


def test_another_key_keeps_the_model_chosen(page, api_server, tmp_path):
    """The models' list is read again with each key, and put the default back: the model chosen before the key
    was entered (or changed) was dropped without a word, and the next photos went with another one."""
    first, second = new_key(api_server, "chooses-first"), new_key(api_server, "chooses-second")
    page.fill("#key", first)
    page.dispatch_event("#key", "change")
    page.locator("#model option").nth(2).wait_for(state="attached")
    page.select_option("#model", "residual_sr_cond")
    with page.expect_response(lambda response: response.url.endswith("/v1/models")):
        page.fill("#key", second)
        page.dispatch_event("#key", "change")
    page.wait_for_timeout(300)
    assert page.input_value("#model") == "residual_sr_cond"
    assert page.locator("#denoise").is_enabled()  # what the model chosen offers


def test_a_key_being_edited_leaves_the_cards_and_the_history_on_the_key_in_use(page, api_server, tmp_path):
    """Polls, the history's refresh and a card's Cancel took the key field's text as it was being typed: a
    half-edited key got 401s, every card read "this API key was not accepted" for good and the history froze, even
    once the key was put back as it was (no change event then). The key in use changes on the change event only,
    and a card's requests go with the key it was sent with."""
    key = new_key(api_server, "editing")
    page.fill("#key", key)
    page.dispatch_event("#key", "change")
    page.set_input_files("#files", str(photo(tmp_path, "mid-edit.png")))  # no worker runs: it stays queued
    card = page.locator("#cards li", has_text="mid-edit.png")
    card.locator(".state", has_text="position").wait_for()
    page.locator("#history tbody tr").first.wait_for()
    page.fill("#key", key + "x")  # typed into, not left yet: no change event
    with page.expect_response(lambda response: JOB_URL.search(response.url)) as poll:
        pass
    with page.expect_response(lambda response: "/v1/jobs?limit=" in response.url, timeout=10_000) as refresh:
        pass
    assert (poll.value.status, refresh.value.status) == (200, 200)
    assert card.locator(".state.error").count() == 0
    with page.expect_response(lambda response: response.url.endswith("/cancel")) as cancel:
        card.locator(".cancel").dispatch_event("click")  # a click that leaves the field's text uncommitted
    assert cancel.value.status == 200  # sent with the card's key


def test_on_a_phone_every_option_stays_usable_and_nothing_scrolls_sideways(browser, api_server, tmp_path):
    """At 390 px: choosing an exact or print size once squeezed every other control to 2 px off-screen, and a long
    file name or the history table made the page scroll sideways."""
    url, _app = api_server
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    phone = context.new_page()
    try:
        phone.goto(url + "/")
        phone.locator("#model option").nth(2).wait_for(state="attached")
        for size in ("target", "print", "4"):
            phone.select_option("#size", size)
            for control in ("#size", "#format", "#model", "#key"):
                box = phone.locator(control).bounding_box()
                assert box["width"] > 100 and box["x"] + box["width"] <= 390, (size, control, box)
        long_name = "a-product-photo-with-a-very-long-name-as-shops-export-them-" * 2 + ".png"
        phone.set_input_files("#files", str(photo(tmp_path, long_name)))
        phone.locator("#history tbody tr").first.wait_for()
        assert phone.evaluate("document.documentElement.scrollWidth") <= 390
        assert phone.locator("#cards li .name").get_attribute("title") == long_name  # the whole name, on demand
        shot(phone, "08-phone")
    finally:
        context.close()


def test_options_the_browser_can_check_are_said_at_the_field_before_any_upload(page, tmp_path):
    """A print size needs a DPI, an exact size a width or height: said at once, nothing is sent (the API's answer
    came after the upload, in its own words)."""
    page.select_option("#size", "print")
    page.fill("#print-width", "10")
    page.set_input_files("#files", str(photo(tmp_path, "poster.png")))
    assert page.locator("#cards li").count() == 0
    assert page.evaluate("document.getElementById('dpi').validity.valueMissing") is True
    page.select_option("#size", "target")
    page.set_input_files("#files", str(photo(tmp_path, "banner.png")))
    assert page.locator("#cards li").count() == 0
    assert "width or a height" in page.evaluate("document.getElementById('width').validationMessage")
    page.fill("#width", "300")
    page.set_input_files("#files", [str(photo(tmp_path, "first.png")), str(photo(tmp_path, "second.png", seed=1))])
    names = page.locator("#cards li .name").all_inner_texts()
    assert names == ["first.png", "second.png"]  # one drop keeps its order (it once came reversed)


def test_a_server_reached_by_name_over_plain_http_takes_uploads(browser, settings, tmp_path):
    """Opened at http://<a LAN name>, the page is not a secure context: crypto.randomUUID does not exist there,
    and every upload failed with that script error. The name maps to 127.0.0.1 inside Chromium only; it is the
    server's public URL, the one name besides addresses and localhost its open API answers to without a key."""
    import threading

    from werkzeug.serving import make_server

    from api import create_app
    from cli.processes import free_port

    port = free_port()
    named = settings.with_overrides(public_url=f"http://upscaler.test:{port}")
    server = make_server("127.0.0.1", port, create_app(named), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    lan = browser.browser_type.launch(executable_path=chromium_path(),
                                      args=["--no-sandbox", "--host-resolver-rules=MAP upscaler.test 127.0.0.1"])
    try:
        page = lan.new_page()
        page.goto(f"http://upscaler.test:{port}/")
        assert page.evaluate("window.isSecureContext") is False  # the case of a self-hosted server
        page.set_input_files("#files", str(photo(tmp_path, "lan.png")))
        page.locator("#cards li .state", has_text="position").wait_for()
        assert page.locator("#cards .state.error").count() == 0
    finally:
        lan.close()
        server.shutdown()


def test_many_cards_poll_within_a_bounded_budget(page, tmp_path):
    """One poller for every card (4 jobs every 2 s): twelve cards once polled twelve times a second and reached a
    key's 600 requests a minute within a minute."""
    files = [str(photo(tmp_path, f"batch{i}.png", seed=i)) for i in range(12)]
    history_loads = []
    page.on("request", lambda request: history_loads.append(1) if "/v1/jobs?limit=" in request.url else None)
    page.set_input_files("#files", files)  # no worker runs: they stay queued
    page.locator("#cards li .state", has_text="position").nth(11).wait_for()
    page.wait_for_timeout(1500)
    assert len(history_loads) <= 2, len(history_loads)  # once for the batch (a refresh per upload: 12)
    polls = []
    page.on("request", lambda request: polls.append(request.url) if "/v1/jobs/" in request.url else None)
    page.wait_for_timeout(8000)
    assert len(polls) <= 24, len(polls)  # at most 4 per 2 s round, and a round may just have started
    assert len({url.rsplit("/", 1)[1] for url in polls}) >= 8  # and the rounds take turns between cards


def test_a_poll_answer_on_its_way_does_not_undo_a_cancel(page, tmp_path):
    """A card's Cancel answered while a poll's answer was still on its way: that older answer brought the card
    back to "waiting in the queue" (or "upscaling"), with its Cancel, until the next poll. Here the poll is held
    back in the browser, with the job as it was when asked."""
    held = []

    def hold(route):
        if route.request.method == "GET":
            held.append((route, route.fetch()))  # asked now, answered once the test says
        else:
            route.continue_()

    page.route(JOB_URL, hold)
    page.set_input_files("#files", str(photo(tmp_path, "canceled-meanwhile.png")))  # no worker runs: it stays queued
    card = page.locator("#cards li")
    card.locator(".state", has_text="position").wait_for()
    for _ in range(50):  # the first poll goes 2 s after the upload
        if held:
            break
        page.wait_for_timeout(100)
    assert held
    card.locator(".cancel").click()
    card.locator(".state", has_text="canceled").wait_for()
    for route, response in held:
        route.fulfill(response=response)
    page.wait_for_timeout(500)
    assert card.locator(".state").inner_text() == "canceled" and card.locator(".cancel").is_hidden()


def test_cards_held_by_the_request_limit_say_until_when(page, tmp_path):
    """A 429 holds every poll until its Retry-After, and the cards say so: they said "checking again in 4 s",
    written once, and the number stood still for the whole hold (a page that looked hung). The time it ends
    stays true."""
    page.set_input_files("#files", str(photo(tmp_path, "held.png")))  # no worker runs: it stays queued
    card = page.locator("#cards li")
    card.locator(".state", has_text="position").wait_for()
    page.route(JOB_URL, lambda route: route.fulfill(status=429, headers={"Retry-After": "4"},
                                                    content_type="application/problem+json",
                                                    body='{"code": "rate_limited", "detail": "10 per minute"}'))
    said = card.locator(".state", has_text="checking again")
    said.wait_for()
    ends = page.evaluate("[3, 4, 5].map(s => new Date(Date.now() + s * 1000).toLocaleTimeString())")
    assert any(f"after {end} " in said.inner_text() for end in ends), (said.inner_text(), ends)
    page.unroute(JOB_URL)
    card.locator(".state", has_text="position").wait_for(timeout=10_000)  # looked again once the hold ended


def test_a_value_left_in_a_hidden_size_field_does_not_block_uploads(page, tmp_path):
    page.select_option("#size", "target")
    page.fill("#width", "0")
    page.select_option("#size", "2")
    page.set_input_files("#files", str(photo(tmp_path, "after-a-change-of-mind.png")))
    page.locator("#cards li .state", has_text="position").wait_for()  # it was silently never sent


def test_a_failed_upload_can_be_sent_again_and_a_reloaded_page_can_cancel_a_job(page, api_server, tmp_path):
    key = new_key(api_server, "retrying")
    page.reload()
    page.set_input_files("#files", str(photo(tmp_path, "first-try.png")))
    card = page.locator("#cards li")
    card.locator(".state.error", has_text="API key").wait_for()
    page.fill("#key", key + "\u200b")  # copied along with an invisible character: said as such, not "unreachable"
    page.dispatch_event("#key", "change")
    page.locator("#notice", has_text="invisible character").wait_for()
    page.fill("#key", key)
    page.dispatch_event("#key", "change")
    page.set_input_files("#files", str(photo(tmp_path, "second.png")))  # the key's change took the first card off
    page.locator("#cards li", has_text="second.png").locator(".state", has_text="position").wait_for()
    page.select_option("#format", "jpeg")
    with page.expect_request(lambda request: request.method == "POST"):
        page.context.set_offline(True)
        page.set_input_files("#files", str(photo(tmp_path, "while-offline.png")))
    offline = page.locator("#cards li", has_text="while-offline.png")
    offline.locator(".state.error", has_text="could not be reached").wait_for()
    page.context.set_offline(False)
    offline.locator(".retry").click()  # the same file, sent again: no need to find and pick it once more
    offline.locator(".state", has_text="position").wait_for()
    assert offline.locator(".retry").is_hidden()
    page.reload()  # the cards go; the history keeps the job, and its Cancel
    row = page.locator("#history tbody tr", has_text="second.png")
    row.locator("button", has_text="Cancel").click()
    row.locator("td", has_text="canceled").wait_for()


def test_a_download_after_the_link_expired_fetches_a_fresh_one(browser, settings, tmp_path):
    """Links expire (an hour by default); a page left open kept the one it had, and Download answered 410 for
    good. Here links live 2 s and the click comes after 3."""
    import threading

    from werkzeug.serving import make_server

    from api import create_app

    short = settings.with_overrides(result_url_ttl=2)
    server = make_server("127.0.0.1", 0, create_app(short), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    worker = start_worker(short, tmp_path / "worker.log")
    context = browser.new_context(accept_downloads=True)
    try:
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{server.server_port}/")
        page.select_option("#model", "bicubic")
        page.set_input_files("#files", str(photo(tmp_path, "kept-open.png")))
        link = page.locator("#cards li .download")
        link.wait_for(timeout=120_000)
        page.wait_for_timeout(3000)
        with page.expect_download() as download:
            link.click()
        saved = tmp_path / "late.png"
        download.value.save_as(saved)
        assert Image.open(saved).size == (384, 288)
    finally:
        context.close()
        stop_worker(worker)
        server.shutdown()


def test_trying_again_sends_the_same_idempotency_key(page, tmp_path):
    """An upload whose answer was lost on the way may have made its job: "Try again" sent a fresh
    Idempotency-Key, and made (and charged) a second one. One key per card: the API answers a repeat with the job
    the first send made (tests/api/test_job_actions.py). Here the first send is cut off in the browser."""
    keys = []

    def cut_first(route):
        keys.append(route.request.headers.get("idempotency-key"))
        if len(keys) == 1:
            route.abort()
        else:
            route.continue_()

    page.route("**/v1/jobs", lambda route: cut_first(route) if route.request.method == "POST" else route.continue_())
    page.set_input_files("#files", str(photo(tmp_path, "lost-answer.png")))
    card = page.locator("#cards li", has_text="lost-answer.png")
    card.locator(".state.error").wait_for()
    # named by its visible words first (WCAG 2.5.3): "Send lost-answer.png again" was out of reach of a voice
    # user's "click Try again"
    card.get_by_role("button", name="Try again: lost-answer.png", exact=True).click()
    card.locator(".state", has_text="position").wait_for()
    assert len(keys) == 2 and keys[0] and keys[0] == keys[1]


def send_sized(page, path: Path, size: str, fit: str, **fields: str):
    """Choose a size mode, fill its fields (``print_width`` is ``#print-width``) and ``fit``, send ``path``; its
    card once the result is there."""
    page.select_option("#size", size)
    for name, value in fields.items():
        page.fill("#" + name.replace("_", "-"), value)
    page.select_option("#fit", fit)
    page.set_input_files("#files", str(path))
    card = page.locator("#cards li", has_text=path.name)
    card.locator(".download").wait_for(timeout=120_000)
    return card


def test_compare_lines_up_a_cover_crop_and_a_print_size_can_choose_its_fit(page, settings, tmp_path):
    """fit=cover: the bicubic side stretched the whole input onto the cropped result (the halves framed apart,
    20 levels off on average); below 1:1 it was point-sampled (moiré beside a smooth result). With the bicubic
    model both sides are the same picture, so they must agree. A print size had no fit to choose (a 6 x 4 in print
    of a 4:3 photo came out 5.33 x 4 in); and a cancelled touch left Compare panning on plain mouse moves."""
    worker = start_worker(settings, tmp_path / "worker.log")
    try:
        page.locator("#model option").nth(2).wait_for(state="attached")
        page.select_option("#model", "bicubic")
        # "2.4e2" is a number to the browser's field, and was sent as typed: the API refused it as no integer
        card = send_sized(page, photo(tmp_path, "wide-crop.png", size=(160, 120)), size="target", width="2.4e2",
                          height="120", fit="cover")
        card.locator(".compare").click()
        page.locator("#zoom-level", has_text="100 %").wait_for()
        difference = """() => {
            const pixels = (id) => { const c = document.getElementById(id);
                                     return c.getContext('2d').getImageData(0, 0, c.width, c.height).data; };
            const a = pixels('before-canvas'), b = pixels('after-canvas');
            let sum = 0, n = 0;
            for (let i = 0; i < a.length; i += 4) if (a[i + 3] && b[i + 3]) { sum += Math.abs(a[i] - b[i]); n++; }
            return [sum / Math.max(n, 1), n]; }"""
        mean, compared = page.evaluate(difference)
        assert compared > 240 * 120 * 0.9 and mean < 3, (mean, compared)
        page.click("#zoom-out")
        page.locator("#zoom-level", has_text="50 %").wait_for()
        mean, compared = page.evaluate(difference)
        assert compared > 120 * 60 * 0.8 and mean < 6, (mean, compared)
        page.click("#zoom-one")
        before = page.evaluate("document.getElementById('after-canvas').toDataURL()")
        stage = page.locator("#stage").bounding_box()
        x, y = stage["x"] + 50, stage["y"] + 50
        for kind in ("pointerdown", "pointercancel"):
            page.dispatch_event("#stage", kind, {"clientX": x, "clientY": y, "pointerId": 7, "pointerType": "touch"})
        page.dispatch_event("#stage", "pointermove", {"clientX": x + 40, "clientY": y, "pointerId": 1,
                                                      "pointerType": "mouse", "buttons": 0})
        assert page.evaluate("document.getElementById('after-canvas').toDataURL()") == before
        page.click("#viewer-close")

        made = send_sized(page, photo(tmp_path, "print.png", size=(160, 120)), size="print", print_width="6",
                          print_height="4", dpi="4e1", fit="cover")  # fit is offered for a print size too
        assert "240\u00d7160" in made.locator(".state").inner_text()  # 6 x 4 in at 40 dpi, filled and cropped
    finally:
        stop_worker(worker)


def test_a_dropped_folder_sends_its_images(page, tmp_path):
    """A folder came through as an unreadable file: "the server could not be reached", and Try again never
    worked. Its images (sub-folders too) are sent, its other files left; a real drop through Chromium's DevTools
    protocol, as a user's drag from a file manager arrives."""
    folder = tmp_path / "shoot"
    (folder / "day2").mkdir(parents=True)
    photo(folder, "a.png")
    photo(folder / "day2", "b.png", seed=1)
    (folder / "notes.txt").write_text("not a photo")
    drop(page, [folder])
    page.locator("#cards li .state", has_text="position").nth(1).wait_for()  # no worker: both stay queued
    assert sorted(page.locator("#cards li .name").all_inner_texts()) == ["a.png", "b.png"]


def drop(page, files: list[Path], strings: dict[str, str] | None = None) -> None:
    """Drop ``files`` (and ``strings``, by MIME type: a link, text) on the drop zone, a real drop through
    Chromium's DevTools protocol, as a user's drag from a file manager or another page arrives."""
    cdp = page.context.new_cdp_session(page)
    box = page.locator("#drop").bounding_box()
    items = [{"mimeType": kind, "data": value} for kind, value in (strings or {}).items()]
    data = {"items": items, "files": [str(path) for path in files], "dragOperationsMask": 1}
    for kind in ("dragEnter", "dragOver", "drop"):
        cdp.send("Input.dispatchDragEvent", {"type": kind, "x": box["x"] + box["width"] / 2,
                                             "y": box["y"] + box["height"] / 2, "data": data})
    cdp.detach()


def test_a_dropped_link_says_why_nothing_went_and_a_folder_dropped_with_text_sends_its_images(page, tmp_path):
    """A link or text dragged along with a folder (string items have no file entry) sent the drop as given: the
    folder became one card, "the server could not be reached". A link alone (an image dragged off another web
    page) did nothing, without a word, and a drop's notice ("no images in what was dropped") stayed on screen over
    every later upload."""
    link = "http://127.0.0.1:9/photo.png"
    drop(page, [], {"text/uri-list": link, "text/plain": link})
    page.locator("#notice", has_text="a link or text was dropped, not a file").wait_for(timeout=5000)
    assert page.locator("#cards li").count() == 0
    folder = tmp_path / "with-a-note"
    folder.mkdir()
    photo(folder, "c.png")
    drop(page, [folder], {"text/plain": "a caption dragged along"})
    page.locator("#cards li .state", has_text="position").wait_for()  # no worker: it stays queued
    assert page.locator("#cards li .name").all_inner_texts() == ["c.png"]
    page.locator("#notice").wait_for(state="hidden")  # the next drop that sent something took it away
    empty = tmp_path / "empty"
    empty.mkdir()
    drop(page, [empty])
    page.locator("#notice", has_text="no images in what was dropped").wait_for(timeout=5000)
    page.set_input_files("#files", str(photo(tmp_path, "chosen.png")))
    page.locator("#notice").wait_for(state="hidden", timeout=5000)


def history_refreshed(page) -> None:
    """Wait (up to 10 s) for the history's next look at the API, and for its rows to be drawn from the answer."""
    with page.expect_response(lambda response: "/v1/jobs?limit=" in response.url, timeout=10_000):
        pass
    page.wait_for_timeout(300)


def test_a_history_refresh_keeps_keyboard_focus_on_a_rows_cancel(page, tmp_path):
    """The history looks again every 5 s while a job is unfinished; it replaced its rows, and a Cancel reached with
    the keyboard went with them: Enter after a refresh did nothing."""
    page.set_input_files("#files", str(photo(tmp_path, "waiting.png")))  # no worker runs: it stays queued
    page.locator("#history tbody tr").first.wait_for()
    page.reload()  # the card goes; the history keeps the job, and its Cancel
    row = page.locator("#history tbody tr", has_text="waiting.png")
    row.locator("button", has_text="Cancel").wait_for()
    page.focus("#files")
    page.keyboard.press("Tab")  # the next control in the page's order is the row's Cancel
    focused = "document.activeElement.getAttribute('aria-label')"
    assert page.evaluate(focused) == "Cancel waiting.png"
    history_refreshed(page)
    assert page.evaluate(focused) == "Cancel waiting.png"  # the same control of the same job
    page.keyboard.press("Enter")
    row.locator("td", has_text="canceled").wait_for()


def test_a_history_cancel_refused_as_too_late_shows_the_jobs_real_state(page, api_server, tmp_path):
    """A Cancel the API refuses with 409 not_cancelable (the job ended meanwhile) left the row's Cancel in place
    and its notice on screen for good."""
    _url, app = api_server
    page.set_input_files("#files", str(photo(tmp_path, "ended-meanwhile.png")))  # no worker runs: it stays queued
    page.locator("#history tbody tr").first.wait_for()
    page.reload()
    row = page.locator("#history tbody tr", has_text="ended-meanwhile.png")
    row.locator("button", has_text="Cancel").wait_for()
    history_refreshed(page)  # the next refresh is 5 s away: the row stays as it is until the click
    fail_unseen(app, row.get_attribute("data-job"), "worker_lost", "the worker was lost")
    row.locator("button", has_text="Cancel").click()
    page.locator("#notice", has_text="already failed").wait_for()
    row.locator("td", has_text="the worker was lost").wait_for(timeout=2000)  # at once, not at the next refresh
    assert row.locator("button", has_text="Cancel").count() == 0
    page.set_input_files("#files", str(photo(tmp_path, "next.png", seed=1)))  # the next action that works
    page.locator("#notice").wait_for(state="hidden")


def test_a_history_delete_asks_then_deletes_the_images_and_takes_the_result_off_the_page(page, api_server, settings,
                                                                                         tmp_path):
    """An ended job's images can go now, not at the deployment's retention: asked first (declined, nothing goes);
    then the row says so, and the card's Download and an open Compare of that job go with the result."""
    url, _app = api_server
    worker = start_worker(settings, tmp_path / "worker.log")
    try:
        open_compare(page, photo(tmp_path, "client-photo.png"), size="2")
    finally:
        stop_worker(worker)
    row = page.locator("#history tbody tr", has_text="client-photo.png")
    delete = row.get_by_role("button", name="Delete the images of client-photo.png", exact=True)
    delete.wait_for()
    asked = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    delete.click()
    page.wait_for_timeout(300)
    assert "cannot be undone" in asked[0] and row.locator("a").count() == 1  # declined: nothing went
    job_id = row.get_attribute("data-job")
    page.once("dialog", lambda dialog: dialog.accept())
    delete.click()
    row.locator("td", has_text="succeeded · images deleted").wait_for(timeout=5000)
    assert row.locator("a").count() == 0 and row.locator("button").count() == 0
    card = page.locator("#cards li", has_text="client-photo.png")
    assert "its images were deleted" in card.locator(".state").inner_text()
    assert card.locator(".download").is_hidden() and card.locator(".compare").is_hidden()
    assert page.locator("#viewer").is_hidden()  # it showed that job
    gone = page.request.get(f"{url}/v1/jobs/{job_id}/result")
    assert gone.status == 410 and gone.json()["code"] == "result_expired"


def fail_unseen(app, job_id: str, code: str, message: str) -> None:
    """A worker takes the job and fails it with ``code``, as the page's next poll will find."""
    from shared.jobs import claim, finish
    from shared.states import JobStatus

    with app.extensions["upscaler"].sessions() as session:
        assert claim(session, job_id, "test-worker", 60, max_attempts=3)
        assert finish(session, job_id, "test-worker", JobStatus.FAILED, error_code=code, error_message=message)
        session.commit()


def test_a_job_that_failed_for_a_cause_other_than_its_file_can_be_sent_again(page, api_server, tmp_path):
    """A failed job's card offered nothing, although it held the file: a job lost with its worker had to be found
    and dropped again. Try again sends it as a new job (a new Idempotency-Key: the first would answer with the
    failed job); a job failed by its file (unreadable) offers no Try again, as an upload refused for it does not."""
    _url, app = api_server
    page.set_input_files("#files", str(photo(tmp_path, "lost.png")))  # no worker runs: it stays queued
    card = page.locator("#cards li", has_text="lost.png")
    card.locator(".state", has_text="waiting in the queue").wait_for()
    first = card.get_attribute("data-job")
    fail_unseen(app, first, "worker_lost", "the worker was lost")
    card.locator(".state", has_text="the worker was lost").wait_for(timeout=10_000)
    keys = []
    page.on("request", lambda request: keys.append(request.headers.get("idempotency-key"))
            if request.method == "POST" and request.url.endswith("/v1/jobs") else None)
    card.get_by_role("button", name="Try again: lost.png").click()
    card.locator(".state", has_text="waiting in the queue").wait_for(timeout=10_000)
    assert len(keys) == 1 and keys[0] and card.get_attribute("data-job") != first
    assert card.locator(".retry").is_hidden()
    second = card.get_attribute("data-job")
    fail_unseen(app, second, "input_unreadable", "the image could not be decoded")
    card.locator(".state", has_text="could not be decoded").wait_for(timeout=10_000)
    assert card.locator(".retry").is_hidden()  # the same file would fail the same way


def test_an_upload_over_the_servers_limit_says_which_limit(browser, settings, tmp_path):
    """A 413 said only "larger than this server accepts": the API's problem detail, which names the limit, was
    dropped. A refusal of the file itself (too many bytes or pixels, not an image) offered Try again, which could
    only be refused the same way."""
    import threading

    from werkzeug.serving import make_server

    from api import create_app

    small = settings.with_overrides(max_upload_bytes=4000, max_input_pixels=5000)
    server = make_server("127.0.0.1", 0, create_app(small), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{server.server_port}/")
        page.set_input_files("#files", str(photo(tmp_path, "too-big.png")))
        page.locator("#cards li .state.error", has_text="limit of 4000 bytes").wait_for()
        wide = tmp_path / "too-many-pixels.png"  # 10000 pixels in a few hundred bytes
        Image.new("RGB", (100, 100), "gray").save(wide)
        text = tmp_path / "not-an-image.png"
        text.write_text("this is not an image")
        page.set_input_files("#files", [str(wide), str(text)])
        page.locator("#cards li .state.error").nth(2).wait_for()
        assert page.locator("#cards li .state.error", has_text="5000").count() == 1
        assert page.locator("#cards li .retry").evaluate_all("buttons => buttons.map(b => b.hidden)") == [True] * 3
    finally:
        context.close()
        server.shutdown()


@contextlib.contextmanager
def page_of_limited_api(browser, settings, **limits):
    """A page on an API of its own (on loopback) with other ``limits`` than the shared one's (``max_active_jobs``)."""
    import threading

    from werkzeug.serving import make_server

    from api import create_app

    server = make_server("127.0.0.1", 0, create_app(settings.with_overrides(**limits)), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{server.server_port}/")
        yield page
    finally:
        context.close()
        server.shutdown()


def test_photos_past_the_active_job_limit_wait_for_a_place_and_go_by_themselves(browser, settings, tmp_path):
    """A drop past the key's active-job limit left the extra cards red ("limit reached"), each to be sent again by
    a click on Try again as jobs ended. They wait, not failed, and go one at a time as places free up: here, when
    one of the page's jobs is canceled (no worker runs, so nothing else ends)."""
    with page_of_limited_api(browser, settings, max_active_jobs=2) as page:
        page.set_input_files("#files", [str(photo(tmp_path, f"p{i}.png", seed=i)) for i in range(3)])
        cards = page.locator("#cards li")
        cards.locator(".state", has_text="waiting for a free place").wait_for()  # the three went at once: any one
        cards.locator(".state", has_text="waiting in the queue").nth(1).wait_for()
        waiting = cards.filter(has_text="waiting for a free place")
        name = waiting.locator(".name").inner_text()
        assert waiting.locator(".state.error").count() == 0 and waiting.locator(".retry").is_hidden()
        cards.filter(has_text="waiting in the queue").first.locator(".cancel").click()
        taken = cards.filter(has_text=name).locator(".state", has_text="waiting in the queue")
        taken.wait_for(timeout=15_000)  # sent again by itself once the canceled job freed its place, no click
        states = page.locator("#cards li .state").all_inner_texts()
        assert sum("waiting in the queue" in state for state in states) == 2, states


def test_the_keys_limits_and_use_are_said_and_follow_its_jobs(browser, settings, db_session, tmp_path):
    """A customer learnt of its daily quota only from a 429: the page says the key's limits and today's use, and
    follows them as a job is charged and, canceled before it started, given back. Keys of their own: the day's
    count is in the test session's one Redis, where other tests' jobs count for the open API's tenant."""
    import uuid

    from shared.tenants import create_key

    _, limited = create_key(db_session, f"usage-{uuid.uuid4().hex[:8]}", max_active=5, daily_megapixels=100)
    _, unlimited = create_key(db_session, f"usage-{uuid.uuid4().hex[:8]}")
    db_session.commit()
    with page_of_limited_api(browser, settings, max_active_jobs=0, daily_megapixels=0) as page:
        page.fill("#key", limited)
        page.dispatch_event("#key", "change")
        usage = page.locator("#usage")
        usage.filter(has_text="0 of 100 output megapixels used today").wait_for()
        assert "This key: 0 jobs queued or running (at most 5 at once)" in usage.inner_text()
        page.set_input_files("#files", [str(photo(tmp_path, "big.png", size=(400, 300)))])  # x4: 1.92 MP
        usage.filter(has_text="1 job queued or running").wait_for(timeout=15_000)
        assert "1.9 of 100 output megapixels used today (the count starts again at " in usage.inner_text()
        # the key field still has the focus, so this click also fires its change event (a layout shift under the
        # pointer once swallowed the click); never started, the job gives its megapixels back, read just after
        page.locator("#cards li .cancel").click()
        usage.filter(has_text="0 of 100 output megapixels used today").wait_for(timeout=15_000)
        assert "0 jobs queued or running" in usage.inner_text()
        page.fill("#key", unlimited)  # another key: its own figures, and no limit where the settings set none
        page.dispatch_event("#key", "change")
        usage.filter(has_text="no daily limit").wait_for()
        assert usage.inner_text() == "This key: 0 jobs queued or running; no daily limit."


def test_a_photo_waiting_for_a_place_can_be_withdrawn(browser, settings, tmp_path):
    """A photo waiting for a free place had no Cancel, and each job canceled freed the place that sent the next
    waiting one: a batch dropped by mistake could not be stopped. Withdrawn, it is never sent."""
    with page_of_limited_api(browser, settings, max_active_jobs=1) as page:
        page.set_input_files("#files", [str(photo(tmp_path, f"mistake{i}.png", seed=i)) for i in range(2)])
        cards = page.locator("#cards li")
        waiting = cards.filter(has_text="waiting for a free place")
        waiting.wait_for()  # the two went at once: either one
        queued = cards.filter(has_text="waiting in the queue")
        queued.wait_for()
        name = waiting.locator(".name").inner_text()
        waiting.get_by_role("button", name=f"Cancel {name}", exact=True).click()
        withdrawn = cards.filter(has_text=name)
        withdrawn.locator(".state", has_text="canceled").wait_for(timeout=2000)
        assert withdrawn.locator(".cancel").is_hidden()
        assert page.evaluate("document.activeElement.className") == "state"  # not lost with its button
        uploads = []
        page.on("request", lambda request: uploads.append(1) if request.method == "POST"
                and request.url.endswith("/v1/jobs") else None)
        queued.locator(".cancel").click()  # its place is free now: nothing waits for it any more
        cards.locator(".state", has_text="canceled").nth(1).wait_for()
        page.wait_for_timeout(2000)
        assert uploads == [] and withdrawn.locator(".state").inner_text() == "canceled (never sent)"


def open_compare(page, path: Path, size: str):
    """Send ``path`` at ``size`` with the bicubic model (fast), wait for its result and open it in Compare."""
    page.locator("#model option").nth(2).wait_for(state="attached")
    page.select_option("#model", "bicubic")
    page.select_option("#size", size)
    page.set_input_files("#files", str(path))
    card = page.locator("#cards li", has_text=path.name)
    card.locator(".download").wait_for(timeout=120_000)
    card.locator(".compare").click()
    page.locator("#viewer").wait_for()
    page.locator("#zoom-level", has_text="100 %").wait_for()


def test_compare_is_sharp_on_a_high_density_screen(browser, api_server, settings, tmp_path):
    """At devicePixelRatio 2 the canvases had one backing pixel per CSS pixel: the browser stretched them, and the
    comparison at 1:1 was blurred on every phone and Retina screen."""
    url, _app = api_server
    context = browser.new_context(viewport={"width": 1200, "height": 1000}, device_scale_factor=2)
    worker = start_worker(settings, tmp_path / "worker.log")
    try:
        page = context.new_page()
        page.goto(url + "/")
        open_compare(page, photo(tmp_path, "retina.png"), size="2")
        sizes = page.evaluate("""() => ['before-canvas', 'after-canvas'].map(id => {
            const c = document.getElementById(id);
            return [c.width, c.height, c.clientWidth, c.clientHeight]; })""")
        for width, height, css_width, css_height in sizes:
            assert (width, height) == (css_width * 2, css_height * 2), sizes
        # at 1:1 each result pixel is a crisp 2 x 2 block of screen pixels, not smeared into its neighbours
        blocks = page.evaluate("""() => {
            const c = document.getElementById('after-canvas');
            const x = 2 * Math.floor(c.width / 4), y = 2 * Math.floor(c.height / 4);
            const d = c.getContext('2d').getImageData(x, y, 2, 2).data;
            return [[...d.slice(0, 4)], [...d.slice(4, 8)], [...d.slice(8, 12)], [...d.slice(12, 16)]]; }""")
        assert blocks[0][3] == 255 and all(pixel == blocks[0] for pixel in blocks), blocks
        shot(page, "09-compare-dpr2")
    finally:
        context.close()
        stop_worker(worker)


def test_compare_at_the_same_size_is_labelled_original_and_cleaned_up(page, settings, tmp_path):
    """A same-size clean-up was compared as "bicubic" against "upscaled", though nothing was enlarged."""
    worker = start_worker(settings, tmp_path / "worker.log")
    try:
        open_compare(page, photo(tmp_path, "same-size.png"), size="1")
        assert page.locator("#stage .tag").all_inner_texts() == ["original", "cleaned up"]
        said = page.get_attribute("#split", "aria-valuetext")
        assert "original" in said and "cleaned up" in said and "bicubic" not in said, said
        assert "bicubic" not in page.get_attribute("#stage", "aria-label")
        page.click("#viewer-close")
        open_compare(page, photo(tmp_path, "enlarged.png", seed=1), size="2")  # an enlargement: as before
        assert page.locator("#stage .tag").all_inner_texts() == ["bicubic", "upscaled"]
        assert "bicubic" in page.get_attribute("#split", "aria-valuetext")
        shot(page, "10-compare-same-size")
    finally:
        stop_worker(worker)


def test_on_a_phone_the_history_result_column_stays_usable(browser, api_server, settings, tmp_path):
    """At 375 px the history's Result column shrank to a few pixels: its link, free to break anywhere, was a
    column of single letters."""
    with phone_with_worker(browser, api_server, settings, tmp_path, width=375, height=700) as phone:
        phone.locator("#model option").nth(2).wait_for(state="attached")
        phone.select_option("#model", "bicubic")
        phone.set_input_files("#files", str(photo(tmp_path, "a-shop-product-photo-exported-with-a-long-name.png")))
        link = phone.locator("#history tbody tr td a")
        link.wait_for(timeout=120_000)
        cell = phone.locator("#history tbody tr td").last.bounding_box()
        assert cell["width"] >= 96, cell
        assert link.bounding_box()["width"] >= 80
        assert phone.evaluate("document.documentElement.scrollWidth") <= 375  # the table scrolls, not the page
        shot(phone, "11-phone-history")


@contextlib.contextmanager
def phone_with_worker(browser, api_server, settings, tmp_path, width=390, height=844):
    """The page on a phone (touch, a mobile viewport) with a worker running."""
    url, _app = api_server
    context = browser.new_context(viewport={"width": width, "height": height}, is_mobile=True, has_touch=True)
    worker = start_worker(settings, tmp_path / "worker.log")
    try:
        phone = context.new_page()
        phone.goto(url + "/")
        yield phone
    finally:
        context.close()
        stop_worker(worker)


def test_on_a_phone_compare_pans_up_and_down_too(browser, api_server, settings, tmp_path):
    """The stage left vertical swipes to the page (touch-action: pan-y): at 1:1 only sideways drags panned, so on a
    phone the top and bottom of a large result could not be looked at up close. The page scrolls outside it."""
    with phone_with_worker(browser, api_server, settings, tmp_path) as phone:
        open_compare(phone, photo(tmp_path, "tall.png", size=(300, 400)), size="4")  # 1200x1600: past the stage
        box = phone.locator("#stage").bounding_box()
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        picture = "document.getElementById('after-canvas').toDataURL()"
        before, scrolled = phone.evaluate(picture), phone.evaluate("window.scrollY")
        cdp = phone.context.new_cdp_session(phone)
        cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x, "y": y}]})
        for step in range(1, 11):  # a swipe upwards: the picture moves with the finger
            cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y - 15 * step}]})
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
        cdp.detach()
        phone.wait_for_timeout(300)
        assert phone.evaluate(picture) != before  # panned: another part of the result is drawn
        assert phone.evaluate("window.scrollY") == scrolled  # and the page did not scroll instead


def test_a_cards_thumbnail_lets_go_of_its_file_once_drawn(browser, api_server, tmp_path):
    """Each thumbnail's object URL kept its whole file registered until the tab closed (a dropped folder of hundreds
    of photos stayed in memory): a drawn (or undrawable) thumbnail lets go of it. The page itself may not fetch a
    blob: URL (its CSP), so this context bypasses the CSP to look."""
    url, _app = api_server
    context = browser.new_context(bypass_csp=True)
    try:
        page = context.new_page()
        page.goto(url + "/")
        text = tmp_path / "not-an-image.png"
        text.write_text("this is not an image")
        page.set_input_files("#files", [str(photo(tmp_path, "drawn.png")), str(text)])
        page.locator("#cards li .state", has_text="position").wait_for()  # the upload took longer than the drawing
        page.locator("#cards li", has_text="not-an-image.png").locator(".thumb").wait_for(state="hidden")
        assert page.evaluate("[...document.querySelectorAll('#cards .thumb')].map(thumb => thumb.complete)") \
            == [True, True]
        kept = page.evaluate("""() => Promise.all([...document.querySelectorAll('#cards .thumb')].map(
            thumb => fetch(thumb.src).then(() => thumb.src, () => null)))""")
        assert kept == [None, None], kept
    finally:
        context.close()


def test_a_result_no_browser_can_draw_says_so_on_its_card(page, tmp_path):
    """Compare vanished without a word for a TIFF result, and for one past what Chromium decodes (2^31 bytes of RGBA,
    about 536 MP: a 36 MP photo at x4 is 576 MP, within UPSCALER_MAX_OUTPUT_PIXELS) it said "the result could not be
    loaded (try again)" at every try. A same-size job whose model cannot restore said "· resample", as if a model's
    name, when no network had run. The polls' answers are the real jobs', ended as a worker would have left them."""
    import json

    endings = [{"format": "tiff", "width": 192, "height": 144}, {"format": "png", "width": 24000, "height": 24000},
               {"format": "png", "width": 96, "height": 72}]
    seen: dict[str, dict] = {}

    def succeeded(route):
        response = route.fetch()
        job = response.json()
        output = seen.setdefault(job["id"], endings[len(seen)])
        resampled = output["width"] == 96
        # the TIFF served by object storage (another origin, never fetched: Compare is not offered), the page may not
        # read it; one the API serves itself is drawn (test_a_tiff_result_is_compared)
        link = "http://127.0.0.2:9/x.tif" if output["format"] == "tiff" else "/nowhere"
        job.update(status="succeeded", progress=1.0, result_url=link, timings={"total_s": 1.0},
                   ran={"model": "resample", "strength": None,
                        "reason": "no enlargement asked: resampled only (no network, no restoration)"} if resampled
                   else {"model": "residual_sr", "strength": None, "reason": "asked for by name"})
        job["output"] = {**job["output"], **output, "bytes": 1000, "filename": "x." + output["format"]}
        route.fulfill(response=response, body=json.dumps(job))

    page.route(JOB_URL, succeeded)  # no worker runs: each card's first poll answers it done
    names = ("print.png", "huge.png", "same.png")
    for seed, name in enumerate(names):
        page.set_input_files("#files", str(photo(tmp_path, name, seed=seed)))
        page.locator("#cards li", has_text=name).locator(".state", has_text="done in").wait_for()
    states = {name: page.locator("#cards li", has_text=name).locator(".state").inner_text() for name in names}
    assert "no Compare: browsers do not draw TIFF, and this one is served by object storage" in states["print.png"]
    assert "no Compare: at 576 megapixels the result is larger than a browser can draw" in states["huge.png"], states
    assert states["same.png"].endswith("· no enlargement asked: resampled only (no network, no restoration)"), states
    offered = page.locator("#cards li .compare").evaluate_all("buttons => buttons.map(b => !b.hidden)")
    assert offered.count(True) == 1, offered  # only the result a browser can draw offers Compare


def _tiff_variants(tmp_path: Path) -> dict[str, tuple[bytes, object]]:
    """TIFFs as the platform writes them (Pillow's Deflate strips, libvips' Deflate tiles with the horizontal
    predictor, BigTIFF, 16 bits) and a few more layouts, each with the RGBA pixels it holds."""
    import numpy as np
    import pyvips

    rng = np.random.default_rng(5)
    rgb = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    alpha = rng.integers(0, 256, (30, 40, 1), dtype=np.uint8)
    deep = rng.integers(0, 65536, (30, 40, 3), dtype=np.uint16)
    opaque = np.full((30, 40, 1), 255, np.uint8)
    made: dict[str, tuple[bytes, object]] = {}

    def pillow(name, pixels, mode, **options):
        path = tmp_path / f"{name}.tif"
        Image.fromarray(pixels.squeeze(), mode).save(path, "TIFF", **options)
        made[name] = (path.read_bytes(), np.asarray(Image.open(path).convert("RGBA")))

    pillow("pillow-rgb-deflate", rgb, "RGB", compression="tiff_adobe_deflate")
    pillow("pillow-rgba-deflate", np.concatenate([rgb, alpha], -1), "RGBA", compression="tiff_adobe_deflate")
    pillow("pillow-grey-raw", rgb[..., :1], "L")
    for name, pixels, fmt, expected in (
            ("vips-rgb-tiles", rgb, "uchar", np.concatenate([rgb, opaque], -1)),
            ("vips-16bit-bigtiff", deep, "ushort",
             np.concatenate([np.round(deep / 257).astype(np.uint8), opaque], -1))):
        image = pyvips.Image.new_from_memory(pixels.tobytes(), 40, 30, 3, fmt)
        image = image.copy(interpretation="rgb16" if fmt == "ushort" else "srgb")
        path = tmp_path / f"{name}.tif"
        image.tiffsave(str(path), compression="deflate", predictor="horizontal", tile=True, tile_width=16,
                       tile_height=16, bigtiff=fmt == "ushort")
        made[name] = (path.read_bytes(), expected)
    return made


def test_the_page_reads_the_tiffs_the_platform_writes(page, tmp_path):
    """Browsers draw no TIFF, so Compare was never offered for one (print shops' format): tiff.js reads them,
    exactly; a layout it does not read is refused in words."""
    import base64

    import numpy as np

    decode = """async (encoded) => {
        const bytes = Uint8Array.from(atob(encoded), (c) => c.charCodeAt(0));
        try { return Array.from((await decodeTiff(bytes.buffer)).data); }
        catch (error) { return `${error.constructor.name}: ${error.message}`; } }"""
    for name, (data, expected) in _tiff_variants(tmp_path).items():
        decoded = page.evaluate(decode, base64.b64encode(data).decode())
        assert isinstance(decoded, list), (name, decoded)
        assert np.array_equal(np.array(decoded, np.uint8).reshape(30, 40, 4), expected), name
    Image.new("RGB", (40, 30), "grey").save(tmp_path / "jpeg.tif", "TIFF", compression="jpeg")
    refused = page.evaluate(decode, base64.b64encode((tmp_path / "jpeg.tif").read_bytes()).decode())
    assert refused == "TiffUnsupported: its compression (7; Deflate and none are drawn)"


def test_a_tiff_result_is_compared(page, settings, tmp_path):
    """A TIFF result the API serves (local storage) opens in Compare like any other, its pixels drawn 1:1."""
    worker = start_worker(settings, tmp_path / "worker.log")
    try:
        page.locator("#model option").nth(2).wait_for(state="attached")
        page.select_option("#model", "bicubic")
        page.select_option("#size", "2")
        page.select_option("#format", "tiff")
        page.set_input_files("#files", str(photo(tmp_path, "print.png")))
        card = page.locator("#cards li", has_text="print.png")
        card.locator(".download").wait_for(timeout=120_000)
        assert "no Compare" not in card.locator(".state").inner_text()
        card.locator(".compare").click()
        page.locator("#viewer").wait_for()
        page.locator("#viewer-caption", has_text="96\u00d772 \u2192 192\u00d7144").wait_for()
        drawn = page.evaluate("""() => { const c = document.getElementById('after-canvas');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let lit = 0; for (let i = 0; i < d.length; i += 4) if (d[i + 3]) lit++; return lit; }""")
        assert drawn > 192 * 144 / 2  # the result is on the stage (it is smaller than the stage: all of it)
        shot(page, "12-compare-tiff")
    finally:
        stop_worker(worker)
