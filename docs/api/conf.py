"""Sphinx configuration of the API reference, generated from the docstrings.

Build: ``sphinx-build -W -b html docs/api docs/_build/api`` (the tests do, warnings as
errors, so a docstring that does not render fails CI).
"""

project = "geobasis"
author = "geobasis developers"
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.mathjax"]
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True
nitpicky = False
exclude_patterns = ["_build"]
html_theme = "alabaster"
suppress_warnings = ["ref.python"]  # re-exported names resolve to several targets
