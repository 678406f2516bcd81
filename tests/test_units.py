"""Unit files and consul connect envoy command lines, parsed as systemd and Go do."""

import pytest

from mesh_compliance.expected import exec_start_flags, unit_text
from mesh_compliance.site import Site
from mesh_compliance.units import UnitParseError, parse_exec_start, parse_unit

SITE = Site()


def test_documented_unit_parses_to_expected_flags():
    unit = parse_unit(unit_text(SITE))
    command = parse_exec_start(unit.value("Service", "ExecStart"))
    assert command.binary == "/usr/bin/consul"
    assert command.subcommand == ("connect", "envoy")
    assert command.flags == exec_start_flags(SITE)
    assert unit.value("Service", "User") == "carbonio-gateway"


def test_continuation_lines_are_joined():
    text = "[Service]\nExecStart=/usr/bin/consul connect envoy \\\n  -token-file /t \\\n  -register\n"
    command = parse_exec_start(parse_unit(text).value("Service", "ExecStart"))
    assert command.flags == {"token-file": "/t", "register": True}


def test_equals_and_space_forms_are_equal():
    spaced = parse_exec_start("/usr/bin/consul connect envoy -service carbonio-gateway -gateway terminating")
    joined = parse_exec_start("/usr/bin/consul connect envoy -service=carbonio-gateway --gateway=terminating")
    assert spaced.flags == joined.flags


def test_passthrough_after_double_dash():
    command = parse_exec_start("/usr/bin/consul connect envoy -register -- -l debug")
    assert command.flags == {"register": True}
    assert command.passthrough == ("-l", "debug")


def test_exec_prefix_characters_are_ignored():
    command = parse_exec_start("-/usr/bin/consul connect envoy -register")
    assert command.binary == "/usr/bin/consul"


def test_repeated_flag_is_reported():
    command = parse_exec_start("/usr/bin/consul connect envoy -service a -service b")
    assert command.flags["service"] == "b"
    assert command.repeated == ("service",)


def test_empty_exec_start_resets_earlier_values():
    unit = parse_unit("[Service]\nExecStart=/bin/a\nExecStart=\nExecStart=/bin/b\n")
    assert unit.values("Service", "ExecStart") == ["/bin/b"]


def test_comments_are_skipped():
    unit = parse_unit("# comment\n; other\n[Service]\nUser=x\n")
    assert unit.value("Service", "User") == "x"


def test_flag_without_value_is_an_error():
    with pytest.raises(UnitParseError, match="-token-file has no value"):
        parse_exec_start("/usr/bin/consul connect envoy -token-file")


def test_assignment_outside_section_is_an_error():
    with pytest.raises(UnitParseError, match="outside any"):
        parse_unit("User=x\n")
