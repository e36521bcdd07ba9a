"""Data pipelines: downloads, processed-dataset storage, UEA, PPG-DaLiA, Heidelberg Digits.

Importing this package is cheap: ``aeon`` is never imported (its shipped ``.ts`` files are
located on disk), and ``librosa``/``soundfile`` are imported only inside the Heidelberg
feature functions. See ``data_dir/README.md`` for the command-line scripts.
"""

from rhel_lib.data.download import ChecksumError, DownloadError, download, safe_extract, sha256_file
from rhel_lib.data.heidelberg import download_heidelberg, log_mel, process_heidelberg
from rhel_lib.data.ppg import download_ppg, process_ppg
from rhel_lib.data.store import (
    DatasetCorruptError,
    DatasetError,
    DatasetNotFoundError,
    ProcessedDataset,
    fetch_command,
    load_processed,
    make_splits,
    processed_dir,
    save_processed,
)
from rhel_lib.data.uea import OFFLINE_DATASETS, PAPER_DATASETS, download_uea, process_uea

__all__ = [
    "OFFLINE_DATASETS",
    "PAPER_DATASETS",
    "ChecksumError",
    "DatasetCorruptError",
    "DatasetError",
    "DatasetNotFoundError",
    "DownloadError",
    "ProcessedDataset",
    "download",
    "download_heidelberg",
    "download_ppg",
    "download_uea",
    "fetch_command",
    "load_processed",
    "log_mel",
    "make_splits",
    "process_heidelberg",
    "process_ppg",
    "process_uea",
    "processed_dir",
    "safe_extract",
    "save_processed",
    "sha256_file",
]
