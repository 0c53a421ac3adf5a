"""Method and metric options: what a plugin declares and what a front-end parses.

A plugin declares ``options = {"name": Option(default, coerce, help)}``; the coercers here
(``integer``, ``number``, ``boolean``, ``choice``, ``int_pair``, ``seed``, ``text``,
``optional``) convert a value or raise ``ValueError("must be ...")``, which ``vx.explain`` turns
into a one-line ``InvalidOption``. ``parse_option_text("8")`` reads a command-line ``k=v`` value
as a Python literal (``8``, ``(8, 8)``, ``'zeros'``; anything else stays text).
``declared_options(method, exp.options)`` keeps the method's own options out of an
explanation's ``options`` (which also hold notes such as the backend). ``vx.resolve_options``
validates a whole set of options and fills in the defaults.
"""
from vexplain.core.evaluation import declared_options
from vexplain.core.options import (
    Option,
    boolean,
    choice,
    int_pair,
    integer,
    number,
    optional,
    parse_option_text,
    seed,
    text,
)

__all__ = [
    "Option",
    "boolean",
    "choice",
    "declared_options",
    "int_pair",
    "integer",
    "number",
    "optional",
    "parse_option_text",
    "seed",
    "text",
]
