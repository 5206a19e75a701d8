"""OCR for ``ai_inference`` jobs: one module per concept.

- :mod:`~jobpulse.ocr.options`: what a client may ask for (``min_confidence``), validated at submission;
- :mod:`~jobpulse.ocr.image`: reading an upload with Pillow under a pixel limit (bombs are never decoded);
- :mod:`~jobpulse.ocr.engine`: rapidocr on onnxruntime, loaded once per worker process and device, run in
  stages (detect, then recognize region by region) so that a job reports progress between them;
- :mod:`~jobpulse.ocr.reading`: one page read, with a second look at an enhanced copy
  (:mod:`~jobpulse.ocr.enhancement`) when the first reading finds no text or only doubtful text;
- :mod:`~jobpulse.ocr.result`: the result stored in the job record, and the review that resolves it.

Nothing here loads a model or reads a file at import time.
"""
