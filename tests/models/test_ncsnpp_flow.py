"""NCSN++ for the flow systems (issue 23): the linear time embedding and the interval embedding of
r - t are additive and off by default; torch.func.jvp through the network agrees with finite
differences (MeanFlow's identity needs forward-mode AD on the backbone)."""
from __future__ import annotations

import pytest
import torch

from ddtse.models.ncsnpp import NCSNpp

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = dict(in_channels=2, out_channels=2, nf=8, ch_mult=[1, 2], num_res_blocks=1, attn_resolutions=[16],
            bottleneck_attention=True, emb_dim=4, bottleneck_fusion=True, init_scale=1.0)


def test_defaults_leave_the_network_unchanged_and_the_options_are_checked():
    torch.manual_seed(0)
    plain = NCSNpp(**TINY, time_conditional=True)
    torch.manual_seed(0)
    flow = NCSNpp(**TINY, time_conditional=True, time_embedding="linear", interval_conditional=True)
    extra = set(flow.state_dict()) - set(plain.state_dict())
    assert extra and all(k.startswith("interval_embed.") for k in extra)
    assert set(plain.state_dict()) <= set(flow.state_dict())
    x, e = torch.randn(2, 2, 16, 16), torch.randn(2, 4)
    t0 = torch.zeros(2)  # t = 0 is a valid flow time (the log embedding would give -inf)
    assert torch.isfinite(flow(x, e, t0, torch.ones(2))).all()
    with pytest.raises(ValueError, match="embeds the interval"):
        flow(x, e, t0)
    with pytest.raises(ValueError, match="no interval embedding"):
        plain(x, e, torch.rand(2) + 0.1, torch.ones(2))
    with pytest.raises(ValueError, match="needs time_conditional"):
        NCSNpp(**TINY, interval_conditional=True)
    with pytest.raises(ValueError, match="time_embedding"):
        NCSNpp(**TINY, time_conditional=True, time_embedding="cubic")
    # the interval embedding changes the output (it is wired in)
    assert not torch.allclose(flow(x, e, t0, torch.ones(2)), flow(x, e, t0, torch.zeros(2)))


def test_func_jvp_matches_finite_differences_on_a_tiny_ncsnpp():
    torch.manual_seed(0)
    net = NCSNpp(**TINY, time_conditional=True, time_embedding="linear", interval_conditional=True).double()
    x, e = torch.randn(2, 2, 16, 16, dtype=torch.float64), torch.randn(2, 4, dtype=torch.float64)
    t = torch.tensor([0.2, 0.6], dtype=torch.float64)
    r = torch.tensor([0.7, 0.9], dtype=torch.float64)
    v = torch.randn_like(x)

    def f(z, tt, rr):
        return net(z, e, tt, rr - tt)

    u, du = torch.func.jvp(f, (x, t, r), (v, torch.ones_like(t), torch.zeros_like(r)))
    h = 1e-6
    fd = (f(x + h * v, t + h, r) - f(x - h * v, t - h, r)) / (2 * h)
    assert torch.allclose(u, f(x, t, r))
    assert float(du.abs().max()) > 1e-3
    assert torch.allclose(du, fd, rtol=1e-5, atol=1e-7 * float(du.abs().max()))
    (u ** 2).mean().backward()  # the primal output keeps its graph to the weights
    assert net.conv_in.weight.grad is not None and float(net.conv_in.weight.grad.abs().sum()) > 0
