"""The OCR engine: rapidocr's bundled models, loaded once per process and device, never downloaded."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from jobpulse.ocr.engine import (
    CPU_PROVIDER,
    CUDA_PROVIDER,
    Device,
    bundled_models,
    cuda_available,
    engine_for,
)
from jobpulse.ocr.result import judge, mean_confidence, text_of
from jobpulse.states import State
from tests.ocr_support import TEXT, similarity


def _page() -> np.ndarray:
    import io

    from PIL import Image

    from tests.ocr_support import render_page

    rgb = np.asarray(Image.open(io.BytesIO(render_page())).convert("RGB"))
    return np.ascontiguousarray(rgb[:, :, ::-1])


def test_the_models_are_the_ones_in_rapidocrs_wheel() -> None:
    models = bundled_models()
    assert set(models) == {"Det", "Cls", "Rec"}
    for path in models.values():
        assert path.is_file() and path.suffix == ".onnx"
        assert path.parent.parent.name == "rapidocr"


def test_one_engine_per_process_and_device_reading_in_stages() -> None:
    engine = engine_for(Device.CPU)
    assert engine_for(Device.CPU) is engine
    assert engine.provider == CPU_PROVIDER
    gpu = engine_for(Device.GPU)
    assert gpu is not engine
    assert gpu.provider == (CUDA_PROVIDER if cuda_available() else CPU_PROVIDER)

    page = engine.detect(_page())
    assert page.regions == 2
    assert list(engine.recognize(page)) == [2]  # one batch of up to six regions
    lines = engine.lines(page)
    assert similarity(text_of(lines), TEXT) > 0.9
    assert all(line.words for line in lines)
    mean = mean_confidence(lines)
    assert mean is not None and mean > 0.9
    assert judge(lines, 0.8).state is State.SUCCESS
    assert judge(lines, 1.0).state is State.REVIEW_REQUIRED
    assert judge([], 0.8).state is State.REJECTED_BAD_INPUT


def test_loading_and_reading_need_no_network(tmp_path: Path) -> None:
    """In a fresh process whose HTTP proxies point at a closed port, so any download would fail."""
    models = bundled_models()["Det"].parent
    before = sorted(path.name for path in models.iterdir())
    script = textwrap.dedent(
        """
        import io, sys
        import numpy as np
        from PIL import Image
        from jobpulse.ocr.engine import Device, engine_for
        from jobpulse.ocr.result import text_of
        from tests.ocr_support import render_page
        rgb = np.asarray(Image.open(io.BytesIO(render_page())).convert("RGB"))
        engine = engine_for(Device.CPU)
        page = engine.detect(np.ascontiguousarray(rgb[:, :, ::-1]))
        list(engine.recognize(page))
        print(text_of(engine.lines(page)))
        """
    )
    closed = "http://127.0.0.1:9"
    env = {
        **os.environ,
        "HTTP_PROXY": closed,
        "HTTPS_PROXY": closed,
        "http_proxy": closed,
        "https_proxy": closed,
    }
    env.pop("NO_PROXY", None)
    env.pop("no_proxy", None)
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=Path(__file__).parent.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert similarity(done.stdout, TEXT) > 0.9
    assert "download" not in done.stderr.lower()
    assert sorted(path.name for path in models.iterdir()) == before  # nothing fetched into the package
