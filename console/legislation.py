"""A citation's link to the legislation: its own URL, or one worked out from how it names the law.

Most of the policies' citations name an Act or a statutory instrument without a URL (policy files
are enacted data: adding one would change a version's content hash). legislation.gov.uk's addresses
follow from the name: `uksi/<year>/<number>` for "(SI 2014/612)", `ukpga/<year>/<chapter>` for an Act,
then `/regulation/3`, `/section/4`, `/schedule/1/paragraph/2` from the provision's first reference.
Only Acts whose chapter is known here (or given as "(c. 24)") get a link; anything else gets none.
"""
from __future__ import annotations

import re

LEGISLATION = "https://www.legislation.gov.uk"
# Chapter numbers of the Acts the policies cite (from legislation.gov.uk).
ACTS = {
    "Child Support Act 1991": (1991, 48),
    "Child Maintenance and Other Payments Act 2008": (2008, 6),
    "Welfare Reform Act 2012": (2012, 5),
    "Prisoners' Earnings Act 1996": (1996, 33),
}
_SI = re.compile(r"\(SI (\d{4})/(\d+)\)\s*$")
_CHAPTER = re.compile(r"\b(\d{4}) \(c\. ?(\d+)\)\s*$")
_PROVISION = [
    (re.compile(r"^Schedule (\d+), para(?:graph)? (\d+)"), "schedule/{0}/paragraph/{1}"),
    (re.compile(r"^Sch(?:edule)?\.? ?(\d+)\b"), "schedule/{0}"),
    (re.compile(r"^regs?\.? ?(\d+[A-Z]*)"), "regulation/{0}"),
    (re.compile(r"^ss?\.? ?(\d+[A-Z]*)"), "section/{0}"),
]


def _base(source: str) -> str | None:
    if match := _SI.search(source):
        return f"{LEGISLATION}/uksi/{match[1]}/{match[2]}"
    if match := _CHAPTER.search(source):
        return f"{LEGISLATION}/ukpga/{match[1]}/{match[2]}"
    if source in ACTS:
        year, chapter = ACTS[source]
        return f"{LEGISLATION}/ukpga/{year}/{chapter}"
    return None


def citation_link(citation) -> str:
    """The address to link a Citation (source, provision, url) to, or "" for none. A URL a policy
    file gives is used only if it is a web address (never a script or data URL)."""
    if citation.url:
        return citation.url if citation.url.startswith(("https://", "http://")) else ""
    base = _base(citation.source)
    if base is None:
        return ""
    for pattern, path in _PROVISION:
        if match := pattern.match(citation.provision or ""):
            return f"{base}/{path.format(*match.groups())}"
    return base
