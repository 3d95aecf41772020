"""Pure, vectorised physics functions shared by the simulator and the likelihood fits."""

from nurec.physics.light import expected_npe_cascade, expected_npe_track, track_light_factor
from nurec.physics.medium import ICE, WATER, Medium, get_medium
from nurec.physics.timing import arrival_time_pdf, log_arrival_time_pdf, pandel_pdf, track_geometry

__all__ = [
    "ICE",
    "WATER",
    "Medium",
    "arrival_time_pdf",
    "expected_npe_cascade",
    "expected_npe_track",
    "get_medium",
    "log_arrival_time_pdf",
    "pandel_pdf",
    "track_geometry",
    "track_light_factor",
]
