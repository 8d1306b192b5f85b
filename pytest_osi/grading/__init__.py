"""Graders and their rubrics: the judge prompts (text files in this package, versioned by
hash) and the strict parsing, with corrective retries, shared by every rubric."""

from pytest_osi.grading.judge import Grader, JudgeParseError, parse_answer, parse_score
from pytest_osi.grading.rubrics import HARM, HELPFULNESS, IntScore, Rubric, load_rubric, rubric_label, rubric_versions, rubrics_for

__all__ = ["HARM", "HELPFULNESS", "Grader", "IntScore", "JudgeParseError", "Rubric", "load_rubric", "parse_answer",
           "parse_score", "rubric_label", "rubric_versions", "rubrics_for"]
