"""Evaluation data: BEIR retrieval folders, STS pair files, their download and the task registry."""

from embedlab.data.beir import MissingQrelsDocsWarning, RetrievalData, load_beir, read_corpus
from embedlab.data.download import KNOWN_MD5, download_beir
from embedlab.data.sts import StsPairs, load_sts
from embedlab.data.tasks import TASKS, TaskSpec, data_root, get_task, load_task, resolve_data_path

__all__ = [
    "KNOWN_MD5",
    "TASKS",
    "MissingQrelsDocsWarning",
    "RetrievalData",
    "StsPairs",
    "TaskSpec",
    "data_root",
    "download_beir",
    "get_task",
    "load_beir",
    "load_sts",
    "load_task",
    "read_corpus",
    "resolve_data_path",
]
