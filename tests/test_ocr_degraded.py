"""Poor scans a person reads easily (faint, blurred, grainy, dark) are read, or at worst reviewed; never
rejected as bad input. A page with nothing on it still is, with a reason that does not blame a scan.

Every degraded image here ended REJECTED_BAD_INPUT "No text was found in the image" before the second
look (rapidocr's detector found no region in the image as sent).
"""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
from PIL import Image

from jobpulse.ocr.engine import Device, OcrEngine, engine_for
from jobpulse.ocr.reading import read_page
from jobpulse.ocr.result import NO_TEXT, judge, text_of
from jobpulse.states import State
from tests.jobs import poll_until_terminal
from tests.ocr_support import (
    DEGRADED,
    TEXT,
    almost_blank_page,
    assert_plain,
    blank_page,
    degraded_page,
    scribbles,
    similarity,
    submit_image,
)

MIN_CONFIDENCE = 0.8


@pytest.fixture(scope="module")
def engine() -> OcrEngine:
    return engine_for(Device.CPU)


def _pixels(content: bytes) -> np.ndarray:
    rgb = np.asarray(Image.open(io.BytesIO(content)).convert("RGB"))
    return np.ascontiguousarray(rgb[:, :, ::-1])


@pytest.mark.parametrize("case", list(DEGRADED))
def test_a_poor_scan_is_read_or_reviewed_never_rejected(engine: OcrEngine, case: str) -> None:
    reading = read_page(engine, _pixels(degraded_page(case)), MIN_CONFIDENCE)
    verdict = judge(reading.lines, MIN_CONFIDENCE)
    assert verdict.state in (State.SUCCESS, State.REVIEW_REQUIRED), (case, verdict)
    if verdict.state is State.SUCCESS:
        assert similarity(text_of(reading.lines), TEXT) > 0.9, text_of(reading.lines)
    # The image as sent showed no text; the enhanced copy is what was read.
    assert [one.image for one in reading.passes] == ["original", "enhanced"]
    assert reading.passes[0].regions == 0 and reading.chosen.image == "enhanced"


def test_text_like_strokes_that_cannot_be_read_go_to_a_person(engine: OcrEngine) -> None:
    """Regions were found, but nothing reads well: a reviewer sees the best guess, with its confidence."""
    reading = read_page(engine, _pixels(scribbles()), MIN_CONFIDENCE)
    assert reading.lines, reading.passes
    assert judge(reading.lines, MIN_CONFIDENCE).state is State.REVIEW_REQUIRED


@pytest.mark.parametrize("content", [blank_page(), almost_blank_page()], ids=["white", "grey with noise"])
def test_a_page_with_no_text_is_still_rejected(engine: OcrEngine, content: bytes) -> None:
    reading = read_page(engine, _pixels(content), MIN_CONFIDENCE)
    assert reading.lines == []
    verdict = judge(reading.lines, MIN_CONFIDENCE)
    assert verdict.state is State.REJECTED_BAD_INPUT
    assert verdict.reason == NO_TEXT and "sharper or higher-contrast scan" in NO_TEXT
    if content == blank_page():
        assert len(reading.passes) == 1  # a uniform page: nothing to enhance, no second reading


@pytest.mark.integration
@pytest.mark.usefixtures("worker")
def test_a_faint_blurred_scan_is_read_through_the_api(http: httpx.Client, auth: dict[str, str]) -> None:
    case = "faint and soft: grey 170 on 200, blurred (radius 2)"
    reply = submit_image(http, auth, degraded_page(case))
    assert reply.status_code == 202, reply.text
    job_id = reply.json()["id"]
    seen = poll_until_terminal(http, auth, job_id, interval=0.02)
    final = seen[-1]
    assert final["state"] in ("SUCCESS", "REVIEW_REQUIRED"), final
    running = [body for body in seen if body["state"] == "RUNNING" and body["percent"] is not None]
    assert [body["percent"] for body in running] == sorted(body["percent"] for body in running)
    # The second detection is long enough to be seen by a poller (the enhancing step itself takes ~1 ms).
    second = [body for body in running if body["message"] == "Finding the text in the enhanced image"]
    assert second and second[0]["stage"] == "detecting" and second[0]["percent"] > 35, running
    result = http.get(f"/jobs/{job_id}/", headers=auth).json()["result"]
    assert similarity(result["text"], TEXT) > 0.9, result["text"]
    assert result["reading"]["image"] == "enhanced"
    assert [one["image"] for one in result["reading"]["passes"]] == ["original", "enhanced"]
    assert result["timings"]["enhance_seconds"] >= 0


@pytest.mark.integration
@pytest.mark.usefixtures("worker")
def test_a_blank_page_is_rejected_without_blaming_a_readable_scan(
    http: httpx.Client, auth: dict[str, str]
) -> None:
    job_id = submit_image(http, auth, almost_blank_page()).json()["id"]
    final = poll_until_terminal(http, auth, job_id)[-1]
    assert final["state"] == "REJECTED_BAD_INPUT", final
    assert final["error_reason"] == NO_TEXT and "higher-contrast scan" in final["error_reason"]
    assert_plain(final["error_reason"])
