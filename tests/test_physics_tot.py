"""Time over threshold: one model turns charge into ToT (simulator) and ToT into charge (converter)."""

import numpy as np
import pytest

from nurec.physics.response import KM3NET_RESPONSE, DetectorResponse
from nurec.physics.tot import ToTModel, charge_from_tot_pe, tot_from_charge_ns


def test_tot_to_charge_to_tot_gives_back_every_recordable_tot():
    model = ToTModel()
    tot = np.arange(1.0, model.saturation_ns + 1.0)
    assert np.array_equal(tot_from_charge_ns(charge_from_tot_pe(tot, model), model), tot)


def test_one_photo_electron_gives_the_nominal_tot_and_more_charge_a_longer_one():
    model = ToTModel()
    charge = np.array([1.0, 2.0, 5.0, 20.0, 100.0])
    tot = tot_from_charge_ns(charge, model)
    assert tot[0] == round(model.spe_tot_ns)
    assert np.all(np.diff(tot) > 0)


def test_pulses_below_threshold_make_no_hit_and_huge_ones_saturate():
    model = ToTModel(threshold_pe=0.3)
    assert tot_from_charge_ns(np.array([0.1, 0.29]), model).tolist() == [0.0, 0.0]
    assert tot_from_charge_ns(np.array([1e9]), model)[0] == model.saturation_ns
    assert charge_from_tot_pe(np.array([1e4]), model)[0] == charge_from_tot_pe(np.array([model.saturation_ns]), model)[0]


def test_bad_tot_settings_are_refused_with_the_setting_named():
    with pytest.raises(ValueError, match="threshold_pe"):
        ToTModel(threshold_pe=1.5)
    with pytest.raises(ValueError, match="readout_window"):
        DetectorResponse(**{**KM3NET_RESPONSE.__dict__, "readout_window": "snapshot"})


def test_a_measured_single_pe_spectrum_is_sampled_as_given():
    quantiles = [0.3, 0.6, 0.9, 1.0, 1.1, 1.4, 2.0]
    response = DetectorResponse(**{**KM3NET_RESPONSE.__dict__, "spe_charge_quantiles": quantiles})
    assert isinstance(response.spe_charge_quantiles, tuple) and hash(response)
    charge = response.sample_spe_charge(200_000, np.random.default_rng(1))
    np.testing.assert_allclose(np.quantile(charge, np.linspace(0, 1, 7)), quantiles, atol=0.01)
    with pytest.raises(ValueError, match="spe_charge_quantiles"):
        DetectorResponse(**{**KM3NET_RESPONSE.__dict__, "spe_charge_quantiles": [1.0, 0.5]})


def test_a_photoelectron_standing_for_many_carries_their_summed_charge_spread():
    """A capped sensor's charge keeps the mean and spread of all its photo-electrons' charges."""
    from nurec.physics.response import ICECUBE_RESPONSE

    rng = np.random.default_rng(4)
    single = ICECUBE_RESPONSE.sample_spe_charge(400_000, rng)
    assert ICECUBE_RESPONSE.spe_charge_mean() == pytest.approx(single.mean(), rel=2e-3)
    represents = np.full(200_000, 100.0)
    charge = ICECUBE_RESPONSE.sample_charge(represents, np.random.default_rng(5))
    assert charge.mean() == pytest.approx(100 * single.mean(), rel=2e-3)
    assert charge.std() == pytest.approx(10 * single.std(), rel=0.02)  # √100 × σ, not 100 × σ
    ones = ICECUBE_RESPONSE.sample_charge(np.ones(10), np.random.default_rng(6))
    assert np.array_equal(ones, ICECUBE_RESPONSE.sample_spe_charge(10, np.random.default_rng(6)))
