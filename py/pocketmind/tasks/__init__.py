"""Tasks (a label from a set, or a JSON value): a task document (task), labelled data (data), voters, ensembles
and cascades (ensemble), and evaluation (evaluate). What the command line and the page's worker call."""
from .data import DataError, Row, parse_rows, read_rows
from .ensemble import Cascade, CascadeResult, Ensemble, EnsembleResult, Vote, Voter
from .evaluate import Report, SetupReport, evaluate, macro_f1
from .task import Example, ExtractResult, Task, TaskError, TaskResult

__all__ = ["Cascade", "CascadeResult", "DataError", "Ensemble", "EnsembleResult", "Example", "ExtractResult", "Report", "Row",
           "SetupReport", "Task", "TaskError", "TaskResult", "Vote", "Voter", "evaluate", "macro_f1", "parse_rows",
           "read_rows"]
