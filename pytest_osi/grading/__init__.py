"""Graders and their rubrics: the judge prompts (text files in this package, versioned by
hash) and the strict parsing of the judge's answer."""

from pytest_osi.grading.rubrics import HARM, HELPFULNESS, Rubric, load_rubric
from pytest_osi.grading.judge import Grader, parse_score

__all__ = ["HARM", "HELPFULNESS", "Grader", "Rubric", "load_rubric", "parse_score"]
