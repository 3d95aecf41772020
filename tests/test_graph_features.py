"""Events -> node features: per-sensor summaries, the node cap, relative times, gathering."""

import numpy as np
import pandas as pd
import pytest

from nurec.graph.features import FeatureConfig, events_to_graphs
from nurec.io.parquet import events_from_hits_dataframe


def make_events() -> "ak.Array":  # noqa: F821
    hits = pd.DataFrame(
        {
            "event_id": [1, 1, 1, 1, 2, 2, 2],
            "sensor_id": [5, 5, 7, 5, 3, 4, 8],
            "x": [0.0, 0.0, 10.0, 0.0, 1.0, 2.0, 3.0],
            "y": [0.0] * 7,
            "z": [0.0, 0.0, 0.0, 0.0, -1.0, -2.0, -3.0],
            "t": [110.0, 100.0, 130.0, 120.0, 50.0, 10.0, 30.0],
            "charge": [1.0, 2.0, 4.0, 1.0, 0.5, 3.0, 1.5],
        }
    )
    return events_from_hits_dataframe(hits)


def test_per_sensor_nodes_summarise_pulses_of_each_sensor():
    config = FeatureConfig(per_sensor=True, max_nodes=0)
    graphs = events_to_graphs(make_events(), config)
    assert graphs.counts.tolist() == [2, 3]
    event1 = graphs.nodes[:2]
    names = config.feature_names
    charge = 10 ** event1[:, names.index("log10_charge")]
    assert sorted(charge.round(5).tolist()) == [4.0, 4.0]  # sensor 5: 2+1+1 pe, sensor 7: 4 pe
    sensor5 = event1[np.argmin(event1[:, 0])]
    assert 10 ** sensor5[names.index("log10_n_pulses")] == pytest.approx(3.0)
    # First time 100 ns, charge-weighted mean time (2*100 + 110 + 120) / 4 = 107.5 ns.
    assert sensor5[names.index("t_spread")] == pytest.approx(7.5)
    # Times are relative to the charge-weighted mean of the node first times: (4*100 + 4*130) / 8.
    assert sensor5[names.index("t")] == pytest.approx(100.0 - 115.0)


def test_node_cap_keeps_the_brightest_or_the_earliest_pulses():
    events = make_events()
    bright = events_to_graphs(events, FeatureConfig(per_sensor=False, max_nodes=2, node_selection="brightest"))
    early = events_to_graphs(events, FeatureConfig(per_sensor=False, max_nodes=2, node_selection="earliest"))
    assert bright.counts.tolist() == early.counts.tolist() == [2, 2]
    q_bright = sorted((10 ** bright.nodes[2:, 4]).round(5).tolist())
    assert q_bright == [1.5, 3.0]  # event 2: charges 0.5, 3, 1.5
    x_early = sorted(early.nodes[2:, 0].tolist())
    assert x_early == [2.0, 3.0]  # event 2: times 50, 10, 30 -> sensors at x=2 and x=3
    assert bright.globals[1, 0] == pytest.approx(np.log10(3))  # pulse count before the cap


def test_take_gathers_the_nodes_of_chosen_events():
    graphs = events_to_graphs(make_events(), FeatureConfig(per_sensor=False, max_nodes=0))
    picked = graphs.take(np.array([1, 0]))
    assert picked.counts.tolist() == [3, 4]
    assert np.array_equal(picked.nodes[:3], graphs.nodes[4:7])
    assert np.array_equal(picked.nodes[3:], graphs.nodes[:4])


def test_event_without_hits_gets_no_nodes():
    events = make_events()
    import awkward as ak

    empty = ak.with_field(events[:1], events.hits[:1][:, :0], "hits")
    graphs = events_to_graphs(ak.concatenate([empty, events[1:]]), FeatureConfig())
    assert graphs.counts.tolist() == [0, 3]


def test_cleaning_flag_marks_isolated_sensors_and_the_cap_drops_them_first():
    hits = pd.DataFrame(
        {
            "event_id": [1, 1, 1, 1],
            "sensor_id": [1, 2, 3, 4],
            "x": [0.0, 17.0, 34.0, 900.0],  # sensor 4 is 900 m away: isolated, noise-like
            "y": [0.0] * 4,
            "z": [0.0] * 4,
            "t": [100.0, 180.0, 260.0, 150.0],
            "charge": [1.0, 1.0, 1.0, 9.0],
        }
    )
    events = events_from_hits_dataframe(hits)
    config = FeatureConfig(max_nodes=0, cleaning_flag=True)
    graphs = events_to_graphs(events, config)
    flag = graphs.nodes[:, config.feature_names.index("has_partner")]
    x = graphs.nodes[:, 0]
    assert flag[x == 900.0].tolist() == [0.0] and np.all(flag[x != 900.0] == 1.0)
    capped = events_to_graphs(events, FeatureConfig(max_nodes=3, cleaning_flag=True))
    assert sorted(capped.nodes[:, 0].tolist()) == [0.0, 17.0, 34.0]  # brightest, but isolated: dropped
    without = events_to_graphs(events, FeatureConfig(max_nodes=3))
    assert 900.0 in without.nodes[:, 0].tolist()


def test_node_times_are_scaled_by_the_light_speed_of_the_detector_medium():
    from nurec.models.network import GraphNetwork, ModelSpec
    from nurec.physics.medium import get_medium

    graphs = events_to_graphs(make_events(), FeatureConfig())
    small = {"conv_dims": [8], "post_dims": [8], "readout_dims": [8]}
    scales = {}
    for medium in ("ice", "water"):
        config = FeatureConfig(linefit_medium=medium)
        assert config.light_speed_m_per_ns == get_medium(medium).light_speed_m_per_ns
        network = GraphNetwork(ModelSpec(network=small, features=config))
        network.set_statistics(graphs)
        length = float(network.node_std[0])
        scales[medium] = length / float(network.node_std[3])  # metres per nanosecond of node time
    assert scales["ice"] == pytest.approx(get_medium("ice").light_speed_m_per_ns)
    assert scales["water"] == pytest.approx(get_medium("water").light_speed_m_per_ns)
    assert scales["water"] < scales["ice"]  # sea water's group index (1.38) is larger than ice's (1.356)
