"""Arrival times: sampled photo-electron time residuals follow the public arrival-time pdf."""

import numpy as np
from scipy import stats
from sim_testing import cascades_at

from nurec.geometry import get_geometry
from nurec.physics.medium import ICE
from nurec.physics.response import ICECUBE_RESPONSE
from nurec.physics.timing import arrival_time_pdf, cascade_direct_delay_ns, pandel_pdf
from sim.detector import photoelectron_times_ns
from sim.photons import sample_photoelectrons


def test_sampled_time_residuals_of_one_sensor_follow_the_pandel_pdf():
    geometry = get_geometry("icecube-mini")
    sensor = 300  # one DOM; the cascade sits 60 m from it
    distance = 60.0
    vertex = geometry.position[sensor] + np.array([distance, 0.0, 0.0])
    sources = cascades_at(vertex, 400, 2e4)
    rng = np.random.default_rng(11)
    pe = sample_photoelectrons(sources, geometry, ICE, ICECUBE_RESPONSE, rng)
    times = photoelectron_times_ns(pe, sources, geometry, ICE, ICECUBE_RESPONSE, rng)
    mine = pe.sensor == sensor
    residual = times[mine] - cascade_direct_delay_ns(distance, ICE)
    assert mine.sum() > 500
    grid = np.linspace(-30.0, 6000.0, 60001)
    pdf = arrival_time_pdf(grid, distance, ICE, ICECUBE_RESPONSE.jitter_ns)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (pdf[1:] + pdf[:-1]) * np.diff(grid))])
    assert abs(cdf[-1] - 1.0) < 1e-3
    result = stats.kstest(residual, lambda t: np.interp(t, grid, cdf / cdf[-1]))
    assert result.pvalue > 1e-3, result
    # ...and not the pdf of another distance (the test can fail).
    wrong = np.cumsum(pandel_pdf(grid, 2 * distance, ICE)) * (grid[1] - grid[0])
    assert stats.kstest(residual, lambda t: np.interp(t, grid, wrong)).pvalue < 1e-6
