"""Label tasks: a task document (task), labelled data (data), voters, ensembles and cascades (ensemble), and
evaluation (evaluate). What the command line and the page's worker call."""
from .data import DataError, Row, parse_rows, read_rows
from .ensemble import Cascade, CascadeResult, Ensemble, EnsembleResult, Vote, Voter
from .evaluate import Report, SetupReport, evaluate, macro_f1
from .task import Example, Task, TaskError, TaskResult

__all__ = ["Cascade", "CascadeResult", "DataError", "Ensemble", "EnsembleResult", "Example", "Report", "Row",
           "SetupReport", "Task", "TaskError", "TaskResult", "Vote", "Voter", "evaluate", "macro_f1", "parse_rows",
           "read_rows"]
