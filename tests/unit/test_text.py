"""Titles and text out of markdown, reStructuredText and HTML."""

from pipeline.text import html_to_text, markdown_title, rst_title


def test_markdown_title_is_the_first_level_one_heading():
    assert markdown_title("intro\n## Sub\n# The Title #\n# Later") == "The Title"
    assert markdown_title("no heading here") is None


def test_rst_title_accepts_overlined_and_underlined_titles():
    assert rst_title("=====\nTitle\n=====\n\nbody\n\nSub\n---\n") == "Title"
    assert rst_title("Usage\n~~~~~\n") == "Usage"
    assert rst_title("Short\n==\n") is None  # an underline shorter than the title is not one


def test_html_keeps_headings_as_sections_and_drops_what_is_not_shown():
    title, text = html_to_text(
        "<html><head><title>T</title><style>p{}</style></head><body><h1>Main</h1><p>Hello <b>world</b></p>"
        "<ul><li>a</li><li>b</li></ul><script>x()</script><noscript>enable js</noscript></body></html>"
    )
    assert title == "T"
    assert text == "# Main\n\nHello world\n\na\n\nb"


def test_html_without_a_title_element_is_titled_by_its_first_heading():
    assert html_to_text("<h1>Changelog</h1><p>v2</p>") == ("Changelog", "# Changelog\n\nv2")
