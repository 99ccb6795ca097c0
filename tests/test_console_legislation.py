"""Citations link to legislation.gov.uk: a policy file's own URL, or the address worked out from the
name of the Act or instrument and the provision's first reference."""
from __future__ import annotations

import pytest

from cms_policy.v1 import policy_pb2 as pb
from console.legislation import citation_link


@pytest.mark.parametrize(("source", "provision", "url", "link"), [
    ("Child Support Fees Regulations 2014 (SI 2014/612)", "reg 3(1)", "",
     "https://www.legislation.gov.uk/uksi/2014/612/regulation/3"),
    ("Child Support Act 1991", "Schedule 1, para 2(1)", "",
     "https://www.legislation.gov.uk/ukpga/1991/48/schedule/1/paragraph/2"),
    ("Child Support Act 1991", "Schedule 1", "", "https://www.legislation.gov.uk/ukpga/1991/48/schedule/1"),
    ("Child Support Act 1991", "s.4(2A)(b)", "", "https://www.legislation.gov.uk/ukpga/1991/48/section/4"),
    ("Child Support Act 1991", "ss.16(1A) and 20", "", "https://www.legislation.gov.uk/ukpga/1991/48/section/16"),
    ("Civil Legal Aid (Procedure) Regulations 2012 (SI 2012/3098)", "reg 33(2) (unspent conviction)", "",
     "https://www.legislation.gov.uk/uksi/2012/3098/regulation/33"),
    ("Child Support Maintenance Calculation Regulations 2012 (SI 2012/2677)", "reg 43 (the reduced rate table)", "",
     "https://www.legislation.gov.uk/uksi/2012/2677/regulation/43"),
    ("Child Support Collection (Domestic Abuse) Act 2023 (c. 24)", "s.1", "",
     "https://www.legislation.gov.uk/ukpga/2023/24/section/1"),
    ("Prisoners' Earnings Act 1996", "s.1 (in force 26 September 2011)", "",
     "https://www.legislation.gov.uk/ukpga/1996/33/section/1"),
    ("Independent review of the Child Maintenance Service response to domestic abuse (2023)", "para 4.2", "", ""),
    ("Child Support Fees Regulations (Northern Ireland) 2014", "no application fee is prescribed", "", ""),
    ("Child Support Act 1991", "s.16", "https://example.org/own", "https://example.org/own"),
    ("Child Support Act 1991", "s.16", "javascript:alert(1)", ""),
])
def test_a_citation_links_to_its_legislation(source, provision, url, link):
    assert citation_link(pb.Citation(source=source, provision=provision, url=url)) == link
