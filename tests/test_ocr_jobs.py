"""OCR jobs end to end: the real API server, the session's Celery worker, the real model on the CPU."""

from __future__ import annotations

import httpx
import pytest

from jobpulse.auth import mint_token
from jobpulse.settings import Settings
from tests.conftest import SECRET
from tests.jobs import poll_until_terminal
from tests.ocr_support import (
    TEXT,
    assert_plain,
    blank_page,
    bomb_png,
    pdf_bytes,
    random_bytes,
    render_page,
    similarity,
    submit_image,
    tiny_png,
)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("worker")]


def test_a_rendered_page_is_read_with_words_boxes_and_confidences(
    http: httpx.Client, auth: dict[str, str]
) -> None:
    reply = submit_image(http, auth, render_page())
    assert reply.status_code == 202, reply.text
    job_id = reply.json()["id"]
    seen = poll_until_terminal(http, auth, job_id, interval=0.02)
    final = seen[-1]
    assert final["state"] == "SUCCESS", final
    assert final["percent"] == 100 and final["poll_after_ms"] is None
    stages = {body["stage"] for body in seen if body["state"] == "RUNNING"}
    assert "detecting" in stages  # written before the long detection call
    assert stages <= {"starting", "decoding", "detecting", "recognizing"}, stages

    record = http.get(f"/jobs/{job_id}/", headers=auth).json()
    assert record["state"] == "SUCCESS"
    result = record["result"]
    assert similarity(result["text"], TEXT) > 0.9, result["text"]
    assert len(result["lines"]) == 2
    assert len(result["words"]) >= 14
    for word in result["words"]:
        assert word["text"].strip() and 0 < word["confidence"] <= 1
        xs = [x for x, _ in word["box"]]
        ys = [y for _, y in word["box"]]
        assert len(word["box"]) == 4 and 0 <= min(xs) < max(xs) <= 720 and 0 <= min(ys) < max(ys) <= 200
    assert result["mean_confidence"] >= 0.9 and result["min_confidence"] == 0.8
    assert result["image"] == {"format": "PNG", "width": 720, "height": 200}
    assert result["engine"]["name"] == "rapidocr"
    assert (result["execution_provider"], result["device"], result["attempt"]) == (
        "CPUExecutionProvider",
        "cpu",
        "cpu",
    )
    assert result["timings"]["total_seconds"] >= result["timings"]["detect_seconds"] > 0


def test_a_poor_scan_needs_review_and_its_owner_resolves_it(http: httpx.Client, auth: dict[str, str]) -> None:
    options = '{"min_confidence": 0.995}'
    first, second = (
        submit_image(http, auth, render_page(poor=True), options=options).json()["id"] for _ in "ab"
    )
    for job_id in (first, second):
        final = poll_until_terminal(http, auth, job_id)[-1]
        assert final["state"] == "REVIEW_REQUIRED", final
        assert final["terminal"] and final["percent"] == 100
    record = http.get(f"/jobs/{first}/", headers=auth).json()
    assert record["result"]["mean_confidence"] < 0.995
    assert similarity(record["result"]["text"], TEXT) > 0.8  # kept for the reviewer

    stranger = {"Authorization": f"Bearer {mint_token(SECRET, 'not-the-owner', 3600)}"}
    assert (
        http.post(f"/jobs/{first}/review/", headers=stranger, json={"decision": "approve"}).status_code == 404
    )

    approved = http.post(f"/jobs/{first}/review/", headers=auth, json={"decision": "approve", "text": TEXT})
    assert approved.status_code == 200
    assert approved.json()["state"] == "SUCCESS"
    assert approved.json()["result"]["review"]["text"] == TEXT
    assert http.get(f"/jobs/{first}/progress/", headers=auth).json()["state"] == "SUCCESS"

    rejected = http.post(f"/jobs/{second}/review/", headers=auth, json={"decision": "reject"})
    assert rejected.json()["state"] == "REJECTED_BAD_INPUT"
    assert http.get(f"/jobs/{second}/progress/", headers=auth).json()["state"] == "REJECTED_BAD_INPUT"

    assert http.post(f"/jobs/{first}/review/", headers=auth, json={"decision": "reject"}).status_code == 409


BAD_IMAGES: dict[str, tuple[str, bytes, str]] = {
    "pdf renamed .png": ("scan.png", pdf_bytes(), "PDF"),
    "1x1 image": ("dot.png", tiny_png(), "too small"),
    "header claims 100000x100000": ("bomb.png", bomb_png(), "megapixels"),
    "random bytes": ("noise.png", random_bytes(), "PNG, JPEG, WebP or TIFF"),
    "no text at all": ("blank.png", blank_page(), "No text"),
}


@pytest.mark.parametrize("case", list(BAD_IMAGES))
def test_bad_images_are_rejected_with_a_plain_reason(
    http: httpx.Client, auth: dict[str, str], settings: Settings, case: str
) -> None:
    filename, content, expected = BAD_IMAGES[case]
    reply = submit_image(http, auth, content, filename)
    assert reply.status_code == 202, reply.text
    job_id = reply.json()["id"]
    final = poll_until_terminal(http, auth, job_id)[-1]
    assert final["state"] == "REJECTED_BAD_INPUT", final
    assert expected in final["error_reason"]
    assert_plain(final["error_reason"], str(settings.data_dir))
    record = http.get(f"/jobs/{job_id}/", headers=auth).json()
    assert record["state"] == "REJECTED_BAD_INPUT" and record["error_reason"] == final["error_reason"]


def test_an_empty_upload_is_refused_at_the_door(http: httpx.Client, auth: dict[str, str]) -> None:
    reply = submit_image(http, auth, b"")
    assert reply.status_code == 400
    assert reply.json()["error"]["code"] == "empty_file"
