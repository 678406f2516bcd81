"""Waiver files: parsing, required fields, expiry through the end of the day in UTC."""

import datetime as dt

import pytest

from mesh_compliance.reporting.waivers import Waiver, WaiverFileError, find_waiver, load_waivers

VALID = '''
[[waiver]]
control = "acl-policy"
justification = "the policy is managed by the platform team"
approved_by = "security@example.com"
expires = 2026-12-31

[[waiver]]
control = "gateway-account"
node = "local root=/srv/image"
justification = "image without the account"
approved_by = "ops"
expires = "2026-06-30"
'''


def write(tmp_path, text):
    path = tmp_path / "waivers.toml"
    path.write_text(text)
    return str(path)


def waiver(expires: dt.date, node=None) -> Waiver:
    return Waiver("acl-policy", node, "accepted", "ops", expires, 1)


def test_valid_file_parses(tmp_path):
    first, second = load_waivers(write(tmp_path, VALID))
    assert first.control == "acl-policy"
    assert first.node is None
    assert first.expires == dt.date(2026, 12, 31)
    assert second.node == "local root=/srv/image"
    assert second.expires == dt.date(2026, 6, 30)


@pytest.mark.parametrize("missing", ["control", "justification", "approved_by", "expires"])
def test_missing_field_names_entry(tmp_path, missing):
    lines = [line for line in VALID.split("\n[[waiver]]")[1].splitlines() if not line.startswith(missing)]
    path = write(tmp_path, "[[waiver]]" + "\n".join(lines) + "\n")
    with pytest.raises(WaiverFileError) as caught:
        load_waivers(path)
    assert "entry 1" in str(caught.value)
    assert f"missing required key '{missing}'" in str(caught.value)
    assert path in str(caught.value)


@pytest.mark.parametrize("expires", ['"31/12/2026"', "2026-12-31T10:00:00Z", "20261231", '""'])
def test_invalid_expiry_rejected(tmp_path, expires):
    text = VALID.replace("expires = 2026-12-31", f"expires = {expires}")
    with pytest.raises(WaiverFileError, match="entry 1 \\(control acl-policy\\): 'expires' must be a date"):
        load_waivers(write(tmp_path, text))


def test_empty_justification_rejected(tmp_path):
    text = VALID.replace('"the policy is managed by the platform team"', '"  "')
    with pytest.raises(WaiverFileError, match="'justification' must be a non-empty string"):
        load_waivers(write(tmp_path, text))


def test_unknown_key_rejected(tmp_path):
    with pytest.raises(WaiverFileError, match="entry 2 \\(control gateway-account\\): unknown key 'owner'"):
        load_waivers(write(tmp_path, VALID + 'owner = "me"\n'))


def test_missing_file_rejected(tmp_path):
    with pytest.raises(WaiverFileError, match="cannot be read"):
        load_waivers(str(tmp_path / "absent.toml"))


def test_invalid_toml_rejected(tmp_path):
    with pytest.raises(WaiverFileError, match="not valid TOML"):
        load_waivers(write(tmp_path, "[[waiver]\n"))


def test_valid_through_end_of_day_utc():
    expiry = waiver(dt.date(2026, 12, 4))
    utc = dt.timezone.utc
    assert expiry.valid_at(dt.datetime(2026, 12, 3, 12, 0, tzinfo=utc))
    assert expiry.valid_at(dt.datetime(2026, 12, 4, 0, 0, tzinfo=utc))
    assert expiry.valid_at(dt.datetime(2026, 12, 4, 23, 59, 59, 999999, tzinfo=utc))
    assert not expiry.valid_at(dt.datetime(2026, 12, 5, 0, 0, tzinfo=utc))


def test_expiry_judged_in_utc_not_local_time():
    expiry = waiver(dt.date(2026, 12, 4))
    # 01:00 on Dec 5 in UTC+02:00 is still Dec 4 in UTC.
    plus_two = dt.timezone(dt.timedelta(hours=2))
    assert expiry.valid_at(dt.datetime(2026, 12, 5, 1, 0, tzinfo=plus_two))
    assert not expiry.valid_at(dt.datetime(2026, 12, 5, 3, 0, tzinfo=plus_two))


def test_valid_waiver_wins_over_expired():
    now = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.timezone.utc)
    found = find_waiver([waiver(dt.date(2026, 12, 1)), waiver(dt.date(2026, 12, 10))], "acl-policy", "cluster", now)
    assert found == (waiver(dt.date(2026, 12, 10)), True)


def test_node_waiver_matches_only_its_node():
    now = dt.datetime(2026, 12, 4, tzinfo=dt.timezone.utc)
    waivers = [waiver(dt.date(2026, 12, 10), node="local")]
    assert find_waiver(waivers, "acl-policy", "local", now) is not None
    assert find_waiver(waivers, "acl-policy", "ssh://gateway", now) is None
    assert find_waiver(waivers, "acl-token", "local", now) is None
