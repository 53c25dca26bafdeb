"""CoRE Link Format parsing of Bootstrap-Discover responses."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bootstrap.lwm2m import CodecError, Link, Path, bootstrap_account_instance, parse_discover
from bootstrap.lwm2m.links import parse_link_format


def test_lwm2m_11_discover() -> None:
    """The 1.1 form with a bare lwm2m attribute gives the version, links and the BS account."""
    result = parse_discover(b'lwm2m="1.1",</0/0>;ssid=101,</0/1>,</1/0>;ssid=101,</3/0>')
    assert result.lwm2m_version == "1.1"
    assert result.links == (
        Link(Path(0, 0), {"ssid": "101"}),
        Link(Path(0, 1), {}),
        Link(Path(1, 0), {"ssid": "101"}),
        Link(Path(3, 0), {}),
    )
    assert bootstrap_account_instance(result.links) == 1


def test_lwm2m_10_root_link() -> None:
    """The root link </> carries the version and is not listed among the links."""
    result = parse_discover("</>;lwm2m=1.0,</0/0>,</0/1>;ssid=1")
    assert result.lwm2m_version == "1.0"
    assert result.links == (Link(Path(0, 0), {}), Link(Path(0, 1), {"ssid": "1"}))
    assert bootstrap_account_instance(result.links) == 0


def test_quoted_values_whitespace_and_flags() -> None:
    """Quoted strings may hold , and ; and escapes; whitespace is tolerated; bare flags map to None."""
    text = '</0/0>;ssid=101;uri="coaps://a,b;c:5684" ,\n </0/1> ; uri="x\\"y" ;obs, </1>;ver=1.2'
    result = parse_discover(text)
    assert result.lwm2m_version is None
    assert result.links == (
        Link(Path(0, 0), {"ssid": "101", "uri": "coaps://a,b;c:5684"}),
        Link(Path(0, 1), {"uri": 'x"y', "obs": None}),
        Link(Path(1), {"ver": "1.2"}),
    )


def test_bootstrap_account_rules() -> None:
    """Only /0/x instance links without ssid count; None when every account has an ssid."""
    links = parse_discover("</0>,</0/0>;ssid=1,</0/1/0>,</1/2>,</0/5>;ssid=2").links
    assert bootstrap_account_instance(links) is None
    links = parse_discover("</0/0>;ssid=1,</0/7>,</0/9>").links
    assert bootstrap_account_instance(links) == 7
    assert bootstrap_account_instance([]) is None


def test_empty_payload_and_repeated_parameters() -> None:
    """An empty body has no links; a repeated parameter keeps its first value."""
    assert parse_discover(b"") == parse_discover("  ")
    assert parse_discover(b"").links == ()
    assert parse_discover("</0/0>;ssid=1;ssid=2").links[0].attributes == {"ssid": "1"}


def test_raw_items() -> None:
    """parse_link_format yields bare-attribute items with target None."""
    assert list(parse_link_format('lwm2m="1.1";foo,</0>')) == [
        (None, {"lwm2m": "1.1", "foo": None}),
        ("/0", {}),
    ]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("</0/0", "expected '>'"),
        ('</0/0>;uri="abc', "unterminated"),
        ('</0/0>;uri="abc\\', "unterminated"),
        ("</rd>", "invalid LwM2M path"),
        ("</0/0/0/0/0>", "invalid LwM2M path"),
        ("</0/0>x", "expected ';'"),
        ("</0/0>;=1", "empty parameter name"),
        ("</0/0>,,</0/1>", "empty item"),
        ("</0/0>,", "empty item"),
        (b"</0/\xff>", "UTF-8"),
    ],
)
def test_malformed(payload: str | bytes, message: str) -> None:
    """Syntax errors and non-LwM2M targets raise CodecError with a helpful message."""
    with pytest.raises(CodecError, match=message):
        parse_discover(payload)


token = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789.-", min_size=1, max_size=8)
quoted = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
paths = st.builds(
    lambda ids, n: Path.from_ids(ids[:n]),
    st.lists(st.integers(0, 65535), min_size=4, max_size=4),
    st.integers(1, 3),
)
attributes = st.dictionaries(token, st.one_of(st.none(), token, quoted), max_size=3)


def _render(link: Link) -> str:
    out = f"<{link.path}>"
    for name, value in link.attributes.items():
        if value is None:
            out += f";{name}"
        else:
            escaped = value.replace("\\", "\\\\").replace('"', '\\"')
            out += f';{name}="{escaped}"'
    return out


@given(links=st.lists(st.builds(Link, paths, attributes), max_size=6), version=st.one_of(st.none(), token))
def test_render_parse_round_trip(links: list[Link], version: str | None) -> None:
    """Rendering links (quoted values, flags) and parsing them back is the identity."""
    items = ([f'lwm2m="{version}"'] if version is not None else []) + [_render(link) for link in links]
    result = parse_discover(",".join(items).encode())
    assert result.lwm2m_version == version
    assert result.links == tuple(links)


@settings(max_examples=500)
@given(text=st.text(alphabet='</>;=",0123456789abcdssid \\\n', max_size=60))
def test_fuzz_only_codec_error(text: str) -> None:
    """Arbitrary link-format-like text raises nothing but CodecError."""
    try:
        parse_discover(text)
    except CodecError:
        pass
