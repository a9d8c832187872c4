"""RoomyLayer: the in-place KV cache of batched decoding holds exactly what concatenation would."""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicLayer

from stvg_plugin.models.kv_cache import RoomyLayer


def test_roomy_layer_equals_concatenation_and_never_writes_the_prefix():
    g = torch.Generator().manual_seed(0)
    prefix_k, prefix_v = torch.randn(1, 2, 5, 4, generator=g), torch.randn(1, 2, 5, 4, generator=g)
    kept_k, kept_v = prefix_k.clone(), prefix_v.clone()
    roomy = RoomyLayer(prefix_k, prefix_v, batch=3, room=2)  # room for 2: the third update must grow
    plain = DynamicLayer()
    plain.update(prefix_k.expand(3, -1, -1, -1), prefix_v.expand(3, -1, -1, -1))
    buffer = roomy._k
    for step in range(4):
        k, v = torch.randn(3, 2, 1, 4, generator=g), torch.randn(3, 2, 1, 4, generator=g)
        got = roomy.update(k, v)
        want = plain.update(k, v)
        torch.testing.assert_close(got[0], want[0], rtol=0, atol=0)
        torch.testing.assert_close(got[1], want[1], rtol=0, atol=0)
        if step == 0:
            assert roomy._k is buffer  # written in place, not reallocated
    assert roomy.get_seq_length() == plain.get_seq_length() == 9
    idx = torch.tensor([2, 0])
    roomy.batch_select_indices(idx)
    plain.batch_select_indices(idx)
    torch.testing.assert_close(roomy.keys, plain.keys, rtol=0, atol=0)
    torch.testing.assert_close(prefix_k, kept_k, rtol=0, atol=0)
    torch.testing.assert_close(prefix_v, kept_v, rtol=0, atol=0)
