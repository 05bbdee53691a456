"""The HTML chargeback statement (pipeline/kpi/statement.py): escaped, self-contained, charts
that fit their data; and the same page opened in a real headless Chromium.

The browser tests need /usr/bin/chromium (`apt-get install -y chromium`); without it they
skip, unless REQUIRE_BROWSER=1 (as .ci/run sets) makes a missing browser a failure.
"""

from __future__ import annotations

import copy
import os
import subprocess
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.kpi.chargeback import COVERAGE, MEASURES
from pipeline.kpi.statement import CHART_W, PLOT_L, PLOT_R, TOP, nice_axis, render_html

CHROMIUM = Path("/usr/bin/chromium")
HOSTILE = "<script>alert(1)</script>"
HOSTILE_ATTR = '"><img src=https://evil.example/x.png onerror=alert(2)>'
FIELDS = [*MEASURES, *COVERAGE]  # the measures of a chargeback line


def _report(costs: dict[str, float], by: str = "team", **extra: Any) -> dict[str, Any]:
    """A chargeback report of one line per group (in the order given) with made-up counts."""
    lines = []
    total_cost = sum(costs.values())
    for i, (group, cost) in enumerate(costs.items()):
        line: dict[str, Any] = {f: (i + 1) * (k + 1) for k, f in enumerate(FIELDS)}
        line |= {
            "group": group,
            "costCenter": f"CC-{4100 + i}" if i % 2 == 0 else None,
            "costUsd": cost,
            "share": round(cost / total_cost, 4) if total_cost else 0.0,
        }
        lines.append(line)
    total: dict[str, Any] = {f: sum(line[f] for line in lines) for f in FIELDS}
    total["costUsd"] = round(total_cost, 6)
    return {
        "from": "2025-11-01",
        "to": "2025-11-30",
        "by": by,
        "currency": "USD",
        "priceTableVersion": "2025-06-01",
        "attributionVersion": "2025-11-01",
        "lines": lines,
        "total": total,
    } | extra


def _daily(costs: dict[str, float], days: int = 30) -> list[dict[str, Any]]:
    """Each group's cost spread over `days` days, unevenly (day n gets weight n + 1)."""
    weights = sum(range(1, days + 1))
    return [
        {"day": f"2025-11-{n + 1:02d}", "group": g, "costUsd": round(c * (n + 1) / weights, 6)}
        for n in range(days)
        for g, c in costs.items()
    ]


TEAMS = {"Claims": 954.04, "Underwriting": 736.5, "Customer Service": 126.53, "Unattributed": 67.65}


class _Page(HTMLParser):
    """Tags, attributes, and the text inside each element that has an id."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: dict[str, str] = {}
        self.attrs_by_id: dict[str, dict[str, str | None]] = {}
        self.data: list[str] = []
        self._open: list[tuple[str, str | None]] = []  # (tag, id)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append((tag, a))
        if a.get("id"):
            self.text[a["id"]] = ""
            self.attrs_by_id[a["id"]] = a
        if tag not in ("meta", "br", "line", "rect", "path"):  # void in our pages
            self._open.append((tag, a.get("id")))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            if self._open.pop()[0] == tag:
                break

    def handle_data(self, data: str) -> None:
        self.data.append(data)
        for _, element_id in self._open:
            if element_id:
                self.text[element_id] += data


def _parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    page.close()
    return page


def _svg(html: str, svg_id: str) -> ET.Element:
    """The inline SVG with that id, parsed as XML (what we emit is well-formed)."""
    start = html.index(f'<svg id="{svg_id}"')
    return ET.fromstring(html[start : html.index("</svg>", start) + len("</svg>")])


# -- pure ----------------------------------------------------------------------------------


def test_hostile_names_are_escaped() -> None:
    report = _report({HOSTILE: 3.0, HOSTILE_ATTR: 2.0, "R&D <ops>": 1.0}, by="user")
    report["lines"][1]["costCenter"] = HOSTILE
    report["attributionVersion"] = HOSTILE_ATTR
    daily = _daily({HOSTILE: 3.0, HOSTILE_ATTR: 2.0, "R&D <ops>": 1.0}, days=3)
    html = render_html(report, daily)
    assert "<script" not in html.lower()
    assert "<img" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "R&amp;D &lt;ops&gt;" in html
    page = _parse(html)
    tags = {tag for tag, _ in page.tags}
    assert not tags & {"script", "img", "iframe", "object", "embed", "link", "base", "form"}
    handlers = [(t, k) for t, a in page.tags for k in a if k.startswith("on")]
    assert not handlers, handlers
    # The names still read as written, once the browser decodes the entities.
    assert HOSTILE in page.text["lines"] and HOSTILE_ATTR in page.text["lines"]
    assert HOSTILE in "".join(page.data)
    # and the SVG charts stay well-formed XML with the names in them
    assert any(HOSTILE in (t.text or "") for t in _svg(html, "share-chart").iter("text"))


def test_invisible_characters_in_names_are_shown() -> None:
    """A right-to-left override in a user id reordered the statement's text after it; a
    zero-width space made two lines that read the same."""
    names = {"user-\u202egnp.exe": 2.0, "team-\u200bfinance": 1.0, "team-finance": 0.5}
    html = render_html(_report(names, by="user"), _daily(names, days=3))
    assert "\u202e" not in html and "\u200b" not in html
    assert "user-\\u202egnp.exe" in html and "team-\\u200bfinance" in html


def test_no_external_reference() -> None:
    html = render_html(_report(TEAMS), _daily(TEAMS))
    page = _parse(html)
    assert "://" not in html  # no URL at all, not even an SVG namespace
    linked = [(t, k, v) for t, a in page.tags for k, v in a.items() if k in ("src", "href")]
    assert not linked, linked
    assert "<link" not in html and "<script" not in html and "@import" not in html
    assert "url(" not in html
    csp = [a["content"] for t, a in page.tags if a.get("http-equiv") == "Content-Security-Policy"]
    assert csp and "default-src 'none'" in csp[0] and "script-src" not in csp[0]
    assert [a for t, a in page.tags if t == "meta" and a.get("charset") == "utf-8"]
    assert [t for t, _ in page.tags].count("style") == 1


def test_header_names_period_grouping_and_versions() -> None:
    report = _report(TEAMS, attributionVersion=None)
    page = _parse(render_html(report, _daily(TEAMS)))
    text = " ".join(page.data)
    assert "AI usage statement 2025-11-01 – 2025-11-30 by team" in text
    for expected in ("2025-06-01", "USD", "Attribution version", "none", "Generated by"):
        assert expected in text, expected


def test_totals_present() -> None:
    report = _report(TEAMS)
    report["total"] |= {"calls": 185186, "totalTokens": 383124020, "costUsd": 1884.72355}
    report["total"] |= {"unpricedCalls": 51, "unknownTokenCalls": 52}
    page = _parse(render_html(report, _daily(TEAMS)))
    assert page.text["total-calls"] == "185,186"
    assert page.text["total-tokens"] == "383,124,020"
    assert page.text["total-cost"] == "1,884.72"
    assert page.text["total-unpriced"] == "51" and page.text["total-unknown"] == "52"
    assert "1,884.72" in page.text["summary-cost"]
    assert "exact 1884.723550" in page.text["summary-cost"]
    assert "51" in page.text["summary-unpriced"] and "52" in page.text["summary-unknown"]
    assert "not in the cost" in " ".join(page.data)
    titles = [a.get("title") for t, a in page.tags if t == "span" and a.get("title")]
    assert "1884.723550" in titles  # the exact figure behind the rounded one


def test_rows_in_the_order_given_with_every_column() -> None:
    costs = {"small": 1.0, "big": 100.0, "middle": 10.0}  # not sorted by cost
    report = _report(costs)
    report["lines"][0] |= {"promptTokens": 1234567, "share": 0.0090}
    html = render_html(report, _daily(costs))
    body = html[html.index("<tbody>") : html.index("</tbody>")]
    rows = body.split("<tr>")[1:]
    assert [r.split("<td>")[1].split("</td>")[0] for r in rows] == ["small", "big", "middle"]
    first = [c.split("</td>")[0] for c in rows[0].split("<td>")[1:]]
    assert first[:3] == ["small", "CC-4100", "1"]
    assert "1,234,567" in first and "0.9 %" in first and len(first) == 13
    assert [c.split("</td>")[0] for c in rows[1].split("<td>")[1:]][1] == "—"  # no cost center


def test_deterministic_and_pure() -> None:
    report, daily = _report(TEAMS), _daily(TEAMS)
    before = copy.deepcopy((report, daily))
    first = render_html(report, daily)
    assert render_html(report, daily) == first
    assert render_html(copy.deepcopy(report), copy.deepcopy(daily)).encode() == first.encode()
    assert (report, daily) == before  # the inputs are not changed


def test_top_nine_and_other() -> None:
    costs = {f"team-{i:02d}": float(100 - i * 5) for i in range(14)}
    html = render_html(_report(costs), _daily(costs, days=5))
    shares = _svg(html, "share-chart").findall("g")
    names = [g.get("data-group") for g in shares]
    assert names == [*[f"team-{i:02d}" for i in range(TOP)], "Other (5 groups)"]
    rest = sum(costs[f"team-{i:02d}"] for i in range(TOP, 14)) / sum(costs.values())
    assert float(shares[-1].get("data-share")) == pytest.approx(rest, abs=1e-6)
    assert sum(float(g.get("data-share")) for g in shares) == pytest.approx(1.0, abs=1e-5)
    daily = _svg(html, "daily-chart")
    fills = {r.get("fill") for r in daily.iter("rect")}
    assert len(fills) == TOP + 1
    legend = html[html.index('<ul class="legend">') :].split("</ul>")[0]
    assert legend.count("<li>") == TOP + 1 and "Other (5 groups)" in legend
    # The table still has every group.
    assert html.count("<td>team-") == 14


def test_ten_groups_are_all_drawn_by_name() -> None:
    costs = {f"team-{i}": float(10 + i) for i in range(TOP + 1)}
    html = render_html(_report(costs), _daily(costs, days=2))
    names = {g.get("data-group") for g in _svg(html, "share-chart").findall("g")}
    assert names == set(costs)


def _tallest(daily: list[dict[str, Any]]) -> float:
    per_day: dict[str, float] = {}
    for item in daily:
        per_day[item["day"]] = per_day.get(item["day"], 0.0) + item["costUsd"]
    return max(per_day.values())


@pytest.mark.parametrize(
    "daily",
    [
        _daily(TEAMS),
        # the tallest day exactly on a round number
        [{"day": "2025-11-05", "group": "a", "costUsd": 60.0}, *_daily({"a": 5.0, "b": 35.0}, 3)],
        [{"day": "2025-11-03", "group": "a", "costUsd": 0.000731}],  # cents of a cent
        [{"day": "2025-11-03", "group": g, "costUsd": 4321.5} for g in "abc"],
        _daily({f"g{i}": 50.0 + i for i in range(14)}),
    ],
    ids=["teams", "round", "tiny", "one-day", "fourteen-groups"],
)
def test_the_y_axis_ends_above_the_tallest_day(daily: list[dict[str, Any]]) -> None:
    groups: dict[str, float] = {}
    for item in daily:
        groups[item["group"]] = groups.get(item["group"], 0.0) + item["costUsd"]
    html = render_html(_report(groups), daily)
    svg = _svg(html, "daily-chart")
    tallest = _tallest(daily)
    y_max = float(svg.get("data-y-max"))
    ticks = [float(t.get("data-value")) for t in svg.iter("text") if t.get("class") == "tick"]
    assert y_max > tallest and max(ticks) == pytest.approx(y_max)
    assert 3 <= len(ticks) <= 8
    top, bottom = float(svg.get("data-plot-top")), float(svg.get("data-plot-bottom"))
    rects = list(svg.iter("rect"))
    assert rects
    for r in rects:  # every bar inside the plot: nothing clipped, nothing below the axis
        y, h = float(r.get("y")), float(r.get("height"))
        assert top - 0.01 <= y and y + h <= bottom + 0.01 and h >= 0
    highest = min(float(r.get("y")) for r in rects)
    assert bottom - highest == pytest.approx((bottom - top) * tallest / y_max, abs=0.05)
    assert len({r.get("x") for r in rects}) == len({i["day"] for i in daily})


@given(st.floats(min_value=1e-6, max_value=1e9, allow_nan=False))
def test_nice_axis(top: float) -> None:
    axis_max, step = nice_axis(top)
    assert axis_max > top
    assert 2 <= round(axis_max / step) <= 6
    assert axis_max / step == pytest.approx(round(axis_max / step))


def test_every_day_of_the_period_has_a_slot() -> None:
    daily = [{"day": "2025-11-10", "group": "Claims", "costUsd": 1.0}]
    svg = _svg(render_html(_report({"Claims": 1.0}), daily), "daily-chart")
    rect = next(svg.iter("rect"))
    # day 10 of 30: the bar stands in the tenth slot of the plot width
    slot = (CHART_W - PLOT_L - PLOT_R) / 30
    assert float(rect.get("x")) == pytest.approx(PLOT_L + slot * 9.1, abs=0.01)


def test_empty_report() -> None:
    report = _report({})
    assert report["lines"] == []
    html = render_html(report, [])
    page = _parse(html)
    assert "No usage in this period." in page.text["no-usage"]
    assert "<table" not in html and "<svg" not in html
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert "AI usage statement 2025-11-01 – 2025-11-30 by team" in html


def test_lines_without_daily_figures_or_cost() -> None:
    report = _report({"Claims": 0.0, "Legal": 0.0})
    html = render_html(report, [])
    assert "No daily figures for this period." in html
    assert "No priced cost to share in this period." in html
    assert _parse(html).text["total-cost"] == "0.00"


# -- in a real browser ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.exists():
        msg = f"chromium not installed at {CHROMIUM} (apt-get install -y chromium)"
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(msg + "; REQUIRE_BROWSER=1 requires it")
        pytest.skip(msg)
    return CHROMIUM


def _headless(browser: Path, page: Path, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    profile.mkdir()
    done = subprocess.run(
        [
            str(browser),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--v=0",
            *args,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def _console(stderr: str) -> list[str]:
    """The page's console messages Chromium logged (CSP violations, errors, logs)."""
    return [line for line in stderr.splitlines() if "CONSOLE" in line]


def _png(path: Path) -> Any:
    import matplotlib.image

    return matplotlib.image.imread(str(path))


@pytest.fixture(scope="module")
def rendered(chromium: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The teams' statement written to a file, its DOM and a screenshot from Chromium."""
    tmp = tmp_path_factory.mktemp("statement")
    report = _report(TEAMS | {HOSTILE: 12.5})
    report["total"] |= {"calls": 185186, "totalTokens": 383124020}
    page = tmp / "statement.html"
    page.write_text(render_html(report, _daily(TEAMS | {HOSTILE: 12.5})), encoding="utf-8")
    dom = _headless(chromium, page, tmp, "--dump-dom")
    shot = tmp / "shot.png"
    pic = _headless(chromium, page, tmp, f"--screenshot={shot}", "--window-size=1280,2000")
    return {"report": report, "dom": dom, "shot": shot, "pic": pic}


def test_chromium_renders_the_totals(rendered: dict[str, Any]) -> None:
    dom = _parse(rendered["dom"].stdout)
    total = rendered["report"]["total"]
    assert dom.text["total-calls"] == "185,186"
    assert dom.text["total-tokens"] == "383,124,020"
    assert dom.text["total-cost"] == f"{total['costUsd']:,.2f}" == "1,897.22"
    assert dom.attrs_by_id["daily-chart"]["data-y-max"]
    # The hostile group is text in the rendered page, not an element.
    assert "script" not in {tag for tag, _ in dom.tags}
    assert HOSTILE in dom.text["lines"]


def test_chromium_logs_nothing_on_the_console(rendered: dict[str, Any]) -> None:
    for run in (rendered["dom"], rendered["pic"]):
        assert not _console(run.stderr), _console(run.stderr)


def test_chromium_screenshot_is_the_page(rendered: dict[str, Any]) -> None:
    shot = rendered["shot"]
    assert shot.exists()
    pixels = _png(shot)
    assert pixels.shape[:2] == (2000, 1280)
    rgb = (pixels[:, :, :3] * 255).round().astype(int)
    assert (rgb < 250).any(axis=2).mean() > 0.02, "the screenshot is (nearly) blank"
    # The first group's colour, #4e79a7, is drawn: the SVG charts rendered.
    first = (abs(rgb - (0x4E, 0x79, 0xA7)).sum(axis=2) <= 6).sum()
    assert first > 2000, first


def test_console_check_sees_errors(chromium: Path, tmp_path: Path) -> None:
    """The console check above can fail: a page that loads an image from the network under
    the statement's policy, and logs an error, shows both on stderr."""
    page = tmp_path / "bad.html"
    html = render_html(_report({}), [])
    page.write_text(
        html.replace(
            "</body>",
            '<img src="https://example.invalid/x.png"><p id="after">after</p></body>',
        ),
        encoding="utf-8",
    )
    done = _headless(chromium, page, tmp_path, "--dump-dom")
    assert any("Content Security Policy" in line for line in _console(done.stderr))
    assert "after" in _parse(done.stdout).text["after"]
