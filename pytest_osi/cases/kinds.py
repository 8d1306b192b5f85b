"""The built-in case kinds, registered in the order they are reported. A new kind adds its
package under ``pytest_osi/cases/`` and one import line here."""

from pytest_osi.cases.prompt_sets import kind as _prompt_sets  # noqa: F401
from pytest_osi.cases.scenarios import kind as _scenarios  # noqa: F401
