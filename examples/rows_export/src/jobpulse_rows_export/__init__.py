"""An example jobpulse plugin: the ``rows_export`` job kind (a finished import's rows as CSV or XLSX).

:mod:`.kind` declares the kind (what the API reads); :mod:`.handler` does the work (what only workers
import).
"""
