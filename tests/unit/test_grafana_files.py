"""The Grafana provisioning files, checked offline: fixed unique uids, a valid grid, and no
panel pointing at a datasource that is not provisioned."""

from __future__ import annotations

import pytest

from tests.helpers.grafana import DASHBOARDS, dashboard, datasources, providers


def test_datasources_have_fixed_unique_uids_for_postgresql_and_prometheus():
    found = {d["type"]: d["uid"] for d in datasources()}
    assert found == {"grafana-postgresql-datasource": "tp-postgres", "prometheus": "tp-prometheus"}
    assert len({d["uid"] for d in datasources()}) == len(datasources())


def test_a_file_provider_loads_the_dashboards():
    [provider] = providers()
    assert provider["type"] == "file" and provider["options"]["path"]


def test_dashboard_uids_are_the_documented_unique_ones():
    assert [dashboard(uid)["uid"] for uid in DASHBOARDS] == list(DASHBOARDS)


@pytest.mark.parametrize("uid", DASHBOARDS)
def test_panel_ids_are_unique_and_grid_positions_fit_without_overlap(uid):
    panels = dashboard(uid)["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    taken: set[tuple[int, int]] = set()
    for p in panels:
        g = p["gridPos"]
        assert g["w"] > 0 and g["h"] > 0 and g["x"] >= 0 and g["y"] >= 0, p["title"]
        assert g["x"] + g["w"] <= 24, f"{p['title']} is past the 24 columns"
        cells = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & taken, f"{p['title']} overlaps another panel"
        taken |= cells


@pytest.mark.parametrize("uid", DASHBOARDS)
def test_every_panel_and_target_uses_a_provisioned_datasource(uid):
    provisioned = {(d["type"], d["uid"]) for d in datasources()}
    for p in dashboard(uid)["panels"]:
        assert (p["datasource"]["type"], p["datasource"]["uid"]) in provisioned, p["title"]
        assert p["targets"], f"{p['title']} has no query"
        for t in p["targets"]:
            assert (t["datasource"]["type"], t["datasource"]["uid"]) in provisioned, p["title"]
