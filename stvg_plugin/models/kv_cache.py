"""A KV-cache layer with room to grow: decoding writes new keys/values in place instead of copying.

transformers' ``DynamicLayer.update`` concatenates into new tensors, so every decode step of a
batch copies the whole cache (``B x kv`` keys and values per layer). :class:`RoomyLayer` holds
buffers sized for the prefix plus the tokens still to come; ``update`` writes into them and exposes
``keys``/``values`` as views of the filled part (the same values, in the same layout). The shared
video prefix is copied once, when the batch's buffers are made, and never written to.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicLayer


class RoomyLayer(DynamicLayer):
    """A ``DynamicLayer`` over preallocated buffers ``[B, H, kv + room, D]`` (grows by doubling if needed)."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, batch: int, room: int):
        super().__init__()
        n = keys.shape[-2]
        shape = (batch, keys.shape[1], n + max(0, int(room)), keys.shape[-1])
        self._k = keys.new_empty(shape)
        self._v = values.new_empty(shape[:-1] + (values.shape[-1],))
        self._k[:, :, :n] = keys  # broadcasts a batch-1 prefix over the rows
        self._v[:, :, :n] = values
        self._n = n
        self.device = keys.device
        self.is_initialized = True
        self._views()

    def _views(self) -> None:
        self.keys = self._k[:, :, : self._n]
        self.values = self._v[:, :, : self._n]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        m = key_states.shape[-2]
        if self._n + m > self._k.shape[-2]:  # more tokens than planned: double the room
            grow = max(self._n + m, 2 * self._k.shape[-2]) - self._k.shape[-2]
            self._k = torch.cat([self._k, self._k.new_empty(*self._k.shape[:2], grow, self._k.shape[-1])], dim=-2)
            self._v = torch.cat([self._v, self._v.new_empty(*self._v.shape[:2], grow, self._v.shape[-1])], dim=-2)
        self._k[:, :, self._n : self._n + m] = key_states
        self._v[:, :, self._n : self._n + m] = value_states
        self._n += m
        self._views()
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self._k = self._k[indices]
        self._v = self._v[indices]
        self._views()

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove < 0:
            self._n = max(0, self._n + tokens_to_remove)
            self._views()
        else:
            super().crop(tokens_to_remove)
