"""POST /v1/jobs: acceptance, validation and the error codes it can produce."""

import io

import pytest
import redis
from sqlalchemy import select

from shared.models import Job
from shared.queue import queue_depth
from tests.conftest import image_bytes


def submit(client, data=None, image=None, filename="photo.png", **fields):
    form = {k: v for k, v in {"scale": "2", "format": "png", "model": "bicubic", **fields}.items() if v is not None}
    if image is not False:
        form["image"] = (io.BytesIO(image if image is not None else image_bytes()), filename)
    return client.post("/v1/jobs", data=form, content_type="multipart/form-data")


def test_accepted_job_is_stored_queued_and_enqueued(client, app, db_session, settings):
    queue = redis.Redis.from_url(settings.redis_url)
    before = queue_depth(queue, "inference")
    response = submit(client, scale="4", format="webp", quality="80")
    assert response.status_code == 202
    body = response.get_json()
    assert response.headers["Location"] == f"/v1/jobs/{body['id']}"
    assert int(response.headers["Retry-After"]) > 0
    assert body["status"] == "queued" and body["progress"] == 0
    assert body["queue_position"] == 1 + db_session.query(Job).filter(Job.status == "queued",
                                                                       Job.id != body["id"]).count()
    assert body["input"] == {"width": 64, "height": 48, "bytes": len(image_bytes()), "format": "png",
                             "filename": "photo.png", "url": None}
    assert (body["output"]["width"], body["output"]["height"], body["output"]["format"]) == (256, 192, "webp")
    job = db_session.get(Job, body["id"])
    assert job.enqueued_at is not None and job.quality == 80
    assert app.extensions["upscaler"].storage.get_bytes(job.input_key)[:4] == b"\x89PNG"
    assert queue_depth(queue, "inference") == before + 1


def test_content_decides_not_the_file_name(client):
    response = submit(client, image=image_bytes(fmt="JPEG"), filename="looks-like.png")
    assert response.status_code == 202
    assert response.get_json()["input"]["format"] == "jpeg"


def test_empty_fields_mean_their_defaults(client):
    """A page's blank inputs and unset selects arrive as empty fields: each means the field's default (a blank
    format, fit or print_unit was 422 while a blank quality or scale was not)."""
    response = client.post("/v1/jobs", content_type="multipart/form-data", data={
        "image": (io.BytesIO(image_bytes()), "a.png"), "model": "bicubic", "scale": "", "format": "", "fit": "",
        "print_unit": "", "quality": "", "denoise": "", "dpi": "", "width": "", "webhook_url": ""})
    body = response.get_json()
    assert response.status_code == 202, body
    assert (body["scale"], body["output_format"], body["denoise"]) == (4, "png", "auto")


def test_an_unprintable_file_name_is_shown_without_its_control_characters(client):
    """A NUL in the name failed the insert on PostgreSQL, answered as "the database is unavailable" (503)."""
    response = submit(client, filename="hol\x00iday\x1b.png")
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["input"]["filename"] == "holiday.png"


def test_defaults_are_scale_4_png_and_the_default_model(client, app):
    response = client.post("/v1/jobs", data={"image": (io.BytesIO(image_bytes()), "a.png")},
                           content_type="multipart/form-data")
    body = response.get_json()
    assert response.status_code == 202, body
    assert (body["scale"], body["output_format"], body["model"], body["denoise"]) == (4, "png", "auto", "auto")
    assert body["ran"] is None  # set by the worker


@pytest.mark.parametrize("fields,field", [({"scale": "9"}, "scale"), ({"scale": "two"}, "scale"),
                                          ({"format": "gif"}, "format"), ({"quality": "0"}, "quality"),
                                          ({"quality": "101"}, "quality"), ({"webhook_url": "ftp://x"}, "webhook_url"),
                                          ({"denoise": "1.5"}, "denoise"), ({"denoise": "-0.1"}, "denoise"),
                                          ({"denoise": "lots"}, "denoise"),
                                          ({"denoise": "0.5", "model": "residual_sr"}, "denoise"),
                                          ({"denoise": "0.5", "model": "bicubic"}, "denoise")])
def test_invalid_parameters_are_422_with_the_field(client, fields, field):
    response = submit(client, **fields)
    assert response.status_code == 422
    body = response.get_json()
    assert response.content_type == "application/problem+json"
    assert (body["code"], body["field"], body["status"]) == ("invalid_parameter", field, 422)


@pytest.mark.parametrize("fields,stored", [({"denoise": "0.3", "model": "auto"}, 0.3), ({"denoise": "auto"}, "auto"),
                                           ({"denoise": "0", "model": "residual_sr_cond"}, 0.0),
                                           ({"denoise": ""}, "auto"),
                                           ({"denoise": "-0", "model": "residual_sr_cond"}, 0.0)])
def test_denoise_is_auto_or_a_strength(client, fields, stored):
    response = submit(client, **fields)
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["denoise"] == stored
    assert b'"denoise":-0' not in response.data.replace(b" ", b"")  # "-0" is stored and said as 0


def test_missing_image_is_400(client):
    response = submit(client, image=False)
    assert (response.status_code, response.get_json()["code"]) == (400, "missing_image")


def test_a_form_part_without_a_name_is_400_saying_so(client):
    """A part whose Content-Disposition names no field was answered 422 for a field "None"."""
    for disposition in (b"form-data", b'form-data; filename="a.png"'):
        body = (b"--b\r\nContent-Disposition: " + disposition + b"\r\n\r\n4\r\n--b\r\nContent-Disposition: "
                b'form-data; name="image"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n' + image_bytes()
                + b"\r\n--b--\r\n")
        response = client.post("/v1/jobs", data=body, content_type="multipart/form-data; boundary=b")
        problem = response.get_json()
        assert (response.status_code, problem["code"]) == (400, "bad_request"), problem
        assert "has no name" in problem["detail"] and "field" not in problem


def test_a_body_that_is_not_multipart_is_400(client):
    response = client.post("/v1/jobs", json={"scale": 4})
    assert (response.status_code, response.get_json()["code"]) == (400, "bad_request")


def test_empty_image_is_400(client):
    response = submit(client, image=b"")
    assert (response.status_code, response.get_json()["code"]) == (400, "missing_image")


@pytest.mark.parametrize("payload", [b"this is text, not an image", image_bytes()[:40]])
def test_non_images_and_truncated_images_are_415(client, payload):
    response = submit(client, image=payload)
    assert (response.status_code, response.get_json()["code"]) == (415, "unsupported_image")


def test_an_image_format_we_do_not_take_is_415(client):
    response = submit(client, image=image_bytes(fmt="ICO"), filename="x.ico")
    assert (response.status_code, response.get_json()["code"]) == (415, "unsupported_image")


def test_upload_over_the_byte_limit_is_413(app, client):
    app.config["MAX_CONTENT_LENGTH"] = 2000
    response = submit(client, image=image_bytes(width=200, height=200))
    assert (response.status_code, response.get_json()["code"]) == (413, "payload_too_large")
    assert "the upload exceeds the limit of 2000 bytes" in response.get_json()["detail"]


def test_an_overlong_text_field_is_413_naming_the_field_limit_not_the_upload_limit(client):
    response = client.post("/v1/jobs", content_type="multipart/form-data",
                           data={"image": (io.BytesIO(image_bytes()), "a.png"), "webhook_url": "x" * 600_000})
    body = response.get_json()
    assert (response.status_code, body["code"]) == (413, "payload_too_large")
    assert "form field other than the image" in body["detail"] and "500000 bytes" in body["detail"]


def test_a_form_of_too_many_parts_is_413_naming_that_limit(client):
    fields = {f"f{i}": "x" for i in range(1200)}
    response = client.post("/v1/jobs", content_type="multipart/form-data",
                           data={"image": (io.BytesIO(image_bytes()), "a.png"), **fields})
    body = response.get_json()
    assert (response.status_code, body["code"]) == (413, "payload_too_large")
    assert "more than 1000 parts" in body["detail"]


def test_too_many_input_pixels_is_422(settings):
    from api import create_app

    client = create_app(settings.with_overrides(max_input_pixels=1000)).test_client()
    response = submit(client)
    body = response.get_json()
    assert (response.status_code, body["code"], body["limit"]) == (422, "image_too_large", 1000)


def test_output_over_the_webp_side_limit_fails_at_submit(client):
    response = submit(client, image=image_bytes(width=4200, height=8), scale="4", format="webp")
    body = response.get_json()
    assert (response.status_code, body["code"]) == (422, "output_too_large")
    assert "16383" in body["detail"]


def test_an_avif_output_is_taken_within_its_own_side_and_pixel_limits(client, db_session):
    """AV1 encodes a whole frame: AVIF has a pixel limit of its own (8192², ``MAX_FORMAT_PIXELS``), under the
    deployment's, and readers' 16384 px a side."""
    taken = submit(client, image=image_bytes(width=2048, height=2048), scale="4", format="avif", quality="60")
    assert taken.status_code == 202, taken.get_json()
    assert taken.get_json()["output"]["format"] == "avif"
    for image, says in ((image_bytes(width=2100, height=2100), "avif images are made up to 67108864 pixels"),
                        (image_bytes(width=4200, height=8), "avif images cannot exceed 16384 px a side")):
        refused = submit(client, image=image, scale="4", format="avif")
        body = refused.get_json()
        assert (refused.status_code, body["code"]) == (422, "output_too_large") and says in body["detail"], body
    assert len(db_session.scalars(select(Job)).all()) == 1


def test_output_over_the_jpeg_side_limit_fails_at_submit(client):
    response = submit(client, image=image_bytes(width=16380, height=8), scale="4", format="jpeg")  # 65520 px wide
    body = response.get_json()
    assert (response.status_code, body["code"]) == (422, "output_too_large") and "65500" in body["detail"]


def test_output_over_the_pixel_limit_fails_at_submit(settings):
    from api import create_app

    client = create_app(settings.with_overrides(max_output_pixels=10_000)).test_client()
    response = submit(client, scale="4")
    assert (response.status_code, response.get_json()["code"]) == (422, "output_too_large")


def test_unknown_model_is_422_and_lists_the_models(client):
    response = submit(client, model="nope")
    body = response.get_json()
    assert (response.status_code, body["code"]) == (422, "unknown_model")
    assert "bicubic" in body["available"]


def test_job_is_accepted_when_redis_is_down_and_left_for_the_sweeper(settings, db_session):
    from api import create_app

    client = create_app(settings.with_overrides(redis_url="redis://127.0.0.1:9/0")).test_client()
    response = submit(client)
    assert response.status_code == 202
    job = db_session.get(Job, response.get_json()["id"])
    assert job.status == "queued" and job.enqueued_at is None


def test_storage_down_is_503_and_nothing_is_written(settings, tmp_path, db_session):
    from api import create_app

    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the storage folder should be")
    client = create_app(settings.with_overrides(storage_dir=blocker / "storage")).test_client()
    response = submit(client)
    assert (response.status_code, response.get_json()["code"]) == (503, "service_unavailable")
    assert response.headers["Retry-After"]
    assert db_session.scalars(select(Job)).all() == []


def test_a_hung_store_holds_an_upload_two_short_tries_not_three_long_ones(settings, db_session, monkeypatch):
    """Object storage that accepts connections and never answers: the API's S3 client, a worker's (3 tries of 30 s),
    held each upload's request thread 93 s. The API's gives up after 2 tries (``API_S3_CALLS``, shortened here) and
    answers 503; nothing is stored."""
    import socket
    import threading

    from api import create_app
    from shared import storage

    monkeypatch.setitem(storage.API_S3_CALLS, "read_timeout", 1)
    silent = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    threading.Thread(target=lambda: [held.append(silent.accept()[0]) for _ in range(10)], daemon=True).start()
    app = create_app(settings.with_overrides(storage="s3", s3_endpoint_url=f"http://127.0.0.1:{silent.getsockname()[1]}",
                                             s3_access_key_id="k", s3_secret_access_key="s"))
    try:
        response = submit(app.test_client())
    finally:
        silent.close()
        for connection in held:
            connection.close()
    assert (response.status_code, response.get_json()["code"]) == (503, "service_unavailable")
    assert len(held) == 2  # one connection per try
    assert db_session.scalars(select(Job)).all() == []


def test_a_submit_finding_every_storage_turn_taken_answers_503_and_leaves_a_thread_free(settings, tmp_path,
                                                                                        db_session):
    """While the store hangs, uploads waiting on it took every request thread and /healthz went unanswered (pods
    restarted). At most all threads but one call storage at once; the next request that needs it answers 503 within
    a couple of seconds, storing nothing, and one that needs no storage is answered meanwhile."""
    from api import create_app

    app = create_app(settings.with_overrides(api_threads=2))
    turns = app.extensions["upscaler"].storage_calls
    assert turns.acquire(blocking=False)  # the one turn of two threads, held by an upload that hangs
    try:
        client = app.test_client()
        response = submit(client)
        assert (response.status_code, response.get_json()["code"]) == (503, "service_unavailable")
        assert "slow to answer" in response.get_json()["detail"] and response.headers["Retry-After"] == "10"
        assert client.get("/healthz").status_code == 200
    finally:
        turns.release()
    assert db_session.scalars(select(Job)).all() == []
    assert not [p for p in (tmp_path / "storage").rglob("*") if p.is_file()]
    assert submit(app.test_client()).status_code == 202  # the turn back: uploads go on


def test_database_down_is_503_and_no_orphan_object_is_left(settings, tmp_path):
    from api import create_app

    app = create_app(settings.with_overrides(database_url="postgresql+psycopg://u@127.0.0.1:9/none"))
    response = submit(app.test_client())
    assert (response.status_code, response.get_json()["code"]) == (503, "service_unavailable")
    stored = [p for p in (tmp_path / "storage").rglob("*") if p.is_file()]
    assert stored == []


@pytest.mark.parametrize("fields,size", [({"scale": "1.5"}, (96, 72)), ({"width": "200"}, (200, 150)),
                                         ({"height": "100"}, (133, 100)),
                                         ({"width": "300", "height": "100", "fit": "cover"}, (300, 100)),
                                         ({"width": "300", "height": "100", "fit": "fill"}, (300, 100)),
                                         ({"width": "300", "height": "100"}, (133, 100))])
def test_any_output_size_is_planned_at_submit(client, fields, size):
    """64x48 input: a factor, a width, a height or a box with a fit; the output size is known at once."""
    response = submit(client, **{"scale": None, **fields})
    body = response.get_json()
    assert response.status_code == 202, body
    assert (body["output"]["width"], body["output"]["height"]) == size


@pytest.mark.parametrize("fields", [{"scale": "9"}, {"scale": "0.5"}, {"scale": "2", "width": "100"},
                                    {"width": "1000"}, {"fit": "stretch", "width": "10", "height": "10"}])
def test_impossible_sizes_are_422(client, fields):
    response = submit(client, **{"scale": None, **fields})
    assert (response.status_code, response.get_json()["code"]) == (422, "invalid_parameter")


@pytest.mark.parametrize("fields,size", [
    ({"dpi": "300", "print_width": "1.5", "scale": None}, (450, 338)),  # 1.5 in at 300 dpi; the aspect kept
    ({"dpi": "254", "print_width": "3", "print_height": "3", "print_unit": "cm", "fit": "fill", "scale": None},
     (300, 300)),
    ({"dpi": "600", "scale": "2"}, (128, 96)),  # dpi alone only sets the resolution
    # 252.5 px: half a pixel rounds up, as every other size does (the schema rounded it to even, 252)
    ({"dpi": "101", "print_width": "2.5", "print_height": "2.5", "fit": "fill", "scale": None}, (253, 253)),
])
def test_print_sizes_become_pixels_and_the_dpi_is_kept(client, fields, size):
    response = submit(client, **fields)  # the image is 64x48
    body = response.get_json()
    assert response.status_code == 202, body
    assert (body["output"]["width"], body["output"]["height"]) == size
    assert body["dpi"] == int(fields["dpi"])


@pytest.mark.parametrize("fields,message", [
    ({"print_width": "2", "scale": None}, "need dpi"),
    ({"dpi": "300", "print_width": "2", "scale": "2"}, "one of scale"),
    ({"dpi": "0"}, "dpi"),
])
def test_print_sizes_without_dpi_or_with_another_size_are_refused(client, fields, message):
    response = submit(client, **fields)
    assert response.status_code == 422 and message in response.get_json()["detail"]


@pytest.mark.parametrize("fields,image,accepted", [
    ({"scale": "4", "model": "residual_sr"}, image_bytes(), True),  # exact x4 by a network: streamed, larger cap
    ({"scale": "4"}, image_bytes(), False),  # bicubic has no tiles: made whole, under the smaller cap
    ({"scale": "3.5", "model": "residual_sr"}, image_bytes(), False),  # resampled: made whole
    ({"scale": "4", "model": "residual_sr"}, image_bytes(mode="RGBA"), False),  # transparency: made whole
])
def test_streamed_outputs_may_be_larger_than_whole_ones(settings, fields, image, accepted):
    from api import create_app

    caps = settings.with_overrides(max_output_pixels=64 * 48 * 16, max_whole_output_pixels=10_000)
    response = submit(create_app(caps).test_client(), image=image, **fields)
    assert response.status_code == (202 if accepted else 422), response.get_json()
    if not accepted:
        assert "10000" in response.get_json()["detail"]


@pytest.mark.parametrize("fields,field", [({"dpi": "300", "print_width": "2"}, "print_width"),
                                          ({"dpi": "300", "print_height": "2"}, "print_height"),
                                          ({"width": "1000"}, "width"), ({"height": "1000"}, "height")])
def test_a_size_past_x8_names_the_field_that_asked_for_it(client, fields, field):
    """A print size once answered 'width/height: ...' with field 'width'."""
    response = client.post("/v1/jobs", content_type="multipart/form-data",
                           data={"image": (io.BytesIO(image_bytes(width=40, height=30)), "a.png"), "model": "bicubic",
                                 **fields})
    body = response.get_json()
    assert (response.status_code, body["code"], body["field"]) == (422, "invalid_parameter", field)
    assert body["detail"].startswith(f"{field}: ") and "x8" in body["detail"]


def test_a_field_given_twice_is_422_not_its_first_value(client):
    """The first value won: ``scale=2&scale=9`` made (and charged) an x2 job, an invalid second value unchecked."""
    for name, values in (("scale", ["2", "9"]), ("model", ["bicubic", "nope"])):
        response = client.post("/v1/jobs", content_type="multipart/form-data",
                               data={name: values, "image": (io.BytesIO(image_bytes()), "a.png")})
        body = response.get_json()
        assert (response.status_code, body["code"], body["field"]) == (422, "invalid_parameter", name)
        assert "given 2 times" in body["detail"]
    listed = client.get("/v1/jobs?status=queued&status=failed")
    assert (listed.status_code, listed.get_json()["field"]) == (422, "status")
    events = submit(client, webhook_url="http://127.0.0.1:9/hook", webhook_events=["job.started", "job.failed"])
    assert events.status_code == 202 and events.get_json()["webhook_events"] == ["job.failed", "job.started"]


def test_an_unknown_field_a_query_string_or_a_second_image_is_422_not_ignored(client, db_session):
    """Each was ignored: ``output_format=webp`` (the name a job reads back) or ``scales=2`` got, and charged, the
    default x4 PNG, as did ``POST /v1/jobs?scale=2``; a second image part made one job of the first."""
    from shared.models import Job

    before = db_session.query(Job).count()
    for fields, field in (({"output_format": "webp"}, "output_format"), ({"scales": "2"}, "scales")):
        response = submit(client, **fields)
        body = response.get_json()
        assert (response.status_code, body["code"], body["field"]) == (422, "invalid_parameter", field)
        assert "no such field" in body["detail"]
    queried = client.post("/v1/jobs?scale=2&format=webp", content_type="multipart/form-data",
                          data={"image": (io.BytesIO(image_bytes()), "a.png"), "model": "bicubic"})
    assert (queried.status_code, queried.get_json()["field"]) == (422, "scale")
    assert "query string" in queried.get_json()["detail"]
    two = client.post("/v1/jobs", content_type="multipart/form-data", data={
        "image": [(io.BytesIO(image_bytes()), "a.png"), (io.BytesIO(image_bytes(seed=1)), "b.png")],
        "model": "bicubic"})
    assert (two.status_code, two.get_json()["field"]) == (422, "image") and "given 2 times" in two.get_json()["detail"]
    watermark = client.post("/v1/jobs", content_type="multipart/form-data", data={
        "image": (io.BytesIO(image_bytes()), "a.png"), "watermark": (io.BytesIO(image_bytes()), "w.png")})
    assert (watermark.status_code, watermark.get_json()["field"]) == (422, "watermark")
    text = client.post("/v1/jobs", content_type="multipart/form-data", data={"image": "photo.png"})
    assert (text.status_code, text.get_json()["field"]) == (422, "image") and "file part" in text.get_json()["detail"]
    db_session.expire_all()
    assert db_session.query(Job).count() == before


def test_the_same_webhook_events_in_another_order_or_spelled_out_are_the_same_request(client):
    """An Idempotency-Key's retry listing the events in another order, or naming the default ones, was 409
    idempotency_conflict: the raw text was compared, not the events the job keeps."""
    hook = "http://127.0.0.1:9/hook"
    for key, sent, again in (("e1", "job.failed,job.succeeded", "job.succeeded, job.failed"),
                             ("e2", None, "job.canceled,job.failed,job.succeeded")):
        headers = {"Idempotency-Key": key}
        made = client.post("/v1/jobs", content_type="multipart/form-data", headers=headers, data={
            "image": (io.BytesIO(image_bytes()), "a.png"), "model": "bicubic", "webhook_url": hook,
            **({"webhook_events": sent} if sent else {})})
        retried = client.post("/v1/jobs", content_type="multipart/form-data", headers=headers, data={
            "image": (io.BytesIO(image_bytes()), "a.png"), "model": "bicubic", "webhook_url": hook,
            "webhook_events": again})
        assert made.status_code == 202 and retried.status_code in (200, 202), retried.get_json()
        assert retried.get_json()["id"] == made.get_json()["id"]


def test_an_empty_file_part_beside_an_image_url_is_no_file(client):
    """An HTML form sends its file input even when no file was picked (no name, no bytes): with an image_url
    that was "send either the 'image' file or an 'image_url', not both", so such a form could never succeed."""
    url = "http://127.0.0.1:9/photo.png"
    response = submit(client, image=b"", filename="", image_url=url)
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["input"]["url"] == url
    both = submit(client, image_url=url)  # a real file and an address: still refused
    assert (both.status_code, both.get_json()["code"]) == (400, "bad_request")


def test_a_multipart_body_with_a_file_name_not_in_utf8_says_why_it_finds_no_image(client):
    """Werkzeug's parser drops the whole form when a part header is not UTF-8 (an older client's Latin-1 name):
    the answer said to send a file in 'image', which the client had done."""
    body = (b"--XX\r\nContent-Disposition: form-data; name=\"image\"; filename=\"caf\xe9.png\"\r\n"
            b"Content-Type: image/png\r\n\r\n" + image_bytes() + b"\r\n--XX--\r\n")
    response = client.post("/v1/jobs", data=body, content_type="multipart/form-data; boundary=XX")
    problem = response.get_json()
    assert (response.status_code, problem["code"]) == (400, "missing_image")
    assert "not UTF-8" in problem["detail"]


@pytest.mark.parametrize("fields,refused", [
    ({"width": "20000", "format": "webp"}, "16383 px a side"),  # one side alone is that side, whatever the image
    ({"height": "65510", "format": "jpeg"}, "65500 px a side"),
    ({"dpi": "300", "print_width": "60", "format": "webp"}, "18000xauto"),  # a print size is pixels too
    ({"width": "20000", "height": "100", "fit": "cover", "format": "webp"}, "16383 px a side"),
    ({"width": "200", "height": "100", "fit": "fill"}, "more than the limit of 10000"),
    ({"width": "20000", "height": "100", "format": "webp"}, None),  # contain: the output may be narrower
    ({"width": "200", "height": "100"}, None),
    ({"scale": "8", "format": "webp"}, None),  # depends on the image: the worker's check once fetched
    ({"width": "16385", "format": "avif"}, "16384 px a side"),
])
def test_an_image_url_job_whose_asked_size_no_image_could_make_is_refused_at_submit(settings, db_session, fields,
                                                                                    refused):
    """``width=20000`` in WebP by image_url was accepted, its image fetched, and the job failed output_too_large:
    the sides that do not depend on the image are checked at submit, as an upload's are."""
    from api import create_app

    client = create_app(settings.with_overrides(max_output_pixels=10_000)).test_client()
    response = client.post("/v1/jobs", content_type="multipart/form-data",
                           data={"image_url": "http://127.0.0.1:9/photo.png", "model": "bicubic", **fields})
    body = response.get_json()
    if refused is None:
        assert response.status_code == 202, body
        return
    assert (response.status_code, body["code"]) == (422, "output_too_large") and refused in body["detail"]
    assert db_session.scalars(select(Job)).all() == []


@pytest.mark.parametrize("fields,field,says", [
    ({"scale": "nan"}, "scale", "finite number"), ({"scale": "inf"}, "scale", "finite number"),
    ({"dpi": "300", "print_width": "nan", "scale": None}, "print_width", "finite number"),
    ({"dpi": "300", "print_height": "-inf", "scale": None}, "print_height", "finite number"),
    ({"webhook_url": "http://127.0.0.1:9/hook", "webhook_events": "  "}, "webhook_events", "'' is not an event"),
])
def test_a_value_that_is_no_number_or_no_event_is_said_to_be_that(client, fields, field, says):
    """``scale=nan`` was told it "should be less than or equal to 8", and blank webhook_events were answered with
    the field's regular expression."""
    response = submit(client, **fields)
    body = response.get_json()
    assert (response.status_code, body["code"], body["field"]) == (422, "invalid_parameter", field)
    assert says in body["detail"] and "\\s" not in body["detail"]
