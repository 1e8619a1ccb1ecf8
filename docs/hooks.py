"""mkdocs hook: render the experiment-file reference from the pydantic models at build time.

The page that holds ``crossrec.config_doc.PLACEHOLDER`` gets the generated tables in its place,
so the reference always matches the code it documents.
"""

from __future__ import annotations

from typing import Any


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Replace the placeholder line with ``crossrec.config_doc.render_reference()``."""
    from crossrec.config_doc import PLACEHOLDER, render_reference

    if PLACEHOLDER not in markdown:
        return markdown
    return markdown.replace(PLACEHOLDER, render_reference())
